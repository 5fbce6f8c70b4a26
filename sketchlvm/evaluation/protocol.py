"""What an evaluation run measured, decided in one place: sketch framing, fine-grained gallery, caps.

These are the choices that make a reproduced number comparable with a published one or not, so each is a
named option with a stated default, and each is written into the report (``metrics.json`` ``extra`` and
``summary.md``) exactly as it was applied:

- **framing** (``--framing``): how a sketch is framed before resizing (``PreprocessConfig.sketch_framing``).
  Default: what the checkpoint was trained with; with no checkpoint (the zero-shot baseline), the dataset's
  protocol, ``pad-square`` for every benchmark here (the released code pads sketches and photos to a square),
  so the plain-CLIP baseline is framed as the trained presets are.
- **fine-grained gallery** (``--fg-gallery``, Sketchy only): ``sketched`` (default; the paper's protocol, the
  original Sketchy photos) or ``with-distractors`` (plus the Sketchy-extended folder's unsketched photos).
- **caps** (``--max-classes``, ``--max-per-class``): recorded, and a capped run is titled by what it ran on,
  never by the benchmark's full name beside the published numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sketchlvm.config import SKETCH_FRAMINGS
from sketchlvm.datasets.splits import SPLITS

# The framing each benchmark's protocol uses when no checkpoint says otherwise (the released code's
# preprocessing: pad to a square, resize). Partial-sketch evaluation replays strokes on a canvas, in the
# frame of the finished drawing, as Bhunia et al. do: pad-square too.
DATASET_FRAMING = {
    "sketchy": "pad-square", "tuberlin": "pad-square", "quickdraw": "pad-square",
    "sketchy_fg": "pad-square", "shoev2": "pad-square", "chairv2": "pad-square", "partial": "pad-square",
}


def resolve_framing(model: Any, dataset: str, requested: str | None) -> tuple[str, str]:
    """-> (framing, why): the one asked for, else the checkpoint's, else the dataset protocol's."""
    if requested is not None:
        if requested not in SKETCH_FRAMINGS:
            raise ValueError(f"unknown framing {requested!r}; choose one of {', '.join(SKETCH_FRAMINGS)}")
        return requested, "asked for (--framing)"
    recorded = (model.checkpoint.metadata.get("preprocess") or {}) if model.checkpoint is not None else {}
    if recorded.get("sketch_framing"):
        return recorded["sketch_framing"], "the checkpoint's (what it was trained with)"
    return DATASET_FRAMING.get(dataset, "pad-square"), f"the {dataset} protocol's (no checkpoint records one)"


def apply_framing(model: Any, framing: str) -> None:
    """Make ``model`` frame sketches with ``framing`` (its sketch transform and recorded preprocessing)."""
    from sketchlvm.preprocess.transforms import SketchTransform

    if model.preprocess.sketch_framing != framing:
        model.preprocess = dataclasses.replace(model.preprocess, sketch_framing=framing)
        model.sketch_transform = SketchTransform(model.image_size, model.preprocess)


def split_size(split: str | None) -> int | None:
    """How many unseen classes a named split has (None for an unnamed one)."""
    return len(SPLITS[split]) if split in SPLITS else None


def caps_note(max_classes: int, max_per_class: int, classes: Sequence[str], split: str | None) -> str | None:
    """A sentence saying the run was capped and is not the benchmark, or None for a full run."""
    full = split_size(split)
    parts = []
    if max_classes:
        parts.append(f"--max-classes {max_classes}")
    if max_per_class:
        parts.append(f"--max-per-class {max_per_class}")
    if not parts and (full is None or len(classes) == full):
        return None
    of = f" of the {full} unseen classes of {split}" if full is not None else ""
    caps = f" (capped: {', '.join(parts)})" if parts else ""
    return (f"{len(classes)}{of}{caps}: a subset, so these numbers are not comparable with the published "
            f"ones, which use every class and every image")
