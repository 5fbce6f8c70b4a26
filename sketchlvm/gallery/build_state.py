"""What a build holds between commits, and how it becomes the next manifest generation on disk.

Per embedding key: the files already committed (memory-mapped) and the vectors embedded since (in
memory, ``pending``); per photo: label, size, mtime and its row in each embedding. A commit is partial
(the pending vectors as a new chunk file, row maps in the manifest) or complete (one file per
embedding, rows in folder order, and the faiss index). The manifest is written last (``index_store``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sketchlvm.config import IndexConfig
from sketchlvm.gallery.index import _flat_info, build_search_index
from sketchlvm.gallery.scan import PhotoFile
from sketchlvm.gallery.store import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SKIPPED,
    _atomic_write_faiss,
    _gather,
    _open_stores,
    _remove_unreferenced,
    _replace_synced,
    atomic_save_npy,
    atomic_write_text,
    embedding_key,
    load_manifest,
    plain_identity,
    shared_identity,
)

if TYPE_CHECKING:
    from sketchlvm.model.factory import SketchLVM

log = logging.getLogger(__name__)


class BuildState:
    """The photos and vectors of one build of the index in ``cache`` (for ``root``), committed or not."""

    def __init__(self, root: Path, cache: Path, model: SketchLVM, config: IndexConfig):
        self.root, self.cache, self.model, self.config = root, cache, model, config
        # Embeddings of the current model: key -> identity without "mode", and which mode encodes it.
        self.identities = {m: plain_identity(model.identity(m)) for m in model.modes}
        self.mode_key = {m: embedding_key(i) for m, i in self.identities.items()}
        self.keys = list(dict.fromkeys(self.mode_key.values()))
        self.encode_mode = {k: next(m for m in model.modes if self.mode_key[m] == k) for k in self.keys}
        # Each embedding's committed files and their arrays, and the vectors embedded since.
        self.files: dict[str, list[str]] = {k: [] for k in self.keys}
        self.arrays: dict[str, list[np.ndarray]] = {k: [] for k in self.keys}
        self.pending: dict[str, list[np.ndarray]] = {k: [] for k in self.keys}
        # relpath -> {"label", "size", "mtime_ns", "rows": {key: row}}; folder order; unusable files.
        self.records: dict[str, dict] = {}
        self.order: list[str] = []
        self.skipped: dict[str, dict] = {}
        self.dim: int | None = None
        self.generation = 0
        self.prev: dict | None = None  # the manifest this build started from
        self.prev_skipped: dict[str, dict] = {}

    # -- the previous generation ------------------------------------------------------------------

    def load_previous(self) -> None:
        """Start from the manifest in the cache, keeping the vectors of every embedding still current."""
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
            if emb is None or emb["identity"] != shared_identity(self.identities[self.encode_mode[key]]):
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

    # -- recording --------------------------------------------------------------------------------

    def rows_total(self, key: str) -> int:
        return sum(len(a) for a in self.arrays[key]) + sum(len(a) for a in self.pending[key])

    def record(self, batch: list[tuple[PhotoFile, list[str]]], new: dict[str, np.ndarray]) -> None:
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
                rows[key] = self.rows_total(key) + taken[key]
                taken[key] += 1
            self.records[entry.relpath] = {"label": entry.label, "size": entry.size, "mtime_ns": entry.mtime_ns,
                                           "rows": rows}
        for key, vecs in new.items():
            self.pending[key].append(vecs)
            self.dim = vecs.shape[1]

    def fail(self, entry: PhotoFile, reason: str) -> None:
        log.warning("skipping %s: %s", entry.relpath, reason)
        self.skipped[entry.relpath] = {"relpath": entry.relpath, "reason": reason, "size": entry.size,
                                       "mtime_ns": entry.mtime_ns}
        self.records.pop(entry.relpath, None)

    @property
    def has_pending(self) -> bool:
        return any(self.pending.values())

    # -- commit -----------------------------------------------------------------------------------

    def commit(self, complete: bool) -> dict:
        """Write the state as generation ``gen``: partial (chunks + row maps) or complete (one file per
        embedding, rows in folder order, faiss index). The manifest goes last."""
        gen = self.generation + 1
        if not complete:
            self._save_chunks(gen)
        order = [r for r in self.order if r in self.records and all(k in self.records[r]["rows"] for k in self.keys)]
        dim = self.dim or 0
        embeddings, indexes = {}, {}
        for key in self.keys:
            embeddings[key] = self._embedding(key, order, dim, gen, complete)
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
        atomic_write_text(self.cache / SKIPPED, json.dumps([{"relpath": s["relpath"], "reason": s["reason"]}
                                                             for s in skipped], indent=1))
        atomic_write_text(self.cache / MANIFEST, json.dumps(manifest, separators=(",", ":")))
        self.generation = gen
        _remove_unreferenced(self.cache, manifest)
        log.debug("committed generation %d: %d photos%s", gen, len(order), "" if complete else " (partial)")
        return manifest

    def _save_chunks(self, gen: int) -> None:
        """The pending vectors of each embedding become one new chunk file."""
        for key in self.keys:
            if self.pending[key]:
                name = f"chunk-{key}-g{gen}.npy"
                arr = np.concatenate(self.pending[key])
                atomic_save_npy(self.cache / name, arr)
                self.files[key].append(name)
                self.arrays[key].append(arr)
                self.pending[key] = []

    def _embedding(self, key: str, order: list[str], dim: int, gen: int, complete: bool) -> dict:
        """The manifest entry of embedding ``key``; a complete commit first rewrites it as one file in
        folder order (unless it already is one)."""
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
        return {
            "identity": shared_identity(self.identities[self.encode_mode[key]]),
            "dim": dim,
            "files": list(self.files[key]),
            "rows": None if compact else rows.tolist(),  # None: row i is photo i
        }

    def _write_gathered(self, path: Path, sources: list[np.ndarray], rows: np.ndarray, dim: int) -> None:
        if len(rows) == 0:
            atomic_save_npy(path, np.zeros((0, dim), np.float32))
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

