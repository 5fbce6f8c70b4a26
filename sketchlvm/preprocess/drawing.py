"""Stroke drawings -> the sketch image the model sees: one canvas, one renderer, one framing.

Strokes reach the model from three places: the app's canvas (stroke JSON in canvas units), Quick, Draw!
drawings in training and evaluation, and partial-sketch evaluation (the first strokes or points of a
drawing). Each becomes a :class:`StrokeDrawing`, and :class:`~sketchlvm.preprocess.transforms.SketchTransform`
renders every one of them through :func:`render_drawing` with the checkpoint's own preprocessing, so the same
strokes give the same tensor whichever path they take (tests/preprocess/test_drawing.py checks it end to end).

The canvas. The app's canvas is ``CANVAS_UNITS`` x ``CANVAS_UNITS`` units. A Quick, Draw! drawing records
no canvas, so it is placed on one as the app places an example drawing (:func:`place_on_canvas`): centred,
its lines filling the canvas but for ``sketch_margin`` on every side. A partial drawing is placed where its
finished drawing is (``StrokeDrawing.placed_as``), which is where it stood on the canvas while being drawn.

The framing (``PreprocessConfig.sketch_framing``), the same for every source:

- ``pad-square``: the whole canvas is the frame, as the whole image is for an image sketch, so a drawing
  keeps where and how large it was drawn. Lines are ``stroke_width`` of the canvas's inner square
  (``S / (1 + 2 * sketch_margin)`` pixels) wide, so a finished drawing placed on the canvas gives the same
  image under both framings.
- ``ink-crop``: the frame is the drawing's own ink box plus ``sketch_margin``
  (:func:`~sketchlvm.preprocess.strokes.render_strokes`), so a drawing fills the frame wherever and however
  small it was drawn; lines are ``stroke_width`` of that box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from sketchlvm.config import SKETCH_FRAMINGS, PreprocessConfig
from sketchlvm.preprocess.strokes import EmptySketchError, _rasterise, _stroke_segments, render_strokes

CANVAS_UNITS = 512  # the app's canvas is CANVAS_UNITS x CANVAS_UNITS units, whatever its size on screen
PLACED_DECIMALS = 1  # placed coordinates are rounded as the app's example JSON is (0.1 unit = 0.04 px at 224)
SUPERSAMPLE = 4
# An image that render_drawing framed carries this key in ``image.info``; SketchTransform does not frame it twice.
FRAMED_KEY = "sketchlvm-framed"


@dataclass(frozen=True)
class StrokeDrawing:
    """Strokes ``[[xs, ys(, ts)], ...]`` on their way to the model.

    ``on_canvas``: the strokes are already in canvas units (the app's canvas sends them so). Otherwise they
    are placed on the canvas as a finished drawing is (:func:`place_on_canvas`), or, with ``placed_as``, as
    that finished drawing is: a partial drawing stays where it stood on the canvas.
    """

    strokes: Any
    on_canvas: bool = False
    placed_as: Any = None

    def canvas_strokes(self, config: PreprocessConfig) -> list:
        if self.on_canvas:
            return list(self.strokes)
        return place_on_canvas(self.strokes, config, like=self.placed_as)


def _segments_or_empty(strokes: Any) -> list[np.ndarray]:
    segments = _stroke_segments(strokes)
    if not segments:
        raise EmptySketchError("nothing drawn: no stroke has a finite point")
    return segments


def placement(strokes: Any, config: PreprocessConfig | None = None,
              units: float = CANVAS_UNITS) -> tuple[float, float, float]:
    """``(scale, dx, dy)``: ``x * scale + dx`` puts a finished drawing on the canvas, centred, its lines
    (centre lines plus half a line width) filling the inner square ``units / (1 + 2 * sketch_margin)``."""
    config = config or PreprocessConfig()
    points = np.concatenate(_segments_or_empty(strokes))
    low, high = points.min(axis=0), points.max(axis=0)
    extent = float((high - low).max())
    inner = units / (1.0 + 2.0 * config.sketch_margin)
    scale = inner * (1.0 - config.stroke_width) / extent if extent > 0 else 1.0
    centre = (low + high) / 2.0
    return scale, float(units / 2.0 - centre[0] * scale), float(units / 2.0 - centre[1] * scale)


def place_on_canvas(strokes: Any, config: PreprocessConfig | None = None, units: float = CANVAS_UNITS,
                    like: Any = None) -> list[list[list[float]]]:
    """Strokes -> the same strokes in canvas units, placed as a finished drawing is (or as ``like`` is).

    Coordinates are rounded to ``PLACED_DECIMALS``, as the app's example JSON carries them, so a drawing
    placed here and one sent by the canvas are the same numbers. Times, when present, are kept.
    """
    if isinstance(strokes, dict):
        strokes = strokes.get("drawing", [])
    scale, dx, dy = placement(strokes if like is None else like, config, units)
    placed = []
    for stroke in strokes:
        xs = [round(float(x) * scale + dx, PLACED_DECIMALS) for x in stroke[0]]
        ys = [round(float(y) * scale + dy, PLACED_DECIMALS) for y in stroke[1]]
        placed.append([xs, ys, list(stroke[2])] if len(stroke) > 2 else [xs, ys])
    return placed


def check_framing(config: PreprocessConfig) -> None:
    if config.sketch_framing not in SKETCH_FRAMINGS:
        raise ValueError(
            f"unknown sketch_framing {config.sketch_framing!r}; choose one of {', '.join(SKETCH_FRAMINGS)}"
        )


def framed_signature(config: PreprocessConfig, size: int) -> str:
    """What an image framed by :func:`render_drawing` was framed for (kept in ``image.info[FRAMED_KEY]``)."""
    return f"{config.sketch_framing}/{size}/{config.sketch_margin!r}/{config.stroke_width!r}"


def render_drawing(drawing: StrokeDrawing, config: PreprocessConfig, size: int) -> Image.Image:
    """A drawing -> the ``size`` x ``size`` RGB sketch the model sees, framed as ``config`` says (see the
    module docstring). Raises EmptySketchError when no finite point is drawn."""
    check_framing(config)
    if not isinstance(drawing, StrokeDrawing):
        drawing = StrokeDrawing(drawing)
    strokes = drawing.canvas_strokes(config)
    if config.sketch_framing == "ink-crop":
        image = render_strokes(strokes, size, config.stroke_width, config.sketch_margin, SUPERSAMPLE)
    else:
        segments = _segments_or_empty(strokes)
        px = size / CANVAS_UNITS
        width_px = max(1.0, config.stroke_width * size / (1.0 + 2.0 * config.sketch_margin))
        with np.errstate(over="ignore"):
            mask = _rasterise([seg * px for seg in segments], (size, size), width_px, SUPERSAMPLE)
        if mask.getbbox() is None:
            raise EmptySketchError("nothing drawn on the canvas: every stroke lies outside it")
        image = Image.merge("RGB", [mask.point(lambda v: 255 - v)] * 3)
    image.info[FRAMED_KEY] = framed_signature(config, size)
    return image

