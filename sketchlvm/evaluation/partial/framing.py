"""Stroke-ordered sketches for partial-sketch evaluation: loading, truncating, replaying.

Sources: Quick, Draw! ``.ndjson`` files and the app's stroke JSON (the list of strokes
``[[xs, ys, ts], ...]`` that :mod:`sketchlvm.preprocess.strokes` renders). A partial drawing is replayed where
it stood on the canvas while the user was still drawing (``StrokeDrawing(partial, placed_as=finished)``), and
the model's sketch transform frames it as it frames the app's canvas (:mod:`sketchlvm.preprocess.drawing`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sketchlvm.datasets import list_images, normalise_class_name

log = logging.getLogger(__name__)

UNITS = ("strokes", "points")


# ------------------------------------------------------------------------------- stroke sketches


@dataclass
class StrokeSketch:
    """One stroke-ordered drawing: ``strokes`` is ``[[xs, ys(, ts)], ...]`` in drawing order."""

    label: str  # class name as the source spells it
    strokes: list
    source: str  # file (and line) it came from
    photo_id: str | None = None  # the photo it was drawn from (fine-grained), if known


def _stroke_points(strokes: Sequence) -> list[int]:
    return [len(s[0]) if len(s) else 0 for s in strokes]


def _from_json(path: Path) -> StrokeSketch:
    """The app's stroke JSON: a list of strokes, or ``{"strokes"|"drawing": [...], "label"|"word":
    ..., "photo": ...}``; the class defaults to the parent folder's name."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a stroke JSON file ({e})") from e
    label, photo = path.parent.name, None
    if isinstance(value, dict):
        strokes = value.get("strokes", value.get("drawing"))
        label = str(value.get("label", value.get("word", label)))
        photo = value.get("photo")
    else:
        strokes = value
    if not isinstance(strokes, list):
        # a bad file is bad input (ValueError, reported by the CLI), not a programming error
        raise ValueError(f"{path}: expected a list of strokes [[xs, ys, ts], ...] (or a dict with 'strokes')")  # noqa: TRY004
    return StrokeSketch(label, strokes, str(path), None if photo is None else str(photo))


def load_stroke_sketches(folder: str | Path, limit_per_class: int = 0) -> list[StrokeSketch]:
    """Every ``*.ndjson`` (Quick, Draw!: class = the record's ``word``) and ``*.json`` (app stroke
    JSON) under ``folder`` (or that one file), sorted by path; ``limit_per_class`` keeps the first N of each class.
    Drawings without a single point are skipped with a warning (nothing to replay)."""
    from sketchlvm.preprocess.strokes import load_ndjson

    folder = Path(folder)
    if folder.is_file():
        files = [folder]  # one .ndjson or .json file
    elif folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".ndjson", ".json") and p.is_file())
    else:
        raise FileNotFoundError(f"stroke folder {str(folder)!r} does not exist")
    if not files:
        raise ValueError(f"no .ndjson or .json stroke files under {str(folder)!r}")
    sketches: list[StrokeSketch] = []
    per_class: dict[str, int] = {}
    empty = 0
    for path in files:
        if path.suffix.lower() == ".ndjson":
            records = load_ndjson(path)
            found = [
                StrokeSketch(str(r.get("word", path.stem)), r["drawing"], f"{path}:{i + 1}", r.get("photo"))
                for i, r in enumerate(records)
            ]
        else:
            found = [_from_json(path)]
        for sketch in found:
            if sum(_stroke_points(sketch.strokes)) == 0:
                empty += 1
                continue
            key = normalise_class_name(sketch.label)
            if limit_per_class and per_class.get(key, 0) >= limit_per_class:
                continue
            per_class[key] = per_class.get(key, 0) + 1
            sketches.append(sketch)
    if empty:
        log.warning("skipped %d drawings without any point", empty)
    return sketches


def truncate_strokes(strokes: Sequence, fraction: float, unit: str = "strokes") -> list:
    """The first ``ceil(fraction * total)`` strokes (``unit="strokes"``) or points, in drawing order
    (``"points"``: the last kept stroke may be cut short); always at least one, never more than all.

    Counted in exact integers for ``fraction = k / S`` (see :func:`step_fractions`), so 100% is the
    whole drawing and 10% of 3 strokes is 1 stroke. Empty strokes count for nothing in ``points``.
    """
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction!r}")
    strokes = list(strokes)
    if unit == "strokes":
        keep = min(len(strokes), max(1, math.ceil(round(fraction * len(strokes), 9))))
        return strokes[:keep]
    total = sum(_stroke_points(strokes))
    return first_points(strokes, min(total, max(1, math.ceil(round(fraction * total, 9)))))


def first_points(strokes: Sequence, count: int) -> list:
    """The first ``count`` points in drawing order (the last kept stroke may be cut short)."""
    strokes = list(strokes)
    counts = _stroke_points(strokes)
    left = int(count)
    out = []
    for stroke, n in zip(strokes, counts):
        if left <= 0:
            break
        if n <= left:
            out.append(stroke)
        else:
            out.append([list(axis[:left]) for axis in stroke])
        left -= n
    return out


def step_fractions(steps: int) -> list[float]:
    """``steps`` = 10 -> [0.1, 0.2, ..., 1.0]."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    return [k / steps for k in range(1, steps + 1)]


# Step schedules, each a named reading (docs/evaluation.md): how a finished drawing is cut into steps.
SCHEDULES = {
    "even": "S even steps (--steps) of the strokes or points (--unit): the first ceil(k/S x total), k = 1..S",
    "bhunia2020": ("Bhunia et al. 2020's on-the-fly schedule: points, 17 snapshots; after the point whose index "
                   "is in round(linspace(0, N, 18))[1:17], then the finished drawing (their render_sketch code; "
                   "a drawing of fewer than ~17 points repeats snapshots)"),
}
BHUNIA_SNAPSHOTS = 17


def bhunia_point_counts(n_points: int) -> list[int]:
    """Points drawn at each of Bhunia et al.'s 17 snapshots of an ``n_points`` drawing: their loop draws point
    i (0-based) and snapshots when i is in ``np.round(np.linspace(0, N, 18)[1:])`` (the last mark, N, is never
    reached), then appends the finished drawing."""
    marks = np.round(np.linspace(0, n_points, BHUNIA_SNAPSHOTS + 1)[1:])
    return [min(n_points, int(m) + 1) for m in marks[:-1]] + [n_points]


def schedule_fractions(schedule: str, steps: int) -> list[float]:
    """The nominal share of the sketch at each step (the x axis of the report)."""
    if schedule == "bhunia2020":
        return step_fractions(BHUNIA_SNAPSHOTS)
    if schedule == "even":
        return step_fractions(steps)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def partial_drawings(strokes: Sequence, schedule: str, steps: int, unit: str) -> list[list]:
    """The drawing as it stood at each step of ``schedule`` (the last step is the finished drawing)."""
    if schedule == "bhunia2020":
        total = sum(_stroke_points(strokes))
        return [first_points(strokes, n) for n in bhunia_point_counts(total)]
    return [truncate_strokes(strokes, fraction, unit) for fraction in schedule_fractions(schedule, steps)]


# ------------------------------------------------------------------------------- matching classes


def match_key(name: str) -> str:
    """What two datasets' class names are matched by: :func:`~sketchlvm.datasets.normalise_class_name` without
    the separators, so Sketchy ``hotdog`` = Quick, Draw! ``hot dog`` as well as ``teddy-bear`` = ``teddy_bear``."""
    return normalise_class_name(name).replace("_", "")


def shared_classes(sketch_classes: Sequence[str], photo_classes: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Classes both sides have, matched by :func:`match_key` (``teddy-bear`` = ``teddy_bear``,
    ``hot air balloon`` = ``hot-air_balloon``, ``hot dog`` = ``hotdog``):
    match key -> (sketch spelling, photo spelling), sorted by key."""
    sketches = {match_key(c): c for c in sketch_classes}
    photos = {match_key(c): c for c in photo_classes}
    return {key: (sketches[key], photos[key]) for key in sorted(set(sketches) & set(photos))}


def photo_gallery(folder: str | Path, classes: Sequence[str], max_per_class: int = 0) -> tuple[list[Path], list[str]]:
    """``FOLDER/<class>/*`` photos of the given (photo-spelled) classes -> paths, class names."""
    paths, labels = [], []
    for name in classes:
        found = list_images(Path(folder) / name)
        found = found[:max_per_class] if max_per_class > 0 else found
        paths += found
        labels += [name] * len(found)
    return paths, labels
