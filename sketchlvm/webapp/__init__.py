"""The web app: stroke canvas (canvas.py + static/), page layout (page.py), handlers, results, state.

Imports gradio; nothing else in ``sketchlvm`` imports this package.
"""

from .handlers import (
    MAX_SKETCH_PIXELS,
    fit_to_canvas,
    load_example,
    load_upload,
    render_examples,
    run_search,
    search_like,
    search_strokes,
    search_with_photo,
)
from .page import DEFAULT_TOP_K, MAX_TOP_K, build_demo, launch, launch_kwargs
from .results import caption, gallery_item
from .state import (
    DRAW_HINT,
    NO_GALLERY_HELP,
    UPLOAD_HINT,
    AppState,
    banner_markdown,
    progress_markdown,
    status_markdown,
)

__all__ = [
    "AppState", "DEFAULT_TOP_K", "DRAW_HINT", "MAX_SKETCH_PIXELS", "MAX_TOP_K", "NO_GALLERY_HELP", "UPLOAD_HINT",
    "banner_markdown", "build_demo", "caption", "fit_to_canvas", "gallery_item", "launch", "launch_kwargs",
    "load_example", "load_upload", "progress_markdown", "render_examples", "run_search", "search_like",
    "search_strokes", "search_with_photo", "status_markdown",
]
