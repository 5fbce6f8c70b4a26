"""Sketch, words, or a photo -> ranked photos from a gallery index, per mode.

Four kinds of query, one photo side (the gallery index is the same for all):

- a sketch (:meth:`Searcher.search`): the prompted sketch encoder, as in the paper;
- sketch + words: late fusion, as in TASK-former (Sangkloy et al., ECCV 2022): the query is
  ``normalise((1 - w) * sketch + w * text)`` of the two unit vectors (:func:`fuse`), with ``w`` the
  text weight (default ``DEFAULT_TEXT_WEIGHT`` = 0.5: equal parts). ``w = 0`` is the sketch alone,
  ``w = 1`` the words alone; words alone (blank canvas) are CLIP text -> photo search;
- "more like this" (:meth:`Searcher.search_like`): a gallery photo's stored vector is the query, so
  nothing is re-encoded; the photo itself comes first;
- an uploaded photo (:meth:`Searcher.search_photo`): encoded as the gallery's photos are.

The encoder is the slow part of a query (tens of ms for ViT-B/32 on CPU, the index search is well
under that), and the app asks for the same drawing again whenever the user flips the mode or moves the
top-k slider. So :class:`Searcher` keeps the last drawings' embeddings for each encoder it ran, keyed by
a hash of the flattened canvas pixels: the same pixels through the same encoder are not encoded twice,
and a mode is encoded only when a search needs it. Modes that share an encoder (every zero-shot mode runs
the bare CLIP tower: ``SketchLVM.encoder_key``) share the embedding, so flipping between two untrained
modes re-ranks without encoding. A few recent drawings are kept (not just one) so that several people
using one server do not evict each other's drawing between two clicks.

Every cached vector (drawings, photos, and the text tower's words) is also keyed by a *scope*, from
``cache_scope()``: one shared ``""`` by default; the app makes it the browser session, so that how fast
an answer comes says nothing about what other people searched (``sketchlvm.webapp.cache_scope``). A scope
of None means "do not cache".
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from sketchlvm.config import env_var
from sketchlvm.preprocess.strokes import EmptySketchError, canvas_to_image
from sketchlvm.model.text import NO_TEXT_TOWER, TextQuery, TextQueryError
from sketchlvm.preprocess.transforms import load_photo

if TYPE_CHECKING:  # the index imports faiss; the searcher only needs its search() and photos
    from sketchlvm.gallery import GalleryIndex
    from sketchlvm.model.factory import SketchLVM

log = logging.getLogger(__name__)

DEFAULT_TEXT_WEIGHT = 0.5  # sketch and words count equally (TASK-former sums the two embeddings)
# Pixels a query photo may decode to (after a JPEG's draft): it is shrunk to the model's 224 px anyway.
# The gallery's 64 M limit let a 249 kB transparent 8000 x 8000 PNG take 1.5 GB as a query; at 16.7 M
# (4096 x 4096, as uploaded sketches) one costs ~0.2 GB, and uploads decode two at a time (the app).
MAX_QUERY_PIXELS = 4096 * 4096


def _shared_scope() -> str:
    return ""


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


def fuse(sketch: np.ndarray, text: np.ndarray, text_weight: float = DEFAULT_TEXT_WEIGHT) -> np.ndarray:
    """(D,) unit sketch and text vectors -> the (1, D) unit query ``normalise((1 - w) s + w t)``."""
    w = check_text_weight(text_weight)
    s = np.asarray(sketch, dtype=np.float64).reshape(-1)
    t = np.asarray(text, dtype=np.float64).reshape(-1)
    if s.shape != t.shape:
        raise ValueError(f"sketch and text vectors differ in size: {s.shape} vs {t.shape}")
    mixed = (1.0 - w) * s + w * t
    norm = np.linalg.norm(mixed)
    if not np.isfinite(norm) or norm < 1e-6:
        raise ValueError("the sketch and the words point in opposite directions and cancel out: "
                         "move the text weight towards either end")
    return np.ascontiguousarray((mixed / norm)[None], dtype=np.float32)


def check_text_weight(text_weight: float) -> float:
    try:
        w = float(text_weight)
    except (TypeError, ValueError):
        raise ValueError(f"text weight must be a number from 0 to 1, got {text_weight!r}") from None
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"text weight must be from 0 (sketch only) to 1 (words only), got {text_weight!r}")
    return w


def sketch_key(image: Image.Image) -> str:
    """A digest of an RGB image's pixels (and size): equal drawings give equal keys."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class Searcher:
    """A model plus a gallery index: ``search(sketch, mode, k, text=..., text_weight=...)``,
    ``search_like(photo, mode, k)``, ``search_photo(image, mode, k)``, each ``-> [SearchResult]``.

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
        # (scope, sketch_key) (or "photo:" + key for an uploaded photo) -> {model.encoder_key: (1, D)},
        # least recently used first.
        self._cache: OrderedDict[tuple[str, str], dict[tuple, np.ndarray]] = OrderedDict()
        self.cache_scope: Callable[[], str | None] = _shared_scope
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
        """Canvas value or sketch image -> (1, D) float32 unit vector, cached per encoder for the last drawings.

        Raises ``EmptySketchError`` when nothing is drawn, ``ValueError``/``TypeError`` for a value that
        is not a readable image.
        """
        self._check_mode(mode)
        image = canvas_to_image(sketch)  # (H, W) RGB on white
        return self._cached(sketch_key(image), self.model.encoder_key(mode, "sketch"),
                            lambda: self.model.encode_sketches([image], mode))

    def _check_mode(self, mode: str) -> None:
        if mode not in self.model.modes:
            raise ValueError(f"unknown mode {mode!r}; choose one of {self.model.modes}")

    def set_cache_scope(self, scope: Callable[[], str | None]) -> None:
        """Key this searcher's caches, and its model's word cache, by ``scope()`` (see the module doc)."""
        self.cache_scope = scope
        tower = getattr(self.model, "text_tower", None)
        if tower is not None:
            tower.cache_scope = scope

    def _cached(self, key: str, encoder: tuple, encode) -> np.ndarray:
        scope = self.cache_scope()
        if scope is None:  # no caching for this request
            self.encode_calls += 1
            return np.ascontiguousarray(encode(), dtype="float32")
        key = (scope, key)
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
                if encoder in entry:
                    return entry[encoder]
        # Encode outside the lock: another request may run its own encoder meanwhile.
        vector = np.ascontiguousarray(encode(), dtype="float32")  # (1, D)
        with self._lock:
            self.encode_calls += 1
            self._cache.setdefault(key, {})[encoder] = vector
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    @property
    def supports_text(self) -> bool:
        """Whether word queries work: the model was loaded with its text tower."""
        return getattr(self.model, "text_tower", None) is not None

    def text_query(self, text: str) -> TextQuery:
        """What the text tower reads for ``text`` (for a truncation note). Raises ``TextQueryError``."""
        tower = getattr(self.model, "text_tower", None)
        if tower is None:
            raise TextQueryError(NO_TEXT_TOWER)
        return tower.query(text)

    def search(self, sketch: Any = None, mode: str = "category", k: int | None = None, *,
               text: str | None = None, text_weight: float = DEFAULT_TEXT_WEIGHT) -> list[SearchResult]:
        """The ``k`` (default ``default_k``) gallery photos closest to the query in ``mode``, best first.

        The query is the sketch, the words (``text``), or both fused with ``text_weight`` (see the module
        doc). A blank or missing sketch with words is a words-only search. ``text`` None or blank: the
        sketch alone (``EmptySketchError`` when nothing is drawn either). Raises ``TextQueryError`` for
        words that cannot be searched (too long, or no text tower), ``ValueError`` for a bad weight.
        """
        k = self._check_k(k)
        self._check_mode(mode)
        if text is not None and not isinstance(text, str):
            raise TextQueryError(f"the words to search with must be text, got {type(text).__name__}")
        if text is None or not text.strip():  # the sketch alone, as before words existed
            try:
                query = self.embed(sketch, mode)  # checks the sketch first: a blank canvas beats an empty gallery
            except EmptySketchError as error:
                if text is None:
                    raise
                raise EmptySketchError("nothing to search for: draw something or type a few words") from error
            return self._ranked(query, mode, k)
        w = check_text_weight(text_weight)
        text_vector = self.model.encode_text(text)  # checks the words before any search
        sketch_vector = None
        if w < 1.0 and sketch is not None:
            try:
                sketch_vector = self.embed(sketch, mode)[0]
            except EmptySketchError:
                sketch_vector = None  # nothing drawn: the words alone
        query = text_vector[None] if sketch_vector is None else fuse(sketch_vector, text_vector, w)
        return self._ranked(query, mode, k)

    def search_like(self, photo: int | str, mode: str = "category", k: int | None = None, *,
                    text: str | None = None, text_weight: float = DEFAULT_TEXT_WEIGHT) -> list[SearchResult]:
        """"More like this": the photos closest to gallery photo ``photo`` (its position in the index or
        its relpath), from its stored vector (nothing is re-encoded). The photo itself comes first.

        With words (``text``), the photo's vector and the words' are fused as a sketch's are, and the
        ranking is that of the fused query (the photo itself no longer comes first by rule)."""
        k = self._check_k(k)
        self._check_mode(mode)
        index = self._require_index()
        i = index.id_of(photo) if isinstance(photo, str) else int(photo)
        if not 0 <= i < len(index):
            raise ValueError(f"no photo {photo!r} in the gallery index ({len(index)} photos)")
        query = np.ascontiguousarray(index.vectors(mode)[i][None], dtype=np.float32)  # (1, D)
        if text is not None and text.strip():
            return self._ranked(self._with_words(query, text, text_weight), mode, k)
        scores, ids = index.search(query, mode, min(k + 1, len(index)))  # (1, k + 1): room for the photo itself
        pairs = [(float(np.dot(query[0], query[0])), i)]
        pairs += [(float(sc), int(j)) for sc, j in zip(scores[0], ids[0]) if j >= 0 and j != i]  # noqa: B905
        return [self._result(index, j, sc, rank) for rank, (sc, j) in enumerate(pairs[:k], start=1)]

    def search_photo(self, image: Any, mode: str = "category", k: int | None = None, *,
                     text: str | None = None, text_weight: float = DEFAULT_TEXT_WEIGHT) -> list[SearchResult]:
        """An uploaded photo (path, bytes, file object or PIL image) as the query, encoded as the gallery's
        photos are; with words, fused with them as a sketch is. Raises ``ImageLoadError`` (a
        ``ValueError``) for a file that is not a usable image."""
        k = self._check_k(k)
        self._check_mode(mode)
        # Decoded as the index build decodes (upright RGB, size-checked, JPEGs drafted near the model's size),
        # so a gallery photo uploaded again gets its stored vector back.
        photo = load_photo(image, self.model.preprocess.max_image_pixels, draft_size=self.model.image_size,
                           max_decoded_pixels=MAX_QUERY_PIXELS)
        key = "photo:" + sketch_key(photo)
        query = self._cached(key, self.model.encoder_key(mode, "photo"), lambda: self.model.encode_photos([photo], mode))
        if text is not None and text.strip():
            query = self._with_words(query, text, text_weight)
        return self._ranked(query, mode, k)

    def _with_words(self, query: np.ndarray, text: str, text_weight: float) -> np.ndarray:
        """A (1, D) photo query fused with the words, as a sketch is (``fuse``). Raises ``TextQueryError``."""
        w = check_text_weight(text_weight)
        return fuse(query[0], self.model.encode_text(text), w)

    # -- ranking ----------------------------------------------------------------------------------

    def _check_k(self, k: int | None) -> int:
        k = self.default_k if k is None else int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        return k

    def _require_index(self) -> GalleryIndex:
        index = self.index
        if index is None or len(index) == 0:
            raise EmptyGalleryError(
                "the gallery is empty: start the app with --gallery DIR (a folder of photos, one "
                f"subfolder per category) or set {env_var('gallery')}"
            )
        return index

    def _ranked(self, query: np.ndarray, mode: str, k: int) -> list[SearchResult]:
        index = self._require_index()
        scores, ids = index.search(query, mode, min(k, len(index)))  # (1, k), (1, k)
        results = []
        for score, i in zip(scores[0], ids[0]):  # noqa: B905
            if i < 0:  # faiss pads with -1 when fewer than k are found
                continue
            results.append(self._result(index, int(i), float(score), len(results) + 1))
        return results

    @staticmethod
    def _result(index: GalleryIndex, i: int, score: float, rank: int) -> SearchResult:
        photo = index.photos[i]
        return SearchResult(index.path_of(i), photo.relpath, photo.label, score, rank)
