"""Partial-sketch (on-the-fly) evaluation: truncation and m@A / m@B by hand, class matching and the
CLI on real Quick, Draw! drawings against the real Sketchy photos of the shared classes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sketchlvm.evaluation.partial.cli import main
from sketchlvm.evaluation.partial.run import evaluate_partial, on_the_fly_summary, score_steps
from sketchlvm.evaluation.partial.framing import (
    bhunia_point_counts,
    load_stroke_sketches,
    match_key,
    partial_drawings,
    shared_classes,
    step_fractions,
    truncate_strokes,
)

# three strokes of 3, 1 and 2 points (6 points): [xs, ys, ts]
STROKES = [
    [[0, 1, 2], [0, 1, 2], [0, 10, 20]],
    [[5], [5], [30]],
    [[7, 8], [1, 0], [40, 50]],
]


# ---------------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("fraction, n_strokes", [(0.1, 1), (1 / 3, 1), (0.5, 2), (0.7, 3), (1.0, 3)])
def test_truncate_by_strokes_by_hand(fraction, n_strokes):
    assert truncate_strokes(STROKES, fraction, "strokes") == STROKES[:n_strokes]


def test_truncate_by_points_by_hand():
    assert truncate_strokes(STROKES, 0.1, "points") == [[[0], [0], [0]]]  # ceil(0.6) = 1 point
    assert truncate_strokes(STROKES, 0.5, "points") == STROKES[:1]  # 3 points: the first stroke
    assert truncate_strokes(STROKES, 0.6, "points") == STROKES[:2]  # ceil(3.6) = 4 points
    assert truncate_strokes(STROKES, 5 / 6, "points") == [*STROKES[:2], [[7], [1], [40]]]  # cut short
    assert truncate_strokes(STROKES, 1.0, "points") == STROKES


def test_steps_count_exactly():
    assert step_fractions(4) == [0.25, 0.5, 0.75, 1.0]
    ten = [[[i], [i]] for i in range(10)]
    # 0.3 * 10 is 3.0000000000000004 in floating point; it must still keep 3 strokes, not 4
    assert [len(truncate_strokes(ten, f, "strokes")) for f in step_fractions(10)] == list(range(1, 11))
    assert [len(truncate_strokes(ten, f, "points")) for f in step_fractions(10)] == list(range(1, 11))
    with pytest.raises(ValueError, match="fraction"):
        truncate_strokes(STROKES, 0.0)
    with pytest.raises(ValueError, match="unknown unit"):
        truncate_strokes(STROKES, 0.5, "pixels")
    with pytest.raises(ValueError, match="steps"):
        step_fractions(0)


def test_partial_drawings_keep_the_finished_drawings_frame():
    from sketchlvm.config import PreprocessConfig
    from sketchlvm.preprocess.drawing import StrokeDrawing, render_drawing

    config = PreprocessConfig(sketch_framing="pad-square")
    first = np.asarray(render_drawing(StrokeDrawing(STROKES[:1], placed_as=STROKES), config, 64).convert("L")) < 128
    whole = np.asarray(render_drawing(StrokeDrawing(STROKES), config, 64).convert("L")) < 128
    assert first.any() and (whole | first).sum() == whole.sum()  # the first stroke's ink is where it ends up
    assert first.sum() < whole.sum()


def test_bhunia_schedule_by_hand():
    """Their loop over N = 100 points snapshots after points round(k * 100 / 17), k = 1..16 (0-based), then at the end."""
    assert bhunia_point_counts(100) == [7, 13, 19, 25, 30, 36, 42, 48, 54, 60, 66, 72, 77, 83, 89, 95, 100]
    assert bhunia_point_counts(5)[-1] == 5 and len(bhunia_point_counts(5)) == 17
    steps = partial_drawings(STROKES, "bhunia2020", 10, "strokes")  # steps and unit do not apply
    assert len(steps) == 17 and steps[-1] == STROKES
    assert [sum(len(s[0]) for s in step) for step in steps] == bhunia_point_counts(6)
    with pytest.raises(ValueError, match="unknown schedule"):
        partial_drawings(STROKES, "linear", 10, "strokes")


# ---------------------------------------------------------------------------------- m@A and m@B


def test_on_the_fly_summary_by_hand():
    # two sketches x two steps, gallery of 5: ranks 1, 2 and 4, 1
    summary = on_the_fly_summary(np.array([[1, 2], [4, 1]]), gallery_size=5)
    assert summary["m@B"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1) / 4)
    assert summary["m@A"] == pytest.approx((4 / 4 + 3 / 4 + 1 / 4 + 4 / 4) / 4)
    assert on_the_fly_summary(np.array([[1]]), gallery_size=1) == {"m@B": 1.0, "m@A": 1.0}
    with pytest.raises(ValueError, match="ranks must be"):
        on_the_fly_summary(np.array([[0, 1]]), gallery_size=5)
    with pytest.raises(ValueError, match="ranks must be"):
        on_the_fly_summary(np.array([[6]]), gallery_size=5)


def _four_photos():
    """Unit photos whose ranking is 0, 1, 2, 3 for query e0 and 3, 2, 1, 0 for query e1."""
    g = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    return g, np.array(["a", "b", "a", "b"]), np.array(["p0", "p1", "p2", "p3"])


def test_score_steps_category_by_hand():
    g, labels, _ = _four_photos()
    steps = [np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])]  # the sketch, then more of it
    result = score_steps(steps, np.array(["b"]), g, labels, [0.5, 1.0], "strokes")
    assert result.protocol == "category"
    np.testing.assert_array_equal(result.target_rank, [[2, 1]])  # first "b": photo 1, then photo 3
    assert result.summary["m@B"] == pytest.approx((1 / 2 + 1) / 2)
    assert result.summary["m@A"] == pytest.approx(((4 - 2) / 3 + (4 - 1) / 3) / 2)
    # relevant at ranks 2 and 4, then 1 and 3 (VOC-interpolated AP)
    assert result.steps["mAP@all"] == pytest.approx([1 / 2, (1 + 2 / 3) / 2])
    assert result.steps["mean 1/rank"] == pytest.approx([1 / 2, 1.0])


def test_score_steps_fine_grained_by_hand():
    g, labels, ids = _four_photos()
    steps = [np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])]
    result = score_steps(steps, np.array(["a"]), g, labels, [0.5, 1.0], "points", np.array(["p2"]), ids)
    assert result.protocol == "fine_grained"
    np.testing.assert_array_equal(result.target_rank, [[3, 2]])  # its own photo, p2
    assert result.summary["m@B"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert result.steps["Acc@1"] == [0.0, 0.0]


# ---------------------------------------------------------------------------------- real data


def test_quickdraw_and_sketchy_classes_match_after_normalisation(quickdraw_root, sketchy_root):
    qd = sorted(p.stem for p in quickdraw_root.glob("*.ndjson"))
    sk = sorted(p.name for p in (sketchy_root / "photo").iterdir() if p.is_dir())
    shared = shared_classes(qd, sk)
    assert 50 < len(shared) < min(len(qd), len(sk))  # a real overlap, not everything
    assert shared["teddybear"] == ("teddy-bear", "teddy_bear")
    assert shared["hotairballoon"] == ("hot air balloon", "hot-air_balloon")
    assert shared["alarmclock"] == ("alarm clock", "alarm_clock")
    assert shared["giraffe"] == ("giraffe", "giraffe")
    assert shared["hotdog"] == ("hot dog", "hotdog")  # was lost: hot_dog != hotdog after normalising
    assert "aircraftcarrier" not in shared  # Quick, Draw! only
    assert "cabin" not in shared  # Sketchy only
    assert all(match_key(a) == match_key(b) == key for key, (a, b) in shared.items())
    assert shared_classes(["Hot-Air Balloon"], ["hot_air balloon"]) == {"hotairballoon": ("Hot-Air Balloon", "hot_air balloon")}


def test_loading_ndjson_and_app_stroke_json(quickdraw_root, tmp_path):
    drawings = load_stroke_sketches(quickdraw_root, limit_per_class=2)
    per_class = {}
    for d in drawings:
        per_class[d.label] = per_class.get(d.label, 0) + 1
    assert len(per_class) == 345 and max(per_class.values()) == 2
    assert all(d.source.endswith(".ndjson:1") or d.source.endswith(".ndjson:2") for d in drawings)

    (tmp_path / "cow").mkdir()
    (tmp_path / "cow" / "a.json").write_text(json.dumps(STROKES))  # the app's list of strokes
    (tmp_path / "b.json").write_text(json.dumps({"strokes": STROKES, "label": "giraffe", "photo": "n1_2"}))
    (tmp_path / "empty.json").write_text(json.dumps({"strokes": [[[], [], []]], "label": "cow"}))
    app = load_stroke_sketches(tmp_path)
    assert [(s.label, s.photo_id, len(s.strokes)) for s in app] == [("giraffe", "n1_2", 3), ("cow", None, 3)]
    one = load_stroke_sketches(quickdraw_root / "giraffe.ndjson", limit_per_class=3)  # a single file
    assert [s.label for s in one] == ["giraffe"] * 3
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_stroke_sketches(tmp_path)


@pytest.fixture(scope="module")
def tiny_model():
    from sketchlvm.model.factory import create_sketchlvm

    return create_sketchlvm("SketchLVM-Tiny", "none", None, "cpu")


def test_partial_evaluation_on_real_quickdraw_against_sketchy(quickdraw_root, sketchy_root, tiny_model):
    sketches = load_stroke_sketches(quickdraw_root, limit_per_class=2)
    runs = {
        unit: evaluate_partial(tiny_model, sketches, sketchy_root / "photo", steps=3, unit=unit,
                               max_classes=3, max_photos_per_class=4)
        for unit in ("strokes", "points")
    }
    for unit, (result, info) in runs.items():
        assert result.unit == unit and len(result.fractions) == 3
        assert info["sketches"] == 6 and info["gallery"] == result.gallery_size == 12
        assert [k for k, _ in info["classes"]] == ["airplane", "alarm clock", "ant"]  # Quick, Draw! spellings
        assert result.target_rank.shape == (6, 3)
        assert (1 <= result.target_rank).all() and (result.target_rank <= 12 - 4 + 1).all()
        assert result.summary == on_the_fly_summary(result.target_rank, 12)
        assert result.summary["m@B"] == pytest.approx(np.mean(result.steps["mean 1/rank"]))
    # the last step is the finished drawing whichever unit counts the steps
    s, p = runs["strokes"][0], runs["points"][0]
    np.testing.assert_array_equal(s.target_rank[:, -1], p.target_rank[:, -1])
    assert s.steps["mAP@all"][-1] == p.steps["mAP@all"][-1]

    with pytest.raises(ValueError, match="name no photo"):
        evaluate_partial(tiny_model, sketches, sketchy_root / "photo", steps=2, protocol="fine_grained", max_classes=1)
    with pytest.raises(ValueError, match="no class is shared"):
        evaluate_partial(tiny_model, [s for s in sketches if s.label == "aircraft carrier"], sketchy_root / "photo")


def test_cli_writes_the_report(quickdraw_root, sketchy_root, tmp_path, capsys):
    out = tmp_path / "partial"
    code = main([
        "--strokes", str(quickdraw_root), "--photos", str(sketchy_root / "photo"), "--partial", "4",
        "--unit", "points", "--model", "SketchLVM-Tiny", "--pretrained", "none", "--device", "cpu",
        "--limit-per-class", "1", "--max-classes", "2", "--max-photos-per-class", "3", "--out", str(out),
    ])
    assert code == 0
    doc = json.loads((out / "partial_metrics.json").read_text())
    assert doc["unit"] == "points" and doc["protocol"] == "category"
    assert doc["percent_of_sketch"] == [25.0, 50.0, 75.0, 100.0]
    assert doc["random_weights"] is True and "random weights" in doc["extra"]["model"]["weights"]
    assert 0 < doc["summary"]["m@A"] <= 1 and 0 < doc["summary"]["m@B"] <= 1
    assert all(len(v) == 4 for v in doc["steps"].values())
    summary = (out / "partial_summary.md").read_text()
    assert "RANDOM WEIGHTS" in summary and "Sketch Less for More" in summary and "**points**" in summary
    assert str(quickdraw_root) in summary and "SketchLVM-Tiny" in summary
    assert (out / "partial_curve.png").stat().st_size > 10_000

    assert main(["--strokes", str(tmp_path / "nowhere"), "--photos", str(sketchy_root / "photo"),
                 "--pretrained", "none", "--model", "SketchLVM-Tiny", "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_fine_grained_protocol_with_app_stroke_json(quickdraw_root, sketchy_root, tiny_model, tmp_path):
    """App stroke JSON naming the photo each sketch was drawn from: the target is that photo."""
    photos = sorted(p.stem for p in (sketchy_root / "photo" / "giraffe").iterdir())[:3]
    giraffes = [s for s in load_stroke_sketches(quickdraw_root) if s.label == "giraffe"][:2]
    for i, (sketch, photo) in enumerate(zip(giraffes, photos[1:])):
        (tmp_path / f"{i}.json").write_text(json.dumps({"strokes": sketch.strokes, "label": "giraffe", "photo": photo}))
    sketches = load_stroke_sketches(tmp_path)
    result, info = evaluate_partial(tiny_model, sketches, sketchy_root / "photo", steps=2, protocol="fine_grained",
                                    mode="fine_grained", max_photos_per_class=3)
    assert result.protocol == "fine_grained" and info["gallery"] == 3 and result.target_rank.shape == (2, 2)
    assert ((1 <= result.target_rank) & (result.target_rank <= 3)).all()
    # a photo that is not in the gallery is a clear error, not a silent miss
    (tmp_path / "0.json").write_text(json.dumps({"strokes": giraffes[0].strokes, "label": "giraffe", "photo": "nope"}))
    with pytest.raises(ValueError, match="no gallery item with their id"):
        evaluate_partial(tiny_model, load_stroke_sketches(tmp_path), sketchy_root / "photo", steps=2,
                         protocol="fine_grained", max_photos_per_class=3)


def test_a_checkpoint_is_scored_on_its_own_split_and_the_report_says_which_classes_it_saw(
        quickdraw_root, sketchy_root, tmp_path):
    """sketchy_21 shares 16 classes with Quick, Draw!: a sketchy_21 checkpoint is scored on those by default,
    not on all the shared classes, most of which it trained on."""
    from sketchlvm.config import PreprocessConfig
    from sketchlvm.datasets import SPLITS, split_classes
    from sketchlvm.model.checkpoint import preprocess_metadata, save_checkpoint
    from tiny_checkpoint import _metadata, _trained_states

    seen, _ = split_classes(sorted(p.name for p in (sketchy_root / "photo").iterdir()), "sketchy_21")
    meta = {**_metadata(), **preprocess_metadata(PreprocessConfig(), 64)}
    meta["training"] = {"dataset": "sketchy", "split": "sketchy_21", "classes": seen}
    checkpoint = save_checkpoint(tmp_path / "c.safetensors", _trained_states(modes=("category",)), meta)
    common = ["--strokes", str(quickdraw_root), "--photos", str(sketchy_root / "photo"), "--checkpoint", str(checkpoint),
              "--pretrained", "none", "--device", "cpu", "--limit-per-class", "1", "--max-photos-per-class", "2"]

    assert main([*common, "--schedule", "bhunia2020", "--out", str(tmp_path / "a")]) == 0
    doc = json.loads((tmp_path / "a" / "partial_metrics.json").read_text())
    scored = [photo for _, photo in doc["extra"]["classes"]]
    assert doc["extra"]["split"] == "sketchy_21" and doc["extra"]["split_source"] == "the checkpoint's training split"
    assert len(scored) == 16 and set(scored) <= set(SPLITS["sketchy_21"])
    assert doc["extra"]["seen_in_training"] == []
    assert doc["extra"]["schedule"] == "bhunia2020" and len(doc["percent_of_sketch"]) == 17 and doc["unit"] == "points"
    assert doc["extra"]["framing"] == "ink-crop" and "checkpoint" in doc["extra"]["framing_source"]
    summary = (tmp_path / "a" / "partial_summary.md").read_text()
    assert "classes seen in training: 0 of 16; unseen (zero-shot): 16" in summary and "bhunia2020" in summary

    assert main([*common, "--split", "none", "--partial", "2", "--out", str(tmp_path / "b")]) == 0
    doc = json.loads((tmp_path / "b" / "partial_metrics.json").read_text())
    scored = [photo for _, photo in doc["extra"]["classes"]]
    assert len(scored) == 94 and "hotdog" in scored  # 93 + Sketchy's hotdog = Quick, Draw!'s hot dog
    assert len(doc["extra"]["seen_in_training"]) == 94 - 16
    assert f"classes seen in training: {94 - 16} of 94" in (tmp_path / "b" / "partial_summary.md").read_text()
