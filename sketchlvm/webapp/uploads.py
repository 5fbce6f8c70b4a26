"""A bounded upload area: what visitors may put on the server's disk, and for how long.

Gradio's upload route (``POST /gradio_api/upload``) takes files from anyone, before any event asks for
one: 4 connections of 10 MB files put 12.5 GB a minute on the disk, and its hourly sweep removed only
files over an hour old. So:

- **Size of one file**: at most ``MAX_UPLOAD_BYTES``, the largest query the app accepts (Gradio's
  ``max_file_size``, and the body limit of ``sketchlvm.webapp.limits``).
- **Rate per client**: each address may upload ``RATE_BYTES_PER_MIN`` a minute (a bucket of that size,
  refilled continuously); past it, HTTP 429 with the seconds to wait.
- **Total**: when the upload folder holds ``AREA_BYTES``, further uploads get HTTP 503 until files are
  removed. The folder's size is measured at most every ``MEASURE_EVERY_S`` (uploads since are added).
- **Removed when used**: :func:`discard` removes an uploaded file as soon as its query has run (the API's
  sketch and photo endpoints, the page's sketch upload); a photo the page keeps searching (re-ranks) goes
  when the page's query changes or its session ends, and Gradio's own sweep (``DELETE_CACHE``) catches
  anything left.
- **Partial files**: Gradio streams each upload to a temp file in the folder, then moves it; an upload cut
  short, or refused as too large, leaves that file behind (often empty). :func:`sweep_partial` removes such
  files once ``PARTIAL_AGE_S`` old, and empty folders, every ``SWEEP_EVERY_S`` (``start_sweeper``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

from sketchlvm.webapp.fair_use import client_address
from sketchlvm.webapp.limits import UPLOAD_SUFFIX, ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 10 * 2**20  # the largest query file the app accepts (a photo or a sketch image)
RATE_BYTES_PER_MIN = 40 * 2**20  # per address: four files of the largest size a minute
AREA_BYTES = 1024 * 2**20  # the whole upload folder
MEASURE_EVERY_S = 5.0
PARTIAL_AGE_S = 60.0
SWEEP_EVERY_S = 60.0
MAX_ADDRESSES = 10_000


def upload_folder() -> Path:
    """Gradio's upload folder (``GRADIO_TEMP_DIR``, default ``<tmp>/gradio``)."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def folder_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def discard(path: str | os.PathLike | None, folder: Path | None = None) -> bool:
    """Remove an uploaded file (and its folder, when that is left empty) once its query has run. Only
    files inside the upload folder are touched; returns whether one was removed."""
    if not path:
        return False
    try:
        folder = (folder or upload_folder()).resolve()
        file = Path(path).resolve()
    except (OSError, ImportError):
        return False
    if not file.is_relative_to(folder) or file == folder:
        return False
    try:
        file.unlink()
    except OSError:
        return False
    if file.parent != folder:
        with contextlib.suppress(OSError):
            file.parent.rmdir()  # only when empty
    return True


def sweep_partial(folder: Path, age_s: float = PARTIAL_AGE_S, now: float | None = None) -> int:
    """Remove the temp files Gradio left at the top of ``folder`` (``tmp*``: uploads cut short or refused)
    and empty folders, once ``age_s`` old; returns how many were removed."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
            if now - info.st_mtime < age_s:
                continue
            if entry.is_file(follow_symlinks=False) and entry.name.startswith("tmp"):  # NamedTemporaryFile's
                os.unlink(entry.path)
                removed += 1
            elif entry.is_dir(follow_symlinks=False) and not any(os.scandir(entry.path)):
                os.rmdir(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


_sweepers: dict[Path, threading.Thread] = {}


def start_sweeper(folder: Path | None = None, every_s: float = SWEEP_EVERY_S) -> threading.Thread:
    """A daemon thread that runs :func:`sweep_partial` every ``every_s`` seconds (one per folder)."""
    folder = folder or upload_folder()
    if folder in _sweepers:
        return _sweepers[folder]

    def run() -> None:
        while True:
            time.sleep(every_s)
            count = sweep_partial(folder)
            if count:
                log.debug("removed %d partial upload(s)", count)

    thread = threading.Thread(target=run, name="sketchlvm-upload-sweeper", daemon=True)
    thread.start()
    _sweepers[folder] = thread
    return thread


def _megabytes(text: str | None, default: int) -> int:
    try:
        value = float(text) if text not in (None, "") else 0.0
    except ValueError:
        log.warning("ignoring %r: a number of MiB was expected", text)
        value = 0.0
    return int(value * 2**20) if value > 0 else default


class UploadArea:
    """The per-address buckets and the folder's size (see the module doc). Thread-safe."""

    @classmethod
    def from_environment(cls, folder: Path) -> UploadArea:
        """The area's sizes from the upload_area_mb and upload_rate_mb (MiB a minute) settings."""
        from sketchlvm.config import settings

        env = settings()
        area = _megabytes(env.upload_area_mb, AREA_BYTES)
        rate = _megabytes(env.upload_rate_mb, RATE_BYTES_PER_MIN)
        return cls(folder, area, rate)

    def __init__(self, folder: Path, area_bytes: int = AREA_BYTES, rate_per_min: int = RATE_BYTES_PER_MIN,
                 clock=time.monotonic):
        self.folder = folder
        self.area_bytes, self.rate_per_min = area_bytes, rate_per_min
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (bytes left, when)
        self._measured_at = -1e18
        self._size = 0
        self._lock = threading.Lock()

    def size(self) -> int:
        with self._lock:
            if self.clock() - self._measured_at >= MEASURE_EVERY_S:
                self._size = folder_size(self.folder) if self.folder.is_dir() else 0
                self._measured_at = self.clock()
            return self._size

    def admit(self, address: str, nbytes: int) -> tuple[int, str] | None:
        """None when an upload of ``nbytes`` from ``address`` may go ahead (its bytes are counted), else
        (HTTP status, one-line reason)."""
        if self.size() + nbytes > self.area_bytes:
            return 503, "The server's upload area is full: try again in a few minutes."
        with self._lock:
            now = self.clock()
            left, when = self._buckets.pop(address, (float(self.rate_per_min), now))
            left = min(float(self.rate_per_min), left + (now - when) * self.rate_per_min / 60.0)
            self._buckets[address] = (left, now)
            while len(self._buckets) > MAX_ADDRESSES:
                self._buckets.popitem(last=False)
            cost = min(nbytes, self.rate_per_min)  # one file of the largest size is always possible
            if cost > left:
                wait = (cost - left) * 60.0 / self.rate_per_min
                return 429, f"Too many uploads from your address: try again in {max(1, round(wait))} s."
            self._buckets[address] = (left - cost, now)
            self._size += nbytes
        return None


class UploadAreaMiddleware:
    """Applies :class:`UploadArea` to Gradio's upload route, before the body is read."""

    def __init__(self, app: ASGIApp, area: UploadArea | None = None, trust_forwarded: bool = False,
                 max_upload: int = MAX_UPLOAD_BYTES):
        self.app = app
        self.area = area or UploadArea.from_environment(upload_folder())
        self.trust_forwarded = trust_forwarded
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or not scope.get("path", "").rstrip("/").endswith(UPLOAD_SUFFIX)):
            await self.app(scope, receive, send)
            return
        length = None
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length":
                with contextlib.suppress(ValueError):
                    length = int(value)
        refusal = self.area.admit(client_address(scope, self.trust_forwarded),
                                  length if length is not None else self.max_upload)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, reason = refusal
        body = json.dumps({"detail": reason}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", b"10"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
