"""`evaluate` follows the checkpoint: its split, its modes, and a paper comparison only for the paper's protocol
(issue 29, items 1-3), on the real Sketchy subset with the tiny tower."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sketchlvm.datasets import list_class_folders, split_classes
from sketchlvm.evaluation.cli import main

TINY = ["--model", "SketchLVM-Tiny", "--pretrained", "none", "--device", "cpu", "--workers", "0"]


def _checkpoint(sketchy_root: Path, path: Path, split: str, modes=("category",)) -> Path:
    """A checkpoint as `train --split SPLIT` on every seen class of the real data records it (learned state: a
    stand-in perturbation of the tiny tower's trainable set)."""
    from sketchlvm.model.checkpoint import save_checkpoint
    from tiny_checkpoint import _metadata, _trained_states

    seen, _ = split_classes(list_class_folders(sketchy_root), split)
    meta = {**_metadata(), "training": {"dataset": "sketchy", "split": split, "classes": seen},
            "preprocess": {"sketch_framing": "pad-square"}}
    return save_checkpoint(path, _trained_states(modes=modes), meta)


def _run(*argv: str) -> int:
    return main([*argv, *TINY])


def _doc(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def sketchy_25(sketchy_root, tmp_path_factory):
    return _checkpoint(sketchy_root, tmp_path_factory.mktemp("ckpt") / "c25.safetensors", "sketchy_25")


def test_evaluate_follows_the_checkpoints_split(sketchy_root, sketchy_25, tmp_path):
    out = tmp_path / "default"
    assert _run("--dataset", "sketchy", "--root", str(sketchy_root), "--checkpoint", str(sketchy_25),
                "--max-per-class", "2", "--out", str(out)) == 0
    extra = _doc(out)["extra"]
    assert extra["split"] == "sketchy_25" and extra["split_source"] == "the checkpoint's training split"
    _, unseen = split_classes(list_class_folders(sketchy_root), "sketchy_25")
    assert extra["classes"] == unseen and extra["seen_in_training"] == []
    assert "sketchy_25 (the checkpoint's training split)" in (out / "summary.md").read_text()


def test_test_classes_the_checkpoint_trained_on_are_refused_unless_asked_for(sketchy_root, sketchy_25, tmp_path, capsys):
    args = ("--dataset", "sketchy", "--root", str(sketchy_root), "--checkpoint", str(sketchy_25), "--split",
            "sketchy_21", "--max-per-class", "2")
    assert _run(*args, "--out", str(tmp_path / "refused")) == 2
    err = capsys.readouterr().err
    assert "17 of the 21 test classes of sketchy_21 were training classes" in err and "--allow-seen-classes" in err

    out = tmp_path / "allowed"
    assert _run(*args, "--allow-seen-classes", "--out", str(out)) == 0
    doc = _doc(out)
    assert len(doc["extra"]["seen_in_training"]) == 17 and "bat" in doc["extra"]["seen_in_training"]
    verdict = doc["extra"]["comparable_to_paper"]
    assert verdict["comparable"] is False
    assert any("17 of the 21 test classes were seen in training" in r for r in verdict["reasons"])
    summary = (out / "summary.md").read_text()
    assert "| test classes seen in training | 17 of 21" in summary
    assert "0.723" not in summary and "Not comparable with the published numbers" in summary


def test_a_checkpoint_without_the_evaluated_mode_is_refused_unless_zero_shot_is_asked_for(
        sketchy_root, sketchy_25, tmp_path, capsys):
    args = ("--dataset", "sketchy_fg", "--root", str(sketchy_root), "--checkpoint", str(sketchy_25),
            "--split", "sketchy_25", "--max-classes", "3")
    assert _run(*args, "--out", str(tmp_path / "refused")) == 2
    err = capsys.readouterr().err
    assert "holds the category mode only, not fine_grained" in err and "--allow-zero-shot" in err

    out = tmp_path / "zero-shot"
    assert _run(*args, "--allow-zero-shot", "--out", str(out)) == 0
    first = (out / "summary.md").read_text().splitlines()[0]
    assert "zero-shot CLIP" in first
    assert _doc(out)["extra"]["encoder"].startswith("zero-shot CLIP")


@pytest.mark.parametrize("extra_args, reason", [
    (("--split", "sketchy_25"), "split sketchy_25; the published numbers are on sketchy_21"),
    (("--generalised",), "generalised gallery"),
    (("--framing", "ink-crop"), "sketches framed ink-crop"),
    (("--max-classes", "3"), "3 of the 21 unseen classes of sketchy_21"),
])
def test_the_paper_table_appears_only_for_the_papers_protocol(sketchy_root, tmp_path, extra_args, reason):
    out = tmp_path / "run"
    assert _run("--dataset", "sketchy", "--root", str(sketchy_root), "--max-per-class", "2", *extra_args,
                "--out", str(out)) == 0
    verdict = _doc(out)["extra"]["comparable_to_paper"]
    assert verdict["comparable"] is False and any(reason in r for r in verdict["reasons"]), verdict
    summary = (out / "summary.md").read_text()
    assert "0.723" not in summary and "| method |" not in summary
    assert sum("Not comparable with the published numbers" in line for line in summary.splitlines()) == 1


def test_a_fine_grained_run_on_the_distractor_gallery_is_not_set_beside_the_paper(sketchy_root, tmp_path):
    out = tmp_path / "fg"
    assert _run("--dataset", "sketchy_fg", "--root", str(sketchy_root), "--fg-gallery", "with-distractors",
                "--out", str(out)) == 0
    verdict = _doc(out)["extra"]["comparable_to_paper"]
    assert verdict["comparable"] is False and verdict["reasons"][0] == (
        "fine-grained gallery with-distractors; the published protocol ranks among the sketched photos (sketched)")
    assert "28.68" not in (out / "summary.md").read_text()


def test_a_folder_smaller_than_the_published_test_set_is_not_set_beside_the_paper(sketchy_root, tmp_path):
    """Every class of the split, uncapped, pad-square, not generalised: only the gallery's size differs (the
    shared subset has 25 photos a class, of which ~5 are sketched), and that alone keeps the table out."""
    for dataset, reason in (("sketchy", "the gallery has 525 photos; the published test set has 12,553"),
                            ("sketchy_fg", "photos in its smallest class; the published test set has 100 a class")):
        out = tmp_path / dataset
        assert _run("--dataset", dataset, "--root", str(sketchy_root), "--out", str(out)) == 0
        verdict = _doc(out)["extra"]["comparable_to_paper"]
        assert verdict["comparable"] is False and len(verdict["reasons"]) == 1 and reason in verdict["reasons"][0]
        summary = (out / "summary.md").read_text()
        assert "| method |" not in summary and "Not comparable with the published numbers" in summary


def test_the_papers_protocol_gets_the_table(tmp_path):
    """What a run on the published protocol records -> comparable, and the report sets the rows side by side."""
    from sketchlvm.evaluation.comparability import paper_verdict
    from sketchlvm.evaluation.report import summary_markdown

    info = {"split": "sketchy_21", "framing": "pad-square", "generalised": False, "gallery": 12_553,
            "classes": ["bat"] * 21, "seen_in_training": [], "subset": None}
    assert paper_verdict("sketchy", info) == {"comparable": True, "reasons": []}
    assert not paper_verdict("sketchy", {**info, "gallery": 12_000})["comparable"]
    fg = {**info, "gallery": 2100, "fg_gallery": "sketched", "gallery_photos": {"photos_per_class": {"min": 100}}}
    assert paper_verdict("sketchy_fg", fg)["comparable"]
    summary = summary_markdown({"mAP@200": 0.5, "P@200": 0.4}, "sketchy", info)
    assert "ours beside the published numbers" in summary and "| CLIP for All Things (paper) | 0.723 | 0.725 |" in summary
    assert "arXiv:2303.13440" in summary and "arXiv:2407.04207" in summary and "METHOD.md" not in summary
