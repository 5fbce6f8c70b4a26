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
- **split** (``--split``): default the checkpoint's training split when it is a split of the evaluated
  dataset, else the dataset's (the paper's). Test classes that the checkpoint trained on are refused
  (:func:`check_unseen`) unless ``--allow-seen-classes``; the report then counts them.
- **mode**: a checkpoint without prompts for the evaluated mode is refused (:func:`check_trained_mode`) unless
  ``--allow-zero-shot``; the report then says the encoder is zero-shot CLIP.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sketchlvm.config import SKETCH_FRAMINGS
from sketchlvm.datasets.splits import SPLITS, normalise_class_name

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


def checkpoint_training(model: Any, mode: str) -> dict:
    """The training record of ``mode`` in the model's checkpoint (``split``, ``classes``...), or {}.

    A merged checkpoint keeps each mode's record under ``training[mode]["training"]``."""
    if model.checkpoint is None or mode not in model.checkpoint.modes:
        return {}
    training = model.checkpoint.metadata.get("training") or {}
    if mode in training and isinstance(training[mode], dict):
        training = training[mode].get("training") or {}
    return training if isinstance(training, dict) else {}


def _family(name: str) -> str:
    """``sketchy_fg`` and ``sketchy_21`` -> ``sketchy``: which splits belong to which dataset."""
    return name.split("_", 1)[0]


def resolve_split(dataset: str, requested: str | None, training: dict, default: str | None) -> tuple[str | None, str]:
    """-> (split, why): the one asked for, else the checkpoint's training split when it splits this dataset
    (a sketchy_25 checkpoint is scored on sketchy_25's unseen classes), else the dataset's default."""
    if requested is not None:
        return requested, "asked for (--split)"
    recorded = training.get("split")
    if default is not None and isinstance(recorded, str) and recorded in SPLITS and _family(recorded) == _family(dataset):
        return recorded, "the checkpoint's training split"
    if default is None:
        return None, f"{dataset} has one fixed train/test division"
    why = "no checkpoint" if not training else "the checkpoint's split is not one of this dataset"
    return default, f"the {dataset} default ({why})"


def seen_test_classes(test_classes: Sequence[str], training: dict) -> list[str]:
    """The test classes the checkpoint was trained on (names compared normalised), in test order."""
    seen = {normalise_class_name(c) for c in training.get("classes") or ()}
    return [c for c in test_classes if normalise_class_name(c) in seen]


def check_unseen(seen: Sequence[str], n_test: int, split: str | None, allow: bool) -> None:
    """Refuse a zero-shot evaluation whose test classes the checkpoint trained on, unless ``allow``."""
    if seen and not allow:
        shown = ", ".join(seen[:8]) + (", ..." if len(seen) > 8 else "")
        raise ValueError(
            f"{len(seen)} of the {n_test} test classes of {split} were training classes of the checkpoint "
            f"({shown}): that is not zero-shot. Evaluate on the checkpoint's own split (--split), or pass "
            f"--allow-seen-classes to measure them anyway (the report then counts them and makes no comparison "
            f"with the paper)")


def check_trained_mode(model: Any, mode: str, allow_zero_shot: bool) -> None:
    """Refuse to score a checkpoint on a mode it has no prompts for (that would be zero-shot CLIP under the
    checkpoint's name), unless ``allow_zero_shot``."""
    if model.checkpoint is None or mode in model.trained_modes() or allow_zero_shot:
        return
    raise ValueError(
        f"the checkpoint {model.checkpoint.path.name} holds the {', '.join(model.trained_modes())} mode only, not "
        f"{mode}: its {mode} numbers would be zero-shot CLIP's. Evaluate a {mode} checkpoint, or pass "
        f"--allow-zero-shot to measure zero-shot CLIP in {mode} mode (the report says so in its first line)")


def training_negatives(training: dict) -> str | None:
    """Which photos a fine-grained checkpoint drew its hard negatives from (``data.fine_grained_negatives``);
    checkpoints from before that option drew them from their gallery setting. None: not recorded."""
    data = (training.get("config") or {}).get("data") or {}
    return (training.get("fine_grained_negatives") or data.get("fine_grained_negatives")
            or data.get("fine_grained_gallery"))
