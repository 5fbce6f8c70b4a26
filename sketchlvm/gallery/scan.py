"""The photos of a gallery folder, and where gallery indexes live.

Scanning is the first step of a build (``index_build``) and also what ``sketchlvm.cluster.embed`` runs on a
folder, so both see exactly the same photos: hidden files and folders left out, folder symlinks not
followed, labels from the first-level subfolder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sketchlvm.config import PACKAGE_DIR, IndexConfig, env_var, settings
from sketchlvm.gallery.store import MANIFEST

GALLERIES_ENV = env_var("galleries_dir")


@dataclass
class Photo:
    relpath: str  # POSIX path relative to the gallery folder
    label: str | None  # first-level subfolder name; None for photos at the top level




# ---------------------------------------------------------------------------------------------
# Locations


def galleries_home(galleries_dir: str | Path | None = None) -> Path:
    """Where gallery caches live: the argument, else the galleries_dir setting (``GALLERIES_ENV``), else the project's
    ``galleries/`` (``~/.cache/sketchlvm/galleries`` when installed outside a checkout)."""
    if galleries_dir:
        return Path(galleries_dir).expanduser()
    chosen = settings().galleries_dir
    if chosen is not None:
        return chosen
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
class PhotoFile:
    """A photo file as a scan finds it: its size and mtime tell a build whether it changed."""

    relpath: str
    label: str | None
    size: int
    mtime_ns: int

    @property
    def stat(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)


def first_photos(root: Path, n: int, extensions: Sequence[str] = IndexConfig().extensions) -> list[Path]:
    """Up to ``n`` image files of ``root``, in the order a scan finds them, without walking the whole folder
    (the app checks its photo graph on a few of them at start)."""
    wanted = {e.lower() for e in extensions}
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in wanted:
                found.append(Path(dirpath, name))
                if len(found) >= n:
                    return found
    return found


def scan_gallery(
    root: Path, extensions: Sequence[str] = IndexConfig().extensions, exclude: Sequence[Path] = ()
) -> tuple[list[PhotoFile], list[tuple[str, str]]]:
    """Every image file under ``root`` sorted by relative path, plus (relpath, reason) it could not stat.

    Hidden files and folders (leading dot) and the folders in ``exclude`` are left out; folder
    symlinks are not followed (no loops), file symlinks are.
    """
    root = Path(root).resolve()
    excluded = {Path(p).resolve() for p in exclude}
    wanted = {e.lower() for e in extensions}
    entries: list[PhotoFile] = []
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
            entries.append(PhotoFile(relpath, parts[0] if len(parts) > 1 else None, st.st_size, st.st_mtime_ns))
    entries.sort(key=lambda e: e.relpath)
    return entries, sorted(problems)

