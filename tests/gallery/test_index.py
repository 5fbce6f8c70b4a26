"""Gallery index on real Sketchy photos with the tiny random-weight model: search against a NumPy
oracle, incremental updates, corrupt files, interruption (exception and a real kill -9), model
changes, the approximate path and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest
from PIL import Image

from sketchlvm import create_sketchlvm
from sketchlvm.config import TINY_ARCH, IndexConfig
from sketchlvm.gallery import (
    StaleIndexError,
    build_gallery_index,
    default_cache_dir,
    latest_gallery,
    open_gallery_index,
    read_faiss,
)
from sketchlvm.gallery.cli import main as cli_main
from sketchlvm.preprocess.transforms import load_photo

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG = IndexConfig(batch_size=4, decode_workers=2, commit_every=1000)
pytestmark = pytest.mark.usefixtures("galleries_in_tmp")


@pytest.fixture(scope="module")
def model():
    return create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu")


def _class_photos(sketchy_root: Path, cls: int, n: int, start: int = 0) -> list[Path]:
    classes = sorted(p.name for p in (sketchy_root / "photo").iterdir() if p.is_dir())
    return sorted((sketchy_root / "photo" / classes[cls]).glob("*.jpg"))[start : start + n]


def _make_gallery(sketchy_root: Path, dest: Path, n_classes: int = 3, per_class: int = 5) -> Path:
    for c in range(n_classes):
        for src in _class_photos(sketchy_root, c, per_class):
            target = dest / src.parent.name / src.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def _fingerprint(image: Image.Image) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


def _decoded(model, path: Path) -> Image.Image:
    """What the indexer feeds the encoder for ``path``: JPEGs draft-decoded near the model's size, then
    padded and resized by the model's own photo transform."""
    return model.photo_transform.to_image(load_photo(path, model.preprocess.max_image_pixels,
                                                     draft_size=model.image_size))


class EncodeSpy:
    """Wraps model.encode_photos: records (mode, fingerprints) per call, can fail after some calls."""

    def __init__(self, model, monkeypatch, fail_after: int | None = None):
        self.original, self.fail_after, self.calls = model.encode_photos, fail_after, []
        monkeypatch.setattr(model, "encode_photos", self)

    def __call__(self, photos, mode):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("encoder crashed (test)")
        self.calls.append((mode, [_fingerprint(p) for p in photos]))
        return self.original(photos, mode)

    @property
    def encoded(self) -> list[str]:
        return [fp for _, fps in self.calls for fp in fps]


def _by_path(index, mode: str) -> dict[str, np.ndarray]:
    vectors = np.asarray(index.vectors(mode))
    return {p.relpath: vectors[i] for i, p in enumerate(index.photos)}


def _kill_at_generation(proc: subprocess.Popen, cache: Path, target_generation: int, rng: random.Random) -> tuple[str, int]:
    """kill -9 ``proc`` once its manifest reaches ``target_generation`` (plus a random few ms).

    Returns its stderr and the last manifest generation seen before the kill."""
    generation, deadline = 0, time.monotonic() + 120
    try:
        while proc.poll() is None and generation < target_generation and time.monotonic() < deadline:
            try:
                generation = json.loads((cache / "manifest.json").read_text())["generation"]
            except (OSError, ValueError):
                pass
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGKILL)
    finally:
        _, stderr = proc.communicate()
    return stderr.decode(errors="replace"), generation


def _assert_same_index(index, reference, atol=1e-5):
    assert [p.relpath for p in index.photos] == [p.relpath for p in reference.photos]
    assert [p.label for p in index.photos] == [p.label for p in reference.photos]
    for mode in reference.modes:
        np.testing.assert_allclose(index.vectors(mode), reference.vectors(mode), atol=atol)


def _assert_search_matches_oracle(index, queries: np.ndarray, mode: str, k: int):
    scores, ids = index.search(queries, mode, k)
    k = min(k, len(index))
    assert scores.shape == ids.shape == (len(queries), k) and ids.dtype == np.int64
    oracle = queries @ np.asarray(index.vectors(mode)).T  # (n, N) brute force
    order = np.argsort(-oracle, axis=1, kind="stable")
    ranked = np.take_along_axis(oracle, order, axis=1)
    np.testing.assert_allclose(scores, ranked[:, :k], atol=1e-5)  # the best k scores, in order
    np.testing.assert_allclose(np.take_along_axis(oracle, ids, axis=1), scores, atol=1e-5)  # ids carry them
    gap_before = -np.diff(ranked, axis=1, prepend=np.inf)  # ranked[j-1] - ranked[j]
    gap_after = -np.diff(ranked, axis=1, append=-np.inf)  # ranked[j] - ranked[j+1]
    clear = ((gap_before > 1e-5) & (gap_after > 1e-5))[:, :k]  # rank j is not a near-tie
    assert (ids[clear] == order[:, :k][clear]).all()
    assert all(len(set(row)) == k for row in ids.tolist())


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# -------------------------------------------------------------------------------------------------


def test_finds_photos_labels_and_search_matches_numpy_oracle(model, sketchy_root, tmp_path, monkeypatch):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery")
    extra = _class_photos(sketchy_root, 5, 6)
    shutil.copy2(extra[0], gallery / "loose.jpg")  # top level: no label
    shutil.copy2(extra[1], gallery / "airplane" / "SHOUT.JPG")  # extension case
    Image.open(extra[2]).save(gallery / "ant" / "converted.png")
    Image.open(extra[3]).save(gallery / "ant" / "converted.webp")
    Image.open(extra[4]).save(gallery / "ant" / "converted.bmp")
    Image.open(extra[5]).save(gallery / "ant" / "anim.gif")
    for hidden in (gallery / ".hidden.jpg", gallery / ".thumbs" / "a.jpg", gallery / "_index" / "stray.jpg"):
        hidden.parent.mkdir(exist_ok=True)
        shutil.copy2(extra[0], hidden)
    (gallery / "alarm_clock" / "notes.txt").write_text("not a photo")
    expected = sorted(
        [f"{p.parent.name}/{p.name}" for p in gallery.glob("*/*.jpg") if not p.parent.name.startswith((".", "_"))]
        + ["loose.jpg", "airplane/SHOUT.JPG"]
        + [f"ant/{n}" for n in ("converted.png", "converted.webp", "converted.bmp", "anim.gif")]
    )

    spy = EncodeSpy(model, monkeypatch)
    progress = []
    index = build_gallery_index(gallery, model, gallery / "_index", CONFIG,
                                progress=lambda d, t: progress.append((d, t)), show_progress_bar=False)
    assert [p.relpath for p in index.photos] == expected and len(index) == len(expected)
    assert [p.label for p in index.photos] == [r.split("/")[0] if "/" in r else None for r in expected]
    assert index.path_of(0) == gallery.resolve() / expected[0]
    assert all(index.path_of(i).is_file() for i in range(len(index)))
    assert index.report.added == len(expected) and index.report.skipped == []
    assert progress[0] == (0, len(expected)) and progress[-1] == (len(expected), len(expected))
    # Zero-shot: both modes have the same identity apart from "mode", so every photo is encoded once.
    assert sorted(spy.encoded) == sorted(_fingerprint(_decoded(model, index.path_of(i))) for i in range(len(index)))
    manifest = json.loads((gallery / "_index" / "manifest.json").read_text())
    assert len(manifest["embeddings"]) == 1
    assert {m["embedding"] for m in manifest["modes"].values()} == set(manifest["embeddings"])
    for mode in model.modes:
        assert manifest["modes"][mode]["identity"] == json.loads(json.dumps(model.identity(mode)))
        assert manifest["modes"][mode]["index"]["kind"] == "IndexFlatIP"
    assert manifest["bytes_per_photo"]["total"] >= 4 * manifest["dim"]
    assert manifest["photos"]["size"][0] == (gallery / expected[0]).stat().st_size

    # Row i is the embedding of photo i.
    truth = spy.original([_decoded(model, index.path_of(i)) for i in range(len(index))], "category")
    np.testing.assert_allclose(index.vectors("category"), truth, atol=1e-5)

    sketches = sorted((sketchy_root / "sketch" / "airplane").glob("*.png"))[:3]
    sketch_queries = model.encode_sketches([Image.open(s) for s in sketches], "category")
    rng = np.random.default_rng(0)
    random_queries = rng.standard_normal((4, truth.shape[1])).astype(np.float32)
    random_queries /= np.linalg.norm(random_queries, axis=1, keepdims=True)
    queries = np.concatenate([sketch_queries, random_queries, truth[:3]])
    reopened = open_gallery_index(gallery / "_index", model)
    _assert_same_index(reopened, index, atol=0)
    for idx in (index, reopened):
        for mode in model.modes:
            _assert_search_matches_oracle(idx, queries, mode, k=5)
            _assert_search_matches_oracle(idx, queries, mode, k=1000)  # clipped to the gallery size
    scores, ids = reopened.search(truth[2], "fine_grained", 1)  # a single (D,) query is one row
    assert ids.tolist() == [[2]] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="queries must be"):
        reopened.search(np.zeros((1, 3), np.float32), "category", 5)
    with pytest.raises(ValueError, match="unknown mode"):
        reopened.search(queries, "nope", 5)


def test_incremental_update_embeds_only_new_and_changed(model, sketchy_root, tmp_path, monkeypatch):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery")
    cache = tmp_path / "cache"
    build_gallery_index(gallery, model, cache, CONFIG, show_progress_bar=False)

    added = []
    for src in _class_photos(sketchy_root, 6, 2):
        (gallery / src.parent.name).mkdir(exist_ok=True)
        added.append(shutil.copy2(src, gallery / src.parent.name / src.name))
    changed = sorted((gallery / "ant").glob("*.jpg"))[0]
    changed.write_bytes(_class_photos(sketchy_root, 7, 1)[0].read_bytes())  # other content, new mtime
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    deleted = sorted((gallery / "alarm_clock").glob("*.jpg"))[-1]
    deleted.unlink()

    spy = EncodeSpy(model, monkeypatch)
    index = build_gallery_index(gallery, model, cache, CONFIG, show_progress_bar=False)
    assert sorted(spy.encoded) == sorted(_fingerprint(_decoded(model, Path(p))) for p in [*added, changed])
    r = index.report
    assert (r.added, r.updated, r.removed, r.unchanged, r.skipped) == (2, 1, 1, 13, [])
    assert len(index) == 16 and "alarm_clock/" + deleted.name not in {p.relpath for p in index.photos}
    assert index.photos[-1].label == Path(added[0]).parent.name

    fresh = build_gallery_index(gallery, model, tmp_path / "fresh", CONFIG, show_progress_bar=False)
    _assert_same_index(index, fresh)
    _assert_same_index(open_gallery_index(cache, model), fresh)

    spy.calls.clear()
    again = build_gallery_index(gallery, model, cache, CONFIG, show_progress_bar=False)
    assert spy.calls == [] and again.report.unchanged == 16 and again.report.added == again.report.updated == 0
    assert sorted(f.name for f in cache.glob("*.npy")) == [f for e in again.manifest["embeddings"].values()
                                                          for f in e["files"]]  # old generations cleaned up


def test_corrupt_files_are_skipped_and_reported(model, sketchy_root, tmp_path, monkeypatch):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery", n_classes=2, per_class=4)
    good = _class_photos(sketchy_root, 4, 1)[0].read_bytes()
    (gallery / "airplane" / "empty.jpg").write_bytes(b"")
    (gallery / "airplane" / "truncated.jpg").write_bytes(good[: len(good) * 2 // 5])
    (gallery / "alarm_clock" / "text.jpg").write_text("this is not a jpeg\n" * 10)
    (gallery / "alarm_clock" / "huge.png").write_bytes(_png_header(10_000, 10_000))  # 1e8 px > 64e6 limit
    bad = ["airplane/empty.jpg", "airplane/truncated.jpg", "alarm_clock/huge.png", "alarm_clock/text.jpg"]

    cache = tmp_path / "cache"
    index = build_gallery_index(gallery, model, cache, CONFIG, show_progress_bar=False)
    assert len(index) == 8 and not set(bad) & {p.relpath for p in index.photos}
    reasons = dict(index.report.skipped)
    assert sorted(reasons) == bad and all(reasons.values())
    assert "empty" in reasons["airplane/empty.jpg"] and "pixels" in reasons["alarm_clock/huge.png"]
    assert json.loads((cache / "skipped.json").read_text()) == [{"relpath": p, "reason": reasons[p]} for p in bad]

    # Unchanged broken files are remembered: not decoded again, still reported.
    decodes = []
    import sketchlvm.gallery.build as index_module  # the build decodes photos through its own import

    monkeypatch.setattr(index_module, "load_photo", lambda *a, **k: decodes.append(a) or load_photo(*a, **k))
    again = build_gallery_index(gallery, model, cache, CONFIG, show_progress_bar=False)
    assert decodes == [] and dict(again.report.skipped) == reasons and len(again) == 8

    (gallery / "airplane" / "truncated.jpg").write_bytes(good)  # repaired
    fixed = build_gallery_index(gallery, model, cache, CONFIG, show_progress_bar=False)
    assert len(decodes) == 1 and fixed.report.added == 1 and len(fixed) == 9
    assert "airplane/truncated.jpg" not in dict(fixed.report.skipped)


def test_interrupted_build_keeps_previous_index_and_resumes(model, sketchy_root, tmp_path, monkeypatch):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery")
    cache = tmp_path / "cache"
    config = replace(CONFIG, batch_size=2)
    before = _by_path(build_gallery_index(gallery, model, cache, config, show_progress_bar=False), "category")
    new_class = _class_photos(sketchy_root, 8, 7)
    for src in new_class:
        (gallery / src.parent.name).mkdir(exist_ok=True)
        shutil.copy2(src, gallery / src.parent.name / src.name)
    changed = sorted((gallery / "airplane").glob("*.jpg"))[0]
    changed.write_bytes(_class_photos(sketchy_root, 9, 1)[0].read_bytes())
    changed_rel = f"airplane/{changed.name}"
    fresh = _by_path(build_gallery_index(gallery, model, tmp_path / "fresh", CONFIG, show_progress_bar=False),
                     "category")

    # 1. The commit itself fails (disk full while writing the manifest): the previous index stays as it was.
    import sketchlvm.gallery.build_state as index_module  # a build commits through its own imports

    real_write = index_module.atomic_write_text

    def failing_write(path, text):
        if path.name == "manifest.json":
            raise OSError(28, "No space left on device")
        real_write(path, text)

    monkeypatch.setattr(index_module, "atomic_write_text", failing_write)
    with pytest.raises(OSError, match="No space"):
        build_gallery_index(gallery, model, cache, config, show_progress_bar=False)
    monkeypatch.setattr(index_module, "atomic_write_text", real_write)
    kept = open_gallery_index(cache, model)
    assert kept.complete and _by_path(kept, "category").keys() == before.keys()
    for relpath, vec in _by_path(kept, "category").items():
        np.testing.assert_allclose(vec, before[relpath], atol=1e-6)

    # 2. The encoder raises on its 3rd batch: the 2 batches done are saved, the rest of the index is intact.
    spy = EncodeSpy(model, monkeypatch, fail_after=2)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        build_gallery_index(gallery, model, cache, config, show_progress_bar=False)
    partial = open_gallery_index(cache, model)
    # Work in folder order: the changed airplane photo, then the new class; batches of 2.
    saved = [changed_rel] + [f"{p.parent.name}/{p.name}" for p in new_class[:3]]
    assert not partial.complete and len(partial) == 15 + 3
    for relpath, vec in _by_path(partial, "category").items():
        np.testing.assert_allclose(vec, fresh[relpath] if relpath in saved else before[relpath], atol=1e-5)

    spy.fail_after, spy.calls = None, []
    done = build_gallery_index(gallery, model, cache, config, show_progress_bar=False)
    assert len(spy.encoded) == 4 and done.complete and done.report.added == 4 and done.report.unchanged == 18
    assert _by_path(done, "category").keys() == fresh.keys()
    for relpath, vec in _by_path(done, "category").items():
        np.testing.assert_allclose(vec, fresh[relpath], atol=1e-5)


def test_kill_9_during_build_then_restart_gives_a_complete_consistent_index(model, sketchy_root, tmp_path):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery", n_classes=6, per_class=8)
    cache = tmp_path / "cache"
    seed = int(time.time() * 1000) % 100_000
    rng = random.Random(seed)
    target_generation = rng.randint(1, 18)  # 48 photos, a commit every 2: generations 1..24, then the final one
    cmd = [sys.executable, "-m", "sketchlvm", "index", "build", str(gallery), "--cache", str(cache), "--model", TINY_ARCH,
           "--pretrained", "none", "--device", "cpu", "--batch-size", "1", "--commit-every", "2", "--workers", "1",
           "--exact-max", "20", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr, generation = _kill_at_generation(proc, cache, target_generation, rng)
    assert proc.returncode == -signal.SIGKILL, f"seed {seed}: build ended before the kill: {stderr[-2000:]}"

    if (cache / "manifest.json").exists():  # whatever was committed is a usable index
        survived = open_gallery_index(cache, model)
        assert len(survived) == survived.manifest["count"] <= 48

    index = build_gallery_index(gallery, model, cache, CONFIG, show_progress_bar=False)
    files = sorted(p.relative_to(gallery).as_posix() for p in gallery.rglob("*.jpg"))
    relpaths = [p.relpath for p in index.photos]
    assert relpaths == files, f"seed {seed}, killed after generation {generation}"
    assert index.complete and index.report.added + index.report.unchanged == 48
    fresh = build_gallery_index(gallery, model, tmp_path / "fresh", replace(CONFIG, exact_max=20),
                                show_progress_bar=False)
    _assert_same_index(index, fresh)
    reopened = open_gallery_index(cache, model)
    _assert_same_index(reopened, fresh)
    referenced = {f for e in reopened.manifest["embeddings"].values() for f in e["files"]}
    referenced |= {m["index"]["file"] for m in reopened.manifest["modes"].values() if m["index"]["file"]}
    assert {p.name for p in cache.iterdir()} == referenced | {"manifest.json", "skipped.json", "build.lock", "thumbnails"}


def test_model_change_forces_rebuild_of_that_mode(model, sketchy_root, tmp_path, monkeypatch):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery", n_classes=2, per_class=5)
    cache = tmp_path / "cache"
    build_gallery_index(gallery, model, cache, CONFIG, show_progress_bar=False)

    original_identity = model.identity

    def trained_fine_grained(mode):  # as if a checkpoint with fine-grained prompts were loaded
        ident = original_identity(mode)
        return {**ident, "checkpoint_sha256": "f" * 64, "n_prompts": 3} if mode == "fine_grained" else ident

    monkeypatch.setattr(model, "identity", trained_fine_grained)
    with pytest.raises(StaleIndexError, match=r"fine_grained.*python -m sketchlvm index build") as stale:
        open_gallery_index(cache, model)
    # The suggested command rebuilds for this model, not the default one: its own flags.
    assert f"--model {model.arch} --pretrained none" in str(stale.value), stale.value
    spy = EncodeSpy(model, monkeypatch)
    index = build_gallery_index(gallery, model, cache, CONFIG, show_progress_bar=False)
    assert [mode for mode, _ in spy.calls] == ["fine_grained"] * len(spy.calls) and len(spy.encoded) == 10
    assert index.report.updated == 10 and index.report.unchanged == 0
    assert len(index.manifest["embeddings"]) == 2
    reopened = open_gallery_index(cache, model)
    assert reopened.manifest["modes"]["fine_grained"]["identity"]["checkpoint_sha256"] == "f" * 64

    monkeypatch.setattr(model, "identity", original_identity)
    with pytest.raises(StaleIndexError):
        open_gallery_index(cache, model)
    other_seed = create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu")
    other_seed.weights = replace(other_seed.weights, value="none-seed-1")  # a different weights identity
    with pytest.raises(StaleIndexError, match="weights"):
        open_gallery_index(cache, other_seed)


def test_approximate_index_above_exact_max_records_recall_and_memory_maps(model, sketchy_root, tmp_path):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery", n_classes=4, per_class=6)
    cache = tmp_path / "cache"
    config = replace(CONFIG, exact_max=5)
    index = build_gallery_index(gallery, model, cache, config, show_progress_bar=False)
    info = index.manifest["modes"]["category"]["index"]
    assert info["kind"] == "HNSW32,Flat" and not info["exact"]
    assert info["recall_at_10"] >= 0.99 and info["recall_queries"] == 24
    assert info["params"]["efSearch"] >= config.hnsw_ef_search and info["params"]["M"] == 32
    assert index.manifest["bytes_per_photo"]["faiss"] > 0
    path = cache / info["file"]
    assert faiss.read_index(str(path), faiss.IO_FLAG_MMAP).ntotal == 24
    assert read_faiss(path).ntotal == 24

    reopened = open_gallery_index(cache, model)
    assert isinstance(reopened.vectors("category"), np.memmap)
    queries = np.asarray(reopened.vectors("category"))[::3]
    for mode in model.modes:
        _assert_search_matches_oracle(reopened, queries, mode, k=10)

    same = build_gallery_index(gallery, model, cache, config, show_progress_bar=False)
    assert same.manifest["modes"]["category"]["index"]["file"] == info["file"]  # nothing changed: graph kept
    sorted(gallery.glob("*/*.jpg"))[0].unlink()
    smaller = build_gallery_index(gallery, model, cache, config, show_progress_bar=False)
    new_info = smaller.manifest["modes"]["category"]["index"]
    assert new_info["file"] != info["file"] and not path.exists()  # HNSW cannot delete: rebuilt
    assert read_faiss(cache / new_info["file"]).ntotal == 23 and new_info["recall_at_10"] >= 0.99
    _assert_search_matches_oracle(open_gallery_index(cache, model), queries, "category", k=10)


def test_cli_build_and_info(sketchy_root, tmp_path, capsys):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery", n_classes=2, per_class=3)
    (gallery / "airplane" / "broken.jpg").write_bytes(b"")
    tiny = ["--model", TINY_ARCH, "--pretrained", "none", "--device", "cpu", "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["build", str(gallery), *tiny, "--exact-max", "3"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "indexed 6 photos" in out and "skipped airplane/broken.jpg" in out
    cache = default_cache_dir(gallery)
    assert cache.parent == tmp_path / "galleries" and (cache / "manifest.json").is_file()

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["info", str(gallery)])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for expected in ("photos:  6", "mode category", "mode fine_grained", "HNSW32,Flat", "recall@10", "bytes/photo",
                     "skipped airplane/broken.jpg"):
        assert expected in out, out
    with pytest.raises(SystemExit):
        cli_main(["info", str(cache)])
    assert "photos:  6" in capsys.readouterr().out

    for argv, needle in [
        (["build", str(tmp_path / "missing"), *tiny], "does not exist"),
        (["build", str(gallery), "--model", TINY_ARCH, "--pretrained", str(tmp_path / "w.safetensors")], "weights"),
        (["info", str(tmp_path / "nothing")], "no gallery index"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli_main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and needle in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err


def test_cache_location_latest_gallery_and_empty_gallery(model, tmp_path, monkeypatch, sketchy_root):
    home = tmp_path / "galleries"
    a = _make_gallery(sketchy_root, tmp_path / "My Photos", n_classes=1, per_class=2)
    b = tmp_path / "empty"
    b.mkdir()
    assert default_cache_dir(a).parent == home and default_cache_dir(a).name.startswith("My_Photos-")
    assert default_cache_dir(a) != default_cache_dir(tmp_path / "other" / "My Photos")
    assert default_cache_dir(a, tmp_path / "x").parent == tmp_path / "x"
    assert latest_gallery() is None

    build_gallery_index(a, model, config=CONFIG, show_progress_bar=False)
    time.sleep(0.05)  # manifest mtimes order the galleries
    empty = build_gallery_index(b, model, config=CONFIG, show_progress_bar=False)
    assert len(empty) == 0 and latest_gallery() == b.resolve()
    scores, ids = empty.search(np.ones((2, 64), np.float32), "category", 10)
    assert scores.shape == ids.shape == (2, 0)
    assert len(open_gallery_index(default_cache_dir(b), model)) == 0
    shutil.rmtree(b)
    assert latest_gallery() == a.resolve()
