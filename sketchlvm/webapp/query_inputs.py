"""What a query is made from, checked and bounded before any model work: canvas strokes, an uploaded
sketch image, an uploaded photo, a shipped example. The page and the public API read them here, so both
refuse the same inputs with the same words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, ImageOps

from sketchlvm.config import PACKAGE_DIR
from sketchlvm.preprocess.drawing import StrokeDrawing
from sketchlvm.preprocess.strokes import MAX_STROKE_BYTES, EmptySketchError, crop_to_ink, parse_strokes
from sketchlvm.preprocess.transforms import ImageLoadError, load_photo
from sketchlvm.webapp.app_state import UPLOAD_HINT, AppState
from sketchlvm.webapp.canvas import CANVAS_UNITS, fit_strokes
from sketchlvm.webapp.markdown import escape

EXAMPLES_DIR = PACKAGE_DIR / "examples"
MAX_SKETCH_PIXELS = 4096 * 4096  # uploaded sketch images
UPLOAD_SIDE = 512  # fit_to_canvas's side (an uploaded sketch is not resampled to it: read_sketch_upload)
PHOTO_VIEW_SIDE = 320  # the query panel's copy of an uploaded photo


def strokes_to_sketch(state: AppState, strokes_json: Any) -> Image.Image:
    """Stroke JSON -> the sketch image the model sees: rendered and framed on the canvas by the model's own
    sketch transform (its checkpoint's framing, stroke width and margin), as dataset and partial strokes are.

    Raises StrokeFormatError (bad JSON, over a limit) or EmptySketchError (nothing drawn).
    """
    strokes = parse_strokes(strokes_json)
    if not strokes:
        raise EmptySketchError("nothing drawn")
    return state.searcher.model.sketch_transform.to_image(StrokeDrawing(strokes, on_canvas=True))


def is_partial(strokes_json: Any) -> bool:
    """Whether the canvas sent the drawing so far, mid-stroke (``{"drawing": [...], "partial": true}``,
    static/canvas.js) rather than a finished one."""
    if not isinstance(strokes_json, str) or not strokes_json.startswith("{"):
        return False
    if len(strokes_json) > MAX_STROKE_BYTES:  # refused by parse_strokes: not worth parsing here first
        return False
    try:
        value = json.loads(strokes_json)
    except ValueError:
        return False  # parse_strokes says what is wrong with it
    return isinstance(value, dict) and value.get("partial") is True


def fit_to_canvas(image: Image.Image, size: int = UPLOAD_SIDE) -> Image.Image:
    """Any RGB image -> ``size`` x ``size``, aspect kept, centred on white."""
    return ImageOps.pad(image, (size, size), method=Image.Resampling.LANCZOS, color="white")


def read_sketch_upload(path: str, transform: Any = None) -> tuple[Image.Image | None, str]:
    """An uploaded sketch image -> (the sketch, "") or (None, the refusal message).

    With ``transform`` (the model's ``SketchTransform``) the sketch is the framed image that transform makes
    from the file, as evaluation makes it from the same file: no other resampling comes first, and the
    query holds a small image. Without it, the upright image as read.

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
    return (image if transform is None else transform.to_image(image)), ""


def read_photo(state: AppState, path: str) -> tuple[Image.Image | None, str]:
    """An uploaded photo -> (a small copy for the query panel, "") or (None, the refusal message).

    Decoded within the model's limits before it is searched: a small file must not decode to gigabytes.
    """
    from sketchlvm.search import MAX_QUERY_PIXELS

    name = Path(path).name
    model = state.searcher.model
    try:
        view = load_photo(path, model.preprocess.max_image_pixels, draft_size=model.image_size,
                          max_decoded_pixels=MAX_QUERY_PIXELS)
    except ImageLoadError as error:
        reason = str(error).replace(str(path), name)  # no server paths in the UI
        gr.Warning(f"Photo refused: {reason}.")
        return None, f"**Photo refused:** {escape(reason)}."
    view.thumbnail((PHOTO_VIEW_SIDE, PHOTO_VIEW_SIDE))
    return view, ""


def example_strokes(path: Path, config: Any = None) -> str:
    """A shipped example (a Quick, Draw! record) as the canvas value: JSON strokes placed on the canvas with the
    model's own margin and line width (``config``: its ``PreprocessConfig``), as training and evaluation place
    the same strokes, so the example's tensor is theirs."""
    record = json.loads(path.read_text(encoding="utf-8"))
    return json.dumps(fit_strokes(parse_strokes(record), CANVAS_UNITS, config), separators=(",", ":"))
