"""Evaluation options that decide whether a number can be set beside a published one: the fine-grained
gallery, the sketch framing, the caps, what embedded, and how missing photos count (issue 20)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sketchlvm.datasets import FineGrainedPairs
from sketchlvm.evaluation.cli import main
from sketchlvm.evaluation.evaluate import fine_grained_result

CLASSES = ("bat", "cow", "giraffe")  # sketchy_21 unseen classes
TINY = ["--model", "SketchLVM-Tiny", "--pretrained", "none", "--device", "cpu", "--workers", "0"]


def _sketchy_copy(sketchy_root: Path, dest: Path, unsketched: int) -> Path:
    """The classes' sketches and sketched photos (symlinks), plus the first ``unsketched`` unsketched photos."""
    for name in CLASSES:
        (dest / "sketch" / name).mkdir(parents=True)
        (dest / "photo" / name).mkdir(parents=True)
        sketches = sorted((sketchy_root / "sketch" / name).glob("*.png"))
        drawn = {s.stem.rsplit("-", 1)[0] for s in sketches}
        for s in sketches:
            (dest / "sketch" / name / s.name).symlink_to(s)
        photos = sorted((sketchy_root / "photo" / name).glob("*.jpg"))
        others = [p for p in photos if p.stem not in drawn][:unsketched]
        for p in [p for p in photos if p.stem in drawn] + others:
            (dest / "photo" / name / p.name).symlink_to(p)
    return dest


def _evaluate(root: Path, out: Path, *extra: str) -> dict:
    assert main(["--dataset", "sketchy_fg", "--root", str(root), "--split", "sketchy_21",
                 *TINY, "--out", str(out), *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture
def two_folders(sketchy_root, tmp_path, monkeypatch):
    """The same sketched photos with none and with 10 unsketched photos a class; the split is these 3 classes."""
    from sketchlvm.datasets import splits

    monkeypatch.setitem(splits.SPLITS, "sketchy_21", CLASSES)
    return (_sketchy_copy(sketchy_root, tmp_path / "bare", 0), _sketchy_copy(sketchy_root, tmp_path / "full", 10))


def test_fine_grained_gallery_is_the_sketched_photos_unless_distractors_are_asked_for(two_folders, tmp_path):
    bare, full = two_folders
    a = _evaluate(bare, tmp_path / "a")
    b = _evaluate(full, tmp_path / "b")
    acc = [k for k in a if k.startswith("Acc@")]
    assert acc and {k: a[k] for k in acc} == {k: b[k] for k in acc}  # unsketched photos change nothing
    assert a["extra"]["gallery"] == b["extra"]["gallery"] == b["extra"]["gallery_photos"]["photos_with_sketches"]
    assert b["extra"]["fg_gallery"] == "sketched"

    c = _evaluate(full, tmp_path / "c", "--fg-gallery", "with-distractors")
    assert c["extra"]["gallery"] == b["extra"]["gallery"] + 3 * 10
    assert c["extra"]["gallery_photos"]["photos_per_class"]["min"] >= 10
    summary = (tmp_path / "c" / "summary.md").read_text()
    assert "fine-grained gallery" in summary and "with-distractors" in summary and "photos per class" in summary
    assert "unsketched photos as same-class distractors" in summary


def test_sketchy_pairs_default_to_sketched_photos(sketchy_root):
    pairs = FineGrainedPairs.sketchy(sketchy_root, classes=list(CLASSES))
    assert set(pairs.sketch_photo.tolist()) == set(range(len(pairs.photo_paths)))  # every photo has a sketch
    wide = FineGrainedPairs.sketchy(sketchy_root, classes=list(CLASSES), gallery="with-distractors")
    assert len(wide.photo_paths) == 3 * 25 and len(wide) == len(pairs)
    with pytest.raises(ValueError, match="with-distractors"):
        FineGrainedPairs.sketchy(sketchy_root, classes=list(CLASSES), gallery="everything")


def test_zero_shot_baseline_is_framed_by_the_dataset_protocol_and_says_so(sketchy_root, tmp_path, monkeypatch):
    onnx_cache = tmp_path / "onnx"
    monkeypatch.setenv("SKETCHLVM_ONNX_CACHE", str(onnx_cache))
    monkeypatch.setenv("SKETCHLVM_RUNTIME", "auto")
    args = ["--dataset", "sketchy", "--root", str(sketchy_root), "--max-classes", "4", "--max-per-class", "3", *TINY]
    assert main([*args, "--save-features", "--out", str(tmp_path / "a")]) == 0
    doc = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert doc["extra"]["framing"] == "pad-square" and "protocol" in doc["extra"]["framing_source"]
    # torch embedded it, and no ONNX graph was built or checked for nothing
    assert doc["extra"]["model"]["runtime"].startswith("torch")
    assert not onnx_cache.exists() or not any(onnx_cache.rglob("*.onnx"))
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "| sketch framing | pad-square" in summary

    assert main([*args, "--framing", "ink-crop", "--save-features", "--out", str(tmp_path / "b")]) == 0
    other = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert other["extra"]["framing"] == "ink-crop" and other["extra"]["framing_source"].startswith("asked for")
    with np.load(tmp_path / "a" / "features.npz") as a, np.load(tmp_path / "b" / "features.npz") as b:
        assert not np.allclose(a["query_features"], b["query_features"])  # the framing reached the encoder
        np.testing.assert_array_equal(a["gallery_features"], b["gallery_features"])


def test_a_capped_run_is_not_titled_as_the_benchmark(sketchy_root, tmp_path):
    out = tmp_path / "capped"
    assert main(["--dataset", "sketchy", "--root", str(sketchy_root), "--max-classes", "4", "--max-per-class", "2",
                 *TINY, "--out", str(out)]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["extra"]["max_classes"] == 4 and doc["extra"]["max_per_class"] == 2 and len(doc["extra"]["classes"]) == 4
    summary = (out / "summary.md").read_text()
    heading = [line for line in summary.splitlines() if line.startswith("## ") and "published" not in line.lower()]
    assert "## Sketchy-extended, 21 unseen classes: ours beside" not in summary
    assert "4 of the 21 unseen classes of sketchy_21 (capped: --max-classes 4, --max-per-class 2)" in summary
    assert "not comparable" in summary and heading


def test_fine_grained_example_grid_marks_the_sketchs_own_photo(sketchy_root, tmp_path, monkeypatch):
    """A photo of the right class that is not the sketch's own is a miss in the fine-grained grid."""
    from sketchlvm.evaluation import report

    seen = {}
    real = report.write_example_grid

    def spy(out_dir, queries, gallery, top, relevant, **kw):
        seen.update(queries=queries, gallery=gallery, top=top, relevant=relevant)
        return real(out_dir, queries, gallery, top, relevant, **kw)

    monkeypatch.setattr(report, "write_example_grid", spy)
    out = tmp_path / "fg"
    assert main(["--dataset", "sketchy_fg", "--root", str(sketchy_root), "--max-classes", "2", *TINY,
                 "--out", str(out)]) == 0
    own = np.array([[Path(seen["gallery"][g]).stem == Path(q).stem.rsplit("-", 1)[0] for g in row]
                    for q, row in zip(seen["queries"], seen["top"])])
    same_class = np.array([[Path(seen["gallery"][g]).parent.name == Path(q).parent.name for g in row]
                           for q, row in zip(seen["queries"], seen["top"])])
    np.testing.assert_array_equal(seen["relevant"], own)
    assert (same_class & ~own).any()  # there were same-class photos that are not the sketch's own: marked red


def test_a_sketch_without_its_photo_counts_alike_under_both_protocols():
    rng = np.random.default_rng(0)
    photos = rng.normal(size=(6, 8)).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1])
    ids = np.array(["a", "b", "c", "d", "e", "f"])
    sketches = photos[[0, 1, 3, 4]] + 0.01
    q_labels, q_ids = labels[[0, 1, 3, 4]], ids[[0, 1, 3, 4]]
    # drop photo "b" from the gallery: its sketch has no own photo
    keep = ids != "b"
    result = fine_grained_result(sketches, q_labels, q_ids, photos[keep], labels[keep], ids[keep])
    assert result.n_without_match == 1
    for k in (1, 5):
        assert result.metrics[f"Acc@{k}_within_class"] == result.metrics[f"Acc@{k}_whole_gallery"] == 1.0


def test_a_class_whose_sketches_all_lack_their_photo_is_left_out_and_counted(sketchy_root, tmp_path):
    """Possible with --features: the within-class pass raised ValueError; now it leaves the class out, as the
    whole-gallery pass does, and the report counts it (issue 29, item 8)."""
    full = tmp_path / "full"
    assert main(["--dataset", "sketchy_fg", "--root", str(sketchy_root), "--max-classes", "3", *TINY,
                 "--save-features", "--out", str(full)]) == 0
    with np.load(full / "features.npz") as f:
        arrays = dict(f)
    dropped = arrays["query_labels"][0]
    keep_photos = arrays["gallery_labels"] != dropped
    keep_sketches = arrays["query_labels"] != dropped
    no_photos = {**arrays, **{k: arrays[k][keep_photos] for k in ("gallery_features", "gallery_labels", "gallery_ids")}}
    np.savez(tmp_path / "no_photos.npz", **no_photos)
    np.savez(tmp_path / "neither.npz", **{**no_photos, **{k: arrays[k][keep_sketches] for k in
                                                           ("query_features", "query_labels", "query_ids")}})

    assert main(["--features", str(tmp_path / "no_photos.npz"), "--out", str(tmp_path / "a")]) == 0
    assert main(["--features", str(tmp_path / "neither.npz"), "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["extra"]["classes_without_own_photos"] == 1 and b["extra"]["classes_without_own_photos"] == 0
    assert a["extra"]["queries_without_own_photo"] == int((~keep_sketches).sum())
    for k in (1, 5, 10):  # the sketches left out count for nothing, under both protocols
        for protocol in ("within_class", "whole_gallery"):
            assert a[f"Acc@{k}_{protocol}"] == pytest.approx(b[f"Acc@{k}_{protocol}"])
    assert "| classes without their sketches' photos | 1:" in (tmp_path / "a" / "summary.md").read_text()
