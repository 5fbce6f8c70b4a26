"""Gallery index: every photo under a folder -> unit vectors per mode -> faiss, plus a JSON manifest.

Cache folder layout (one per gallery; default ``galleries/<folder>-<hash>/``)::

    manifest.json               what is indexed (written last, atomically); see ``_Build._commit``
    skipped.json                files that could not be used, with the reason
    vectors-<key>-g<gen>.npy    (N, D) float32 unit vectors, row i = photo i of the manifest
    chunk-<key>-g<gen>.npy      vectors committed by a build that has not finished yet
    hnsw-<key>-g<gen>.faiss     approximate index, only above ``IndexConfig.exact_max`` photos
    build.lock                  flock held by the running build
    thumbnails/<digest>.webp    small copy of each photo for the results (sketchlvm/thumbnails.py)

``<key>`` names one embedding: modes whose model identity is equal apart from ``mode`` (zero-shot
CLIP has no prompts) share it, so each photo is encoded once. ``<gen>`` is the manifest generation
that first referenced the file.

Atomicity: a data file is written under a new name (tmp + fsync + ``os.replace``) and never rewritten;
the manifest is replaced last; files that no manifest references are deleted only after the manifest
naming their successors is in place (and at the start of the next build). A build killed at any point
leaves the previous manifest and every file it names intact. Progress is committed every
``IndexConfig.commit_every`` photos (and on an exception), so the next build resumes from there;
the build that completes merges the chunks into one file per embedding and builds the faiss index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .config import PACKAGE_DIR, IndexConfig
from .thumbnails import sync_thumbnails
from .transforms import ImageLoadError, load_photo

if TYPE_CHECKING:
    from .model import SketchLVM

log = logging.getLogger(__name__)

FORMAT = "sketchlvm-gallery-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SKIPPED = "skipped.json"
LOCK = "build.lock"
GALLERIES_ENV = "SKETCHLVM_GALLERIES_DIR"
RECALL_K = 10
_DATA_FILE = re.compile(r"^(vectors|chunk|hnsw)-[0-9a-f]+-g\d+\.(npy|faiss)$")
_GATHER_BLOCK = 65536


@dataclass
class Photo:
    relpath: str  # POSIX path relative to the gallery folder
    label: str | None  # first-level subfolder name; None for photos at the top level


@dataclass
class BuildReport:
    added: int = 0
    updated: int = 0  # re-embedded: the file changed, or the model changed for some mode
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)


class StaleIndexError(RuntimeError):
    """The index was built under another model identity; the message names the rebuild command."""


# Vectors embedded elsewhere (``sketchlvm.cluster`` merges Ray shards through it), offered to a build:
# (relpath, size, mtime_ns) -> {embedding key: (D,) float32 unit vector}, or the reason the file is
# unusable, or None when it has nothing for that version of the file.
Precomputed = Callable[[str, int, int], "dict[str, np.ndarray] | str | None"]
_IMPORT_COMMIT_EVERY = 250_000  # taking precomputed vectors is cheap to redo: commit only to bound memory


# ---------------------------------------------------------------------------------------------
# Locations


def galleries_home(galleries_dir: str | Path | None = None) -> Path:
    """Where gallery caches live: the argument, else $SKETCHLVM_GALLERIES_DIR, else the project's
    ``galleries/`` (``~/.cache/sketchlvm/galleries`` when installed outside a checkout)."""
    if galleries_dir:
        return Path(galleries_dir).expanduser()
    if os.environ.get(GALLERIES_ENV):
        return Path(os.environ[GALLERIES_ENV]).expanduser()
    project = PACKAGE_DIR.parent
    if (project / "pyproject.toml").is_file():
        return project / "galleries"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "sketchlvm" / "galleries"


def default_cache_dir(gallery_dir: Path, galleries_dir: Path | None = None) -> Path:
    """``<galleries>/<folder-name>-<8 hex of sha1(absolute path)>``: readable and unique per folder."""
    path = Path(gallery_dir).expanduser().resolve()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", path.name).strip("._") or "root"
    digest = hashlib.sha1(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return galleries_home(galleries_dir) / f"{name}-{digest}"


def latest_gallery(galleries_dir: Path | None = None) -> Path | None:
    """The source folder of the most recently built gallery that still exists, or None."""
    home = galleries_home(galleries_dir)
    if not home.is_dir():
        return None
    candidates = []
    for manifest in home.glob(f"*/{MANIFEST}"):
        with contextlib.suppress(OSError):
            candidates.append((manifest.stat().st_mtime_ns, manifest))
    for _, manifest in sorted(candidates, reverse=True):
        try:
            root = Path(json.loads(manifest.read_text())["root"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if root.is_dir():
            return root
    return None


# ---------------------------------------------------------------------------------------------
# Scanning


@dataclass
class _Entry:
    relpath: str
    label: str | None
    size: int
    mtime_ns: int

    @property
    def stat(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)


def scan_gallery(
    root: Path, extensions: Sequence[str] = IndexConfig().extensions, exclude: Sequence[Path] = ()
) -> tuple[list[_Entry], list[tuple[str, str]]]:
    """Every image file under ``root`` sorted by relative path, plus (relpath, reason) it could not stat.

    Hidden files and folders (leading dot) and the folders in ``exclude`` are left out; folder
    symlinks are not followed (no loops), file symlinks are.
    """
    root = Path(root).resolve()
    excluded = {Path(p).resolve() for p in exclude}
    wanted = {e.lower() for e in extensions}
    entries: list[_Entry] = []
    problems: list[tuple[str, str]] = []

    def rel(path: str | Path) -> str:
        return Path(os.path.relpath(path, root)).as_posix()

    def on_error(error: OSError) -> None:
        problems.append((rel(error.filename), f"cannot read folder: {error.strerror or error}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and Path(dirpath, d).resolve() not in excluded
        )
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in wanted:
                continue
            path = os.path.join(dirpath, name)
            relpath = rel(path)
            try:
                st = os.stat(path)
            except OSError as e:
                problems.append((relpath, f"cannot read file: {e.strerror or e}"))
                continue
            if not os.path.isfile(path):
                problems.append((relpath, "not a regular file"))
                continue
            parts = relpath.split("/")
            entries.append(_Entry(relpath, parts[0] if len(parts) > 1 else None, st.st_size, st.st_mtime_ns))
    entries.sort(key=lambda e: e.relpath)
    return entries, sorted(problems)


# ---------------------------------------------------------------------------------------------
# Files: atomic writes, cleanup, manifest


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace_synced(tmp: Path, path: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    _replace_synced(tmp, path)


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array, dtype=np.float32))
    _replace_synced(tmp, path)


def _atomic_write_faiss(path: Path, index: faiss.Index) -> None:
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    _replace_synced(tmp, path)


def _referenced(manifest: dict | None) -> set[str]:
    if not manifest:
        return set()
    names = {f for emb in manifest.get("embeddings", {}).values() for f in emb.get("files", [])}
    names |= {m["index"]["file"] for m in manifest.get("modes", {}).values() if m.get("index", {}).get("file")}
    return names


def _remove_unreferenced(cache: Path, manifest: dict | None) -> None:
    """Delete our data files that ``manifest`` does not name, and leftover temporary files."""
    keep = _referenced(manifest)
    for path in cache.iterdir():
        name = path.name
        stale = (_DATA_FILE.match(name) and name not in keep) or (
            name.endswith(".tmp") and (_DATA_FILE.match(name[:-4]) or name[:-4] in (MANIFEST, SKIPPED))
        )
        if stale:
            with contextlib.suppress(OSError):
                path.unlink()
                log.debug("removed %s", path)


def load_manifest(cache_dir: str | Path) -> dict:
    """The manifest of the index in ``cache_dir`` (no model needed: for ``info`` and tools)."""
    path = Path(cache_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no gallery index in {str(cache_dir)!r} (no {MANIFEST}); "
            "build one with: python -m sketchlvm.index build DIR"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}; rebuild the index with: python -m sketchlvm.index build DIR") from e
    _check_manifest(manifest, path)
    return manifest


def _check_manifest(m: Any, path: Path) -> None:
    problem = None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        problem = "not a SketchLVM gallery manifest"
    elif m.get("version") != FORMAT_VERSION:
        problem = f"format version {m.get('version')!r}, this code reads version {FORMAT_VERSION}"
    else:
        try:
            n = len(m["photos"]["relpath"])
            if any(len(m["photos"][c]) != n for c in ("label", "size", "mtime_ns")):
                problem = "photo columns differ in length"
            for emb in m["embeddings"].values():
                if emb["rows"] is not None and len(emb["rows"]) != n:
                    problem = "embedding rows differ from the photo count"
            for mode in m["modes"].values():
                if mode["embedding"] not in m["embeddings"]:
                    problem = f"mode refers to unknown embedding {mode['embedding']!r}"
        except (KeyError, TypeError) as e:
            problem = f"missing or malformed field ({e!r})"
    if problem:
        root = m.get("root", "DIR") if isinstance(m, dict) else "DIR"
        raise ValueError(f"{path}: {problem}; rebuild the index with: python -m sketchlvm.index build {root}")


def _plain(identity: dict) -> dict:
    """JSON round trip, so identities compare equal before and after a manifest (tuples -> lists)."""
    return json.loads(json.dumps(identity, sort_keys=True))


def _shared_identity(identity: dict) -> dict:
    """A mode's identity without the mode: equal for modes whose photo embeddings are equal."""
    return {k: v for k, v in identity.items() if k != "mode"}


def _embedding_key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(_shared_identity(identity), sort_keys=True).encode()).hexdigest()[:12]


def _open_stores(cache: Path, manifest: dict) -> dict[str, list[np.ndarray]]:
    """Each embedding's files, memory-mapped, checked against the manifest."""
    stores = {}
    for key, emb in manifest["embeddings"].items():
        arrays = []
        for name in emb["files"]:
            path = cache / name
            if not path.is_file():
                raise FileNotFoundError(f"index file {path} is missing")
            arr = np.load(path, mmap_mode="r")
            if arr.dtype != np.float32 or arr.ndim != 2 or (len(arr) and arr.shape[1] != emb["dim"]):
                raise ValueError(f"index file {path} has shape {arr.shape} {arr.dtype}, expected (*, {emb['dim']})")
            arrays.append(arr)
        total = sum(len(a) for a in arrays)
        rows = emb["rows"]
        n = len(manifest["photos"]["relpath"])
        if (rows is None and total != n) or (rows is not None and rows and not 0 <= min(rows) <= max(rows) < total):
            raise ValueError(f"index files of embedding {key} hold {total} rows, the manifest needs {n}")
        stores[key] = arrays
    return stores


def _gather(sources: list[np.ndarray], rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[i] = concat(sources)[rows[i]], block by block so big memory-mapped inputs stream."""
    starts = np.cumsum([0] + [len(s) for s in sources])
    for lo in range(0, len(rows), _GATHER_BLOCK):
        r = rows[lo : lo + _GATHER_BLOCK]
        seg = np.searchsorted(starts, r, side="right") - 1
        block = out[lo : lo + len(r)]
        for s in np.unique(seg):
            mask = seg == s
            block[mask] = sources[s][r[mask] - starts[s]]
    return out


def _store_vectors(stores: list[np.ndarray], rows: list[int] | None, dim: int) -> np.ndarray:
    if rows is None and len(stores) == 1:
        return stores[0]
    rows_arr = np.arange(sum(len(s) for s in stores)) if rows is None else np.asarray(rows, dtype=np.int64)
    return _gather(stores, rows_arr, np.empty((len(rows_arr), dim), dtype=np.float32))


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


def _read_faiss(path: Path) -> faiss.Index:
    """Memory-mapped where this faiss can (IO_FLAG_MMAP_IFC maps flat codes zero-copy; IO_FLAG_MMAP
    alone still copies them in faiss 1.15), else read into memory."""
    for flag_name in ("IO_FLAG_MMAP_IFC", "IO_FLAG_MMAP"):
        flag = getattr(faiss, flag_name, None)
        if flag is not None:
            try:
                return faiss.read_index(str(path), flag | getattr(faiss, "IO_FLAG_READ_ONLY", 0))
            except RuntimeError as e:
                log.debug("faiss cannot read %s with %s: %s", path, flag_name, e)
    return faiss.read_index(str(path))


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
                    index = _read_faiss(self.cache_dir / info["file"])
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


def _check_identity(manifest: dict, model: SketchLVM, cache: Path) -> None:
    root = manifest.get("root", "DIR")
    fix = f"rebuild it with: python -m sketchlvm.index build {root} (only the changed modes are re-embedded)"
    for mode in model.modes:
        if mode not in manifest["modes"]:
            raise StaleIndexError(f"the gallery index in {cache} has no {mode!r} embeddings; {fix}")
        want, have = _plain(model.identity(mode)), manifest["modes"][mode]["identity"]
        if want != have:
            diff = ", ".join(f"{k}: index {have.get(k)!r} vs model {want.get(k)!r}"
                             for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k))
            raise StaleIndexError(f"the gallery index in {cache} was built with another model for mode {mode!r} "
                                  f"({diff}); {fix}")


def open_gallery_index(cache_dir: str | Path, model: SketchLVM | None) -> GalleryIndex:
    """Load the index in ``cache_dir`` without scanning the folder.

    Raises ``FileNotFoundError`` when there is none and ``StaleIndexError`` when it was built
    under another model identity (``model=None`` skips that check, for inspection only).
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
        log.warning("the gallery index in %s is from an unfinished build (%d photos so far); run the build again "
                    "to finish it", cache, len(manifest["photos"]["relpath"]))
    return GalleryIndex(Path(manifest["root"]), cache, manifest, vectors)


# ---------------------------------------------------------------------------------------------
# Building


@contextlib.contextmanager
def _build_lock(cache: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no protection against two concurrent builds
        yield
        return
    with open(cache / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another build is running on %s; waiting for it to finish", cache)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _decoded(paths: list[Path], decode: Callable[[Path], Any], workers: int, ahead: int) -> Iterator[Any]:
    """decode(path) for each path, in order, computed by ``workers`` threads up to ``ahead`` in advance."""
    if workers <= 0:
        yield from map(decode, paths)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sketchlvm-decode")
    try:
        todo, pending = iter(paths), deque()
        for path in todo:
            pending.append(pool.submit(decode, path))
            if len(pending) >= ahead:
                break
        while pending:
            future = pending.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(decode, nxt))
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Build:
    """One run of ``build_gallery_index``: plan from the previous manifest, embed, commit."""

    def __init__(self, root: Path, cache: Path, model: SketchLVM, config: IndexConfig,
                 progress: Callable[[int, int], None] | None, show_progress_bar: bool,
                 precomputed: Precomputed | None = None):
        self.root, self.cache, self.model, self.config = root, cache, model, config
        self.progress, self.show_progress_bar = progress, show_progress_bar
        self.precomputed = precomputed
        self.report = BuildReport()
        # Embeddings of the current model: key -> identity without "mode", and which mode encodes it.
        self.identities = {m: _plain(model.identity(m)) for m in model.modes}
        self.mode_key = {m: _embedding_key(i) for m, i in self.identities.items()}
        self.keys = list(dict.fromkeys(self.mode_key.values()))
        self.encode_mode = {k: next(m for m in model.modes if self.mode_key[m] == k) for k in self.keys}
        # Committed state: each embedding's files and arrays; per photo its stat and row per key.
        self.files: dict[str, list[str]] = {k: [] for k in self.keys}
        self.arrays: dict[str, list[np.ndarray]] = {k: [] for k in self.keys}
        self.pending: dict[str, list[np.ndarray]] = {k: [] for k in self.keys}
        self.records: dict[str, dict] = {}
        self.dim: int | None = None
        self.generation = 0
        self.prev: dict | None = None
        self.prev_skipped: dict[str, dict] = {}
        self.prev_indexed: set[str] = set()

    # -- previous state ------------------------------------------------------------------------

    def _load_previous(self) -> None:
        if not (self.cache / MANIFEST).exists():
            return
        try:
            prev = load_manifest(self.cache)
            if Path(prev["root"]) != self.root:
                log.warning("%s indexed %s, not %s: starting a new index", self.cache, prev["root"], self.root)
                return
            stores = _open_stores(self.cache, prev)
        except (OSError, ValueError) as e:
            log.warning("previous index in %s is unusable (%s): rebuilding from scratch", self.cache, e)
            return
        self.prev, self.generation = prev, int(prev.get("generation", 0))
        cols = prev["photos"]
        reusable = []
        for key in self.keys:
            emb = prev["embeddings"].get(key)
            if emb is None or emb["identity"] != _shared_identity(self.identities[self.encode_mode[key]]):
                continue
            self.files[key], self.arrays[key], self.dim = list(emb["files"]), stores[key], emb["dim"] or None
            reusable.append((key, emb["rows"]))
        changed = [m for m in self.model.modes if self.mode_key[m] not in dict(reusable)]
        if changed and cols["relpath"]:
            log.info("model identity changed for mode(s) %s: re-embedding every photo for them", changed)
        for i, relpath in enumerate(cols["relpath"]):
            rows = {key: (i if r is None else r[i]) for key, r in reusable}
            self.records[relpath] = {"label": cols["label"][i], "size": cols["size"][i],
                                     "mtime_ns": cols["mtime_ns"][i], "rows": rows}
        if prev.get("max_image_pixels") == self.model.preprocess.max_image_pixels:  # else: retry them
            self.prev_skipped = {s["relpath"]: s for s in prev.get("skipped", [])}

    # -- plan ------------------------------------------------------------------------------------

    def _plan(self) -> list[tuple[_Entry, list[str]]]:
        entries, problems = scan_gallery(self.root, self.config.extensions, exclude=[self.cache])
        self.order = [e.relpath for e in entries]
        present = set(self.order)
        prev_skipped = self.prev_skipped
        self.prev_indexed = set(self.records)
        self.records = {r: rec for r, rec in self.records.items() if r in present}  # deleted files leave
        self.skipped: dict[str, dict] = {r: {"relpath": r, "reason": why, "size": None, "mtime_ns": None}
                                         for r, why in problems}
        work = []
        for e in entries:
            old_skip = prev_skipped.get(e.relpath)
            if old_skip and (old_skip["size"], old_skip["mtime_ns"]) == e.stat:
                self.skipped[e.relpath] = old_skip  # unchanged and known to be unusable: not decoded again
                continue
            rec = self.records.get(e.relpath)
            if rec is not None and (rec["size"], rec["mtime_ns"]) == e.stat:
                need = [k for k in self.keys if k not in rec["rows"]]
            else:
                need = list(self.keys)
            if need:
                work.append((e, need))
            else:
                self.report.unchanged += 1
        return work

    # -- embed -----------------------------------------------------------------------------------

    def _decode(self, entry: _Entry) -> Any:
        """Runs in a decoding thread: file -> upright RGB (JPEGs draft-decoded near the model's size) ->
        the padded S x S image the encoder's transform makes (so resizing is off the main thread too;
        the transform leaves an S x S image as it is). A failure is returned, not raised."""
        path = self.root / entry.relpath
        try:
            image = load_photo(path, self.model.preprocess.max_image_pixels, draft_size=self.model.image_size)
            return self.model.photo_transform.to_image(image)
        except Exception as e:  # ImageLoadError, but also MemoryError & co: never abort the build
            reason = str(e) if isinstance(e, ImageLoadError) else f"{type(e).__name__}: {e}"
            prefix = f"cannot load image {str(path)!r}: "
            return ImageLoadError(reason[len(prefix):] if reason.startswith(prefix) else reason)

    def _embed(self, work: list[tuple[_Entry, list[str]]]) -> None:
        total, done, since_commit = len(work), 0, 0
        bs = max(1, self.config.batch_size)
        show = self.show_progress_bar and total > 0
        report_progress = self.progress if total else None  # nothing to embed: no (0, 0) for a UI to divide by
        if report_progress:
            report_progress(0, total)
        decoded = _decoded([e for e, _ in work], self._decode, self.config.decode_workers,
                           ahead=2 * bs + self.config.decode_workers)
        # While the bar is shown, log lines (skipped files) go through tqdm.write so they don't garble it.
        with (logging_redirect_tqdm() if show else contextlib.nullcontext()), contextlib.closing(decoded), \
                tqdm(total=total, unit="photo", desc=f"indexing {self.root.name}", mininterval=0.5,
                     dynamic_ncols=True, disable=not show) as bar:
            batch: list[tuple[_Entry, list[str], Any]] = []
            for i, ((entry, need), image) in enumerate(zip(work, decoded)):  # noqa: B905
                if isinstance(image, ImageLoadError):
                    self._fail(entry, str(image))
                    done += 1
                    bar.update(1)
                else:
                    batch.append((entry, need, image))
                if len(batch) >= bs or (i == total - 1 and batch):
                    self._encode(batch)
                    done += len(batch)
                    since_commit += len(batch)
                    bar.update(len(batch))
                    batch = []
                    if since_commit >= self.config.commit_every and done < total:
                        self._commit(complete=False)
                        since_commit = 0
                if report_progress and (not batch or i == total - 1):
                    report_progress(done, total)

    def _fail(self, entry: _Entry, reason: str) -> None:
        log.warning("skipping %s: %s", entry.relpath, reason)
        self.skipped[entry.relpath] = {"relpath": entry.relpath, "reason": reason, "size": entry.size,
                                       "mtime_ns": entry.mtime_ns}
        self.records.pop(entry.relpath, None)

    def _encode(self, batch: list[tuple[_Entry, list[str], Any]]) -> None:
        new: dict[str, np.ndarray] = {}
        for key in self.keys:  # encode everything first: a failure leaves the state untouched
            images = [image for _, need, image in batch if key in need]
            if images:
                vecs = np.ascontiguousarray(self.model.encode_photos(images, self.encode_mode[key]), dtype=np.float32)
                if vecs.ndim != 2 or len(vecs) != len(images) or (self.dim is not None and vecs.shape[1] != self.dim):
                    raise RuntimeError(f"encoder returned shape {vecs.shape} for {len(images)} photos")
                new[key] = vecs
        self._record([(entry, need) for entry, need, _ in batch], new)

    def _record(self, batch: list[tuple[_Entry, list[str]]], new: dict[str, np.ndarray]) -> None:
        """Give each photo of ``batch`` its rows in ``new`` (key -> (n, D), in batch order, for the photos
        that need that key)."""
        for vecs in new.values():
            if self.dim is not None and vecs.shape[1] != self.dim:
                raise RuntimeError(f"got {vecs.shape[1]}-dimensional vectors for an index of dimension {self.dim}")
        taken = dict.fromkeys(new, 0)
        for entry, need in batch:
            rec = self.records.get(entry.relpath)
            keep = rec["rows"] if rec is not None and (rec["size"], rec["mtime_ns"]) == entry.stat else {}
            rows = dict(keep)
            for key in need:
                rows[key] = self._rows_total(key) + taken[key]
                taken[key] += 1
            self.records[entry.relpath] = {"label": entry.label, "size": entry.size, "mtime_ns": entry.mtime_ns,
                                           "rows": rows}
            if entry.relpath in self.prev_indexed:
                self.report.updated += 1
            else:
                self.report.added += 1
        for key, vecs in new.items():
            self.pending[key].append(vecs)
            self.dim = vecs.shape[1]

    def _take_precomputed(self, work: list[tuple[_Entry, list[str]]]) -> list[tuple[_Entry, list[str]]]:
        """Record what ``self.precomputed`` has for the work (no decoding, no encoding); return the rest.

        A photo takes vectors only when every embedding key it needs is there for its current size and
        mtime; a reason marks it skipped, as a failed decode here would."""
        rest: list[tuple[_Entry, list[str]]] = []
        batch: list[tuple[_Entry, list[str]]] = []
        found: list[dict[str, np.ndarray]] = []
        since_commit = 0

        def flush() -> None:
            new = {}
            for key in self.keys:
                rows = [vecs[key] for (_, need), vecs in zip(batch, found) if key in need]  # noqa: B905
                if rows:
                    new[key] = np.ascontiguousarray(np.stack(rows), dtype=np.float32)  # (n, D)
            self._record(batch, new)
            batch.clear()
            found.clear()

        show = self.show_progress_bar and len(work) > 0
        with (logging_redirect_tqdm() if show else contextlib.nullcontext()), \
                tqdm(work, unit="photo", desc=f"importing {self.root.name}", mininterval=0.5,
                     dynamic_ncols=True, disable=not show) as bar:
            for entry, need in bar:
                vecs = self.precomputed(entry.relpath, entry.size, entry.mtime_ns)
                if isinstance(vecs, str):
                    self._fail(entry, vecs)
                elif vecs is not None and all(key in vecs for key in need):
                    batch.append((entry, need))
                    found.append(vecs)
                    since_commit += 1
                    if len(batch) >= _GATHER_BLOCK or since_commit >= _IMPORT_COMMIT_EVERY:
                        flush()
                    if since_commit >= _IMPORT_COMMIT_EVERY:
                        self._commit(complete=False)
                        since_commit = 0
                else:
                    rest.append((entry, need))
        if batch:
            flush()
        log.info("%s: took precomputed vectors for %d photos, %d left to embed", self.root,
                 len(work) - len(rest), len(rest))
        return rest

    def _rows_total(self, key: str) -> int:
        return sum(len(a) for a in self.arrays[key]) + sum(len(a) for a in self.pending[key])

    # -- commit ----------------------------------------------------------------------------------

    def _commit(self, complete: bool) -> dict:
        """Write the state as generation ``gen``: partial (chunks + row maps) or complete (one file per
        embedding, rows in folder order, faiss index). The manifest goes last."""
        gen = self.generation + 1
        if not complete:
            for key in self.keys:
                if self.pending[key]:
                    name = f"chunk-{key}-g{gen}.npy"
                    arr = np.concatenate(self.pending[key])
                    _atomic_save_npy(self.cache / name, arr)
                    self.files[key].append(name)
                    self.arrays[key].append(arr)
                    self.pending[key] = []
        order = [r for r in self.order if r in self.records and all(k in self.records[r]["rows"] for k in self.keys)]
        dim = self.dim or 0
        embeddings, indexes = {}, {}
        for key in self.keys:
            rows = np.array([self.records[r]["rows"][key] for r in order], dtype=np.int64)
            sources = self.arrays[key] + self.pending[key]
            compact = (len(sources) == 1 and not self.pending[key] and len(sources[0]) == len(rows)
                       and np.array_equal(rows, np.arange(len(rows))))
            if (complete and not compact) or not sources:
                name = f"vectors-{key}-g{gen}.npy"
                self._write_gathered(self.cache / name, sources, rows, dim)
                self.files[key], self.pending[key] = [name], []
                self.arrays[key] = [np.load(self.cache / name, mmap_mode="r")]
                for i, r in enumerate(order):
                    self.records[r]["rows"][key] = i
                compact = True
            embeddings[key] = {
                "identity": _shared_identity(self.identities[self.encode_mode[key]]),
                "dim": dim,
                "files": list(self.files[key]),
                "rows": None if compact else rows.tolist(),  # None: row i is photo i
            }
            indexes[key] = self._index_info(key, embeddings[key], len(order), gen) if complete else _flat_info()
        skipped = sorted(self.skipped.values(), key=lambda s: s["relpath"])
        modes = {m: {"identity": self.identities[m], "embedding": self.mode_key[m], "index": indexes[self.mode_key[m]]}
                 for m in self.model.modes}
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "generation": gen,
            "complete": complete,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "root": str(self.root),
            "count": len(order),
            "dim": dim,
            "photos": {
                "relpath": order,
                "label": [self.records[r]["label"] for r in order],
                "size": [self.records[r]["size"] for r in order],
                "mtime_ns": [self.records[r]["mtime_ns"] for r in order],
            },
            "embeddings": embeddings,
            "modes": modes,
            "skipped": skipped,
            "max_image_pixels": self.model.preprocess.max_image_pixels,
            "config": asdict(self.config),
        }
        manifest["bytes_per_photo"] = self._bytes_per_photo(manifest)
        _atomic_write_text(self.cache / SKIPPED, json.dumps([{"relpath": s["relpath"], "reason": s["reason"]}
                                                             for s in skipped], indent=1))
        _atomic_write_text(self.cache / MANIFEST, json.dumps(manifest, separators=(",", ":")))
        self.generation = gen
        _remove_unreferenced(self.cache, manifest)
        log.debug("committed generation %d: %d photos%s", gen, len(order), "" if complete else " (partial)")
        return manifest

    def _write_gathered(self, path: Path, sources: list[np.ndarray], rows: np.ndarray, dim: int) -> None:
        if len(rows) == 0:
            _atomic_save_npy(path, np.zeros((0, dim), np.float32))
            return
        tmp = path.with_name(path.name + ".tmp")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(rows), dim))
        _gather(sources, rows, out)
        out.flush()
        del out
        _replace_synced(tmp, path)

    def _index_info(self, key: str, embedding: dict, n: int, gen: int) -> dict:
        if n <= self.config.exact_max:
            return _flat_info()
        if self.prev:  # same vectors file and same HNSW settings: the previous graph is still right
            for mode in self.prev["modes"].values():
                old, emb = mode["index"], self.prev["embeddings"].get(mode["embedding"], {})
                if (mode["embedding"] == key and old.get("file") and emb.get("files") == embedding["files"]
                        and old["params"].get("M") == self.config.hnsw_m
                        and old["params"].get("efConstruction") == self.config.hnsw_ef_construction
                        and old["recall_at_10"] >= self.config.recall_target):
                    return old
        vectors = self.arrays[key][0]
        index, info = build_search_index(vectors, self.config)
        if not info["exact"]:
            info["file"] = f"hnsw-{key}-g{gen}.faiss"
            _atomic_write_faiss(self.cache / info["file"], index)
        return info

    def _bytes_per_photo(self, manifest: dict) -> dict:
        n = max(1, manifest["count"])
        vec = sum((self.cache / f).stat().st_size for e in manifest["embeddings"].values() for f in e["files"])
        idx_files = {m["index"]["file"] for m in manifest["modes"].values() if m["index"]["file"]}
        idx = sum((self.cache / f).stat().st_size for f in idx_files)
        return {"vectors": round(vec / n, 1), "faiss": round(idx / n, 1), "total": round((vec + idx) / n, 1)}

    # -- run -------------------------------------------------------------------------------------

    def run(self) -> GalleryIndex:
        t0 = time.perf_counter()
        self._load_previous()
        _remove_unreferenced(self.cache, self.prev)
        work = self._plan()
        log.info("%s: %d photos to embed, %d unchanged", self.root, len(work), self.report.unchanged)
        try:
            if self.precomputed is not None:
                work = self._take_precomputed(work)
            self._embed(work)
        except BaseException:
            if any(self.pending.values()):
                log.warning("build interrupted: saving the %d photos embedded so far",
                            sum(len(a) for p in self.pending.values() for a in p))
                try:
                    self._commit(complete=False)
                except Exception:
                    log.exception("could not save progress; the last saved index is untouched")
            raise
        manifest = self._commit(complete=True)
        # --- thumbnails (sketchlvm/thumbnails.py): make missing ones, drop those of removed photos ---
        sync_thumbnails(self.cache, manifest, workers=max(1, self.config.decode_workers))
        # --- end thumbnails ---
        final = set(manifest["photos"]["relpath"])
        self.report.removed = len(self.prev_indexed - final)
        self.report.skipped = [(s["relpath"], s["reason"]) for s in manifest["skipped"]]
        r = self.report
        log.info("indexed %s in %.1f s: %d photos (%d added, %d updated, %d removed, %d unchanged, %d skipped)",
                 self.root, time.perf_counter() - t0, len(final), r.added, r.updated, r.removed, r.unchanged,
                 len(r.skipped))
        vectors = {k: _store_vectors(self.arrays[k], None, self.dim or 0) for k in self.keys}
        return GalleryIndex(self.root, self.cache, manifest, vectors, self.report)


def build_gallery_index(
    gallery_dir: str | Path,
    model: SketchLVM,
    cache_dir: str | Path | None = None,
    config: IndexConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    show_progress_bar: bool = True,
    precomputed: Precomputed | None = None,
) -> GalleryIndex:
    """Index every photo under ``gallery_dir`` for each of ``model.modes``, incrementally.

    Only new or changed (size / mtime) files are embedded, deleted files leave, a mode whose model
    identity changed is re-embedded. Unusable files are listed in ``report.skipped``. ``progress``
    is called with (done, total) photos to embed, from (0, total) to (total, total); not at all when
    nothing needs embedding. Safe to interrupt at any point (exception or kill): the next build resumes.
    ``precomputed``: vectors embedded elsewhere (see ``Precomputed``; ``sketchlvm.cluster``), taken
    instead of embedding a photo when they match its size and mtime; the caller vouches that they come
    from ``model`` (the keys are its embedding keys).
    """
    config = config or IndexConfig()
    root = Path(gallery_dir).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"gallery folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"gallery {str(root)!r} is not a folder")
    root = root.resolve()
    cache = Path(cache_dir).expanduser().resolve() if cache_dir else default_cache_dir(root)
    cache.mkdir(parents=True, exist_ok=True)
    with _build_lock(cache):
        return _Build(root, cache, model, config, progress, show_progress_bar, precomputed).run()


if __name__ == "__main__":
    from sketchlvm.index_cli import main

    main()
