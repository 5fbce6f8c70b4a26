"""sketchlvm.evaluation.report: the files of an evaluation folder, on tiny arrays and a few real images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchlvm.evaluation.report import (
    PAPER_NUMBERS,
    plot_precision_recall,
    write_example_grid,
    write_metrics_json,
    write_summary_markdown,
)

METRICS = {"mAP@all": 0.61, "mAP@200": 0.7123, "mAP@200_lenient": 0.8, "P@100": 0.7, "P@200": 0.69}


def test_metrics_json_round_trip(tmp_path):
    ckpt = tmp_path / "ck.pt"
    extra = {"dataset": "sketchy", "n_queries": np.int64(12), "checkpoint": ckpt, "ap": np.array([0.5, np.nan])}
    path = write_metrics_json(tmp_path / "run", {**METRICS, "P@100": np.float32(0.7)}, extra)
    doc = json.loads(path.read_text())
    assert path.name == "metrics.json"
    assert {k: doc[k] for k in METRICS} == pytest.approx(METRICS)
    assert doc["extra"] == {"dataset": "sketchy", "n_queries": 12, "checkpoint": str(ckpt), "ap": [0.5, None]}
    assert "extra" not in json.loads(write_metrics_json(tmp_path, METRICS).read_text())
    with pytest.raises(ValueError, match="reserved"):
        write_metrics_json(tmp_path, {"extra": 1.0})


def test_paper_numbers_cover_the_datasets():
    for key in ("sketchy", "tuberlin", "quickdraw", "sketchy_fg"):
        rows = PAPER_NUMBERS[key]["rows"]
        assert any("paper" in name for name in rows)
        assert any("CLIP ViT-L/14" in name for name in rows)
        assert any("SpLIP" in name for name in rows)
        for row in rows.values():
            assert set(row) == set(PAPER_NUMBERS[key]["metrics"])
            assert all(0 < v < 1 for v in row.values())  # fractions, Acc@k too
    assert PAPER_NUMBERS["sketchy"]["rows"]["CLIP for All Things (paper)"]["mAP@200"] == 0.723


# What a run on the published protocol records (see evaluation/comparability.py).
PAPER_PROTOCOL = {"split": "sketchy_21", "framing": "pad-square", "generalised": False, "fg_gallery": "sketched",
                  "gallery": 12_553, "gallery_photos": {"photos_per_class": {"min": 100}}}


def test_summary_markdown(tmp_path):
    text = write_summary_markdown(tmp_path, METRICS, "sketchy", PAPER_PROTOCOL).read_text()
    assert "| **ours** | 0.712 | 0.690 |" in text
    assert "| CLIP for All Things (paper) | 0.723 | 0.725 |" in text
    assert "SpLIP" in text and "interpolated" in text
    fg_metrics = {"Acc@1_within_class": 0.3, "Acc@5_within_class": 0.61234, "Acc@10_within_class": math.nan}
    fg = write_summary_markdown(tmp_path, fg_metrics, "sketchy_fg", PAPER_PROTOCOL).read_text()
    assert "| **ours** | 30.00 | 61.23 |" in fg and "| 28.68 | 62.34 |" in fg
    assert "| Acc@10_within_class | n/a |" in fg
    other = write_summary_markdown(tmp_path, METRICS, "shoev2").read_text()
    assert "No published numbers" in other and "| mAP@all | 0.610 |" in other


def test_precision_recall_plot(tmp_path):
    recall = np.linspace(0, 1, 11)
    path = plot_precision_recall(tmp_path, (recall, 1 - 0.5 * recall))
    assert path.name == "pr_curve.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 100
    plot_precision_recall(tmp_path, {"ours": (recall, 1 - recall), "CLIP": (recall, 0.5 * (1 - recall))})
    with pytest.raises(ValueError, match="must be equal"):
        plot_precision_recall(tmp_path, (recall, recall[:5]))


def _border_colour(grid: Image.Image, row: int, col: int, tile: int = 40, border: int = 5) -> tuple:
    """Colour at the top-left border pixel of a grid cell (layout of write_example_grid)."""
    cell, gap = tile + 2 * border, 4
    x = gap if col == 0 else gap + cell + 3 * gap + (col - 1) * (cell + gap)
    y = gap + row * (cell + gap)
    return grid.getpixel((x + 1, y + 1))


def test_example_grid_synthetic(tmp_path):
    paths = []
    for i, colour in enumerate(["blue", "yellow", "black", "purple"]):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (30 + 10 * i, 20), colour).save(p)
        paths.append(p)
    top = np.array([[1, 2, 3], [3, 0, 1]])
    rel = np.array([[True, False, True], [False, False, True]])
    path = write_example_grid(tmp_path / "out", paths[:2], paths, top, rel, n_queries=8, k=3, tile=40)
    with Image.open(path) as grid:
        grid = grid.convert("RGB")
        assert grid.size == (4 * 50 + 2 * 4 + 3 * 4 + 2 * 4, 2 * 54 + 4)
        green, red = (40, 170, 60), (210, 40, 40)
        assert [_border_colour(grid, 0, c) for c in (1, 2, 3)] == [green, red, green]
        assert [_border_colour(grid, 1, c) for c in (1, 2, 3)] == [red, red, green]
    with pytest.raises(ValueError, match="same"):
        write_example_grid(tmp_path, paths[:2], paths, top, rel[:, :2])
    with pytest.raises(ValueError, match="out of range"):
        write_example_grid(tmp_path, paths[:2], paths[:2], top, rel)


def test_example_grid_real_sketchy(tmp_path, sketchy_root: Path):
    classes = sorted(p.name for p in (sketchy_root / "photo").iterdir() if p.is_dir())[:2]
    photos, photo_cls, sketches = [], [], []
    for c in classes:
        for p in sorted((sketchy_root / "photo" / c).glob("*.jpg"))[:3]:
            photos.append(p)
            photo_cls.append(c)
        sketches.append(sorted((sketchy_root / "sketch" / c).glob("*.png"))[0])
    if len(photos) < 4:
        pytest.skip(f"need at least 2 photos per class under {sketchy_root / 'photo'}")
    top = np.array([np.roll(np.arange(len(photos)), i)[:4] for i in range(len(sketches))])
    rel = np.array(photo_cls)[top] == np.array(classes)[:, None]
    path = write_example_grid(tmp_path, sketches, photos, top, rel, k=4, tile=64)
    with Image.open(path) as grid:
        assert grid.size[1] == len(sketches) * (64 + 10 + 4) + 4
        colours = np.unique(np.asarray(grid.convert("RGB")).reshape(-1, 3), axis=0)
        assert len(colours) > 100  # real pictures, not flat tiles


def test_example_grid_labels_each_query_class_and_each_result_class_and_rank(tmp_path):
    paths = []
    for i, colour in enumerate(["blue", "yellow", "black", "purple"]):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (30, 20), colour).save(p)
        paths.append(p)
    top = np.array([[1, 2, 3], [3, 0, 1]])
    rel = np.array([[True, False, True], [False, False, True]])
    plain = write_example_grid(tmp_path / "plain", paths[:2], paths, top, rel, k=3, tile=40)
    labelled = write_example_grid(tmp_path / "labelled", paths[:2], paths, top, rel, k=3, tile=40,
                                  query_labels=["cow", "bat"], gallery_labels=["bat", "cow", "cow", "bat"])
    with Image.open(plain) as a, Image.open(labelled) as b:
        assert b.height > a.height and b.width == a.width  # a caption line under every tile
        arr = np.asarray(b.convert("RGB"))
    cell, gap, caption = 50, 4, b.height // 2 - 54
    for row in range(2):
        y0 = gap + row * (cell + caption + gap) + cell
        strip = arr[y0 : y0 + caption]
        for col in range(4):
            x0 = gap if col == 0 else gap + cell + 3 * gap + (col - 1) * (cell + gap)
            assert (strip[:, x0 : x0 + cell] < 100).any(), (row, col)  # text is written there
