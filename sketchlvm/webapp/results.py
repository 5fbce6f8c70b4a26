"""Search results as the page shows them: thumbnails with captions, and the original on click.

Results are sent as the gallery's thumbnails (``sketchlvm.gallery.thumbnails``, 320 px WebP in the cache
folder), so 12 results cost a few hundred kB whatever the photos weigh. Files are served only from the
app's own folder (``sketchlvm.webapp.public_files``): the thumbnails, and a copy of an indexed photo's
original once someone opens it; nothing of the gallery folder is served by its path. A photo whose
real path lies outside the gallery (a symlink) is shown through its thumbnail, its preview as pixels.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import gradio as gr
from PIL import Image

from sketchlvm.gallery.thumbnails import THUMBNAIL_DIR, THUMBNAIL_SIDE, ensure_thumbnail, thumbnail_lookup
from sketchlvm.preprocess.transforms import ImageLoadError, load_photo
from sketchlvm.search import SearchResult
from sketchlvm.webapp.public_files import PublicFiles, is_plain_relpath
from sketchlvm.webapp.safe_text import display_name
from sketchlvm.webapp.app_state import AppState

log = logging.getLogger(__name__)

PREVIEW_SIDE = 2048  # a photo out of the gallery (symlink) is previewed as pixels up to this size
BROWSERS_CANNOT_SHOW = (".heic", ".heif")  # phones' HEIC: only Safari shows it, so it is previewed as pixels

_lookups: dict[int, dict[str, tuple[int, int]]] = {}  # id(manifest) -> relpath -> (size, mtime_ns)
_lookups_lock = threading.Lock()


def caption(result: SearchResult) -> str:
    """Category, similarity and file name, as shown under each result."""
    category = result.label or "no category"
    # Category and score first: a thumbnail caption is cut short at the tile's width.
    # display_name: a name that is not valid UTF-8 shows with U+FFFD (JSON cannot carry it as it is).
    return f"{display_name(category)} · {result.score:.3f} · {display_name(Path(result.relpath).name)}"


def public_files(state: AppState) -> PublicFiles:
    """The app's served folder (made on first use, kept on the state)."""
    with _lookups_lock:
        if state.public is None:
            state.public = PublicFiles(state.gallery_dir, state.cache_dir, THUMBNAIL_DIR)
        return state.public


def served_folders(state: AppState) -> list[Path]:
    """What the server may read from disk: the app's own folders (thumbnails, opened originals)."""
    return public_files(state).folders()


def serve_thumbnails_in_place(state: AppState) -> None:
    """Let Gradio send the thumbnails as they lie in the cache instead of copying them into its own.

    For every file a handler returns, Gradio checks the path against each allowed and blocked folder
    (resolving both every time), hashes the file and copies it into its cache: a large share of a
    search's server CPU with 12-24 results. Files in its static paths skip all of that. Thumbnails are
    safe to serve in place: they are never changed (a new photo version gets a new name), and their
    folder is served already (``served_folders``). Gradio's static paths are per process, not per app.

    The folder goes first in Gradio's list: each returned file is checked against the entries in turn
    (twice per result, two ``Path.resolve`` each), and Gradio registers two icons of its own at import,
    so appended last the check cost 0.6 ms per result, ~29 ms of a 24-result search's ~60 ms of CPU;
    first, a thumbnail matches at the first entry. The list is Gradio's private ``_StaticFiles``: where
    it is not there, the folder is only appended (correct, slower).
    """
    folders = served_folders(state)
    gr.set_static_paths(folders)
    try:
        from gradio.data_classes import _StaticFiles

        paths = _StaticFiles.all_paths
        resolved = [Path(f).resolve() for f in folders]  # Gradio stores them resolved
        paths[:] = resolved + [p for p in paths if p not in resolved]  # first, and once however many apps run
    except (ImportError, AttributeError, TypeError):
        log.debug("Gradio's static path list is not where it was: thumbnails are checked last")


def _version(state: AppState, relpath: str) -> tuple[int, int] | None:
    index = state.searcher.index
    manifest = getattr(index, "manifest", None)
    if not manifest:
        return None
    with _lookups_lock:
        lookup = _lookups.get(id(manifest))
        if lookup is None:
            _lookups.clear()  # one index at a time: a rebuilt one replaces the old lookup
            lookup = _lookups[id(manifest)] = thumbnail_lookup(manifest)
    return lookup.get(relpath)


def thumbnail_of(state: AppState, result: SearchResult) -> Path | None:
    """The result's thumbnail as served (under the app's folder), made now if the index predates
    thumbnails; None when it cannot be made (unreadable photo, full disk)."""
    version = _version(state, result.relpath)
    if version is None or state.cache_dir is None or state.gallery_dir is None:
        return None
    made = ensure_thumbnail(state.cache_dir, state.gallery_dir, result.relpath, *version)
    return None if made is None else public_files(state).thumbnail(made)


def _pixels(path: Path, side: int) -> Image.Image | None:
    try:
        image = load_photo(path)
    except ImageLoadError as error:
        log.warning("cannot show %s: %s", path, error)
        return None
    image.thumbnail((side, side))
    return image


def gallery_item(state: AppState, result: SearchResult) -> tuple[str, str] | None:
    """(served image path, caption) for the results gallery: the thumbnail, or when there is none a
    small copy written to the app's folder; None when neither can be had (an unreadable photo, or a
    full disk: Gradio would fail writing the pixels itself, and the whole answer with it)."""
    thumbnail = thumbnail_of(state, result)
    if thumbnail is not None:
        return str(thumbnail), caption(result)
    image = _pixels(result.path, THUMBNAIL_SIDE)
    if image is None:
        return None
    try:
        return str(public_files(state).picture(image, result.relpath)), caption(result)
    except OSError as error:
        log.warning("cannot show %s: %s", result.relpath, error)
        return None


def original(state: AppState, relpath: str) -> str | Image.Image | None:
    """The photo at full size for the preview: a served copy of the indexed photo at ``relpath``
    (looked up in the index, never a dotfile), pixels when its real path is outside the gallery (a
    symlink), None when the index does not hold it."""
    version = _version(state, relpath)
    if state.gallery_dir is None or version is None or not is_plain_relpath(relpath):
        return None
    if Path(relpath).suffix.lower() in BROWSERS_CANNOT_SHOW:
        return _pixels(state.gallery_dir / relpath, PREVIEW_SIDE)
    copy = public_files(state).original(relpath, version)
    if copy is not None:
        return str(copy)
    return _pixels(state.gallery_dir / relpath, PREVIEW_SIDE)
