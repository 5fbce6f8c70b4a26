"""The web app: stroke canvas (canvas.py + static/), the page (page.py: page_layout.py wired by
page_events.py), the one query path of page and API (query.py, its inputs in query_inputs.py, newest
query wins in newest.py, mid-stroke searches give way when the server is busy in busy.py), the API's
handlers, results, state; cli.py is the command line.

Owns everything a person sees and clicks. May import everything below it (search, gallery, model,
preprocess, config); nothing in ``sketchlvm`` imports it except the ``sketchlvm`` command (cli.py).
The public names below are imported on first use, so ``python app.py --help`` (which imports
``sketchlvm.webapp.cli``) answers before gradio, torch or the model are loaded.
"""

import os
from importlib import import_module

# Read by gradio and huggingface_hub at import time, so set before importing either.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# ZeroGPU: the `spaces` package patches torch's CUDA and must be imported before anything initialises CUDA
# (see sketchlvm/runtime/zerogpu.py). Elsewhere it is not needed.
if os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true"):
    import spaces  # noqa: E402,F401

_EXPORTS = {
    "MAX_SKETCH_PIXELS": "sketchlvm.webapp.handlers",
    "fit_to_canvas": "sketchlvm.webapp.handlers",
    "load_example": "sketchlvm.webapp.handlers",
    "load_upload": "sketchlvm.webapp.handlers",
    "render_examples": "sketchlvm.webapp.handlers",
    "run_search": "sketchlvm.webapp.handlers",
    "search_like": "sketchlvm.webapp.handlers",
    "search_strokes": "sketchlvm.webapp.handlers",
    "search_with_photo": "sketchlvm.webapp.handlers",
    "DEFAULT_TOP_K": "sketchlvm.webapp.cli",
    "MAX_TOP_K": "sketchlvm.webapp.page",
    "build_demo": "sketchlvm.webapp.page",
    "launch": "sketchlvm.webapp.page",
    "launch_kwargs": "sketchlvm.webapp.page",
    "caption": "sketchlvm.webapp.results",
    "gallery_item": "sketchlvm.webapp.results",
    "DRAW_HINT": "sketchlvm.webapp.app_state",
    "NO_GALLERY_HELP": "sketchlvm.webapp.app_state",
    "UPLOAD_HINT": "sketchlvm.webapp.app_state",
    "AppState": "sketchlvm.webapp.app_state",
    "banner_markdown": "sketchlvm.webapp.app_state",
    "progress_markdown": "sketchlvm.webapp.app_state",
    "status_markdown": "sketchlvm.webapp.app_state",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
