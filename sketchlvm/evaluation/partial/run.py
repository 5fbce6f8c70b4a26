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

Run ``python -m sketchlvm partial --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sketchlvm.config import SKETCH_FRAMINGS
from sketchlvm.evaluation.metrics import evaluate_retrieval
from sketchlvm.evaluation.partial.framing import (
    SCHEDULES,
    UNITS,
    load_stroke_sketches,
    match_key,
    partial_drawings,
    photo_gallery,
    schedule_fractions,
    shared_classes,
)
from sketchlvm.evaluation.protocol import apply_framing, resolve_framing

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

    With ids (fine-grained) the target is the sketch's own photo; without, the first photo of its
    class, found as the "own photo" of :func:`evaluate_retrieval` with the labels as ids.
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


def checkpoint_training(model: Any, mode: str) -> dict:
    """The training record of ``mode`` in the model's checkpoint (``split``, ``classes``...), or {}.

    A merged checkpoint keeps each mode's record under ``training[mode]["training"]``."""
    if model.checkpoint is None or mode not in model.checkpoint.modes:
        return {}
    training = model.checkpoint.metadata.get("training") or {}
    if mode in training and isinstance(training[mode], dict):
        training = training[mode].get("training") or {}
    return training if isinstance(training, dict) else {}


# ------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sketchlvm partial",
        description="Partial-sketch (on-the-fly) evaluation: replay stroke-ordered sketches step by step "
        "and rank the whole photo gallery after each step. Writes partial_metrics.json, partial_summary.md "
        "and partial_curve.png into --out.",
    )
    p.add_argument("--strokes", required=True, help="Quick, Draw! .ndjson and/or app stroke .json files: a folder or one file")
    p.add_argument("--photos", required=True, help="photo gallery folder: PHOTOS/<class>/<image>")
    p.add_argument("--steps", "--partial", type=int, default=10, help="evaluate after 1/S, 2/S, ..., S/S of each sketch (default 10)")
    p.add_argument("--unit", choices=UNITS, default="strokes", help="what a step counts: whole strokes or points")
    p.add_argument("--schedule", choices=tuple(SCHEDULES), default="even",
                   help="even: --steps even steps of --unit (default); bhunia2020: Bhunia et al.'s 17 point-based "
                   "snapshots, so m@A / m@B compare with their tables")
    p.add_argument("--split", help="score only this split's unseen classes (default: the checkpoint's training split; "
                   "none: every shared class)")
    p.add_argument("--framing", choices=SKETCH_FRAMINGS,
                   help="sketch framing (default: the checkpoint's, else pad-square: the drawing as it stands on the canvas)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="category",
                   help="target photo: the first of the sketch's class, or its own photo ('photo' in the stroke JSON)")
    p.add_argument("--mode", choices=("category", "fine_grained"), help="encoder mode (default: the protocol)")
    p.add_argument("--checkpoint", help="trained SketchLVM checkpoint; omit for zero-shot CLIP")
    p.add_argument("--model", help="open_clip architecture (default: the checkpoint's, else ViT-B-32-quickgelu)")
    p.add_argument("--pretrained", help="CLIP weights: tag (openai), file, folder, or none (random, tests only)")
    p.add_argument("--limit-per-class", type=int, default=0, help="sketches per class (0: all)")
    p.add_argument("--max-classes", type=int, default=0, help="use the first N shared classes (0: all)")
    p.add_argument("--max-photos-per-class", type=int, default=0, help="photos per class (0: all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="image decoding workers")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--out", required=True, help="output folder")
    return p


def run(args: argparse.Namespace) -> PartialResult:
    from sketchlvm.evaluation.partial.report import write_partial_report
    from sketchlvm.model.factory import create_sketchlvm

    sketches = load_stroke_sketches(args.strokes, args.limit_per_class)
    # Embedding runs on the torch encoders: no ONNX graph is built or checked for nothing.
    model = create_sketchlvm(args.model, args.pretrained, args.checkpoint, args.device, runtime="torch")
    framing, framing_source = resolve_framing(model, "partial", args.framing)
    apply_framing(model, framing)
    mode = args.mode or args.protocol
    training = checkpoint_training(model, mode)
    split = args.split if args.split is not None else training.get("split") or "none"
    result, info = evaluate_partial(
        model, sketches, args.photos, args.steps, args.unit, args.protocol, mode,
        args.max_classes, args.max_photos_per_class, args.batch_size, args.workers,
        split=split, schedule=args.schedule,
        seen_classes=training.get("classes") if mode in model.trained_modes() else [],  # zero-shot: trained on none
    )
    info.update(strokes=str(args.strokes), photos=str(args.photos), framing_source=framing_source,
                split_source="--split" if args.split is not None else
                ("the checkpoint's training split" if training.get("split") else "none (no checkpoint split)"),
                max_classes=args.max_classes, max_photos_per_class=args.max_photos_per_class,
                limit_per_class=args.limit_per_class)
    write_partial_report(args.out, result, info)
    return result


def main(argv: list[str] | None = None) -> int:
    from sketchlvm.config import configure_cli_logging

    configure_cli_logging()
    args = _parser().parse_args(argv)
    try:
        result = run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"unit": result.unit, "protocol": result.protocol, **result.summary}, indent=2))
    print(f"report written to {args.out}")
    return 0

