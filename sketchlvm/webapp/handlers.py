"""The page's handlers as plain functions of their inputs (tests call them too). Never raise for user
mistakes: each returns a message saying what was wrong and what to do."""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, ImageOps

from sketchlvm.config import PACKAGE_DIR
from sketchlvm.model.text import TextQueryError
from sketchlvm.preprocess.drawing import StrokeDrawing
from sketchlvm.preprocess.strokes import EmptySketchError, StrokeFormatError, crop_to_ink, parse_strokes, render_strokes
from sketchlvm.preprocess.transforms import ImageLoadError, load_photo
from sketchlvm.runtime.zerogpu import take_note
from sketchlvm.search import DEFAULT_TEXT_WEIGHT, EmptyGalleryError
from sketchlvm.webapp.canvas import CANVAS_UNITS, fit_strokes
from sketchlvm.webapp.markdown import escape
from sketchlvm.webapp.temp_sweep import make_folder
from sketchlvm.webapp.results import gallery_item
from sketchlvm.webapp.app_state import (
    DRAW_HINT,
    MODE_HINTS,
    MODE_LABELS,
    UPLOAD_HINT,
    AppState,
    coverage_note,
    gallery_problem,
    no_gallery_help,
)

log = logging.getLogger(__name__)

EXAMPLES_DIR = PACKAGE_DIR / "examples"
MAX_SKETCH_PIXELS = 4096 * 4096  # uploaded sketch images
NOT_IN_INDEX = "it was never indexed, or it changed or was removed since."  # a relpath the index lacks
UPLOAD_SIDE = 512  # an uploaded sketch is searched as it would show on a 512 x 512 canvas


def run_search(state: AppState, sketch: Any, mode: str, k: float, *, live: bool, text: str | None = None,
               text_weight: float = DEFAULT_TEXT_WEIGHT) -> tuple[list, str, list[str]]:
    """Sketch image and/or words -> (gallery value, message, relpaths shown). Never raises for user mistakes.

    ``live``: a search fired by a stroke, a mode switch or the slider; a blank sketch is then a quiet
    hint rather than a warning pop-up. ``text`` None: the sketch alone (the words box is not involved).
    """
    started = time.perf_counter()
    words = text if isinstance(text, str) and text.strip() else None
    try:
        results = state.searcher.search(sketch, mode, int(k), text=text, text_weight=text_weight)
        note = state.searcher.text_query(words).note() if words is not None else None
    except EmptySketchError:
        if not live:
            gr.Warning("Nothing to search for: draw something or type a few words.")
        return [], DRAW_HINT, []
    except EmptyGalleryError:
        if not live:
            gr.Warning("There is no photo to search yet.")
        return [], gallery_problem(state) or no_gallery_help(), []
    except TextQueryError as error:  # too long, or no text tower
        return [], f"**Those words could not be used:** {error}", []
    except (ValueError, TypeError) as error:  # an unknown mode, an unreadable image, a bad weight
        log.info("search refused: %s", error)
        return [], f"**That search could not be run:** {error}", []
    elapsed_ms = (time.perf_counter() - started) * 1000
    return present(state, results, mode, elapsed_ms, extra=note)


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


def search_like(state: AppState, relpath: str | None, mode: str, k: float) -> tuple[list, str, list[str]]:
    """"Search with this photo": the gallery photo at ``relpath`` as the query, from its stored vector
    (nothing is encoded); it comes first. -> (gallery value, message, relpaths shown)."""
    if not relpath:
        return [], "Click a result first, then *Search with this photo*.", []
    started = time.perf_counter()
    try:
        results = state.searcher.search_like(relpath, mode, int(k))
    except EmptyGalleryError:
        return [], gallery_problem(state) or no_gallery_help(), []
    except KeyError:  # gone after a rebuild
        return [], f"**{escape(Path(relpath).name)} is not in the gallery index**: {NOT_IN_INDEX}", []
    except (ValueError, TypeError) as error:
        return [], f"**That search could not be run:** {error}", []
    gallery, message, shown = present(state, results, mode, (time.perf_counter() - started) * 1000)
    return gallery, f"More like **{escape(Path(relpath).name)}** · {message}", shown


def search_with_photo(state: AppState, path: str | None, mode: str, k: float) -> tuple[Any, str, Any]:
    """An uploaded photo as the query, encoded as the gallery's photos are. -> (gallery value, message,
    relpaths shown); a file that is not a usable image leaves the results as they were and says why."""
    if not path:
        return gr.skip(), DRAW_HINT, gr.skip()
    name = Path(path).name
    started = time.perf_counter()
    try:
        results = state.searcher.search_photo(path, mode, int(k))
    except EmptyGalleryError:
        return [], gallery_problem(state) or no_gallery_help(), []
    except ImageLoadError as error:
        gr.Warning("That file is not a photo we can read. Upload a JPEG, PNG or WebP photo.")
        reason = str(error).replace(str(path), name)  # no server paths in the UI
        return gr.skip(), f"**Photo refused:** {escape(reason)}.", gr.skip()
    except (ValueError, TypeError) as error:
        return gr.skip(), f"**That search could not be run:** {error}", gr.skip()
    gallery, message, shown = present(state, results, mode, (time.perf_counter() - started) * 1000)
    return gallery, f"Photo **{escape(name)}** · {message}", shown


def strokes_to_sketch(state: AppState, strokes_json: Any) -> Image.Image:
    """Stroke JSON -> the sketch image the model sees: rendered and framed on the canvas by the model's own
    sketch transform (its checkpoint's framing, stroke width and margin), as dataset and partial strokes are.

    Raises StrokeFormatError (bad JSON, over a limit) or EmptySketchError (nothing drawn).
    """
    strokes = parse_strokes(strokes_json)
    if not strokes:
        raise EmptySketchError("nothing drawn")
    return state.searcher.model.sketch_transform.to_image(StrokeDrawing(strokes, on_canvas=True))


def search_strokes(state: AppState, strokes_json: Any, mode: str, k: float, *, live: bool, text: str | None = None,
                   text_weight: float = DEFAULT_TEXT_WEIGHT) -> tuple[list, str, list]:
    """Canvas value (stroke JSON) and words -> (gallery value, message, relpaths shown)."""
    try:
        sketch = strokes_to_sketch(state, strokes_json)
    except StrokeFormatError as error:
        if not live:
            gr.Warning(f"Those strokes could not be used: {error}")
        return [], f"**Those strokes could not be used:** {error}.", []
    except EmptySketchError:  # the words alone, or the empty-canvas message, from one place
        return run_search(state, None, mode, k, live=live, text=text, text_weight=text_weight)
    return run_search(state, sketch, mode, k, live=live, text=text, text_weight=text_weight)


def fit_to_canvas(image: Image.Image, size: int = UPLOAD_SIDE) -> Image.Image:
    """Any RGB image -> ``size`` x ``size``, aspect kept, centred on white."""
    return ImageOps.pad(image, (size, size), method=Image.Resampling.LANCZOS, color="white")


def read_sketch_upload(path: str) -> tuple[Image.Image | None, str]:
    """An uploaded sketch image -> (the sketch fitted to the canvas, "") or (None, the refusal message).

    Refuses, with one reason, a file that is not a readable image, one over the size limit, and a blank
    page; the reason also pops up.
    """
    name = Path(path).name
    try:
        image = load_photo(path, max_pixels=MAX_SKETCH_PIXELS)  # any format -> upright RGB; refuses non-images
        crop_to_ink(image)  # refuses a blank page
    except ImageLoadError as error:
        reason = str(error).replace(str(path), name)  # no server paths in the UI
        gr.Warning(f"Upload refused: {reason}.")
        return None, f"**Upload refused:** {escape(reason)}. {UPLOAD_HINT}"
    except EmptySketchError:
        gr.Warning("That image is blank: no lines found.")
        return None, f"**Upload refused:** {escape(name)} has no dark lines on it. {UPLOAD_HINT}"
    return fit_to_canvas(image), ""


def load_upload(state: AppState, path: str | None, mode: str, k: float, text: str | None = None,
                text_weight: float = DEFAULT_TEXT_WEIGHT) -> tuple[Any, Any, Any, Any]:
    """An uploaded sketch image -> (sketch shown, gallery value, message, relpaths shown).

    A file that is not a readable image, or a blank page, leaves the results as they were and says why.
    The canvas is left alone: the drawing on it is not lost.
    """
    if not path:
        return gr.skip(), gr.skip(), DRAW_HINT, gr.skip()
    fitted, refusal = read_sketch_upload(path)
    if fitted is None:
        return gr.skip(), gr.skip(), refusal, gr.skip()
    gallery, message, shown = run_search(state, fitted, mode, k, live=False, text=text, text_weight=text_weight)
    if gallery:
        message = f"Uploaded **{escape(Path(path).name)}** · {message}"
    return gr.update(value=fitted, visible=True), gallery, message, shown


def example_strokes(path: Path) -> str:
    """A shipped example (a Quick, Draw! record) as the canvas value: JSON strokes fitted to the canvas."""
    record = json.loads(path.read_text(encoding="utf-8"))
    return json.dumps(fit_strokes(parse_strokes(record), CANVAS_UNITS), separators=(",", ":"))


def load_example(state: AppState, index: int, mode: str, k: float, text: str | None = None,
                 text_weight: float = DEFAULT_TEXT_WEIGHT) -> tuple[str, list, str, list]:
    """Example ``index`` -> (canvas value, gallery value, message, relpaths shown)."""
    source = EXAMPLES_DIR / f"{state.examples[index].stem}.json"
    strokes = example_strokes(source)
    gallery, message, shown = search_strokes(state, strokes, mode, k, live=False, text=text, text_weight=text_weight)
    return strokes, gallery, f"Example **{source.stem}** · {message}", shown


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
            image = render_strokes(parse_strokes(source.read_text(encoding="utf-8")), size=size)
        except (ValueError, OSError) as error:
            log.warning("skipping example %s: %s", source.name, error)
            continue
        path = out_dir / f"{source.stem}.png"
        image.save(path)
        paths.append(path)
    return paths
