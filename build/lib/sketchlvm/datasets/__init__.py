"""Datasets: zero-shot class splits, category-level datasets, fine-grained sketch-photo pairs, the validation
hold-out, Quick, Draw! strokes, and a torch Dataset over image lists.

Everything is listed in sorted order, so indices are reproducible; image extensions match case-insensitively
and hidden files are skipped. May import ``sketchlvm.config`` and ``sketchlvm.preprocess``; training and
evaluation import it.
"""

from sketchlvm.datasets.category import CategoryDataset, load_category_split
from sketchlvm.datasets.fine_grained import FineGrainedPairs
from sketchlvm.datasets.folders import IMAGE_EXTENSIONS, list_class_folders, list_images
from sketchlvm.datasets.images import ImageListDataset
from sketchlvm.datasets.quickdraw import QuickDrawDrawing, QuickDrawSketches
from sketchlvm.datasets.splits import (
    SPLITS,
    available_splits,
    normalise_class_name,
    resolve_classes,
    split_classes,
    unseen_classes,
)
from sketchlvm.datasets.validation import hold_out_validation

__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "normalise_class_name",
    "available_splits",
    "unseen_classes",
    "split_classes",
    "resolve_classes",
    "list_images",
    "list_class_folders",
    "CategoryDataset",
    "load_category_split",
    "FineGrainedPairs",
    "hold_out_validation",
    "QuickDrawDrawing",
    "QuickDrawSketches",
    "ImageListDataset",
]
