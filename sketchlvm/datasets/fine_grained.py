"""Fine-grained sketch-photo pairs (Sketchy; QMUL ShoeV2 / ChairV2) and the validation hold-out.

- Sketchy fine-grained: ``sketch/<class>/<photo_id>-<k>.png`` drawn from ``photo/<class>/<photo_id>.jpg``.
  Which photos make the gallery is a named option (:data:`FINE_GRAINED_GALLERIES`): by default only the
  photos that have sketches (the original Sketchy photos, 100 a class), as the paper ranks them; the
  Sketchy-extended folder's other ~500-600 photos a class are kept only on request (``"with-distractors"``).
- QMUL ShoeV2 / ChairV2 in the layout of the common public loaders (Bhunia et al.):
  ``ROOT/trainA`` and ``ROOT/testA`` hold sketches ``<photo_id>_<k>.png``, ``ROOT/trainB`` and
  ``ROOT/testB`` the photos ``<photo_id>.png`` (ids may themselves contain ``_``; the last
  ``_<k>`` is stripped, and a sketch named exactly like a photo is paired with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from sketchlvm.datasets.folders import list_class_folders, list_images, select_classes

# Which Sketchy photos a fine-grained gallery holds: name -> what the report says about it.
FINE_GRAINED_GALLERIES = {
    "sketched": "only the photos that have sketches (the original Sketchy photos: the paper's protocol)",
    "with-distractors": "the photos that have sketches plus every other photo of the class in the folder "
                        "(Sketchy-extended's unsketched photos as same-class distractors)",
}
DEFAULT_FINE_GRAINED_GALLERY = "sketched"


@dataclass
class FineGrainedPairs:
    """Instance-level pairs: sketch i was drawn from photo ``sketch_photo[i]``.

    Photo lists hold the whole gallery: with ``gallery="with-distractors"`` that includes photos without
    sketches (same-class distractors and hard negatives). Labels index :attr:`class_names`.
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

    def gallery_description(self) -> dict:
        """Photos per class in the gallery and how many of them have sketches, for reports."""
        per_class = np.bincount(self.photo_labels, minlength=len(self.class_names))
        sketched = np.zeros(len(self.photo_paths), dtype=bool)
        sketched[self.sketch_photo] = True
        with_sketch = np.bincount(self.photo_labels[sketched], minlength=len(self.class_names))
        return {
            "photos": len(self.photo_paths),
            "photos_with_sketches": int(sketched.sum()),
            "photos_per_class": {"min": int(per_class.min()) if per_class.size else 0,
                                 "max": int(per_class.max(initial=0)),
                                 "mean": float(per_class.mean()) if per_class.size else 0.0},
            "sketched_photos_per_class": {"min": int(with_sketch.min()) if with_sketch.size else 0,
                                          "max": int(with_sketch.max(initial=0))},
        }

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
        gallery: str = DEFAULT_FINE_GRAINED_GALLERY,
    ) -> "FineGrainedPairs":
        """Sketchy: ``sketch/<class>/<photo_id>-<k>.png`` paired with ``photo/<class>/<photo_id>.*``.

        ``gallery`` (:data:`FINE_GRAINED_GALLERIES`): ``"sketched"`` keeps only the photos that have
        sketches, so adding or removing unsketched photos in the folder changes nothing;
        ``"with-distractors"`` adds every other photo of the class. ``max_per_class`` keeps that many
        photos per class, photos with sketches first (sorted), then distractors; sketches follow their
        photos. A sketch whose photo does not exist is a ValueError (wrong folder pairing).
        """
        if gallery not in FINE_GRAINED_GALLERIES:
            raise ValueError(f"unknown fine-grained gallery {gallery!r}; choose one of {', '.join(FINE_GRAINED_GALLERIES)}")
        root = Path(root)
        names = select_classes(list_class_folders(root), classes, max_classes)
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
            order = sketched + (sorted(set(photos) - set(sketched)) if gallery == "with-distractors" else [])
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
