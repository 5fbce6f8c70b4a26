"""Building a gallery index: scan the folder, embed what is new or changed, commit as it goes.

Progress is committed every ``IndexConfig.commit_every`` photos or ``commit_seconds`` seconds (and on
an exception), so the next build resumes from there and a reader (``open_gallery_index``) can search
what is done so far; the build that completes merges the chunks into one file per embedding and builds
the faiss index. The file layout and why a kill at any point is safe: ``index_store``. A running build
reports to a ``BuildMonitor`` and stops when it asks (``index_background`` runs builds in a thread).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from sketchlvm.config import IndexConfig
from sketchlvm.gallery.build_state import BuildState
from sketchlvm.gallery.index import BuildReport, GalleryIndex
from sketchlvm.gallery.scan import PhotoFile, default_cache_dir, scan_gallery
from sketchlvm.gallery.store import _GATHER_BLOCK, _build_lock, _remove_unreferenced, _store_vectors
from sketchlvm.gallery.thumbnails import sync_thumbnails
from sketchlvm.preprocess.transforms import ImageLoadError, load_photo

if TYPE_CHECKING:
    from sketchlvm.model.factory import SketchLVM

log = logging.getLogger(__name__)


class BuildStopped(Exception):
    """The build's monitor asked it to stop; what it had embedded is committed, the next build resumes."""


class BuildMonitor:
    """What a running build tells its watcher, called from the build's thread. The defaults do nothing."""

    def planned(self, photos: int, to_embed: int, unchanged: int, skipped: int) -> None:
        """The folder is scanned: ``photos`` image files, ``to_embed`` of them to embed now."""

    def advanced(self, done: int, total: int) -> None:
        """``done`` of the ``total`` photos to embed are done (embedded or found unusable)."""

    def committed(self, manifest: dict) -> None:
        """A generation is on disk (partial or complete): ``open_gallery_index`` now finds it."""

    def should_stop(self) -> bool:
        """Asked between batches; True makes the build commit what it has and raise ``BuildStopped``."""
        return False


# Vectors embedded elsewhere (``sketchlvm.cluster.embed`` merges Ray shards through it), offered to a build:
# (relpath, size, mtime_ns) -> {embedding key: (D,) float32 unit vector}, or the reason the file is
# unusable, or None when it has nothing for that version of the file.
Precomputed = Callable[[str, int, int], "dict[str, np.ndarray] | str | None"]
_IMPORT_COMMIT_EVERY = 250_000  # taking precomputed vectors is cheap to redo: commit only to bound memory


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
    """One run of ``build_gallery_index``: start from the previous manifest, plan, embed, commit."""

    def __init__(self, root: Path, cache: Path, model: SketchLVM, config: IndexConfig,
                 progress: Callable[[int, int], None] | None, show_progress_bar: bool,
                 precomputed: Precomputed | None = None, monitor: BuildMonitor | None = None,
                 min_age_s: float = 0.0):
        self.root, self.cache, self.model, self.config = root, cache, model, config
        self.min_age_s = min_age_s
        self.progress, self.show_progress_bar = progress, show_progress_bar
        self.precomputed = precomputed
        self.monitor = monitor or BuildMonitor()
        self.report = BuildReport()
        self.state = BuildState(root, cache, model, config)
        self.prev_indexed: set[str] = set()

    # -- plan ------------------------------------------------------------------------------------

    def _plan(self) -> list[tuple[PhotoFile, list[str]]]:
        """Scan the folder: drop deleted photos, list (photo, embedding keys it needs) for the rest."""
        state = self.state
        entries, problems = scan_gallery(self.root, self.config.extensions, exclude=[self.cache])
        entries = self._settled(entries)
        state.order = [e.relpath for e in entries]
        present = set(state.order)
        self.prev_indexed = set(state.records)
        state.records = {r: rec for r, rec in state.records.items() if r in present}  # deleted files leave
        state.skipped = {r: {"relpath": r, "reason": why, "size": None, "mtime_ns": None} for r, why in problems}
        work = []
        for e in entries:
            old_skip = state.prev_skipped.get(e.relpath)
            if old_skip and (old_skip["size"], old_skip["mtime_ns"]) == e.stat:
                state.skipped[e.relpath] = old_skip  # unchanged and known to be unusable: not decoded again
                continue
            rec = state.records.get(e.relpath)
            if rec is not None and (rec["size"], rec["mtime_ns"]) == e.stat:
                need = [k for k in state.keys if k not in rec["rows"]]
            else:
                need = list(state.keys)
            if need:
                work.append((e, need))
            else:
                self.report.unchanged += 1
        return work

    def _settled(self, entries: list[PhotoFile]) -> list[PhotoFile]:
        """Leave out files written less than ``min_age_s`` ago: one being copied in is still growing, and
        would be embedded (or skipped as truncated) half-written. The report says when to look again."""
        if self.min_age_s <= 0:
            return entries
        now = time.time_ns()
        cutoff = now - int(self.min_age_s * 1e9)
        # A file dated in the future (another clock) cannot be waited for: it counts as settled.
        young = [e for e in entries if cutoff < e.mtime_ns <= now + 1_000_000_000]
        if not young:
            return entries
        self.report.postponed = len(young)
        self.report.recheck_at = max(e.mtime_ns for e in young) / 1e9 + self.min_age_s
        log.info("%s: %d file(s) changed in the last %.0f s, indexed once they are complete", self.root,
                 len(young), self.min_age_s)
        gone = {e.relpath for e in young}
        return [e for e in entries if e.relpath not in gone]

    # -- embed -----------------------------------------------------------------------------------

    def _decode(self, entry: PhotoFile) -> Any:
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

    def _report(self, done: int, total: int) -> None:
        if total:  # nothing to embed: no (0, 0) for a UI to divide by
            if self.progress:
                self.progress(done, total)
            self.monitor.advanced(done, total)

    def _commit_due(self, since_commit: int, last_commit: float) -> bool:
        if since_commit >= self.config.commit_every:
            return True
        seconds = self.config.commit_seconds
        return bool(seconds) and since_commit > 0 and time.monotonic() - last_commit >= seconds

    def _commit(self, complete: bool) -> dict:
        manifest = self.state.commit(complete)
        if not complete:  # thumbnails of this commit's photos before search can show them (none removed yet)
            try:
                sync_thumbnails(self.cache, manifest, workers=max(1, self.config.decode_workers), remove=False)
            except OSError as error:  # results fall back to making them on demand
                log.warning("thumbnails for the partial index: %s", error)
        self.monitor.committed(manifest)
        return manifest

    def _check_stop(self) -> None:
        if self.monitor.should_stop():
            raise BuildStopped(f"the build of {self.root} was stopped; the next build resumes it")

    def _embed(self, work: list[tuple[PhotoFile, list[str]]]) -> None:
        total, done, since_commit, last_commit = len(work), 0, 0, time.monotonic()
        bs = max(1, self.config.batch_size)
        show = self.show_progress_bar and total > 0
        self._report(0, total)
        decoded = _decoded([e for e, _ in work], self._decode, self.config.decode_workers,
                           ahead=2 * bs + self.config.decode_workers)
        # While the bar is shown, log lines (skipped files) go through tqdm.write so they don't garble it.
        with (logging_redirect_tqdm() if show else contextlib.nullcontext()), contextlib.closing(decoded), \
                tqdm(total=total, unit="photo", desc=f"indexing {self.root.name}", mininterval=0.5,
                     dynamic_ncols=True, disable=not show) as bar:
            batch: list[tuple[PhotoFile, list[str], Any]] = []
            for i, ((entry, need), image) in enumerate(zip(work, decoded)):  # noqa: B905
                if isinstance(image, ImageLoadError):
                    self.state.fail(entry, str(image))
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
                    if done < total and self._commit_due(since_commit, last_commit):
                        self._commit(complete=False)
                        since_commit, last_commit = 0, time.monotonic()
                if not batch or i == total - 1:
                    self._report(done, total)
                    if done < total:
                        self._check_stop()

    def _encode(self, batch: list[tuple[PhotoFile, list[str], Any]]) -> None:
        state, new = self.state, {}
        for key in state.keys:  # encode everything first: a failure leaves the state untouched
            images = [image for _, need, image in batch if key in need]
            if images:
                vecs = np.ascontiguousarray(self.model.encode_photos(images, state.encode_mode[key]), dtype=np.float32)
                if vecs.ndim != 2 or len(vecs) != len(images) or (state.dim is not None and vecs.shape[1] != state.dim):
                    raise RuntimeError(f"encoder returned shape {vecs.shape} for {len(images)} photos")
                new[key] = vecs
        self._record([(entry, need) for entry, need, _ in batch], new)

    def _record(self, batch: list[tuple[PhotoFile, list[str]]], new: dict[str, np.ndarray]) -> None:
        self.state.record(batch, new)
        for entry, _ in batch:
            if entry.relpath in self.prev_indexed:
                self.report.updated += 1
            else:
                self.report.added += 1

    def _take_precomputed(self, work: list[tuple[PhotoFile, list[str]]]) -> list[tuple[PhotoFile, list[str]]]:
        """Record what ``self.precomputed`` has for the work (no decoding, no encoding); return the rest.

        A photo takes vectors only when every embedding key it needs is there for its current size and
        mtime; a reason marks it skipped, as a failed decode here would."""
        rest: list[tuple[PhotoFile, list[str]]] = []
        batch: list[tuple[PhotoFile, list[str]]] = []
        found: list[dict[str, np.ndarray]] = []
        since_commit = 0

        def flush() -> None:
            new = {}
            for key in self.state.keys:
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
                    self.state.fail(entry, vecs)
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

    # -- run -------------------------------------------------------------------------------------

    def run(self) -> GalleryIndex:
        t0 = time.perf_counter()
        state = self.state
        state.load_previous()
        _remove_unreferenced(self.cache, state.prev)
        work = self._plan()
        log.info("%s: %d photos to embed, %d unchanged", self.root, len(work), self.report.unchanged)
        self.monitor.planned(len(state.order), len(work), self.report.unchanged, len(state.skipped))
        try:
            self._check_stop()
            if self.precomputed is not None:
                work = self._take_precomputed(work)
            self._embed(work)
        except BaseException:
            if state.has_pending:
                log.warning("build interrupted: saving the %d photos embedded so far",
                            sum(len(a) for p in state.pending.values() for a in p))
                try:
                    self._commit(complete=False)
                except Exception:
                    log.exception("could not save progress; the last saved index is untouched")
            raise
        manifest = self._commit(complete=True)
        # Thumbnails (sketchlvm/gallery/thumbnails.py): make missing ones, drop those of removed photos.
        sync_thumbnails(self.cache, manifest, workers=max(1, self.config.decode_workers))
        final = set(manifest["photos"]["relpath"])
        self.report.removed = len(self.prev_indexed - final)
        self.report.skipped = [(s["relpath"], s["reason"]) for s in manifest["skipped"]]
        r = self.report
        log.info("indexed %s in %.1f s: %d photos (%d added, %d updated, %d removed, %d unchanged, %d skipped)",
                 self.root, time.perf_counter() - t0, len(final), r.added, r.updated, r.removed, r.unchanged,
                 len(r.skipped))
        vectors = {k: _store_vectors(state.arrays[k], None, state.dim or 0) for k in state.keys}
        return GalleryIndex(self.root, self.cache, manifest, vectors, self.report)


def build_gallery_index(
    gallery_dir: str | Path,
    model: SketchLVM,
    cache_dir: str | Path | None = None,
    config: IndexConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    show_progress_bar: bool = True,
    precomputed: Precomputed | None = None,
    monitor: BuildMonitor | None = None,
    min_age_s: float = 0.0,
) -> GalleryIndex:
    """Index every photo under ``gallery_dir`` for each of ``model.modes``, incrementally.

    Only new or changed (size / mtime) files are embedded, deleted files leave, a mode whose model
    identity changed is re-embedded. Unusable files are listed in ``report.skipped``. ``progress``
    is called with (done, total) photos to embed, from (0, total) to (total, total); not at all when
    nothing needs embedding. Safe to interrupt at any point (exception or kill): the next build resumes.
    ``precomputed``: vectors embedded elsewhere (see ``Precomputed``; ``sketchlvm.cluster.embed``), taken
    instead of embedding a photo when they match its size and mtime; the caller vouches that they come
    from ``model`` (the keys are its embedding keys). ``monitor``: see ``BuildMonitor``. ``min_age_s``: files
    modified less than this many seconds ago are left for a later build (``report.postponed``,
    ``report.recheck_at``): the folder watcher's guard against half-written files.
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
        return _Build(root, cache, model, config, progress, show_progress_bar, precomputed, monitor,
                      min_age_s).run()
