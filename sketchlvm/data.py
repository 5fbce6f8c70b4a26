"""Datasets, zero-shot class splits and fine-grained sketch-photo pairs.

Layouts read here (everything is listed in sorted order, so indices are reproducible):

- category level (Sketchy-, TU-Berlin-, QuickDraw-extended): ``ROOT/sketch/<class>/*`` and
  ``ROOT/photo/<class>/*``; image extensions are matched case-insensitively, hidden files skipped.
- Sketchy fine-grained: ``sketch/<class>/<photo_id>-<k>.png`` drawn from
  ``photo/<class>/<photo_id>.jpg``; photos without sketches stay in the gallery as distractors.
- QMUL ShoeV2 / ChairV2 in the layout of the common public loaders (Bhunia et al.):
  ``ROOT/trainA`` and ``ROOT/testA`` hold sketches ``<photo_id>_<k>.png``, ``ROOT/trainB`` and
  ``ROOT/testB`` the photos ``<photo_id>.png`` (ids may themselves contain ``_``; the last
  ``_<k>`` is stripped, and a sketch named exactly like a photo is paired with it).
- Quick, Draw! ``<word>.ndjson`` stroke files (one JSON drawing per line).

Class folder names differ between download scripts (``hot-air_balloon`` vs ``hot_air_balloon``),
so splits are matched through :func:`normalise_class_name`.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

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

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")

# Unseen (test) classes of the standard zero-shot splits; every other class of the dataset is seen.
SPLITS: dict[str, tuple[str, ...]] = {
    # Yelamarthi et al. 2018 (Sketchy-extended, 104 / 21).
    "sketchy_21": (
        "bat", "cabin", "cow", "dolphin", "door", "giraffe", "helicopter", "mouse", "pear",
        "raccoon", "rhinoceros", "saw", "scissors", "seagull", "skyscraper", "songbird", "sword",
        "tree", "wheelchair", "windmill", "window",
    ),
    # Shen et al. 2018 (Sketchy-extended, 100 / 25).
    "sketchy_25": (
        "cup", "swan", "harp", "squirrel", "snail", "ray", "pineapple", "volcano", "rifle",
        "scissors", "parrot", "windmill", "teddy_bear", "tree", "wine_bottle", "deer", "chicken",
        "airplane", "wheelchair", "tank", "umbrella", "butterfly", "camel", "horse", "bell",
    ),
    # SAKE (TU-Berlin-extended, 220 / 30).
    "tuberlin_30": (
        "banana", "bus", "tractor", "suitcase", "streetlight", "telephone", "bottle opener",
        "canoe", "fan", "teacup", "penguin", "laptop", "shoe", "lighter", "hot air balloon",
        "pizza", "brain", "ant", "t-shirt", "trombone", "windmill", "snowboard", "table",
        "rollerblades", "parachute", "space shuttle", "bridge", "frying-pan", "bread", "horse",
    ),
    # Doodle-to-Search (QuickDraw-extended, 80 / 30).
    "quickdraw_30": (
        "bat", "cow", "dolphin", "door", "giraffe", "helicopter", "mouse", "raccoon",
        "rhinoceros", "saw", "scissors", "skyscraper", "tree", "windmill", "feather", "campfire",
        "palm tree", "fire_hydrant", "bread", "beach", "megaphone", "cactus", "zebra", "tiger",
        "shark", "frog", "banana", "cake", "hamburger", "fan",
    ),
}  # fmt: skip


# --------------------------------------------------------------------------- class names and splits


def normalise_class_name(name: str) -> str:
    """Canonical form for matching: ``Hot-Air Balloon`` / ``hot_air_balloon`` -> ``hot_air_balloon``.

    Lower case; spaces, hyphens and other separators become one underscore; leading/trailing
    separators dropped. Brackets are kept (``car_(sedan)``).
    """
    text = str(name).strip().lower()
    text = re.sub(r"[\s\-_./\\]+", "_", text)
    return text.strip("_")


def available_splits() -> list[str]:
    return sorted(SPLITS)


def unseen_classes(split: str) -> tuple[str, ...]:
    """The unseen class list of a named split (as written in the paper's source)."""
    try:
        return SPLITS[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; available: {', '.join(available_splits())}") from None


def _index_by_normalised(names: Sequence[str]) -> dict[str, str]:
    index: dict[str, str] = {}
    for name in names:
        key = normalise_class_name(name)
        if key in index and index[key] != name:
            raise ValueError(
                f"class names {index[key]!r} and {name!r} are the same after normalisation "
                f"({key!r}); rename one"
            )
        index[key] = name
    return index


def resolve_classes(available: Sequence[str], requested: Sequence[str]) -> list[str]:
    """Map requested class names onto the dataset's own spelling (normalised match).

    A requested class missing from ``available`` is a ValueError naming it (and close matches).
    """
    index = _index_by_normalised(available)
    resolved, missing = [], []
    for name in requested:
        hit = index.get(normalise_class_name(name))
        if hit is None:
            missing.append(name)
        elif hit not in resolved:
            resolved.append(hit)
    if missing:
        hints = []
        for name in missing:
            close = difflib.get_close_matches(normalise_class_name(name), list(index), n=2)
            hints.append(f"{name!r}" + (f" (close: {', '.join(index[c] for c in close)})" if close else ""))
        raise ValueError(
            f"{len(missing)} class(es) not found in the data: {'; '.join(hints)}; "
            f"the data has {len(available)} classes"
        )
    return resolved


def split_classes(
    all_class_names: Sequence[str], split: str | Sequence[str]
) -> tuple[list[str], list[str]]:
    """-> (seen, unseen), both in the data's own spelling and in the order of ``all_class_names``.

    ``split``: a name in :data:`SPLITS`, an explicit list of unseen classes, or ``""``/``"none"``
    (everything seen). A split class missing from the data is a ValueError naming it.
    """
    if isinstance(split, str):
        if split.strip().lower() in ("", "none"):
            return list(all_class_names), []
        requested: Sequence[str] = unseen_classes(split)
    else:
        requested = list(split)
    unseen = set(resolve_classes(all_class_names, requested))
    seen = [c for c in all_class_names if c not in unseen]
    return seen, [c for c in all_class_names if c in unseen]


# --------------------------------------------------------------------------- listing files


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


def _select_classes(
    available: Sequence[str], classes: Sequence[str] | None, max_classes: int
) -> list[str]:
    chosen = sorted(resolve_classes(available, classes)) if classes is not None else sorted(available)
    return _evenly_spaced(chosen, max_classes)


# --------------------------------------------------------------------------- category level


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
        self.class_names: list[str] = _select_classes(available, classes, max_classes)
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


# --------------------------------------------------------------------------- fine-grained pairs


@dataclass
class FineGrainedPairs:
    """Instance-level pairs: sketch i was drawn from photo ``sketch_photo[i]``.

    Photo lists hold the whole gallery, including photos without sketches (same-class
    distractors and hard negatives). Labels index :attr:`class_names`.
    """

    sketch_paths: list[Path]
    sketch_photo: np.ndarray  # (S,) int64 index into photo_paths
    sketch_labels: np.ndarray  # (S,) int64
    photo_paths: list[Path]
    photo_ids: list[str]
    photo_labels: np.ndarray  # (P,) int64
    class_names: list[str] = field(default_factory=list)

    @property
    def pairs(self) -> list[tuple[Path, int, int]]:
        """``(sketch_path, photo_index, class_id)`` per sketch (what the fine-grained sampler takes)."""
        return [
            (path, int(photo), int(label))
            for path, photo, label in zip(self.sketch_paths, self.sketch_photo, self.sketch_labels)
        ]

    def subset(self, photo_index: np.ndarray) -> "FineGrainedPairs":
        """The same classes with only the given photos and the sketches drawn from them."""
        photo_index = np.asarray(photo_index, dtype=np.int64)
        new_of = np.full(len(self.photo_paths), -1, dtype=np.int64)
        new_of[photo_index] = np.arange(photo_index.size)
        kept = np.flatnonzero(new_of[self.sketch_photo] >= 0)
        return FineGrainedPairs(
            sketch_paths=[self.sketch_paths[i] for i in kept],
            sketch_photo=new_of[self.sketch_photo[kept]],
            sketch_labels=self.sketch_labels[kept],
            photo_paths=[self.photo_paths[i] for i in photo_index],
            photo_ids=[self.photo_ids[i] for i in photo_index],
            photo_labels=self.photo_labels[photo_index],
            class_names=list(self.class_names),
        )

    @property
    def sketch_photo_ids(self) -> list[str]:
        return [self.photo_ids[i] for i in self.sketch_photo]

    def __len__(self) -> int:
        return len(self.sketch_paths)

    def __repr__(self) -> str:
        return (
            f"FineGrainedPairs(classes={len(self.class_names)}, sketches={len(self.sketch_paths)}, "
            f"photos={len(self.photo_paths)})"
        )

    @classmethod
    def sketchy(
        cls,
        root: str | PathLike,
        classes: Sequence[str] | None = None,
        max_classes: int = 0,
        max_per_class: int = 0,
    ) -> "FineGrainedPairs":
        """Sketchy: ``sketch/<class>/<photo_id>-<k>.png`` paired with ``photo/<class>/<photo_id>.*``.

        ``max_per_class`` keeps that many photos per class, photos with sketches first (sorted),
        then distractors; sketches follow their photos. A sketch whose photo does not exist is a
        ValueError (wrong folder pairing).
        """
        root = Path(root)
        names = _select_classes(list_class_folders(root), classes, max_classes)
        builder = _PairBuilder(names)
        for label, name in enumerate(names):
            photos = {p.stem: p for p in list_images(root / "photo" / name)}
            sketches = list_images(root / "sketch" / name)
            drawn_from = [s.stem.rsplit("-", 1)[0] for s in sketches]
            orphans = [s.name for s, pid in zip(sketches, drawn_from) if pid not in photos]
            if orphans:
                raise ValueError(
                    f"{len(orphans)} sketches of class {name!r} have no photo "
                    f"(e.g. {orphans[:3]}; expected photo/<class>/<photo_id>.jpg for "
                    f"sketch/<class>/<photo_id>-<k>.png)"
                )
            sketched = sorted(set(drawn_from))
            order = sketched + sorted(set(photos) - set(sketched))
            if max_per_class > 0:
                order = order[:max_per_class]
            builder.add_class(label, [(pid, photos[pid]) for pid in order], list(zip(sketches, drawn_from)))
        return builder.build()

    @classmethod
    def qmul(
        cls, root: str | PathLike, part: str = "test", class_name: str | None = None
    ) -> "FineGrainedPairs":
        """QMUL ShoeV2 / ChairV2: sketches ``ROOT/<part>A/<photo_id>_<k>.png``, photos
        ``ROOT/<part>B/<photo_id>.png``; one class (``shoe``/``chair`` from the folder name)."""
        if part not in ("train", "test"):
            raise ValueError(f"QMUL part must be 'train' or 'test', got {part!r}")
        root = Path(root)
        if class_name is None:
            lowered = root.name.lower()
            class_name = "shoe" if "shoe" in lowered else "chair" if "chair" in lowered else lowered
        photos = {p.stem: p for p in list_images(root / f"{part}B")}
        sketches = list_images(root / f"{part}A")
        drawn_from, orphans = [], []
        for sketch in sketches:
            stem = sketch.stem
            pid = stem if stem in photos else stem.rsplit("_", 1)[0]
            drawn_from.append(pid)
            if pid not in photos:
                orphans.append(sketch.name)
        if orphans:
            raise ValueError(
                f"{len(orphans)} sketches in {str(root / f'{part}A')!r} match no photo in "
                f"{part}B (e.g. {orphans[:3]}); expected <photo_id>_<k>.png for <photo_id>.png"
            )
        builder = _PairBuilder([class_name])
        builder.add_class(0, sorted(photos.items()), list(zip(sketches, drawn_from)))
        return builder.build()


class _PairBuilder:
    def __init__(self, class_names: list[str]) -> None:
        self.class_names = class_names
        self.photo_paths: list[Path] = []
        self.photo_ids: list[str] = []
        self.photo_labels: list[int] = []
        self.sketch_paths: list[Path] = []
        self.sketch_photo: list[int] = []
        self.sketch_labels: list[int] = []

    def add_class(
        self, label: int, photos: list[tuple[str, Path]], sketches: list[tuple[Path, str]]
    ) -> None:
        index = {}
        for pid, path in photos:
            index[pid] = len(self.photo_paths)
            self.photo_paths.append(path)
            self.photo_ids.append(pid)
            self.photo_labels.append(label)
        for path, pid in sketches:
            if pid in index:  # photos dropped by a cap take their sketches with them
                self.sketch_paths.append(path)
                self.sketch_photo.append(index[pid])
                self.sketch_labels.append(label)

    def build(self) -> FineGrainedPairs:
        return FineGrainedPairs(
            sketch_paths=self.sketch_paths,
            sketch_photo=np.asarray(self.sketch_photo, dtype=np.int64),
            sketch_labels=np.asarray(self.sketch_labels, dtype=np.int64),
            photo_paths=self.photo_paths,
            photo_ids=self.photo_ids,
            photo_labels=np.asarray(self.photo_labels, dtype=np.int64),
            class_names=list(self.class_names),
        )


# --------------------------------------------------------------------------- validation split


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


# --------------------------------------------------------------------------- Quick, Draw! strokes


@dataclass
class QuickDrawDrawing:
    """One Quick, Draw! drawing: ``strokes`` is the raw ``[[xs, ys, ts], ...]`` list."""

    word: str
    label: int
    strokes: list
    recognized: bool = True
    key_id: str = ""


class QuickDrawSketches:
    """Drawings from ``FOLDER/<word>.ndjson`` files, as a sketch source.

    ``classes`` (matched after normalisation; default all, sorted) and ``limit_per_class`` (the
    first N drawings of each file; 0 = all) select what is read. Iterating reads lazily.
    """

    def __init__(
        self,
        folder: str | PathLike,
        classes: Sequence[str] | None = None,
        limit_per_class: int = 0,
        recognized_only: bool = False,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"Quick, Draw! folder {str(self.folder)!r} does not exist")
        files = {p.stem: p for p in self.folder.iterdir() if p.suffix.lower() == ".ndjson"}
        if not files:
            raise ValueError(f"no .ndjson files in {str(self.folder)!r}")
        self.class_names: list[str] = _select_classes(list(files), classes, 0)
        self.files = [files[name] for name in self.class_names]
        self.limit_per_class = int(limit_per_class)
        self.recognized_only = recognized_only

    def __iter__(self) -> Iterator[QuickDrawDrawing]:
        from sketchlvm.strokes import load_ndjson  # the stroke-format owner parses the files

        for label, path in enumerate(self.files):
            count = 0
            for record in load_ndjson(path):
                if self.limit_per_class and count >= self.limit_per_class:
                    break
                if self.recognized_only and not record.get("recognized", True):
                    continue
                count += 1
                yield QuickDrawDrawing(
                    word=str(record.get("word", self.class_names[label])),
                    label=label,
                    strokes=record["drawing"],
                    recognized=bool(record.get("recognized", True)),
                    key_id=str(record.get("key_id", "")),
                )

    def load(self) -> list[QuickDrawDrawing]:
        return list(self)

    @staticmethod
    def render(drawing: QuickDrawDrawing | list, size: int = 256, **kwargs: Any) -> Any:
        """Drawing -> PIL RGB sketch via :func:`sketchlvm.strokes.render_strokes`."""
        from sketchlvm.strokes import render_strokes

        strokes = drawing.strokes if isinstance(drawing, QuickDrawDrawing) else drawing
        return render_strokes(strokes, size=size, **kwargs)

    @classmethod
    def renderer(cls, size: int = 256, **kwargs: Any) -> Callable[[Any], Any]:
        """A loader for :class:`ImageListDataset` over drawings."""
        return lambda drawing: cls.render(drawing, size, **kwargs)


# --------------------------------------------------------------------------- torch dataset


def _load_image(item: Any) -> Any:
    from sketchlvm.transforms import load_photo

    if isinstance(item, tuple):  # e.g. FineGrainedPairs.pairs entries: the path comes first
        item = item[0]
    return load_photo(item)


class ImageListDataset(Dataset):
    """``dataset[i] -> (transform(loader(items[i])), i)`` for training and evaluation alike.

    ``loader`` defaults to :func:`sketchlvm.transforms.load_photo` (PIL RGB; raises
    ``ImageLoadError``); for stroke drawings pass :meth:`QuickDrawSketches.renderer`. Returning the
    index lets a DataLoader's output be matched back to paths and labels.
    """

    def __init__(
        self,
        paths_or_items: Sequence[Any],
        transform: Callable[[Any], Any] | None = None,
        loader: Callable[[Any], Any] | None = None,
    ) -> None:
        self.items = list(paths_or_items)
        self.transform = transform
        self.loader = loader or _load_image

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.loader(self.items[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, index
