"""SketchLVM web app: draw in the browser, get the matching photos from your own gallery.

    python app.py --gallery path/to/photos            # one subfolder per category, or a flat folder
    python app.py --help

Hugging Face Spaces run this file. The command line itself lives in ``sketchlvm.webapp.cli`` (also
``sketchlvm app`` once the package is installed); this file only starts it.
"""

import sys

from sketchlvm.webapp.cli import build_parser, main, prepare  # noqa: F401  (light: nothing heavy until main runs)

_EXPORTS = {  # the app's other public names, as before, imported on first use (they import gradio)
    "DEFAULT_TOP_K": "sketchlvm.webapp.cli",
    "launch": "sketchlvm.webapp.cli",
    "DRAW_HINT": "sketchlvm.webapp.app_state",
    "NO_GALLERY_HELP": "sketchlvm.webapp.app_state",
    "UPLOAD_HINT": "sketchlvm.webapp.app_state",
    "AppState": "sketchlvm.webapp.app_state",
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
