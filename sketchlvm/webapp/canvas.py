"""The stroke canvas: a 2-D ``<canvas>`` in a Gradio ``gr.HTML`` that sends strokes as JSON.

Gradio's image editor renders and uploads three PNGs per stroke (~1.5 s per stroke and ~420 ms per
pointer move in headless Chromium on 2 cores, measured in this project; docs/benchmarks.md). This canvas draws locally and sends
the stroke list, a few kB of JSON, once per change (pen-up, undo, redo, clear). Its value is that JSON
text in the Quick, Draw! raw format (``[[xs, ys, ts], ...]`` in canvas units): the server validates it
with :func:`sketchlvm.preprocess.strokes.parse_strokes` and renders it with the same renderer as dataset strokes.

The browser side lives in ``static/canvas.js`` and ``static/canvas.css``, shipped with the package.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import gradio as gr

from sketchlvm.config import PreprocessConfig
from sketchlvm.preprocess.drawing import CANVAS_UNITS  # the canvas is 512 x 512 units, whatever its size on screen

STATIC_DIR = Path(__file__).resolve().parent / "static"
MIN_LINE_UNITS = 1.5  # thinnest line shown: a tiny drawing still shows up (the renderer draws >= 1 px)
# Mid-stroke queries (static/canvas.js): the drawing so far is sent after a pause of PAUSE_MS with the pen
# down, and at most every EVERY_MS while it keeps moving, each only when the drawing's ink has grown by
# GROWTH of the ink last sent. Measured in bench/bench_browser.py (docs/app.md).
PAUSE_MS = 100
EVERY_MS = 1000
GROWTH = 0.3


def live_strokes() -> bool:
    """Whether the canvas sends the drawing so far while the pen is down (on unless switched off: a busy
    public Space may want one query per stroke; docs/app.md has the measurements)."""
    from sketchlvm.config import settings

    return settings().live_strokes


TEMPLATE = """
<div class="sketchlvm-canvas-frame sketchlvm-empty">
  <canvas aria-label="Drawing canvas: draw with the mouse, a pen or a finger"></canvas>
  <div class="sketchlvm-canvas-hint">Draw here</div>
</div>
<div class="sketchlvm-canvas-tools">
  <button type="button" data-action="undo" title="Undo the last stroke (Ctrl/Cmd+Z)">↶ Undo</button>
  <button type="button" data-action="redo" title="Redo (Shift+Ctrl/Cmd+Z)">↷ Redo</button>
  <button type="button" data-action="clear" title="Clear the canvas (undo brings it back)">✕ Clear</button>
</div>
"""


@cache
def _static(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def line_width_ratio(config: PreprocessConfig | None = None) -> float:
    """Line width / drawing extent in what ``render_strokes`` draws, so the canvas shows the same lines.

    The renderer draws ``stroke_width * box`` wide lines and fits the centre lines into ``box - width``:
    relative to the centre lines' extent that is ``stroke_width / (1 - stroke_width)``.
    """
    width = (config or PreprocessConfig()).stroke_width
    return width / (1.0 - width)


class StrokeCanvas(gr.HTML):
    """A drawing canvas whose value is the stroke list as JSON text ("" when nothing is drawn).

    Listen to ``.input``: it fires once per pen-up, undo, redo and clear, never for a value the server
    sets (an example), so a handler that sets the value does not search twice. With ``live`` it also
    fires while the pen is down, with ``{"drawing": [...], "partial": true}``: the drawing so far.
    """

    def __init__(self, value: str = "", *, elem_id: str | None = None, live: bool = False, **kwargs: Any):
        super().__init__(
            value=value,
            html_template=TEMPLATE,  # no ${value}: a new value does not rebuild (wipe) the canvas
            css_template=_static("canvas.css"),
            js_on_load=_static("canvas.js"),
            elem_id=elem_id,
            units=CANVAS_UNITS,
            width_ratio=line_width_ratio(),
            min_width=MIN_LINE_UNITS,
            live=bool(live),
            pause_ms=PAUSE_MS,
            every_ms=EVERY_MS,
            growth=GROWTH,
            **kwargs,
        )

    def api_info(self) -> dict[str, Any]:
        return {
            "type": "string",
            "description": "strokes as JSON, Quick, Draw! raw format: [[xs, ys, ts], ...] ('' = nothing drawn)",
        }

    def example_payload(self) -> Any:
        return json.dumps([[[10, 100], [10, 100], [0, 50]]])

    def example_value(self) -> Any:
        return self.example_payload()


def fit_strokes(strokes: list, units: int = CANVAS_UNITS, config: PreprocessConfig | None = None) -> list[list[list[float]]]:
    """Stroke list in any units -> the same drawing placed on the canvas (for examples), exactly as
    Quick, Draw! strokes are placed for the model (``sketchlvm.preprocess.drawing.place_on_canvas``)."""
    from sketchlvm.preprocess.drawing import place_on_canvas
    from sketchlvm.preprocess.strokes import EmptySketchError

    try:
        return place_on_canvas(strokes, config, units)
    except EmptySketchError:
        return []
