"""Sketch -> ranked photos from a gallery index, per mode.

The encoder is the slow part of a query (tens of ms for ViT-B/32 on CPU, the index search is well
under that), and the app asks for the same drawing again whenever the user flips the mode or moves the
top-k slider. So :class:`Searcher` keeps the last drawings' embeddings for each mode it was asked for,
keyed by a hash of the flattened canvas pixels: the same pixels in the same mode are not encoded twice,
and a mode is encoded only when a search needs it. A few recent drawings are kept (not just one) so that
several people using one server do not evict each other's drawing between two clicks.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .strokes import canvas_to_image

if TYPE_CHECKING:  # the index imports faiss; the searcher only needs its search() and photos
    from .index import GalleryIndex
    from .model import SketchLVM

log = logging.getLogger(__name__)


class EmptyGalleryError(RuntimeError):
    """There is nothing to search: no gallery was given, or it holds no usable photo."""


@dataclass(frozen=True)
class SearchResult:
    """One ranked photo. ``score`` is the cosine similarity in [-1, 1]; ``rank`` starts at 1."""

    path: Path
    relpath: str
    label: str | None
    score: float
    rank: int


def sketch_key(image: Image.Image) -> str:
    """A digest of an RGB image's pixels (and size): equal drawings give equal keys."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class Searcher:
    """A model plus a gallery index: ``search(sketch, mode, k) -> [SearchResult]``.

    ``index`` may be None (no gallery yet): then :meth:`search` raises :class:`EmptyGalleryError`
    after checking the sketch, so a blank canvas is still reported as such. Thread-safe: Gradio calls
    handlers from a thread pool.
    """

    def __init__(self, model: SketchLVM, index: GalleryIndex | None, default_k: int = 12, cache_size: int = 32):
        if default_k < 1:
            raise ValueError(f"default_k must be >= 1, got {default_k!r}")
        self.model = model
        self.index = index
        self.default_k = int(default_k)
        self.cache_size = max(1, int(cache_size))
        self._lock = threading.Lock()
        # sketch_key -> {mode: (1, D)}, least recently used first.
        self._cache: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self.encode_calls = 0  # how many times the encoder ran (for tests and benchmarks)

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.model.modes)

    def __len__(self) -> int:
        return 0 if self.index is None else len(self.index)

    def set_index(self, index: GalleryIndex | None) -> None:
        """Swap in a rebuilt index; cached sketch embeddings stay valid (they do not depend on it)."""
        with self._lock:
            self.index = index

    def embed(self, sketch: Any, mode: str) -> np.ndarray:
        """Canvas value or sketch image -> (1, D) float32 unit vector, cached per mode for the last drawing.

        Raises ``EmptySketchError`` when nothing is drawn, ``ValueError``/``TypeError`` for a value that
        is not a readable image.
        """
        if mode not in self.model.modes:
            raise ValueError(f"unknown mode {mode!r}; choose one of {self.model.modes}")
        image = canvas_to_image(sketch)  # (H, W) RGB on white
        key = sketch_key(image)
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
                if mode in entry:
                    return entry[mode]
        # Encode outside the lock: another request may run its own encoder meanwhile.
        vector = np.ascontiguousarray(self.model.encode_sketches([image], mode), dtype="float32")  # (1, D)
        with self._lock:
            self.encode_calls += 1
            self._cache.setdefault(key, {})[mode] = vector
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def search(self, sketch: Any, mode: str = "category", k: int | None = None) -> list[SearchResult]:
        """The ``k`` (default ``default_k``) gallery photos closest to ``sketch`` in ``mode``, best first."""
        k = self.default_k if k is None else int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        query = self.embed(sketch, mode)  # checks the sketch first: a blank canvas beats an empty gallery
        index = self.index
        if index is None or len(index) == 0:
            raise EmptyGalleryError(
                "the gallery is empty: start the app with --gallery DIR (a folder of photos, one "
                "subfolder per category) or set SKETCHLVM_GALLERY"
            )
        scores, ids = index.search(query, mode, min(k, len(index)))  # (1, k), (1, k)
        results = []
        for score, i in zip(scores[0], ids[0]):
            if i < 0:  # faiss pads with -1 when fewer than k are found
                continue
            photo = index.photos[int(i)]
            results.append(
                SearchResult(index.path_of(int(i)), photo.relpath, photo.label, float(score), len(results) + 1)
            )
        return results
