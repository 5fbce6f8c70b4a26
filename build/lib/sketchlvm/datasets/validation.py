"""The validation hold-out: a fraction of the training classes' data, kept out of training for model selection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sketchlvm.datasets.category import CategoryDataset
from sketchlvm.datasets.fine_grained import FineGrainedPairs


def _held_out_count(n: int, fraction: float) -> int:
    """round(fraction * n), at least one item when the class has two or more, never all of them."""
    if n < 2:
        return 0
    return int(min(max(round(fraction * n), 1), n - 1))


def hold_out_validation(
    data: CategoryDataset | FineGrainedPairs, fraction: float, seed: int
) -> tuple[CategoryDataset | FineGrainedPairs, CategoryDataset | FineGrainedPairs, dict[str, Any]]:
    """Split the training classes' data into (training part, validation part, record).

    The best checkpoint must not be chosen on the unseen test classes, so a seeded share of every
    seen class is held out. Category: ``fraction`` of each class's sketches and of its photos.
    Fine-grained: ``fraction`` of each class's sketched photos together with all their sketches
    (a held-out sketch's own photo is in the validation gallery; distractors stay in training).
    The record (fraction, seed, counts, sha256 of the held-out file names) goes into the
    checkpoint; the split itself is a pure function of (file listing, fraction, seed).
    """
    import hashlib

    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be between 0 and 1, got {fraction!r}")
    rng = np.random.default_rng([int(seed), 0x5A11])
    if isinstance(data, CategoryDataset):
        held: dict[str, list[int]] = {"sketch": [], "photo": []}
        for label in range(data.num_classes):
            for kind, labels in (("sketch", data.sketch_labels), ("photo", data.photo_labels)):
                members = np.flatnonzero(labels == label)
                held[kind] += rng.permutation(members)[: _held_out_count(members.size, fraction)].tolist()
        val_s, val_p = np.sort(held["sketch"]).astype(np.int64), np.sort(held["photo"]).astype(np.int64)
        train_s = np.setdiff1d(np.arange(len(data.sketch_paths)), val_s)
        train_p = np.setdiff1d(np.arange(len(data.photo_paths)), val_p)
        train, validation = data.subset(train_s, train_p), data.subset(val_s, val_p)
    else:
        sketched = np.unique(data.sketch_photo)
        val_p = []
        for label in range(len(data.class_names)):
            members = sketched[data.photo_labels[sketched] == label]
            val_p += rng.permutation(members)[: _held_out_count(members.size, fraction)].tolist()
        val_p = np.sort(np.asarray(val_p, dtype=np.int64))
        train = data.subset(np.setdiff1d(np.arange(len(data.photo_paths)), val_p))
        validation = data.subset(val_p)
    names = sorted(f"{Path(p).parent.name}/{Path(p).name}" for p in [*validation.sketch_paths, *validation.photo_paths])
    record = {
        "fraction": float(fraction), "seed": int(seed),
        "sketches": len(validation.sketch_paths), "photos": len(validation.photo_paths),
        "sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
    }
    return train, validation, record
