"""Seeded triplet samplers: category-level triplets and fine-grained P x K batches.

Both are deterministic functions of (seed, epoch). Iterating advances the epoch by one, so a
training loop that simply iterates again gets fresh triplets; ``set_epoch`` pins it (resuming).
Indices refer to the sketch and photo lists of the dataset the labels came from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["TripletBatch", "CategoryTripletSampler", "FineGrainedBatchSampler"]


class TripletBatch(NamedTuple):
    """A batch of index triplets: ``triplets`` (B, 3) int64 [sketch, positive photo, negative
    photo] and ``class_ids`` (B,) int64, the sketch's class (= the positive photo's class)."""

    triplets: np.ndarray
    class_ids: np.ndarray


def _int_labels(labels: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one label per item, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{what} must be integer class ids, got dtype {array.dtype}")
    return array.astype(np.int64)


def _rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch)])


class _Epochs:
    seed: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Pin the epoch the next iteration uses (it then advances from there)."""
        self.epoch = int(epoch)

    def _next_rng(self) -> np.random.Generator:
        rng = _rng(self.seed, self.epoch)
        self.epoch += 1
        return rng


class CategoryTripletSampler(_Epochs):
    """Each epoch: every sketch once, in shuffled order, with a random photo of its class (positive)
    and a random photo of any other class (negative, uniform over those photos).

    Yields ``(sketch_idx, pos_photo_idx, neg_photo_idx)``; :meth:`batches` groups them.
    """

    def __init__(
        self,
        sketch_labels: Sequence[int] | np.ndarray,
        photo_labels: Sequence[int] | np.ndarray,
        seed: int = 0,
    ) -> None:
        self.sketch_labels = _int_labels(sketch_labels, "sketch_labels")
        self.photo_labels = _int_labels(photo_labels, "photo_labels")
        self.seed = int(seed)
        self.epoch = 0
        if self.sketch_labels.size == 0:
            raise ValueError("CategoryTripletSampler got no sketches")
        photo_classes = np.unique(self.photo_labels)
        missing = np.setdiff1d(np.unique(self.sketch_labels), photo_classes)
        if missing.size:
            raise ValueError(
                f"sketch classes {missing.tolist()} have no photos; a positive cannot be drawn"
            )
        if photo_classes.size < 2:
            raise ValueError(
                f"need photos of at least 2 classes to draw negatives, got {photo_classes.tolist()}"
            )
        # Photos sorted by class: class c occupies the contiguous block [start[c], start[c] + n[c]).
        self._order = np.argsort(self.photo_labels, kind="stable")
        classes, starts, counts = np.unique(
            self.photo_labels[self._order], return_index=True, return_counts=True
        )
        lookup = {int(c): i for i, c in enumerate(classes)}
        block = np.array([lookup[int(c)] for c in self.sketch_labels], dtype=np.int64)
        self._start = starts[block]
        self._count = counts[block]

    def __len__(self) -> int:
        return int(self.sketch_labels.size)

    def triplets(self, epoch: int) -> np.ndarray:
        """The epoch's triplets as a (N, 3) int64 array; a pure function of (seed, epoch)."""
        rng = _rng(self.seed, epoch)
        n_photos = self.photo_labels.size
        sketches = rng.permutation(self.sketch_labels.size)
        start, count = self._start[sketches], self._count[sketches]
        pos_rank = start + rng.integers(0, count)
        # Uniform over the photos outside the sketch's class block: skip over the block.
        r = rng.integers(0, n_photos - count)
        neg_rank = np.where(r < start, r, r + count)
        return np.stack([sketches, self._order[pos_rank], self._order[neg_rank]], axis=1)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        triplets = self.triplets(self.epoch)
        self.epoch += 1
        for s, p, n in triplets.tolist():
            yield s, p, n

    def batches(self, batch_size: int, drop_last: bool = False) -> Iterator[TripletBatch]:
        """One epoch grouped into :class:`TripletBatch` es of ``batch_size`` (advances the epoch)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        triplets = self.triplets(self.epoch)
        self.epoch += 1
        for start in range(0, len(triplets), batch_size):
            chunk = triplets[start : start + batch_size]
            if drop_last and len(chunk) < batch_size:
                break
            yield TripletBatch(chunk, self.sketch_labels[chunk[:, 0]])


class FineGrainedBatchSampler(_Epochs):
    """P classes x K triplets per batch; triplet = (sketch, its paired photo, another photo of the
    same class). Every class in a batch contributes exactly K triplets, as the relative-separation
    regulariser needs.

    ``pairs``: one entry per sketch (its index is the sketch index), either ``(photo_index,
    class_id)`` or ``(sketch_path, photo_index, class_id)`` as in
    :attr:`sketchlvm.datasets.FineGrainedPairs.pairs`. ``photo_labels``: the class of every photo of the
    gallery, so that photos without sketches serve as hard negatives too; by default the pool is
    the photos named in ``pairs``.

    An epoch shuffles each class's sketches into chunks of K (the last chunk topped up with other
    sketches of the class; classes with fewer than K sketches repeat some), then fills batches with
    P distinct classes, chosen with probability proportional to their chunks left, until fewer than
    P classes have chunks. Classes with fewer than 2 photos cannot give a hard negative and are left
    out (logged).
    """

    def __init__(
        self,
        pairs: Sequence[Sequence[Any]],
        classes_per_batch: int = 8,
        samples_per_class: int = 8,
        seed: int = 0,
        photo_labels: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        if classes_per_batch < 1 or samples_per_class < 1:
            raise ValueError(
                f"classes_per_batch and samples_per_class must be >= 1, got "
                f"{classes_per_batch} x {samples_per_class}"
            )
        self.classes_per_batch = int(classes_per_batch)
        self.samples_per_class = int(samples_per_class)
        self.seed = int(seed)
        self.epoch = 0
        if len(pairs) == 0:
            raise ValueError("FineGrainedBatchSampler got no sketch-photo pairs")
        self.sketch_photo = _int_labels([p[-2] for p in pairs], "pair photo indices")
        self.sketch_labels = _int_labels([p[-1] for p in pairs], "pair class ids")

        if photo_labels is None:
            photos, first = np.unique(self.sketch_photo, return_index=True)
            pools = {}
            for photo, label in zip(photos.tolist(), self.sketch_labels[first].tolist()):
                pools.setdefault(label, []).append(photo)
        else:
            labels = _int_labels(photo_labels, "photo_labels")
            if self.sketch_photo.max() >= labels.size or self.sketch_photo.min() < 0:
                raise ValueError(
                    f"pairs refer to photo index {int(self.sketch_photo.max())} but photo_labels "
                    f"has {labels.size} photos"
                )
            wrong = labels[self.sketch_photo] != self.sketch_labels
            if wrong.any():
                i = int(np.flatnonzero(wrong)[0])
                raise ValueError(
                    f"sketch {i} has class {int(self.sketch_labels[i])} but its photo "
                    f"{int(self.sketch_photo[i])} has class {int(labels[self.sketch_photo[i]])}"
                )
            pools = {}
            for photo, label in enumerate(labels.tolist()):
                pools.setdefault(label, []).append(photo)
        self._pools = {c: np.asarray(sorted(v), dtype=np.int64) for c, v in pools.items()}

        sketch_classes = sorted(set(self.sketch_labels.tolist()))
        self.classes = [c for c in sketch_classes if self._pools[c].size >= 2]
        dropped = sorted(set(sketch_classes) - set(self.classes))
        if dropped:
            logger.warning("classes %s have fewer than 2 photos: no hard negative, left out", dropped)
        if len(self.classes) < self.classes_per_batch:
            raise ValueError(
                f"{len(self.classes)} classes have >= 2 photos (needed for a hard negative) but "
                f"classes_per_batch is {self.classes_per_batch}; lower classes_per_batch"
            )
        self._sketches = {
            c: np.flatnonzero(self.sketch_labels == c).astype(np.int64) for c in self.classes
        }

    @property
    def batch_size(self) -> int:
        return self.classes_per_batch * self.samples_per_class

    def _chunks(self, rng: np.random.Generator) -> dict[int, list[np.ndarray]]:
        k = self.samples_per_class
        chunks = {}
        for c in self.classes:
            sketches = rng.permutation(self._sketches[c])
            n_chunks = -(-sketches.size // k)
            short = n_chunks * k - sketches.size
            if short:
                # Top up with other sketches of the class (repeats only when it has fewer than K).
                extra = rng.choice(sketches, size=short, replace=short > sketches.size)
                sketches = np.concatenate([sketches, extra])
            chunks[c] = list(sketches.reshape(n_chunks, k))
        return chunks

    def batches(self, epoch: int) -> list[TripletBatch]:
        """The epoch's batches; a pure function of (seed, epoch). Classes in a batch are sorted and
        each occupies K consecutive rows."""
        rng = _rng(self.seed, epoch)
        chunks = self._chunks(rng)
        out = []
        while True:
            alive = [c for c in self.classes if chunks[c]]
            if len(alive) < self.classes_per_batch:
                break
            left = np.array([len(chunks[c]) for c in alive], dtype=np.float64)
            picked = rng.choice(len(alive), size=self.classes_per_batch, replace=False, p=left / left.sum())
            rows, ids = [], []
            for c in sorted(alive[i] for i in picked):
                sketches = chunks[c].pop()
                positives = self.sketch_photo[sketches]
                rows.append(np.stack([sketches, positives, self._negatives(c, positives, rng)], axis=1))
                ids.append(np.full(sketches.size, c, dtype=np.int64))
            out.append(TripletBatch(np.concatenate(rows), np.concatenate(ids)))
        return out

    def _negatives(self, c: int, positives: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random photo of class c other than each positive."""
        pool = self._pools[c]
        rank = np.searchsorted(pool, positives)
        r = rng.integers(0, pool.size - 1, size=positives.size)
        return pool[np.where(r < rank, r, r + 1)]

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

    def __iter__(self) -> Iterator[TripletBatch]:
        batches = self.batches(self.epoch)
        self.epoch += 1
        return iter(batches)
