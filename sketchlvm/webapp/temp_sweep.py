"""The app's own temp folders, named after the process that made them, and swept when it is gone.

The app makes two folders in the temp directory (``sketchlvm-public-*``: the files it serves;
``sketchlvm-examples-*``: the example tiles) and removes them when it stops. A ``kill -9``, an out-of-memory
kill or a power cut leaves them behind forever. So each name carries the process id of the app that made
it (``sketchlvm-public-<pid>-XXXX``), and at start-up :func:`sweep_dead` removes those whose process is no
longer alive. A folder whose process still runs (another app on the same machine) is left alone, and so is
one named the old way, without a pid: whose it is cannot be told.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

KINDS = ("public", "examples")
_OWNED = re.compile(rf"^sketchlvm-(?:{'|'.join(KINDS)})-(\d+)-")


def make_folder(kind: str) -> Path:
    """A new folder of ``kind`` in the temp directory, named after this process."""
    if kind not in KINDS:
        raise ValueError(f"unknown temp folder kind {kind!r}")
    return Path(tempfile.mkdtemp(prefix=f"sketchlvm-{kind}-{os.getpid()}-"))


def alive(pid: int) -> bool:
    """Whether a process with this id runs (another user's counts as running: it is not ours to judge)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_dead(folder: Path | str | None = None) -> list[Path]:
    """Remove the app's temp folders whose process is gone (see the module doc); returns those removed."""
    folder = Path(folder or tempfile.gettempdir())
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _OWNED.match(entry.name)
        if not match or alive(int(match.group(1))) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
        except (OSError, AttributeError):  # gone meanwhile, or no uids here (Windows)
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    if removed:
        log.info("removed %d temp folder(s) left by app processes that no longer run", len(removed))
    return removed
