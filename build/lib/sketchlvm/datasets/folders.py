"""Listing images and class folders: sorted, so indices are reproducible; hidden files skipped."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from sketchlvm.datasets.splits import resolve_classes

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")



def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (extension case ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist")
    return sorted((p for p in folder.iterdir() if _is_image(p)), key=lambda p: p.name)


def _subfolders(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {str(folder)!r} does not exist")
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_class_folders(
    root: str | PathLike, sketch_dir: str = "sketch", photo_dir: str = "photo"
) -> list[str]:
    """Classes with a folder under both ``ROOT/sketch`` and ``ROOT/photo`` (sorted)."""
    root = Path(root)
    sketch, photo = _subfolders(root / sketch_dir), _subfolders(root / photo_dir)
    only = sorted(set(sketch) ^ set(photo))
    if only:
        logger.warning("classes with only sketches or only photos are ignored: %s", only)
    return sorted(set(sketch) & set(photo))


def _evenly_spaced(items: Sequence[Any], count: int) -> list[Any]:
    """``count`` items spread over the sorted list (deterministic, not alphabetically biased)."""
    if count <= 0 or count >= len(items):
        return list(items)
    return [items[(i * len(items)) // count] for i in range(count)]


def select_classes(
    available: Sequence[str], classes: Sequence[str] | None, max_classes: int
) -> list[str]:
    chosen = sorted(resolve_classes(available, classes)) if classes is not None else sorted(available)
    return _evenly_spaced(chosen, max_classes)
