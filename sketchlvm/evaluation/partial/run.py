"""Partial-sketch (on-the-fly) evaluation: how early do the right photos appear while drawing?

The app searches after every stroke, so what matters to a user is retrieval on the unfinished
sketch. Stroke-ordered sketches (Quick, Draw! ``.ndjson`` files, or the app's stroke JSON) are
replayed step by step: after 1/S, 2/S, ..., S/S of their strokes or of their points, each partial
drawing is rendered in the frame of the finished one (as it stood on the canvas), embedded, and
ranked against the whole photo gallery with :func:`sketchlvm.evaluation.metrics.evaluate_retrieval`.

Per step: mAP@all, mAP@200, P@100, P@200 (the metric module's conventions), and the rank of the
*target*: the first relevant photo (category protocol) or the sketch's own photo (fine-grained).
Over the steps, the early-retrieval summary of Bhunia et al., "Sketch Less for More: On-the-Fly
Fine-Grained Sketch Based Image Retrieval", CVPR 2020 (arXiv 2002.10310), Sec. 5:

* ``m@B`` = mean over sketches and steps of ``1 / r``, with ``r`` the 1-based rank of the target;
* ``m@A`` = mean over sketches and steps of the ranking percentile ``(N - r) / (N - 1)``, with
  ``N`` the gallery size: 1 when the target is first, 0 when it is last (1 for a one-photo gallery).

Both are the areas under the paper's "1/rank vs. % of sketch" and "ranking percentile vs. % of
sketch" curves taken as the mean of the step values, as the authors' evaluation code computes them
(``distance.le(target_distance).sum()`` as the rank, then the two means). Every sketch has the
same number of steps, so the mean over sketches of per-sketch means is the plain mean used here.
Our rank follows the metric module's tie rule (equal scores: lower gallery index first), where the
authors' ``<=`` counts every tied photo ahead of the target.

The command line is ``cli.py`` (``python -m sketchlvm partial --help``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sketchlvm.evaluation.metrics import evaluate_retrieval
from sketchlvm.evaluation.partial.framing import (
    SCHEDULES,
    UNITS,
    match_key,
    partial_drawings,
    photo_gallery,
    schedule_fractions,
    shared_classes,
)

log = logging.getLogger(__name__)

PROTOCOLS = ("category", "fine_grained")
STEP_METRICS = ("mAP@all", "mAP@200", "P@100", "P@200")


# ------------------------------------------------------------------------------- the evaluation


@dataclass
class PartialResult:
    """Per-step metrics (lists aligned with ``fractions``) and the on-the-fly summary."""

    fractions: list[float]
    unit: str
    protocol: str
    steps: dict[str, list[float]]  # metric name -> one value per step
    target_rank: np.ndarray = field(repr=False)  # (Q, S) 1-based rank of the target photo
    gallery_size: int = 0
    summary: dict[str, float] = field(default_factory=dict)


def on_the_fly_summary(target_rank: np.ndarray, gallery_size: int) -> dict[str, float]:
    """target_rank (Q, S) 1-based ranks -> ``m@B`` (mean 1/rank) and ``m@A`` (mean percentile
    ``(N - r) / (N - 1)``) over sketches and steps; see the module docstring (Bhunia et al. 2020)."""
    r = np.asarray(target_rank, dtype=np.float64)
    if r.size == 0 or (r < 1).any() or (r > gallery_size).any():
        raise ValueError(f"ranks must be in [1, {gallery_size}] (1-based, within the gallery)")
    percentile = (gallery_size - r) / (gallery_size - 1) if gallery_size > 1 else np.ones_like(r)
    return {"m@B": float(np.mean(1.0 / r)), "m@A": float(np.mean(percentile))}


def score_steps(
    step_features: Sequence[np.ndarray],
    query_labels: np.ndarray,
    gallery_features: np.ndarray,
    gallery_labels: np.ndarray,
    fractions: Sequence[float],
    unit: str,
    query_ids: np.ndarray | None = None,
    gallery_ids: np.ndarray | None = None,
) -> PartialResult:
    """step_features: S arrays (Q, d), one per step -> :class:`PartialResult`.

    With ids (fine-grained) the target is the sketch's own photo; without, the best-ranked photo of
    its class (the first relevant one in the ranking), found as the "own photo" of :func:`evaluate_retrieval`
    with the labels as ids.
    """
    protocol = "fine_grained" if query_ids is not None else "category"
    q_ids = query_labels if query_ids is None else query_ids
    g_ids = gallery_labels if gallery_ids is None else gallery_ids
    steps: dict[str, list[float]] = {}
    ranks = []
    for features in step_features:
        result = evaluate_retrieval(
            features, query_labels, gallery_features, gallery_labels, q_ids, g_ids, no_relevant="raise"
        )
        for key in (*STEP_METRICS, "Acc@1", "Acc@10"):
            steps.setdefault(key, []).append(result.metrics[key])
        ranks.append(result.per_query["match_rank"] + 1)
    target_rank = np.stack(ranks, axis=1)  # (Q, S)
    steps["mean 1/rank"] = list(np.mean(1.0 / target_rank, axis=0))
    n = len(gallery_labels)
    steps["mean percentile"] = list(np.mean((n - target_rank) / max(n - 1, 1), axis=0)) if n > 1 else [1.0] * len(ranks)
    return PartialResult(
        list(fractions), unit, protocol, steps, target_rank, n, on_the_fly_summary(target_rank, n)
    )


def evaluate_partial(
    model: Any,
    sketches: Sequence,
    photo_dir: str | Path,
    steps: int = 10,
    unit: str = "strokes",
    protocol: str = "category",
    mode: str | None = None,
    max_classes: int = 0,
    max_photos_per_class: int = 0,
    batch_size: int = 64,
    num_workers: int = 0,
    split: str | None = None,
    schedule: str = "even",
    seen_classes: Sequence[str] | None = None,
) -> tuple[PartialResult, dict[str, Any]]:
    """A loaded :class:`~sketchlvm.model.factory.SketchLVM`, stroke sketches and ``PHOTOS/<class>/*`` ->
    (result, facts for the report). Only classes both sides have are used (matched by
    :func:`~sketchlvm.evaluation.partial.framing.match_key`); with ``split`` (a name in ``SPLITS``) only its
    unseen classes; with ``max_classes`` the first N of them by key. ``seen_classes``: the classes the
    model was trained on, so the report can mark each scored class seen or unseen. ``schedule``: how each
    sketch is cut into steps (:data:`~sketchlvm.evaluation.partial.framing.SCHEDULES`). Partial drawings reach
    the model as :class:`~sketchlvm.preprocess.drawing.StrokeDrawing` placed where the finished drawing is,
    so they are framed exactly as the app frames its canvas."""
    from sketchlvm.datasets import unseen_classes
    from sketchlvm.evaluation.embedding import embed_items
    from sketchlvm.preprocess.drawing import StrokeDrawing

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    fractions = schedule_fractions(schedule, steps)
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
    if schedule == "bhunia2020":
        unit = "points"
    photo_classes = sorted(p.name for p in Path(photo_dir).iterdir() if p.is_dir() and not p.name.startswith("."))
    matches = shared_classes(sorted({s.label for s in sketches}), photo_classes)
    if not matches:
        raise ValueError(
            f"no class is shared by the sketches ({len({s.label for s in sketches})} classes) and the photos "
            f"in {str(photo_dir)!r} ({len(photo_classes)} classes), even after normalising names"
        )
    keys = list(matches)
    if split and split.strip().lower() != "none":
        unseen = {match_key(c) for c in unseen_classes(split)}
        keys = [k for k in keys if k in unseen]
        if not keys:
            raise ValueError(f"none of the {len(unseen)} unseen classes of {split} is shared by the sketches and photos")
    keys = keys[: max_classes or None]
    chosen = [s for s in sketches if match_key(s.label) in set(keys)]
    log.info("%d shared classes used; %d of %d sketches are in them", len(keys), len(chosen), len(sketches))
    paths, photo_labels = photo_gallery(photo_dir, [matches[k][1] for k in keys], max_photos_per_class)
    gallery_labels = np.asarray([match_key(c) for c in photo_labels])
    query_labels = np.asarray([match_key(s.label) for s in chosen])
    query_ids = gallery_ids = None
    if protocol == "fine_grained":
        missing = [s.source for s in chosen if not s.photo_id]
        if missing:
            raise ValueError(f"fine-grained protocol: {len(missing)} sketches name no photo (e.g. {missing[0]}); "
                             "give each a \"photo\" id (the photo's file name without extension)")
        query_ids = np.asarray([str(s.photo_id) for s in chosen])
        gallery_ids = np.asarray([p.stem for p in paths])

    mode = mode or protocol
    encoder = model.encoders[mode]
    common = {"device": model.device, "batch_size": batch_size, "num_workers": num_workers}
    photos = embed_items(encoder, paths, "photo", model.photo_transform, desc="photos", **common)
    cuts = [partial_drawings(s.strokes, schedule, steps, unit) for s in chosen]
    step_features = []
    for k in range(len(fractions)):
        items = [StrokeDrawing(parts[k], placed_as=s.strokes) for s, parts in zip(chosen, cuts)]
        step_features.append(embed_items(
            encoder, items, "sketch", model.sketch_transform, desc=f"step {k + 1}/{len(fractions)}", **common
        ))
    result = score_steps(step_features, query_labels, photos, gallery_labels, fractions, unit, query_ids, gallery_ids)
    seen = None if seen_classes is None else {match_key(c) for c in seen_classes}
    info = {
        "model": model.describe(),
        "mode": mode,
        "classes": [matches[k] for k in keys],
        "seen_in_training": None if seen is None else [matches[k][1] for k in keys if k in seen],
        "split": split or "none",
        "schedule": schedule,
        "schedule_description": SCHEDULES[schedule],
        "framing": model.preprocess.sketch_framing,
        "sketches": len(chosen),
        "gallery": len(paths),
    }
    return result, info
