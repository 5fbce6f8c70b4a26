"""What the server hands out from disk: result thumbnails and the originals of indexed photos, nothing else.

Gradio serves any file under its ``allowed_paths`` to anyone who asks for its absolute path
(``/gradio_api/file=/abs/path``). With the gallery folder allowed, that was every file in it
(``.git/config``, notes, dotfiles), for an ``hf://`` gallery the dataset's whole cache folder, and the
result URLs gave the server's folders away. So nothing of the gallery is allowed any more; instead each
app gets one private folder in the temp directory, served as a Gradio static path:

    sketchlvm-public-PID-XXXX/thumbnails -> <gallery cache>/thumbnails   (a symlink: no copies)
    sketchlvm-public-PID-XXXX/originals/<digest>/<file name>              (copies of photos someone opened)
    sketchlvm-public-PID-XXXX/pixels/<digest>.webp                        (a result with no thumbnail)

An original is looked up by its relpath in the index's manifest (what the index holds, not whatever
the path names), never a dotfile, and copied only when its real path lies in the gallery's serving
root. URLs then name only this folder, not the gallery's or the cache's. Gradio checks a static file by
its resolved path, so each subfolder is its own static path (the symlink resolves into the cache). The
folder is removed when the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import re
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from sketchlvm.hub import serving_root
from sketchlvm.webapp.safe_text import display_name
from sketchlvm.webapp.temp_sweep import make_folder

log = logging.getLogger(__name__)

ORIGINALS_KEPT = 64  # copies of opened originals kept at once (oldest removed first)
PIXELS_KEPT = 512  # stand-in thumbnails kept at once


class PublicFiles:
    """The one folder the app serves files from (see the module doc). Thread-safe."""

    def __init__(self, gallery_dir: Path | None, cache_dir: Path | None, thumbnail_dir: str = "thumbnails"):
        self.gallery_dir = None if gallery_dir is None else Path(gallery_dir).absolute()
        self.root = make_folder("public")  # named after this process: swept at the next start if it is killed
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)
        self.thumbnails: Path | None = None
        self.originals = self.root / "originals"
        self.pixels = self.root / "pixels"
        self.originals.mkdir()
        self.pixels.mkdir()
        self._thumbnail_source = None if cache_dir is None else (Path(cache_dir) / thumbnail_dir).absolute()
        if self._thumbnail_source is not None:
            with contextlib.suppress(OSError):  # a read-only cache: its thumbnails are there already or not at all
                self._thumbnail_source.mkdir(parents=True, exist_ok=True)
            link = self.root / "thumbnails"
            try:
                link.symlink_to(self._thumbnail_source, target_is_directory=True)
                self.thumbnails = link
            except OSError as error:  # no symlinks here (Windows without the right): serve the cache folder
                log.warning("cannot link the thumbnails into %s (%s): their URLs name the cache folder", link, error)
                self.thumbnails = self._thumbnail_source
        self._lock = threading.Lock()
        self._kept: dict[Path, OrderedDict[Path, None]] = {self.originals: OrderedDict(), self.pixels: OrderedDict()}

    def folders(self) -> list[Path]:
        """The static paths to give Gradio, thumbnails first (the most requested)."""
        return [p for p in (self.thumbnails, self.originals, self.pixels) if p is not None]

    def thumbnail(self, path: Path) -> Path:
        """A thumbnail in the cache -> the same file under this folder."""
        if self.thumbnails is None:
            return path
        return self.thumbnails / Path(path).name

    def original(self, relpath: str, version: tuple[int, int]) -> Path | None:
        """A copy of the indexed photo at ``relpath`` (``version``: its indexed size and mtime) to serve;
        None when it is not servable: a dotfile, outside the gallery's serving root, unreadable."""
        if self.gallery_dir is None or not is_plain_relpath(relpath):
            return None
        source = self.gallery_dir / relpath
        try:
            real = source.resolve(strict=True)
        except OSError:
            return None
        if not real.is_relative_to(serving_root(self.gallery_dir).resolve()) or not real.is_file():
            return None
        digest = _digest(relpath, *version)
        out = self.originals / digest / display_name(source.name)  # its URL must be valid UTF-8
        with self._lock:
            if out.is_file():
                self._keep(self.originals, out)
                return out
        try:
            out.parent.mkdir(exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")
            shutil.copyfile(real, tmp)
            tmp.replace(out)
        except OSError as error:
            log.warning("cannot copy %s for the preview: %s", relpath, error)
            with contextlib.suppress(OSError):
                shutil.rmtree(out.parent)
            return None
        with self._lock:
            self._keep(self.originals, out)
        return out

    def picture(self, image: Image.Image, key: str) -> Path:
        """Pixels with no file of their own (a result whose thumbnail could not be made) as a served
        WebP. Raises OSError when it cannot be written (a full disk): the caller leaves the result out."""
        out = self.pixels / f"{_digest(key)}.webp"
        if not out.is_file():
            tmp = out.with_name(out.name + ".tmp")
            try:
                image.save(tmp, "WEBP", quality=80)
                tmp.replace(out)
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        with self._lock:
            self._keep(self.pixels, out)
        return out

    def _keep(self, folder: Path, path: Path) -> None:
        kept = self._kept[folder]
        kept[path] = None
        kept.move_to_end(path)
        limit = ORIGINALS_KEPT if folder == self.originals else PIXELS_KEPT
        while len(kept) > limit:
            old, _ = kept.popitem(last=False)
            with contextlib.suppress(OSError):
                if folder == self.originals:
                    shutil.rmtree(old.parent)
                else:
                    old.unlink()


def is_plain_relpath(relpath: str) -> bool:
    """A relative path of plain names: no dotfile or dot-folder, no '..', not absolute, no backslash."""
    if not relpath or relpath.startswith("/") or "\\" in relpath or "\0" in relpath:
        return False
    return all(part and not part.startswith(".") for part in relpath.split("/"))


def _digest(*parts) -> str:
    text = "\0".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def public_name(folder: Path | str | None) -> str:
    """A gallery folder as the page names it, without the server's directory layout: a Hugging Face
    snapshot as ``hf://datasets/USER/REPO[/SUBDIR]``, any other folder by its own name."""
    if folder is None:
        return ""
    path = Path(folder)
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):
        match = re.match(r"^(models|datasets|spaces)--(.+?)--(.+)$", parts[i - 1])
        if parts[i] == "snapshots" and match:
            kind, user, repo = match.groups()
            sub = "/".join(parts[i + 2:])
            return f"hf://{kind}/{user}/{repo}" + (f"/{sub}" if sub else "")
    return path.name or str(path)
