"""Small copies of gallery photos for showing results: 12 of them weigh a few hundred kB, not megabytes.

A results page that sends the original files costs ~2.9 MB per stroke for 12 photos of 3000 x 3000 px
(tens of MB for phone photos). So each indexed photo gets a thumbnail in the gallery's cache folder::

    thumbnails/<digest>.webp    longest side THUMBNAIL_SIDE px, EXIF orientation applied

``<digest>`` hashes the photo's relpath, size and mtime: a changed photo gets a new name, so a thumbnail
is never stale and never rewritten. Writes go to a temporary name and are renamed into place (a killed
build leaves no half-written thumbnail), only missing thumbnails are made (a rebuild of an unchanged
gallery decodes nothing), and :func:`sync_thumbnails` deletes the thumbnails of photos the manifest no
longer holds, as the index drops their vectors.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sketchlvm.preprocess.transforms import ImageLoadError, load_photo

log = logging.getLogger(__name__)

THUMBNAIL_DIR = "thumbnails"
THUMBNAIL_SIDE = 320  # px, longest side: sharp in a ~300 px results tile
THUMBNAIL_FORMAT = "WEBP"
THUMBNAIL_QUALITY = 80  # ~3-10 kB per photo
THUMBNAIL_METHOD = 2  # libwebp effort: 2 encodes in 0.4x the time of 4 (~1 ms vs ~2.3 ms here), ~5% larger files
SUFFIX = ".webp"


def thumbnail_name(relpath: str, size: int, mtime_ns: int) -> str:
    """File name of the thumbnail of one version (size, mtime) of the photo at ``relpath``."""
    digest = hashlib.blake2b(f"{relpath}\0{size}\0{mtime_ns}".encode("utf-8", "surrogateescape"), digest_size=16)
    return digest.hexdigest() + SUFFIX


def thumbnail_path(cache_dir: str | Path, relpath: str, size: int, mtime_ns: int) -> Path:
    return Path(cache_dir) / THUMBNAIL_DIR / thumbnail_name(relpath, size, mtime_ns)


def make_thumbnail(photo: str | Path, out: Path, side: int = THUMBNAIL_SIDE, max_pixels: int | None = None) -> Path:
    """Decode ``photo`` (upright, RGB), shrink it to ``side`` px on its longest side, write ``out`` atomically.

    Raises :class:`ImageLoadError` for an unreadable photo.
    """
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    image = load_photo(photo, draft_size=side, **kwargs)  # JPEGs decode at 1/2..1/8 scale: fast for big photos
    image.thumbnail((side, side))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    try:
        image.save(tmp, THUMBNAIL_FORMAT, quality=THUMBNAIL_QUALITY, method=THUMBNAIL_METHOD)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return out


def ensure_thumbnail(cache_dir: str | Path, root: str | Path, relpath: str, size: int, mtime_ns: int,
                     max_pixels: int | None = None) -> Path | None:
    """The thumbnail of one photo, made now if missing; None (logged) when the photo cannot be read."""
    out = thumbnail_path(cache_dir, relpath, size, mtime_ns)
    if out.is_file():
        return out
    try:
        return make_thumbnail(Path(root) / relpath, out, max_pixels=max_pixels)
    except (ImageLoadError, OSError) as error:
        log.warning("no thumbnail for %s: %s", relpath, error)
        return None


def _photos(manifest: dict) -> Iterable[tuple[str, int, int]]:
    cols = manifest.get("photos", {})
    return zip(cols.get("relpath", []), cols.get("size", []), cols.get("mtime_ns", []))


def sync_thumbnails(cache_dir: str | Path, manifest: dict, workers: int = 2, remove: bool = True) -> tuple[int, int]:
    """Make the missing thumbnails of the photos in ``manifest``, delete those of photos no longer in it.

    Called by the index build after each commit: with ``remove=False`` after a partial one (its manifest
    does not list the photos still to embed, whose old thumbnails must stay), so results found while a
    background build runs already have their thumbnails. Returns (made, removed). Decoding runs in
    ``workers`` threads (Pillow releases the GIL while decoding).
    """
    cache = Path(cache_dir)
    folder = cache / THUMBNAIL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    root = manifest["root"]
    max_pixels = manifest.get("max_image_pixels")
    wanted = {thumbnail_name(r, s, m): (r, s, m) for r, s, m in _photos(manifest)}
    existing = {p.name for p in folder.iterdir()}
    removed = 0
    for name in (existing - set(wanted)) if remove else ():
        if name.endswith(SUFFIX) or name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                (folder / name).unlink()
                removed += 1
    missing = [wanted[name] for name in wanted if name not in existing]
    made = 0
    if missing:
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="sketchlvm-thumbnail") as pool:
            for out in pool.map(lambda p: ensure_thumbnail(cache, root, *p, max_pixels=max_pixels), missing):
                made += out is not None
    if made or removed:
        log.info("thumbnails in %s: %d made, %d removed", folder, made, removed)
    return made, removed


def thumbnail_lookup(manifest: dict) -> dict[str, tuple[int, int]]:
    """relpath -> (size, mtime_ns) of the version the manifest indexed (to find its thumbnail)."""
    return {r: (s, m) for r, s, m in _photos(manifest)}
