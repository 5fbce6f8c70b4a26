"""SketchLVM web app: draw in the browser, get the matching photos from your own gallery.

    python app.py --gallery path/to/photos            # one subfolder per category, or a flat folder
    python app.py --help

Hugging Face Spaces run this file. The command line itself lives in ``sketchlvm.webapp.main`` (also
``sketchlvm app`` once the package is installed); this file only starts it.
"""

import sys

from sketchlvm.webapp.main import build_parser, main, prepare  # noqa: F401  (light: nothing heavy until main runs)

_EXPORTS = {  # the app's other public names, as before, imported on first use (they import gradio)
    "DEFAULT_TOP_K": "sketchlvm.webapp.main",
    "launch": "sketchlvm.webapp.main",
    "DRAW_HINT": "sketchlvm.webapp.state",
    "NO_GALLERY_HELP": "sketchlvm.webapp.state",
    "UPLOAD_HINT": "sketchlvm.webapp.state",
    "AppState": "sketchlvm.webapp.state",
    "build_demo": "sketchlvm.webapp.page",
    "launch_kwargs": "sketchlvm.webapp.page",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(_EXPORTS[name]), name)


if __name__ == "__main__":
    sys.exit(main())
