"""Embedding on Ray (sketchlvm.cluster.embed) on real Sketchy photos with the tiny random-weight model.

A private Ray instance on this machine (loopback only) embeds a small gallery into shards; the merge must
give the index the single-machine build gives, the app's loader must open it, the next incremental build
must embed nothing, unusable files must be reported as the index reports them, and shards from another
model identity must be refused.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

# Before Ray is imported: it then binds and advertises 127.0.0.1 only (see cluster._start_ray).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray", reason="ray is not installed: pip install -r requirements-cluster.txt")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from sketchlvm import create_sketchlvm  # noqa: E402
from sketchlvm.cluster.embed import (  # noqa: E402
    SHARDS_MANIFEST,
    ShardIdentityError,
    embed_gallery_with_ray,
    import_ray_shards,
    model_embeddings,
    ray_runtime_env,
)
from sketchlvm.cluster.cli import main as cli_main  # noqa: E402
from sketchlvm.config import TINY_ARCH, IndexConfig, PreprocessConfig  # noqa: E402
from sketchlvm.gallery import build_gallery_index, open_gallery_index  # noqa: E402

CONFIG = IndexConfig(batch_size=4, decode_workers=2)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")  # Ray Data's own config warnings
BAD = {"airplane/broken.jpg", "ant/empty.jpg"}


@pytest.fixture(scope="module")
def model():
    return create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu")


@pytest.fixture(scope="module")
def ray_local():
    if ray.is_initialized():
        pytest.fail("a Ray instance is already running in this process")
    t0 = time.perf_counter()
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, runtime_env=ray_runtime_env(), log_to_driver=False)
    print(f"ray.init: {time.perf_counter() - t0:.1f} s")
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _galleries_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("SKETCHLVM_GALLERIES_DIR", str(tmp_path / "galleries"))


@pytest.fixture(scope="module")
def gallery(sketchy_root, tmp_path_factory) -> Path:
    """3 classes x 4 real photos, one at the top level (no label), a truncated JPEG and an empty file."""
    dest = tmp_path_factory.mktemp("cluster") / "gallery"
    classes = sorted(p.name for p in (sketchy_root / "photo").iterdir() if p.is_dir())
    for name in classes[:3]:
        for src in sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:4]:
            (dest / name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name / src.name)
    loose = sorted((sketchy_root / "photo" / classes[3]).glob("*.jpg"))[0]
    shutil.copy2(loose, dest / "loose.jpg")
    (dest / "airplane" / "broken.jpg").write_bytes(loose.read_bytes()[:300])
    (dest / "ant" / "empty.jpg").write_bytes(b"")
    return dest


@pytest.fixture(scope="module")
def shards(ray_local, gallery, tmp_path_factory) -> Path:
    t0 = time.perf_counter()
    out = embed_gallery_with_ray(gallery, tmp_path_factory.mktemp("cluster") / "shards", arch=TINY_ARCH,
                                 pretrained="none", batch_size=4, concurrency=1, shard_rows=5)
    print(f"embed_gallery_with_ray: {time.perf_counter() - t0:.1f} s")
    return out


class EncodeSpy:
    """Counts the photos model.encode_photos is asked to embed."""

    def __init__(self, model, monkeypatch):
        self.original, self.photos = model.encode_photos, 0
        monkeypatch.setattr(model, "encode_photos", self)

    def __call__(self, photos, mode):
        self.photos += len(photos)
        return self.original(photos, mode)


def _assert_same_index(index, reference, atol=1e-5):
    assert [p.relpath for p in index.photos] == [p.relpath for p in reference.photos]
    assert [p.label for p in index.photos] == [p.label for p in reference.photos]
    assert index.manifest["photos"] == reference.manifest["photos"]  # sizes and mtimes too
    assert {m: i["identity"] for m, i in index.manifest["modes"].items()} == \
        {m: i["identity"] for m, i in reference.manifest["modes"].items()}
    for mode in reference.modes:
        np.testing.assert_allclose(index.vectors(mode), reference.vectors(mode), atol=atol)


# -------------------------------------------------------------------------------------------------


def test_shards_hold_every_usable_photo_with_the_model_identity(model, gallery, shards):
    m = json.loads((shards / SHARDS_MANIFEST).read_text())
    identities, mode_key = model_embeddings(model)
    assert {mode: info["identity"] for mode, info in m["modes"].items()} == identities
    assert {mode: info["embedding"] for mode, info in m["modes"].items()} == mode_key
    assert len(m["shards"]) == 3 and [s["rows"] for s in m["shards"]] == [5, 5, 3]  # shard_rows=5
    relpaths = []
    for shard in m["shards"]:
        cols = json.loads((shards / f"{shard['name']}.json").read_text())
        for c, path in enumerate(cols["relpath"]):
            st = (gallery / path).stat()
            assert (cols["size"][c], cols["mtime_ns"][c]) == (st.st_size, st.st_mtime_ns)
            assert cols["label"][c] == (path.split("/")[0] if "/" in path else None)
        for key in set(mode_key.values()):
            vecs = np.load(shards / f"{shard['name']}-{key}.npy")
            assert vecs.dtype == np.float32 and vecs.shape == (shard["rows"], m["dim"])
            np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
        relpaths += cols["relpath"]
    assert len(relpaths) == 13 and "loose.jpg" in relpaths and not BAD & set(relpaths)
    assert {s["relpath"] for s in m["skipped"]} == BAD


def test_merge_equals_single_machine_index_and_next_build_embeds_nothing(model, gallery, shards, sketchy_root,
                                                                         tmp_path, monkeypatch):
    reference = build_gallery_index(gallery, model, tmp_path / "reference", CONFIG, show_progress_bar=False)
    spy = EncodeSpy(model, monkeypatch)
    merged = import_ray_shards(gallery, shards, model, tmp_path / "merged", CONFIG, show_progress_bar=False)
    assert spy.photos == 0  # every vector came from the shards
    _assert_same_index(merged, reference)
    # Unusable files: reported with the single-machine reasons, in the report and skipped.json.
    assert merged.report.skipped == reference.report.skipped and {r for r, _ in merged.report.skipped} == BAD
    assert (tmp_path / "merged" / "skipped.json").read_text() == (tmp_path / "reference" / "skipped.json").read_text()

    opened = open_gallery_index(tmp_path / "merged", model)  # what the app loads
    _assert_same_index(opened, reference)
    sketch = sorted((sketchy_root / "sketch" / "airplane").glob("*.png"))[0]
    queries = model.encode_sketches([Image.open(sketch)], "category")
    scores, ids = opened.search(queries, "category", 5)
    ref_scores, ref_ids = reference.search(queries, "category", 5)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert ids.tolist() == ref_ids.tolist()

    again = build_gallery_index(gallery, model, tmp_path / "merged", CONFIG, show_progress_bar=False)
    r = again.report
    assert spy.photos == 0 and (r.added, r.updated, r.removed, r.unchanged) == (0, 0, 0, 13)
    assert dict(r.skipped) == dict(reference.report.skipped)


def test_merge_embeds_only_photos_changed_since_the_cluster_run(model, gallery, shards, sketchy_root, tmp_path,
                                                                monkeypatch):
    local = tmp_path / "gallery"
    shutil.copytree(gallery, local)  # copy2 keeps size and mtime: the shards still match
    changed = sorted((local / "alarm_clock").iterdir())[0]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    new = sorted((sketchy_root / "photo" / "apple").glob("*.jpg"))[0]
    shutil.copy2(new, local / "alarm_clock" / "new.jpg")
    spy = EncodeSpy(model, monkeypatch)
    merged = import_ray_shards(local, shards, model, tmp_path / "merged", CONFIG, show_progress_bar=False)
    assert spy.photos == 2 * len(set(model_embeddings(model)[1].values()))  # the changed and the new photo
    assert len(merged) == 14 and merged.report.added == 14
    reference = build_gallery_index(local, model, tmp_path / "reference", CONFIG, show_progress_bar=False)
    _assert_same_index(merged, reference)


def test_merge_refuses_shards_of_another_model_identity(gallery, shards, tmp_path, capsys):
    other = create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu",
                             preprocess=PreprocessConfig(photo_mean=(0.5, 0.5, 0.5)))
    with pytest.raises(ShardIdentityError, match=r"another model .*photo_mean.*python -m sketchlvm cluster embed"):
        import_ray_shards(gallery, shards, other, tmp_path / "cache", show_progress_bar=False)
    assert not (tmp_path / "cache" / "manifest.json").exists()

    foreign = tmp_path / "foreign"
    shutil.copytree(shards, foreign)
    m = json.loads((foreign / SHARDS_MANIFEST).read_text())
    for info in m["modes"].values():
        info["identity"]["arch"] = "ViT-B-32-quickgelu"
    (foreign / SHARDS_MANIFEST).write_text(json.dumps(m))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["merge", str(gallery), str(foreign), "--cache", str(tmp_path / "cache"), "--model", TINY_ARCH,
                  "--pretrained", "none", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: the shards in") and "\n" not in err
    assert "arch: shards 'ViT-B-32-quickgelu' vs model 'SketchLVM-Tiny'" in err


def test_cli_embeds_a_uri_and_merges(model, ray_local, gallery, shards, tmp_path, capsys):
    out = tmp_path / "uri-shards"
    with pytest.raises(SystemExit) as exit_info:  # file:// goes through pyarrow.fs, as s3:// would
        cli_main(["embed", gallery.as_uri(), "--out", str(out), "--model", TINY_ARCH, "--pretrained", "none",
                  "--batch-size", "8", "--concurrency", "1", "--quiet"])
    stdout = capsys.readouterr().out
    assert exit_info.value.code == 0, stdout
    assert "embedded 13 photos" in stdout and "skipped airplane/broken.jpg: corrupt or truncated" in stdout
    uri, local = (json.loads((d / SHARDS_MANIFEST).read_text()) for d in (out, shards))
    assert uri["skipped"] == local["skipped"] and uri["modes"] == local["modes"]  # same reasons, stats, identity

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["merge", str(gallery), str(out), "--cache", str(tmp_path / "cache"), "--model", TINY_ARCH,
                  "--pretrained", "none", "--device", "cpu", "--quiet"])
    stdout = capsys.readouterr().out
    assert exit_info.value.code == 0 and "indexed 13 photos" in stdout and "13 added" in stdout
    merged = open_gallery_index(tmp_path / "cache", model)
    reference = import_ray_shards(gallery, shards, model, tmp_path / "reference", show_progress_bar=False)
    _assert_same_index(merged, reference)


def test_cli_errors_are_one_line(tmp_path, capsys):
    for argv in (["embed", str(tmp_path / "missing"), "--out", str(tmp_path / "out")],
                 ["merge", str(tmp_path), str(tmp_path / "no-shards")],
                 ["embed", str(tmp_path), "--out", str(tmp_path / "o"), "--batch-size", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            cli_main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and err and "Traceback" not in "\n".join(err)
        assert err[-1].startswith(("error:", "usage:")) or "error:" in err[-1]
