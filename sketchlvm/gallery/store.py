"""Gallery index files on disk: atomic writes, the manifest, and the vector stores it names.

Cache folder layout (one per gallery; default ``galleries/<folder>-<hash>/``)::

    manifest.json               what is indexed (written last, atomically); see ``index_build``
    skipped.json                files that could not be used, with the reason
    vectors-<key>-g<gen>.npy    (N, D) float32 unit vectors, row i = photo i of the manifest
    chunk-<key>-g<gen>.npy      vectors committed by a build that has not finished yet
    hnsw-<key>-g<gen>.faiss     approximate index, only above ``IndexConfig.exact_max`` photos
    build.lock                  flock held by the running build
    thumbnails/<digest>.webp    small copy of each photo for the results (sketchlvm/gallery/thumbnails.py)

``<key>`` names one embedding: modes whose model identity is equal apart from ``mode`` (zero-shot
CLIP has no prompts) share it, so each photo is encoded once. ``<gen>`` is the manifest generation
that first referenced the file.

Atomicity: a data file is written under a new name (tmp + fsync + ``os.replace``) and never rewritten;
the manifest is replaced last; files that no manifest references are deleted only after the manifest
naming their successors is in place (and at the start of the next build). A build killed at any point
leaves the previous manifest and every file it names intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np

log = logging.getLogger(__name__)

FORMAT = "sketchlvm-gallery-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SKIPPED = "skipped.json"
LOCK = "build.lock"
_DATA_FILE = re.compile(r"^(vectors|chunk|hnsw)-[0-9a-f]+-g\d+\.(npy|faiss)$")
_GATHER_BLOCK = 65536


# ---------------------------------------------------------------------------------------------
# Atomic writes and cleanup


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


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that a reader (or a crash) sees the old file or the new one, never half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    _replace_synced(tmp, path)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """``array`` as float32 .npy, replaced atomically as ``atomic_write_text`` does."""
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


def read_faiss(path: Path) -> faiss.Index:
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



# ---------------------------------------------------------------------------------------------
# The manifest


def load_manifest(cache_dir: str | Path) -> dict:
    """The manifest of the index in ``cache_dir`` (no model needed: for ``info`` and tools)."""
    path = Path(cache_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no gallery index in {str(cache_dir)!r} (no {MANIFEST}); "
            "build one with: python -m sketchlvm index build DIR"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}; rebuild the index with: python -m sketchlvm index build DIR") from e
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
        raise ValueError(f"{path}: {problem}; rebuild the index with: python -m sketchlvm index build {root}")


def plain_identity(identity: dict) -> dict:
    """JSON round trip, so identities compare equal before and after a manifest (tuples -> lists)."""
    return json.loads(json.dumps(identity, sort_keys=True))


def shared_identity(identity: dict) -> dict:
    """A mode's identity without the mode: equal for modes whose photo embeddings are equal."""
    return {k: v for k, v in identity.items() if k != "mode"}


def embedding_key(identity: dict) -> str:
    """The short key a mode's vectors are stored under: equal for modes whose photo embeddings are equal."""
    return hashlib.sha256(json.dumps(shared_identity(identity), sort_keys=True).encode()).hexdigest()[:12]



# ---------------------------------------------------------------------------------------------
# Vector stores


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


