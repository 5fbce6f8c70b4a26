"""The web app: stroke canvas (canvas.py + static/), page layout (page.py), handlers, results, state.

Owns everything a person sees and clicks. May import everything below it (search, gallery, model,
preprocess, config); nothing in ``sketchlvm`` imports it except the ``sketchlvm`` command (cli.py).
"""

import os

# Read by gradio and huggingface_hub at import time, so set before importing either.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# ZeroGPU: the `spaces` package patches torch's CUDA and must be imported before anything initialises CUDA
# (see sketchlvm/runtime/zerogpu.py). Elsewhere it is not needed.
if os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true"):
    import spaces  # noqa: E402,F401

from sketchlvm.webapp.handlers import (  # noqa: E402
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
from sketchlvm.webapp.page import DEFAULT_TOP_K, MAX_TOP_K, build_demo, launch, launch_kwargs
from sketchlvm.webapp.results import caption, gallery_item
from sketchlvm.webapp.state import (
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
