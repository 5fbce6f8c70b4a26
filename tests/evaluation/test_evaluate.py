"""The evaluation CLI: whole-gallery metrics and the report files, from a model or from features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sketchlvm.evaluation.cli import main
from sketchlvm.evaluation.metrics import retrieval_metrics

KEYS = {"mAP@all", "mAP@200", "mAP@200_lenient", "P@100", "P@200"}


def test_zero_shot_baseline_on_real_sketchy_writes_the_report(sketchy_root, tmp_path):
    out = tmp_path / "eval"
    code = main([
        "--dataset", "sketchy", "--root", str(sketchy_root), "--model", "SketchLVM-Tiny", "--pretrained", "none",
        "--max-per-class", "4", "--workers", "0", "--save-features", "--out", str(out),
    ])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert KEYS <= set(metrics) and all(0.0 <= metrics[k] <= 1.0 for k in KEYS)
    assert metrics["extra"]["queries"] == 21 * 4 and metrics["extra"]["gallery"] == 21 * 4
    assert "random weights" in metrics["extra"]["model"]["weights"]
    summary = (out / "summary.md").read_text()
    assert "VOC-interpolated" in summary
    # capped at 4 a class: not the benchmark, so no published row beside it (issue 29)
    assert "0.723" not in summary and "Not comparable with the published numbers" in summary
    assert (out / "pr_curve.png").stat().st_size > 1000 and (out / "examples.png").stat().st_size > 1000

    # the report says what was measured: model, weights (random ones loudly), checkpoint, data, protocol
    assert "RANDOM WEIGHTS" in summary.split("## All our metrics")[0]
    for fact in ("SketchLVM-Tiny", "zero-shot CLIP, no trained prompts", "sketchy_21", str(sketchy_root)):
        assert fact in summary, fact
    assert "every unseen-class sketch ranked against every unseen-class photo" in summary
    assert metrics["extra"]["protocol"].startswith("category-level zero-shot")
    assert metrics["extra"]["checkpoint"] is None and metrics["extra"]["split"] == "sketchy_21"
    assert "METHOD.md" not in summary
    from PIL import Image

    with Image.open(out / "pr_curve.png") as plot:
        assert "SketchLVM-Tiny" in plot.info["Title"] and "random weights" in plot.info["Title"]

    # the saved features re-score to the same numbers through --features
    again = tmp_path / "again"
    assert main(["--features", str(out / "features.npz"), "--dataset", "sketchy", "--out", str(again)]) == 0
    assert json.loads((again / "metrics.json").read_text())["mAP@all"] == pytest.approx(metrics["mAP@all"])


def test_features_file_with_instance_ids_gives_acc_at_k(tmp_path):
    rng = np.random.default_rng(0)
    photos = rng.normal(size=(30, 16)).astype(np.float32)
    sketches = photos + 0.05 * rng.normal(size=photos.shape).astype(np.float32)  # each sketch near its photo
    labels = np.repeat(np.arange(3), 10)
    ids = np.arange(30)
    path = tmp_path / "f.npz"
    np.savez(path, query_features=sketches, query_labels=labels, gallery_features=photos, gallery_labels=labels,
             query_ids=ids, gallery_ids=ids)
    assert main(["--features", str(path), "--out", str(tmp_path / "o")]) == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["Acc@1_within_class"] == 1.0 and metrics["Acc@10_whole_gallery"] == 1.0
    expected = retrieval_metrics(sketches, labels, photos, labels)
    assert metrics["mAP@all"] == pytest.approx(expected["mAP@all"])


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, query_features=np.zeros((2, 4)))
    assert main(["--features", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "lacks arrays" in capsys.readouterr().err
    assert main(["--dataset", "sketchy", "--root", str(tmp_path / "nowhere"), "--pretrained", "none",
                 "--model", "SketchLVM-Tiny", "--out", str(tmp_path / "o")]) == 2


def test_fine_grained_acc_at_k_under_both_protocols_with_clear_names():
    """Sketch i of class A lies nearest its own photo among class A, but nearer still to photo i of
    class B: first within its class, second in the whole unseen-class gallery."""
    from sketchlvm.evaluation.evaluate import fine_grained_result

    rng = np.random.default_rng(1)
    base = rng.normal(size=(5, 32)).astype(np.float32)
    photos = np.concatenate([base, base + 0.01 * rng.normal(size=base.shape).astype(np.float32)])  # A, then B
    labels = np.repeat(["A", "B"], 5)
    ids = np.array([f"{c}{i}" for c in "AB" for i in range(5)])
    queries = photos[5:] + 0.001 * rng.normal(size=base.shape).astype(np.float32)  # near B's photos...
    result = fine_grained_result(queries, np.array(["A"] * 5), ids[:5], photos, labels, ids)  # ...but drawn from A's
    metrics = result.metrics
    assert metrics["Acc@1_within_class"] == 1.0 and metrics["Acc@1_whole_gallery"] == 0.0
    assert metrics["Acc@5_whole_gallery"] == 1.0
    assert not any(key in metrics for key in ("Acc@1", "Acc@5", "Acc@10"))  # no name without its protocol


def test_an_unmeasured_selection_metric_is_refused_before_training(tmp_path):
    from sketchlvm.config import load_experiment
    from sketchlvm.training.trainer import train

    config = load_experiment("tiny_sketchy_category")
    config.train.eval_metric = "Acc@1_within_class"  # a fine-grained metric for a category run
    with pytest.raises(ValueError, match="eval_metric 'Acc@1_within_class' is not measured in category mode; choose"):
        train(config, show_progress=False)


def test_non_interpolated_map_at_all_is_scikit_learns_average_precision(sketchy_root, tmp_path):
    """mAP@all_noninterp beside the VOC-interpolated mAP@all, on real sketches and photos (issue 29, item 7)."""
    from sklearn.metrics import average_precision_score

    out = tmp_path / "eval"
    assert main(["--dataset", "sketchy", "--root", str(sketchy_root), "--model", "SketchLVM-Tiny", "--pretrained",
                 "none", "--max-classes", "5", "--max-per-class", "6", "--workers", "0", "--save-features",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    with np.load(out / "features.npz") as f:
        q, g = f["query_features"], f["gallery_features"]
        relevant = f["query_labels"][:, None] == f["gallery_labels"][None, :]
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    expected = np.mean([average_precision_score(r, s) for r, s in zip(relevant, q @ g.T)])
    assert metrics["mAP@all_noninterp"] == pytest.approx(expected, abs=1e-6)
    assert metrics["mAP@all_noninterp"] != metrics["mAP@all"]  # interpolation lifts the interpolated one
    summary = (out / "summary.md").read_text()
    assert "| mAP@all_noninterp |" in summary and "CLIP for All Things' mAP@all is this interpolated value" in summary
