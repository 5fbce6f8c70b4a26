"""Category-level datasets (Sketchy-, TU-Berlin-, QuickDraw-extended): ``ROOT/sketch/<class>/*`` and
``ROOT/photo/<class>/*``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from sketchlvm.datasets.folders import list_class_folders, list_images, select_classes
from sketchlvm.datasets.splits import split_classes

logger = logging.getLogger(__name__)

class CategoryDataset:
    """Sketch and photo file lists with integer labels indexing :attr:`class_names`.

    ``classes`` restricts to a subset (names matched after normalisation); ``max_classes`` keeps
    that many classes spread evenly over the sorted list; ``max_per_class`` keeps the first files
    (sorted) of each class and modality. Both caps are deterministic; 0 means no cap.
    """

    def __init__(
        self,
        root: str | PathLike,
        classes: Sequence[str] | None = None,
        max_classes: int = 0,
        max_per_class: int = 0,
        sketch_dir: str = "sketch",
        photo_dir: str = "photo",
    ) -> None:
        self.root = Path(root)
        available = list_class_folders(self.root, sketch_dir, photo_dir)
        self.class_names: list[str] = select_classes(available, classes, max_classes)
        self.sketch_paths: list[Path] = []
        self.photo_paths: list[Path] = []
        sketch_labels: list[int] = []
        photo_labels: list[int] = []
        for label, name in enumerate(self.class_names):
            sketches = list_images(self.root / sketch_dir / name)
            photos = list_images(self.root / photo_dir / name)
            if max_per_class > 0:
                sketches, photos = sketches[:max_per_class], photos[:max_per_class]
            if not sketches or not photos:
                logger.warning(
                    "class %r has %d sketches and %d photos", name, len(sketches), len(photos)
                )
            self.sketch_paths += sketches
            self.photo_paths += photos
            sketch_labels += [label] * len(sketches)
            photo_labels += [label] * len(photos)
        self.sketch_labels = np.asarray(sketch_labels, dtype=np.int64)
        self.photo_labels = np.asarray(photo_labels, dtype=np.int64)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, sketch_index: np.ndarray, photo_index: np.ndarray) -> "CategoryDataset":
        """The same classes (and labels) with only the given sketches and photos."""
        part = object.__new__(CategoryDataset)
        part.root, part.class_names = self.root, list(self.class_names)
        part.sketch_paths = [self.sketch_paths[i] for i in sketch_index]
        part.photo_paths = [self.photo_paths[i] for i in photo_index]
        part.sketch_labels = self.sketch_labels[np.asarray(sketch_index, dtype=np.int64)]
        part.photo_labels = self.photo_labels[np.asarray(photo_index, dtype=np.int64)]
        return part

    def __repr__(self) -> str:
        return (
            f"CategoryDataset({str(self.root)!r}, classes={self.num_classes}, "
            f"sketches={len(self.sketch_paths)}, photos={len(self.photo_paths)})"
        )


def load_category_split(
    root: str | PathLike,
    split: str | Sequence[str],
    max_classes: int = 0,
    max_per_class: int = 0,
) -> tuple[CategoryDataset, CategoryDataset]:
    """-> (seen / training dataset, unseen / zero-shot test dataset); caps apply to each part."""
    seen, unseen = split_classes(list_class_folders(root), split)
    if not unseen:
        raise ValueError(f"split {split!r} leaves no unseen classes to test on")
    train = CategoryDataset(root, seen, max_classes, max_per_class)
    return train, CategoryDataset(root, unseen, max_classes, max_per_class)
