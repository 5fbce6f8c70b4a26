"""Property tests: whatever is drawn or sent, preprocessing gives a valid tensor or EmptySketchError.

Never another exception, never a non-finite value, never memory that grows with coordinates.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sketchlvm.preprocess.strokes import EmptySketchError, crop_to_ink, draw_strokes_on_canvas, render_strokes
from sketchlvm.preprocess.transforms import SketchTransform

S = 32  # small tensors keep each example fast
TRANSFORM = SketchTransform(S)
# database=None: no .hypothesis/ folder in the working tree.
SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

any_float = st.floats(allow_nan=True, allow_infinity=True)
# Mostly ordinary screen coordinates, sometimes anything at all (NaN, inf, 1e308, subnormals).
coordinate = st.one_of(st.floats(-2000, 2000), st.floats(-1e12, 1e12), any_float)


@st.composite
def stroke(draw, values=coordinate):
    n = draw(st.integers(0, 12))
    xs = draw(st.lists(values, min_size=n, max_size=n))
    ys = draw(st.lists(values, min_size=n, max_size=n))
    if draw(st.booleans()):
        return [xs, ys, list(range(n))]  # with times
    return [xs, ys]


strokes_strategy = st.lists(stroke(), max_size=8)


def _has_finite_point(strokes) -> bool:
    return any(math.isfinite(x) and math.isfinite(y) for s in strokes for x, y in zip(s[0], s[1]))


def _check(value) -> bool:
    """Run the sketch pipeline; True for a valid tensor, False for EmptySketchError."""
    try:
        tensor = TRANSFORM(value)
    except EmptySketchError:
        return False
    assert tensor.shape == (3, S, S) and tensor.dtype == torch.float32
    assert torch.isfinite(tensor).all()
    return True


@SETTINGS
@given(strokes_strategy, st.sampled_from([0.0, 0.02, 0.2]), st.sampled_from([0.0, 0.1, 0.5]))
def test_render_strokes_then_transform(strokes, stroke_width, margin):
    try:
        image = render_strokes(strokes, size=48, stroke_width=stroke_width, margin=margin)
    except EmptySketchError:
        assert not _has_finite_point(strokes)
        return
    assert _has_finite_point(strokes)
    assert image.size == (48, 48) and image.mode == "RGB"
    assert _check(image)  # something finite was drawn, so there is ink


@SETTINGS
@given(
    strokes_strategy,
    st.tuples(st.floats(-200, 200), st.floats(-200, 200)),
    st.floats(1e-3, 10),
    st.floats(0.5, 8),
)
def test_strokes_drawn_on_a_canvas_then_transform(strokes, offset, scale, brush):
    layer = draw_strokes_on_canvas(strokes, (64, 48), offset, scale, brush)
    assert layer.size == (64, 48) and layer.mode == "RGBA"
    _check({"background": None, "layers": [layer], "composite": None})


@SETTINGS
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.float32, np.float64, np.uint16, np.bool_]),
        shape=st.one_of(
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=24),
            st.tuples(st.integers(0, 24), st.integers(0, 24), st.sampled_from([1, 2, 3, 4])),
        ),
    )
)
def test_random_numpy_canvases(array):
    _check(array)


@st.composite
def rgb_canvas(draw):
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    return draw(hnp.arrays(np.uint8, (h, w, 3), elements=st.sampled_from([0, 128, 230, 240, 255])))


@SETTINGS
@given(rgb_canvas())
def test_empty_exactly_when_no_pixel_is_dark_enough(array):
    has_ink = bool((array.min(axis=2) < 255 - TRANSFORM.config.ink_threshold).any())
    assert _check(array) == has_ink


@st.composite
def editor_value(draw):
    """A Gradio ImageEditor dict: any entry None, numpy or PIL; layers transparent RGBA."""
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    image = hnp.arrays(np.uint8, (h, w, 4), elements=st.integers(0, 255))
    background = draw(st.one_of(st.none(), hnp.arrays(np.uint8, (h, w, 3), elements=st.integers(0, 255))))
    layers = draw(st.lists(st.one_of(st.none(), image), max_size=3))
    composite = draw(st.one_of(st.none(), image))
    return {"background": background, "layers": layers, "composite": composite}


@SETTINGS
@given(editor_value())
def test_random_gradio_editor_values(value):
    _check(value)


@settings(max_examples=25, deadline=None, database=None)
@given(
    st.lists(stroke(st.floats(0, 150)), min_size=1, max_size=6),
    st.tuples(st.integers(0, 150), st.integers(0, 150)),
)
def test_whole_pixel_translation_barely_changes_the_crop(strokes, shift):
    """Same strokes moved by whole pixels on the canvas: (almost) the same framed sketch.

    Not bit-identical: Pillow's wide lines are not exactly translation-invariant (one edge
    pixel can come or go), so the framed size may move by a pixel and the ink area by a hair.
    """

    def framed_ink(offset):
        layer = draw_strokes_on_canvas(strokes, (320, 320), offset, 1.0, 3)
        image = np.asarray(crop_to_ink({"background": None, "layers": [layer], "composite": None}))
        return image.min(axis=2) < 255 - TRANSFORM.config.ink_threshold

    try:
        a = framed_ink((10, 10))
    except EmptySketchError:
        assert not _has_finite_point(strokes)
        return
    b = framed_ink((10 + shift[0], 10 + shift[1]))
    assert abs(a.shape[0] - b.shape[0]) <= 2
    assert abs(int(a.sum()) - int(b.sum())) <= 0.02 * a.sum() + 4


@settings(max_examples=3, deadline=None, database=None)
@given(st.integers(1000, 4000), st.integers(0, 2**32 - 1))
def test_thousands_of_strokes(n_strokes, seed):
    rng = np.random.default_rng(seed)
    strokes = [
        [rng.uniform(0, 1000, k).tolist(), rng.uniform(0, 1000, k).tolist()]
        for k in rng.integers(1, 6, n_strokes)
    ]
    start = time.perf_counter()
    assert _check(render_strokes(strokes, size=64))
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("magnitude", [1e6, 1e12, 1e100, 1e300])
def test_huge_coordinates_cost_nothing_extra(magnitude):
    strokes = [[[0.0, magnitude, magnitude / 2], [0.0, magnitude / 3, magnitude]], [[-magnitude], [magnitude]]]
    start = time.perf_counter()
    assert _check(render_strokes(strokes, size=64))
    assert _check({"background": None, "layers": [draw_strokes_on_canvas(strokes, (64, 64), (0, 0), 1.0, 3)],
                   "composite": None}) in (True, False)
    assert time.perf_counter() - start < 1.0
