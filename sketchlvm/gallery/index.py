"""The searchable gallery index: photos, their unit vectors per mode, and a faiss index over them.

``open_gallery_index`` loads what a build committed (a finished build or the progress of an unfinished
one) without scanning the folder, and refuses an index made under another model identity.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from sketchlvm.config import IndexConfig
from sketchlvm.gallery.scan import Photo
from sketchlvm.gallery.store import (
    _GATHER_BLOCK,
    _open_stores,
    _store_vectors,
    load_manifest,
    plain_identity,
    read_faiss,
)

if TYPE_CHECKING:
    from sketchlvm.model.factory import SketchLVM

log = logging.getLogger(__name__)

RECALL_K = 10


@dataclass
class BuildReport:
    """What one build did to the index (kept with the index it produced)."""

    added: int = 0
    updated: int = 0  # re-embedded: the file changed, or the model changed for some mode
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)
    postponed: int = 0  # files changed too recently to be complete (``min_age_s``): left for a later build
    recheck_at: float | None = None  # time.time() when the youngest postponed file is old enough


class StaleIndexError(RuntimeError):
    """The index was built under another model identity; the message names the rebuild command."""


# ---------------------------------------------------------------------------------------------
# faiss


def _flat_info() -> dict:
    return {"kind": "IndexFlatIP", "exact": True, "params": {}, "recall_at_10": 1.0, "file": None}


def _recall(exact_scores: np.ndarray, exact_ids: np.ndarray, scores: np.ndarray, ids: np.ndarray) -> float:
    """recall@k, counting a result whose score ties the k-th exact score (within float error) as a hit."""
    hits = 0
    for row in range(len(ids)):
        truth = set(exact_ids[row].tolist())
        kth = exact_scores[row, -1]
        for j, i in enumerate(ids[row]):
            hits += i >= 0 and (i in truth or scores[row, j] >= kth - 1e-6)
    return hits / max(1, ids.size)


def build_search_index(vectors: np.ndarray, config: IndexConfig | None = None) -> tuple[faiss.Index, dict]:
    """The index the library uses for (N, D) unit ``vectors``, and a JSON description of it.

    Exact ``IndexFlatIP`` up to ``config.exact_max`` vectors. Above: ``IndexHNSWFlat`` (inner
    product), with efSearch doubled from ``hnsw_ef_search`` until recall@10 against exact search,
    measured with ``recall_queries`` stored vectors as queries, reaches ``recall_target``. If
    ``hnsw_ef_search_max`` cannot reach it, the exact index is returned (the attempt is recorded).
    """
    config = config or IndexConfig()
    n, d = vectors.shape
    if n <= config.exact_max:
        index = faiss.IndexFlatIP(d)
        if n:
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return index, _flat_info()
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = config.hnsw_ef_construction
    for lo in range(0, n, _GATHER_BLOCK):
        index.add(np.ascontiguousarray(vectors[lo : lo + _GATHER_BLOCK], dtype=np.float32))
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n, size=min(config.recall_queries, n), replace=False))
    queries = np.ascontiguousarray(vectors[sample], dtype=np.float32)
    k = min(RECALL_K, n)
    exact_scores, exact_ids = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    ef, tried = max(config.hnsw_ef_search, k), []
    while True:
        index.hnsw.efSearch = ef
        scores, ids = index.search(queries, k)
        recall = _recall(exact_scores, exact_ids, scores, ids)
        tried.append([ef, round(recall, 5)])
        if recall >= config.recall_target or ef >= config.hnsw_ef_search_max:
            break
        ef = min(2 * ef, config.hnsw_ef_search_max)
    params = {"M": config.hnsw_m, "efConstruction": config.hnsw_ef_construction, "efSearch": ef}
    info = {
        "kind": f"HNSW{config.hnsw_m},Flat",
        "exact": False,
        "params": params,
        "recall_at_10": recall,
        "recall_queries": len(sample),
        "ef_search_tried": tried,
        "build_seconds": round(build_s, 3),
        "file": None,
    }
    if recall < config.recall_target:
        log.warning(
            "HNSW recall@10 %.4f < target %.2f even at efSearch %d: keeping exact search",
            recall, config.recall_target, ef,
        )
        flat, flat_info = build_search_index(vectors, IndexConfig(exact_max=n))
        return flat, {**flat_info, "approximate_rejected": info}
    log.info("HNSW index over %d vectors: efSearch %d gives recall@10 %.4f", n, ef, recall)
    return index, info



# ---------------------------------------------------------------------------------------------
# The loaded index


class GalleryIndex:
    """A loaded gallery: photos, their vectors per mode (memory-mapped) and the faiss indexes."""

    def __init__(self, root: Path, cache_dir: Path, manifest: dict, vectors: dict[str, np.ndarray],
                 report: BuildReport | None = None):
        self.root = Path(root)
        self.cache_dir = Path(cache_dir)
        self.manifest = manifest
        self.report = report
        cols = manifest["photos"]
        self.photos = [Photo(r, lab) for r, lab in zip(cols["relpath"], cols["label"])]
        self._vectors = vectors  # embedding key -> (N, D)
        self._modes = {m: info["embedding"] for m, info in manifest["modes"].items()}
        self._indexes: dict[str, faiss.Index] = {}
        self._lock = threading.Lock()
        self._ids: dict[str, int] | None = None  # relpath -> position, built on first use

    def __len__(self) -> int:
        return len(self.photos)

    def __repr__(self) -> str:
        return f"GalleryIndex({str(self.root)!r}, {len(self)} photos, modes={self.modes})"

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self._modes)

    @property
    def complete(self) -> bool:
        """False while a build has been interrupted: some photos are not indexed yet."""
        return bool(self.manifest.get("complete"))

    def path_of(self, i: int) -> Path:
        return self.root / self.photos[i].relpath

    def id_of(self, relpath: str) -> int:
        """The position of the photo at ``relpath`` (as in ``photos``); ``KeyError`` naming it if absent."""
        if self._ids is None:
            self._ids = {p.relpath: i for i, p in enumerate(self.photos)}
        try:
            return self._ids[relpath]
        except KeyError:
            raise KeyError(f"no photo {relpath!r} in the gallery index of {self.root}") from None

    def vectors(self, mode: str) -> np.ndarray:
        """(N, D) float32 unit vectors of ``mode``, row i = photo i (read-only)."""
        return self._vectors[self._key(mode)]

    def _key(self, mode: str) -> str:
        if mode not in self._modes:
            raise ValueError(f"unknown mode {mode!r}; this index has {self.modes}")
        return self._modes[mode]

    def _index(self, mode: str) -> faiss.Index:
        key = self._key(mode)
        with self._lock:
            if key not in self._indexes:
                info = self.manifest["modes"][mode]["index"]
                if info.get("file"):
                    index = read_faiss(self.cache_dir / info["file"])
                    index.hnsw.efSearch = int(info["params"]["efSearch"])
                else:
                    index = faiss.IndexFlatIP(self.vectors(mode).shape[1])
                    index.add(np.ascontiguousarray(self.vectors(mode)))
                self._indexes[key] = index
            return self._indexes[key]

    def search(self, queries: np.ndarray, mode: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, D) unit queries -> scores (n, k) float32 (inner product, descending), ids (n, k) int64.

        ``k`` is clipped to the gallery size; an empty gallery gives (n, 0) arrays.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        vectors = self.vectors(mode)
        if q.ndim != 2 or (len(self) and q.shape[1] != vectors.shape[1]):
            raise ValueError(f"queries must be (n, {vectors.shape[1]}), got shape {np.shape(queries)}")
        k = max(0, min(int(k), len(self)))
        if k == 0 or len(q) == 0:
            return np.empty((len(q), k), np.float32), np.empty((len(q), k), np.int64)
        scores, ids = self._index(mode).search(q, k)
        missing = (ids < 0).any(axis=1)
        if missing.any():  # HNSW may come back short of k: answer those rows exactly
            scores[missing], ids[missing] = faiss.knn(q[missing], vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        return scores, ids.astype(np.int64, copy=False)


def rebuild_command(root: str | Path, model: SketchLVM) -> str:
    """The ``python -m sketchlvm index build`` command that re-embeds ``root`` with ``model``: its own model flags,
    so the suggestion rebuilds for the model that is running, not the default one."""
    import shlex

    weights = model.weights
    pretrained = "none" if weights.kind == "random" else weights.value
    parts = ["python", "-m", "sketchlvm", "index", "build", str(root), "--model", model.arch, "--pretrained", str(pretrained)]
    checkpoint = getattr(model, "checkpoint", None)
    if checkpoint is not None and getattr(checkpoint, "path", None) is not None:
        parts += ["--checkpoint", str(checkpoint.path)]
    return " ".join(shlex.quote(part) for part in parts)


def _check_identity(manifest: dict, model: SketchLVM, cache: Path) -> None:
    root = manifest.get("root", "DIR")
    fix = f"rebuild it with: {rebuild_command(root, model)} (only the changed modes are re-embedded)"
    for mode in model.modes:
        if mode not in manifest["modes"]:
            raise StaleIndexError(f"the gallery index in {cache} has no {mode!r} embeddings; {fix}")
        want, have = plain_identity(model.identity(mode)), manifest["modes"][mode]["identity"]
        if want != have:
            diff = ", ".join(f"{k}: index {have.get(k)!r} vs model {want.get(k)!r}"
                             for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k))
            raise StaleIndexError(f"the gallery index in {cache} was built with another model for mode {mode!r} "
                                  f"({diff}); {fix}")


def open_gallery_index(cache_dir: str | Path, model: SketchLVM | None, partial_ok: bool = False) -> GalleryIndex:
    """Load the index in ``cache_dir`` without scanning the folder.

    Raises ``FileNotFoundError`` when there is none and ``StaleIndexError`` when it was built
    under another model identity (``model=None`` skips that check, for inspection only). An unfinished
    build's index is logged as a warning, unless ``partial_ok`` (a background build is under way).
    """
    cache = Path(cache_dir).expanduser().resolve()
    for attempt in range(3):
        manifest = load_manifest(cache)
        if model is not None:
            _check_identity(manifest, model, cache)
        try:
            stores = _open_stores(cache, manifest)
            break
        except FileNotFoundError:
            # A concurrent build may have committed and cleaned up between our two reads: retry.
            if attempt == 2 or load_manifest(cache).get("generation") == manifest.get("generation"):
                raise
    vectors = {
        key: _store_vectors(stores[key], emb["rows"], emb["dim"]) for key, emb in manifest["embeddings"].items()
    }
    if not manifest.get("complete"):
        log.log(logging.DEBUG if partial_ok else logging.WARNING,
                "the gallery index in %s is from an unfinished build (%d photos so far); run the build again "
                "to finish it", cache, len(manifest["photos"]["relpath"]))
    return GalleryIndex(Path(manifest["root"]), cache, manifest, vectors)


