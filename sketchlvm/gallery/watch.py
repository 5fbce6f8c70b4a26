"""Keep the index in step with its folder while the app runs: photos added, changed or removed are found
within a minute, with no restart and no click.

:class:`FolderWatcher` runs a thread beside a :class:`~sketchlvm.gallery.background.BackgroundIndexer`.
It learns that the folder changed from the operating system (watchfiles: inotify, FSEvents, ...), or,
where no events come (network mounts, or watchfiles missing), from a cheap rescan every
``poll_s`` seconds that compares each photo's size and mtime with the last look. Either way it then asks
the indexer for a rebuild, which is the ordinary crash-safe incremental build: only changed photos are
embedded, removed ones leave, a kill at any point is safe.

A photo being copied in is not indexed half-written: the watcher waits until the folder has been quiet
for ``settle_s`` seconds, and the builds it asks for leave out any file modified less than ``settle_s``
ago (``min_age_s``), looking again once it is old enough (``BuildReport.recheck_at``). A file written so
slowly that it pauses longer than that is tried, fails to decode and is listed as skipped; when it
changes again it is tried again.

At rest the event watcher sleeps in the kernel; the rescan stats every file once per ``poll_s``
(bench/bench_watch.py measures both on 100,000 files; docs/benchmarks.md has the figures).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sketchlvm.config import IndexConfig, env_var, settings

log = logging.getLogger(__name__)

WATCH_ENV = env_var("watch")
MODES = ("auto", "events", "poll", "off")
POLL_S = 20.0  # rescan period where no events come: found within 20 s + settle + the build
SETTLE_S = 3.0  # quiet time before a change is indexed, and the age a file must have
# File systems whose changes made on other machines send no events here.
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "fuse.rclone", "afs", "ceph",
              "glusterfs", "lustre", "fuse.s3fs", "fuse.gcsfuse", "fuse.mountpoint-s3")


def watch_mode(value: str | None = None) -> str:
    """The watcher asked for: ``value`` (the --watch flag), else the watch setting, else auto."""
    mode = (value or settings().watch or "auto").strip().lower()
    if mode not in MODES:
        raise ValueError(f"--watch / {WATCH_ENV} must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def on_network_mount(folder: Path) -> bool:
    """Whether ``folder`` lies on a network file system (by /proc/mounts; False where there is none)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    folder = str(Path(folder).resolve())
    best, kind = "", ""
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3:
            point = parts[1].replace("\\040", " ")
            inside = folder == point or folder.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best, kind = point, parts[2]
    return kind in NETWORK_FS


def folder_signature(root: Path, extensions: tuple[str, ...], exclude: tuple[Path, ...] = ()) -> int:
    """A hash of every photo's relpath, size and mtime under ``root``: equal when nothing changed.

    Hidden files and folders, and ``exclude``, are left out as the gallery scan leaves them out."""
    wanted = {e.lower() for e in extensions}
    excluded = {str(p) for p in exclude}
    total = 0
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    name = entry.name
                    if name.startswith("."):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if entry.path not in excluded:
                                stack.append(entry.path)
                            continue
                        if os.path.splitext(name)[1].lower() not in wanted:
                            continue
                        st = entry.stat()
                    except OSError:
                        continue
                    total ^= hash((entry.path, st.st_size, st.st_mtime_ns))
        except OSError:
            continue
    return total


class FolderWatcher:
    """Rebuilds ``indexer``'s index when its folder changes; see the module doc. ``start``/``stop``."""

    def __init__(self, indexer: Any, mode: str = "auto", poll_s: float = POLL_S, settle_s: float = SETTLE_S,
                 config: IndexConfig | None = None):
        self.indexer = indexer
        self.folder = Path(indexer.gallery_dir)
        self.cache = Path(indexer.cache_dir)
        self.poll_s, self.settle_s = poll_s, settle_s
        self.extensions = tuple(e.lower() for e in (config or indexer.config).extensions)
        self.mode = self._choose(mode)
        self.rebuilds = 0  # how many rebuilds the watcher asked for
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dirty_since: float | None = None  # monotonic time of the last change seen, not yet indexed
        self._lock = threading.Lock()

    def _choose(self, mode: str) -> str:
        if mode in ("auto", "events"):
            try:
                import watchfiles  # noqa: F401
            except ImportError:
                if mode == "events":
                    raise
                log.info("watchfiles is not installed: rescanning %s every %.0f s", self.folder, self.poll_s)
                return "poll"
            if mode == "auto" and on_network_mount(self.folder):
                log.info("%s is on a network mount (no change events): rescanning it every %.0f s",
                         self.folder, self.poll_s)
                return "poll"
            return "events"
        return mode

    # -- control -------------------------------------------------------------------------------

    def start(self) -> FolderWatcher:
        if self.mode == "off" or (self._thread is not None and self._thread.is_alive()):
            return self
        self._stop.clear()
        target: Callable[[], None] = self._events if self.mode == "events" else self._poll
        self._thread = threading.Thread(target=self._guarded, args=(target,), daemon=True,
                                        name=f"sketchlvm-watch-{self.folder.name}")
        self._thread.start()
        log.info("watching %s for changes (%s)", self.folder,
                 "change events" if self.mode == "events" else f"a rescan every {self.poll_s:.0f} s")
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the thread ----------------------------------------------------------------------------

    def _guarded(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception:  # a watcher that dies must not take the app with it
            log.exception("watching %s stopped; changes are indexed on 'Rebuild index' or restart", self.folder)

    def _relevant(self, path: str) -> bool:
        p = Path(path)
        if p == self.cache or self.cache in p.parents:
            return False  # the index's own writes (a cache inside the gallery)
        try:
            parts = p.relative_to(self.folder).parts
        except ValueError:
            return False
        if any(part.startswith(".") for part in parts):
            return False
        # A deleted or renamed folder has no extension: it may have held photos.
        return p.suffix.lower() in self.extensions or not p.suffix or p.is_dir()

    def _events(self) -> None:
        from watchfiles import watch

        step_ms = 500
        for changes in watch(self.folder, watch_filter=lambda _change, path: self._relevant(path),
                             stop_event=self._stop, debounce=int(self.settle_s * 1000), step=step_ms,
                             rust_timeout=step_ms * 2, yield_on_timeout=True, recursive=True,
                             raise_interrupt=False):
            if changes:
                self._changed()
            self._tick()
            if self._stop.is_set():
                return

    def _poll(self) -> None:
        exclude = (self.cache,)
        last = folder_signature(self.folder, self.extensions, exclude)
        next_scan = time.monotonic() + self.poll_s
        while not self._stop.wait(1.0):
            if time.monotonic() >= next_scan:
                now = folder_signature(self.folder, self.extensions, exclude)
                next_scan = time.monotonic() + self.poll_s
                if now != last:
                    last = now
                    self._changed()
            self._tick()

    def _changed(self) -> None:
        with self._lock:
            self._dirty_since = time.monotonic()

    def _tick(self) -> None:
        """Once a second or so: rebuild when changes have settled, or a postponed file is old enough."""
        now = time.monotonic()
        with self._lock:
            dirty = self._dirty_since is not None and now - self._dirty_since >= self.settle_s
        report = getattr(self.indexer, "report", None)
        recheck = getattr(report, "recheck_at", None)
        due = recheck is not None and time.time() >= recheck and not self.indexer.snapshot().running
        if not (dirty or due):
            return
        if self.indexer.snapshot().running and not dirty:
            return
        with self._lock:
            self._dirty_since = None
        if report is not None:
            report.recheck_at = None  # asked for now; the new build sets it again if files are still young
        self.rebuilds += 1
        # From now on builds leave young files for later; the first build (at start) took the folder as it was.
        self.indexer.min_age_s = self.settle_s
        log.info("%s changed: indexing what changed", self.folder)
        try:
            self.indexer.rebuild()
        except (OSError, ValueError) as error:  # the folder is gone: say so, keep watching
            log.warning("cannot index %s: %s", self.folder, error)
