"""The public API's functions (and the tests'), as plain functions of their inputs: each builds the query
and its settings and runs it through the app's one query path (``query.py``), so the API and the page
refuse, cache and bound searches alike and say the same thing. Never raise for user mistakes: each returns
a message saying what was wrong and what to do."""

from __future__ import annotations

import atexit
import logging
import shutil
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from sketchlvm.preprocess.strokes import parse_strokes, render_strokes
from sketchlvm.search import DEFAULT_TEXT_WEIGHT
from sketchlvm.webapp.temp_sweep import make_folder
from sketchlvm.webapp.app_state import DRAW_HINT, AppState
from sketchlvm.webapp.query import NOT_IN_INDEX, Query, Settings, present, run  # noqa: F401 (public names)
from sketchlvm.webapp.query_inputs import (  # noqa: F401 (re-exported: the API's documented names)
    EXAMPLES_DIR,
    MAX_SKETCH_PIXELS,
    UPLOAD_SIDE,
    example_strokes,
    fit_to_canvas,
    read_photo,
    read_sketch_upload,
    strokes_to_sketch,
)

log = logging.getLogger(__name__)


def _search(state: AppState, query: Query, canvas: Any, mode: Any, k: Any, text: Any = None,
            text_weight: Any = DEFAULT_TEXT_WEIGHT, *, loud: bool = True) -> tuple[list, str, list[str]]:
    answer = run(state, query, canvas, Settings.read(mode, k, text, text_weight), loud=loud)
    return answer.gallery, answer.message, answer.shown


def run_search(state: AppState, sketch: Any, mode: str, k: float, *, live: bool, text: str | None = None,
               text_weight: float = DEFAULT_TEXT_WEIGHT) -> tuple[list, str, list[str]]:
    """Sketch image and/or words -> (gallery value, message, relpaths shown). Never raises for user mistakes.

    ``live``: a search fired by a stroke, a mode switch or the slider; a blank sketch is then a quiet
    hint rather than a warning pop-up. ``text`` None: the sketch alone (the words box is not involved).
    """
    return _search(state, Query("sketch", 0, image=sketch), "", mode, k, text, text_weight, loud=not live)


def search_strokes(state: AppState, strokes_json: Any, mode: str, k: float, *, live: bool, text: str | None = None,
                   text_weight: float = DEFAULT_TEXT_WEIGHT) -> tuple[list, str, list]:
    """Canvas value (stroke JSON) and words -> (gallery value, message, relpaths shown)."""
    return _search(state, Query("drawing", 0), strokes_json, mode, k, text, text_weight, loud=not live)


def search_like(state: AppState, relpath: str | None, mode: str, k: float) -> tuple[list, str, list[str]]:
    """"Search with this photo": the gallery photo at ``relpath`` as the query, from its stored vector
    (nothing is encoded); it comes first. -> (gallery value, message, relpaths shown)."""
    if not relpath:
        return [], "Click a result first, then *Search with this photo*.", []
    query = Query("gallery", 0, name=Path(relpath).name, relpath=relpath)
    return _search(state, query, "", mode, k, loud=False)


def search_with_photo(state: AppState, path: str | None, mode: str, k: float) -> tuple[Any, str, Any]:
    """An uploaded photo as the query, encoded as the gallery's photos are. -> (gallery value, message,
    relpaths shown); a file that is not a usable image leaves the results as they were and says why."""
    if not path:
        return gr.skip(), DRAW_HINT, gr.skip()
    view, refusal = read_photo(state, path)
    if view is None:
        return gr.skip(), refusal, gr.skip()
    query = Query("photo", 0, name=Path(path).name, path=str(path))
    return _search(state, query, "", mode, k, loud=False)


def load_upload(state: AppState, path: str | None, mode: str, k: float, text: str | None = None,
                text_weight: float = DEFAULT_TEXT_WEIGHT) -> tuple[Any, Any, Any, Any]:
    """An uploaded sketch image -> (sketch shown, gallery value, message, relpaths shown).

    A file that is not a readable image, or a blank page, leaves the results as they were and says why.
    The canvas is left alone: the drawing on it is not lost.
    """
    if not path:
        return gr.skip(), gr.skip(), DRAW_HINT, gr.skip()
    fitted, refusal = read_sketch_upload(path, state.searcher.model.sketch_transform)
    if fitted is None:
        return gr.skip(), gr.skip(), refusal, gr.skip()
    query = Query("sketch", 0, name=Path(path).name, image=fitted)
    gallery, message, shown = _search(state, query, "", mode, k, text, text_weight)
    return gr.update(value=fitted, visible=True), gallery, message, shown


def load_example(state: AppState, index: int, mode: str, k: float, text: str | None = None,
                 text_weight: float = DEFAULT_TEXT_WEIGHT) -> tuple[str, list, str, list]:
    """Example ``index`` -> (canvas value, gallery value, message, relpaths shown)."""
    source = EXAMPLES_DIR / f"{state.examples[index].stem}.json"
    strokes = example_strokes(source, state.searcher.model.preprocess)
    gallery, message, shown = _search(state, Query("example", 0, name=source.stem), strokes, mode, k, text,
                                      text_weight)
    return strokes, gallery, message, shown


def render_examples(out_dir: Path | None = None, size: int = 256) -> list[Path]:
    """Render the shipped stroke lists (``sketchlvm/examples/*.json``) to PNG tiles in a temp dir
    (removed when the process exits: every start used to leave one behind)."""
    if out_dir is None:
        out_dir = make_folder("examples")  # named after this process (sketchlvm.webapp.temp_sweep)
        atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in sorted(EXAMPLES_DIR.glob("*.json")):
        try:
            image: Image.Image = render_strokes(parse_strokes(source.read_text(encoding="utf-8")), size=size)
        except (ValueError, OSError) as error:
            log.warning("skipping example %s: %s", source.name, error)
            continue
        path = out_dir / f"{source.stem}.png"
        image.save(path)
        paths.append(path)
    return paths
