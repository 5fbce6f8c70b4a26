"""The page's one current query, and the answer that names what it answers.

A page has one query at a time: the drawing on the canvas (or the words alone when it is blank), an
uploaded sketch image, a gallery photo ("Search with this photo") or an uploaded photo. Every control
(mode, number of results, words, their weight) re-ranks that query. Setting a query (an upload, an
example, a click on "Search with this photo") only stores it in the page's ``gr.State``; the search
itself runs in one event for the whole page (``page.py``), so Gradio runs a page's searches one after
another and the last one asked is the last one shown.

Every answer carries a tag: the request's sequence number (given by the browser when it sends the
request), the query (kind and id) and the settings it was ranked with. ``static/answer.js`` shows an
answer as current only when it answers the latest request and its settings are those on screen; any
other is dimmed and cannot be clicked. A stroke drawn after a query was set makes the drawing the query
again (the canvas is compared with the canvas at the time the query was set).

This is the app's one query path: the public API (``handlers.py``) builds the same ``Query`` and
``Settings`` and calls the same :func:`run`, so a drawing, words, an uploaded sketch, a photo and "more
like this" are refused, cached and bounded alike, with the same messages, from the page or the API.
The page's live search also passes a ``wanted`` check (``newest.py``): a query that a newer one of its
session has superseded is dropped before it is encoded.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from sketchlvm.model.text import MAX_TEXT_CHARS, TextQueryError
from sketchlvm.preprocess.strokes import EmptySketchError, StrokeFormatError
from sketchlvm.preprocess.transforms import ImageLoadError
from sketchlvm.runtime.zerogpu import take_note
from sketchlvm.search import DEFAULT_TEXT_WEIGHT, EmptyGalleryError
from sketchlvm.webapp.app_state import (
    DRAW_HINT,
    MODE_HINTS,
    MODE_LABELS,
    AppState,
    coverage_note,
    gallery_problem,
    no_gallery_help,
)
from sketchlvm.webapp.markdown import escape
from sketchlvm.webapp.query_inputs import (
    EXAMPLES_DIR,
    example_strokes,
    is_partial,
    read_photo,
    read_sketch_upload,
    strokes_to_sketch,
)
from sketchlvm.webapp.results import gallery_item
from sketchlvm.webapp.safe_text import display_name

log = logging.getLogger(__name__)
NOT_IN_INDEX = "it was never indexed, or it changed or was removed since."  # a relpath the index lacks

KIND_LABELS = {  # what the query panel and the tests call each kind
    "drawing": "your drawing",
    "words": "the words alone",
    "example": "example",
    "sketch": "uploaded sketch",
    "gallery": "gallery photo",
    "photo": "uploaded photo",
}
MESSAGE_PREFIX = {  # the results message starts with what was searched ("" for a drawing)
    "drawing": "",
    "words": "Words only",
    "example": "Example **{name}**",
    "sketch": "Uploaded **{name}**",
    "gallery": "More like **{name}**",
    "photo": "Photo **{name}**",
}
_ids = itertools.count(1)  # query ids, unique in this process


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, so Gradio sees each new query as a change
class Query:
    """What the page searches with. ``canvas``: the canvas value's fingerprint when the query was set (a later stroke
    makes the drawing the query again). ``image``: the fitted sketch (kind "sketch"); ``path``: the
    uploaded photo (kind "photo"); ``relpath``: the gallery photo (kind "gallery"); ``view``: what the
    page shows as the query (a small image or a path), ``name``: the file or example name."""

    kind: str
    id: int
    canvas: str = ""
    name: str = ""
    image: Image.Image | None = None
    path: str | None = None
    relpath: str | None = None
    view: Any = None

    @classmethod
    def new(cls, kind: str, canvas: str | None, **fields: Any) -> Query:
        return cls(kind, next(_ids), fingerprint(canvas or ""), **fields)


def fingerprint(text: str) -> str:
    """A short digest of a page value (a drawing's stroke JSON, up to 1 MB): what a session keeps to tell
    whether it changed, instead of the value itself (sketchlvm.webapp.fair_use: bounded sessions)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest() if text else ""


DRAWING = Query("drawing", 0)  # the page's query before anything else is set


def current(query: Query | None, canvas: str | None) -> Query:
    """The page's query now: the stored one, unless the canvas changed since it was set (then the drawing)."""
    if query is None or query.kind == "drawing" or fingerprint(canvas or "") != query.canvas:
        return DRAWING
    return query


@dataclass(frozen=True)
class Settings:
    """The controls a query is ranked with."""

    mode: str
    k: int
    words: str
    weight: float

    @classmethod
    def read(cls, mode: Any, k: Any, words: Any, weight: Any) -> Settings:
        try:
            k = int(k)
        except (TypeError, ValueError):
            k = 0  # refused by the searcher with a message
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            weight = DEFAULT_TEXT_WEIGHT
        # Words past the limit are refused by the searcher all the same; the answer's tag, which Gradio keeps
        # per session, carries at most this much of them (bounded sessions).
        words = words[:MAX_TEXT_CHARS + 1] if isinstance(words, str) else ""
        return cls(str(mode), k, words, weight)


@dataclass
class Answer:
    """Results for one (query, settings): gallery value, message, relpaths shown, and the tag."""

    gallery: list
    message: str
    shown: list[str]
    kind: str  # the kind actually searched ("words" for a blank canvas with words)
    partial: bool = False  # a drawing in progress (sent mid-stroke)

    def tag(self, seq: Any, query: Query, settings: Settings) -> str:
        """What this answer answers, as the page's answer.js compares it with the screen."""
        return json.dumps({
            "seq": request_number(seq), "query": {"id": query.id, "kind": self.kind}, "mode": settings.mode,
            "k": settings.k, "words": settings.words, "weight": settings.weight, "results": len(self.shown),
            "partial": self.partial,
        })


def request_number(seq: Any) -> int:
    """The page's request number (static/request.js); 0 for none (an API call)."""
    try:
        return int(seq)
    except (TypeError, ValueError):
        return 0


def present(state: AppState, results: list, mode: str, elapsed_ms: float, *,
            extra: str | None = None) -> tuple[list, str, list[str]]:
    """Search results -> (gallery value, message, relpaths shown); the message says how much of the
    gallery was searched while it is still being indexed."""
    shown = [(r, item) for r, item in ((r, gallery_item(state, r)) for r in results) if item is not None]
    label = MODE_LABELS.get(mode, mode)
    message = (
        f"**{len(results)} best match{'es' if len(results) != 1 else ''}** · {label} mode "
        f"({MODE_HINTS.get(mode, '')}) · {elapsed_ms:.0f} ms"
    )
    unshown = len(results) - len(shown)
    if unshown:  # a thumbnail that could not be made (unreadable photo, full disk); the log says which
        message += f"\n\n{unshown} of them could not be shown: the server could not read or write their pictures."
    for line in (extra, take_note(), coverage_note(state)):  # take_note: answered on the CPU, not ZeroGPU
        if line:
            message += f"\n\n{line}"
    return [item for _, item in shown], message, [r.relpath for r, _ in shown]


def run(state: AppState, query: Query, canvas: str, settings: Settings, *, loud: bool = False,
        wanted: Callable[[], bool] | None = None) -> Answer | None:
    """Search ``query`` with ``settings``. Never raises for user mistakes: the message says what was wrong.

    ``loud``: a search someone asked for by name (an API call) also pops up what went wrong; the page's
    live searches say it in the message alone. ``wanted``: asked just before the encoder runs; when it
    says no (a newer query of the session came in), nothing is encoded and None is returned.
    """
    searcher = state.searcher
    words = settings.words if settings.words.strip() else None
    kind = query.kind
    partial = query.kind == "drawing" and is_partial(canvas)
    started = time.perf_counter()
    try:
        if query.kind in ("drawing", "example"):
            try:
                sketch = strokes_to_sketch(state, canvas)
            except EmptySketchError:
                sketch = None
                kind = "words" if words else "drawing"
        else:
            sketch = query.image
            if query.kind == "sketch" and sketch is None:
                kind = "words" if words else "drawing"
        if query.kind in ("drawing", "example", "sketch") and sketch is None and words is None:
            if loud:
                gr.Warning("Nothing to search for: draw something or type a few words.")
            return Answer([], DRAW_HINT, [], "drawing")
        if wanted is not None and not wanted():
            return None
        args = {"text": words, "text_weight": settings.weight}
        with state.busy.searching():  # what mid-stroke searches give way to (busy.py)
            if query.kind == "gallery":
                results = searcher.search_like(query.relpath, settings.mode, settings.k, **args)
            elif query.kind == "photo":
                results = searcher.search_photo(query.path, settings.mode, settings.k, **args)
            elif query.kind in ("drawing", "example", "sketch"):
                results = searcher.search(sketch, settings.mode, settings.k, **args)
            else:
                raise ValueError(f"unknown query kind {query.kind!r}")
        note = searcher.text_query(words).note() if words is not None else None
    except StrokeFormatError as error:
        if loud:
            gr.Warning(f"Those strokes could not be used: {error}")
        return Answer([], f"**Those strokes could not be used:** {error}.", [], kind)
    except EmptySketchError:  # an image with nothing on it
        if loud:
            gr.Warning("Nothing to search for: draw something or type a few words.")
        return Answer([], DRAW_HINT, [], "drawing")
    except EmptyGalleryError:
        if loud:
            gr.Warning("There is no photo to search yet.")
        return Answer([], gallery_problem(state) or no_gallery_help(), [], kind)
    except TextQueryError as error:  # too long, or no text tower
        return Answer([], f"**Those words could not be used:** {error}", [], kind)
    except KeyError:  # a gallery photo gone after a rebuild
        return Answer([], f"**{escape(query.name or '')} is not in the gallery index**: {NOT_IN_INDEX}", [], kind)
    except ImageLoadError as error:
        return Answer([], f"**That photo can no longer be read:** {error}. Upload it again.", [], kind)
    except (ValueError, TypeError) as error:  # an unknown mode, a bad weight or k
        log.info("search refused: %s", error)
        return Answer([], f"**That search could not be run:** {error}", [], kind)
    gallery, message, shown = present(state, results, settings.mode, (time.perf_counter() - started) * 1000,
                                      extra=note)
    prefix = MESSAGE_PREFIX.get(kind, "")
    if "{name}" in prefix and not query.name:
        prefix = ""  # an image from the API: nothing to name
    prefix = prefix.format(name=escape(query.name or ""))  # file names are not Markdown
    return Answer(gallery, f"{prefix} · {message}" if prefix else message, shown, kind, partial)


def has_view(query: Query) -> bool:
    """Whether the query panel shows this query: an uploaded sketch, a gallery photo or an uploaded photo."""
    return query.kind in ("sketch", "gallery", "photo") and query.view is not None


def view_update(query: Query) -> dict:
    """The query panel: shown for an uploaded sketch, a gallery photo or an uploaded photo."""
    if has_view(query):
        title = f"Searching with: {KIND_LABELS[query.kind]} {display_name(query.name)}".rstrip()
        return gr.update(value=query.view, visible=True, label=title)
    return gr.update(value=None, visible=False)


def pending(query: Query) -> str:
    """The answer component's value while a new query waits for its first answer: answer.js then treats
    every answer to an earlier request as out of date."""
    return json.dumps({"pending": query.id})


def shed(seq: Any) -> str:
    """The answer component's value for a mid-stroke search shed because the server is busy (busy.py):
    answer.js keeps the results on screen and says, once they lag, that they come at pen-up."""
    return json.dumps({"shed": request_number(seq)})


def set_sketch(state: AppState, path: str | None, canvas: str | None) -> tuple[Any, Any, Any]:
    """An uploaded sketch image becomes the query -> (query, message, answer marker). A file that is
    not a readable image, or a blank page, leaves the query as it was and says why."""
    if not path:
        return gr.skip(), gr.skip(), gr.skip()
    fitted, refusal = read_sketch_upload(path, state.searcher.model.sketch_transform)
    if fitted is None:
        return gr.skip(), refusal, gr.skip()
    query = Query.new("sketch", canvas, name=Path(path).name, image=fitted, view=fitted)
    return query, gr.skip(), pending(query)


def set_photo(state: AppState, path: str | None, canvas: str | None) -> tuple[Any, Any, Any]:
    """An uploaded photo becomes the query -> (query, message, answer marker); an unreadable file is
    refused with the reason and leaves the query as it was."""
    if not path:
        return gr.skip(), gr.skip(), gr.skip()
    view, refusal = read_photo(state, path)
    if view is None:
        return gr.skip(), refusal, gr.skip()
    query = Query.new("photo", canvas, name=Path(path).name, path=str(path), view=view)
    return query, gr.skip(), pending(query)


def set_gallery(state: AppState, relpath: str | None, canvas: str | None) -> tuple[Any, Any, Any]:
    """"Search with this photo": the gallery photo at ``relpath`` becomes the query."""
    from sketchlvm.search import SearchResult
    from sketchlvm.webapp.results import original, thumbnail_of

    if not relpath:
        return gr.skip(), "Click a result first, then *Search with this photo*.", gr.skip()
    path = (state.gallery_dir / relpath) if state.gallery_dir is not None else Path(relpath)
    view = thumbnail_of(state, SearchResult(path, relpath, None, 0.0, 0)) or original(state, relpath)
    query = Query.new("gallery", canvas, name=Path(relpath).name, relpath=relpath, view=view)
    return query, gr.skip(), pending(query)


def set_example(state: AppState, index: int) -> tuple[Any, Any, Any]:
    """Example ``index`` goes into the canvas and becomes the query -> (canvas value, query, marker)."""
    if not 0 <= index < len(state.examples):
        return gr.skip(), gr.skip(), gr.skip()
    source = EXAMPLES_DIR / f"{state.examples[index].stem}.json"
    strokes = example_strokes(source, state.searcher.model.preprocess)
    query = Query.new("example", strokes, name=source.stem)
    return strokes, query, pending(query)
