"""Index a gallery in a background thread, searchable as it grows: the page comes up at once.

A Space has a startup time limit and a large gallery takes longer than that to embed, so the app must
not wait for the build. :class:`BackgroundIndexer` runs the ordinary incremental build
(``build_gallery_index``) in a thread. The build commits every few seconds (``IndexConfig.commit_seconds``),
and after each commit the indexer opens what is on disk and hands it to ``on_index`` (the app passes
``Searcher.set_index``), so search covers the photos indexed so far. A restart, or a ``kill -9``,
resumes from the last commit; the index already on disk is searchable before the first new photo is
embedded. "Rebuild index" is :meth:`BackgroundIndexer.rebuild`: the same build, started again.

:meth:`BackgroundIndexer.snapshot` returns an :class:`IndexProgress` (a frozen copy, cheap, thread-safe)
for the page to poll: photos found, searchable, done and total to embed, rate, time left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sketchlvm.config import IndexConfig
from sketchlvm.gallery.build import BuildMonitor, BuildStopped, build_gallery_index
from sketchlvm.gallery.index import GalleryIndex, StaleIndexError, open_gallery_index
from sketchlvm.gallery.scan import default_cache_dir
from sketchlvm.gallery.store import MANIFEST

if TYPE_CHECKING:
    from sketchlvm.model.factory import SketchLVM

log = logging.getLogger(__name__)

RATE_WINDOW_S = 30.0  # the rate is measured over the last this many seconds, so the time left follows changes

# States of a build, as IndexProgress.state says them.
IDLE, STARTING, SCANNING, EMBEDDING, FINISHING, DONE, STOPPED, FAILED = (
    "idle", "starting", "scanning", "embedding", "finishing", "done", "stopped", "failed")
RUNNING_STATES = (STARTING, SCANNING, EMBEDDING, FINISHING)


@dataclass(frozen=True)
class IndexProgress:
    """Where the background build of one gallery stands. Counts are photos (image files)."""

    state: str  # one of: idle, starting, scanning, embedding, finishing, done, stopped, failed
    gallery: str  # the folder being indexed
    photos: int | None  # image files found in the folder; None until the scan is done
    searchable: int  # photos in the index search uses now (committed so far)
    to_embed: int  # photos this build embeds (new or changed ones; the rest were already indexed)
    done: int  # of ``to_embed``: embedded, or found unusable
    skipped: int  # unusable files known so far (listed in the index's skipped.json)
    rate: float | None  # photos per second over the last RATE_WINDOW_S seconds; None until measured
    eta_s: float | None  # seconds left to embed ``to_embed`` at ``rate``; None until measured
    elapsed_s: float  # since this build started
    complete: bool  # the searchable index covers the whole folder (as of the last scan)
    error: str | None = None  # why the build failed (state "failed"); search keeps the last index

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def fraction(self) -> float | None:
        """``done / to_embed`` in [0, 1]; 1.0 when nothing is left, None before the scan."""
        if self.photos is None:
            return None
        return 1.0 if self.to_embed == 0 else min(1.0, self.done / self.to_embed)

    def summary(self) -> str:
        """One line for the page, e.g. ``Indexing: 640 of 2,000 photos searchable · 640/2,000 embedded ·
        12.5 photos/s · about 1 min 51 s left``."""
        if self.state == FAILED:
            return f"Indexing failed: {self.error}. Search covers the {self.searchable:,} photos indexed before."
        if self.state == STOPPED:
            return f"Indexing stopped: {self.searchable:,} photos searchable; rebuild the index to finish it."
        if self.state in (STARTING, SCANNING) or self.photos is None:
            return f"Indexing: looking for photos in {self.gallery} ({self.searchable:,} searchable so far)."
        if not self.running:
            return f"{self.searchable:,} photos indexed" + (f", {self.skipped:,} skipped." if self.skipped else ".")
        parts = [f"Indexing: {self.searchable:,} of {self.photos - self.skipped:,} photos searchable",
                 f"{self.done:,}/{self.to_embed:,} embedded"]
        if self.state == FINISHING:
            parts.append("building the search index")
        elif self.rate:
            parts.append(f"{self.rate:.1f} photos/s")
            if self.eta_s is not None:
                parts.append(f"about {format_duration(self.eta_s)} left")
        return " · ".join(parts) + "."

    def coverage_note(self) -> str | None:
        """For results found while indexing: how much of the gallery they come from; None when all of it."""
        if self.complete:
            return None
        total = f" of {self.photos - self.skipped:,}" if self.photos is not None else ""
        return f"Results from the {self.searchable:,}{total} photos indexed so far; indexing continues."


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class _Watch(BuildMonitor):
    """The monitor of one build: turns its calls into the indexer's progress and searchable index."""

    def __init__(self, indexer: BackgroundIndexer, stop: threading.Event):
        self.indexer, self.stop = indexer, stop

    def planned(self, photos: int, to_embed: int, unchanged: int, skipped: int) -> None:
        self.indexer._update(state=EMBEDDING if to_embed else FINISHING, photos=photos, to_embed=to_embed,
                             skipped=skipped)

    def advanced(self, done: int, total: int) -> None:
        self.indexer._advanced(done, total)

    def committed(self, manifest: dict) -> None:
        if not manifest.get("complete"):  # the complete one comes back from build_gallery_index itself
            self.indexer._open_committed(skipped=len(manifest.get("skipped", [])))

    def should_stop(self) -> bool:
        return self.stop.is_set()


class BackgroundIndexer:
    """Builds (and rebuilds) the index of ``gallery_dir`` for ``model`` in a thread; see the module doc.

    ``on_index(index)`` is called (from the build thread, or from ``start``) with every newly searchable
    :class:`GalleryIndex`: the one on disk at start, one per commit, the finished one. Thread-safe.
    """

    def __init__(self, gallery_dir: str | Path, model: SketchLVM, cache_dir: str | Path | None = None,
                 config: IndexConfig | None = None,
                 on_index: Callable[[GalleryIndex], None] | None = None):
        self.gallery_dir = Path(gallery_dir).expanduser().resolve()
        self.model = model
        self.cache_dir = Path(cache_dir).expanduser().resolve() if cache_dir else default_cache_dir(self.gallery_dir)
        self.config = config or IndexConfig()
        self.on_index = on_index
        self.index: GalleryIndex | None = None  # what search uses now
        self.report = None  # the BuildReport of the last finished build
        self.min_age_s = 0.0  # files younger than this wait for a later build (set by the folder watcher)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._progress = self._blank(IDLE)
        self._started = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque()  # (time, done) over the last RATE_WINDOW_S

    # -- control ------------------------------------------------------------------------------------

    def start(self) -> BackgroundIndexer:
        """Open the index already on disk (searchable at once), then build in the background.

        Does nothing while a build runs. Raises ``FileNotFoundError`` / ``NotADirectoryError`` for a
        gallery folder that is not there (at once, not from the thread)."""
        if not self.gallery_dir.is_dir():
            kind = "does not exist" if not self.gallery_dir.exists() else "is not a folder"
            raise (FileNotFoundError if not self.gallery_dir.exists() else NotADirectoryError)(
                f"gallery folder {str(self.gallery_dir)!r} {kind}")
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop = threading.Event()
            self._started = time.monotonic()
            self._samples.clear()
            self._progress = self._blank(STARTING)
            self._thread = threading.Thread(target=self._run, args=(self._stop,), daemon=True,
                                            name=f"sketchlvm-index-{self.gallery_dir.name}")
        if self.index is None:
            self._open_committed()
        self._thread.start()
        return self

    def rebuild(self) -> BackgroundIndexer:
        """Look at the folder again and index what changed ("Rebuild index"): stops a running build
        (its work is kept) and starts a new one."""
        self.stop()
        return self.start()

    def stop(self, timeout: float | None = None) -> IndexProgress:
        """Ask the build to stop after its current batch (it commits what it has) and wait for it."""
        with self._lock:
            thread, stop = self._thread, self._stop
        stop.set()
        if thread is not None:
            thread.join(timeout)
        return self.snapshot()

    def wait(self, timeout: float | None = None) -> IndexProgress:
        """Wait for the running build to end (or ``timeout`` seconds); its final progress."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.snapshot()

    # -- progress -----------------------------------------------------------------------------------

    def snapshot(self) -> IndexProgress:
        with self._lock:
            progress = self._progress
            searchable = len(self.index) if self.index is not None else 0
        elapsed = time.monotonic() - self._started if progress.state != IDLE else 0.0
        rate, eta = self._rate(progress)
        return replace(progress, searchable=searchable, rate=rate, eta_s=eta,
                       elapsed_s=elapsed if progress.running else progress.elapsed_s,
                       complete=self._covers_folder(progress, searchable))

    def _blank(self, state: str) -> IndexProgress:
        return IndexProgress(state=state, gallery=str(self.gallery_dir), photos=None, searchable=0, to_embed=0,
                             done=0, skipped=0, rate=None, eta_s=None, elapsed_s=0.0, complete=False)

    def _covers_folder(self, progress: IndexProgress, searchable: int) -> bool:
        index = self.index
        if index is None or not index.complete:
            return False
        return progress.photos is None or searchable + progress.skipped >= progress.photos

    def _rate(self, progress: IndexProgress) -> tuple[float | None, float | None]:
        with self._lock:
            samples = list(self._samples)
        if progress.state != EMBEDDING or len(samples) < 2 or samples[-1][0] <= samples[0][0]:
            return None, None
        (t0, d0), (t1, d1) = samples[0], samples[-1]
        rate = (d1 - d0) / (t1 - t0)
        if rate <= 0:
            return None, None
        return rate, (progress.to_embed - progress.done) / rate

    def _update(self, **changes) -> None:
        with self._lock:
            self._progress = replace(self._progress, **changes)

    def _advanced(self, done: int, total: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._samples.append((now, done))
            while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
                self._samples.popleft()
            state = FINISHING if done >= total else EMBEDDING
            self._progress = replace(self._progress, state=state, done=done, to_embed=total,
                                     elapsed_s=now - self._started)

    # -- the build thread ---------------------------------------------------------------------------

    def _publish(self, index: GalleryIndex) -> None:
        with self._lock:
            self.index = index
        if self.on_index is not None:
            self.on_index(index)

    def _open_committed(self, skipped: int | None = None) -> None:
        """Make what is on disk searchable (the last commit of this or an earlier build)."""
        if not (self.cache_dir / MANIFEST).is_file():
            return
        try:
            index = open_gallery_index(self.cache_dir, self.model, partial_ok=True)
        except StaleIndexError as error:  # built with another model: the build re-embeds, search waits
            log.info("not searching the old index while it is rebuilt: %s", error)
            return
        except (OSError, ValueError) as error:
            log.warning("cannot open the index in %s yet: %s", self.cache_dir, error)
            return
        if Path(index.root) != self.gallery_dir:
            return
        if skipped is not None:
            self._update(skipped=skipped)
        self._publish(index)

    def _run(self, stop: threading.Event) -> None:
        self._update(state=SCANNING)
        try:
            index = build_gallery_index(self.gallery_dir, self.model, self.cache_dir, self.config,
                                        show_progress_bar=False, monitor=_Watch(self, stop),
                                        min_age_s=self.min_age_s)
        except BuildStopped:
            log.info("indexing %s stopped", self.gallery_dir)
            self._update(state=STOPPED, elapsed_s=time.monotonic() - self._started)
            return
        except Exception as error:  # noqa: BLE001 - reported in the progress; search keeps the last index
            log.exception("indexing %s failed", self.gallery_dir)
            message = " ".join(str(error).split()) or type(error).__name__
            self._update(state=FAILED, error=message, elapsed_s=time.monotonic() - self._started)
            return
        self.report = index.report
        self._publish(index)
        self._update(state=DONE, skipped=len(index.report.skipped), done=self._progress.to_embed,
                     elapsed_s=time.monotonic() - self._started)
        log.info("indexed %s: %d photos searchable", self.gallery_dir, len(index))
