"""Canvas values and stroke lists -> PIL sketch (sketchlvm/preprocess/strokes.py). No torch needed."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sketchlvm.preprocess.strokes import (
    EmptySketchError,
    canvas_to_image,
    crop_to_ink,
    draw_strokes_on_canvas,
    flatten_to_rgb,
    ink_bbox,
    load_ndjson,
    render_strokes,
)

NAN, INF = float("nan"), float("inf")
SQUARE = [[[0, 100, 100, 0, 0], [0, 0, 100, 100, 0]]]


def _drawing(size=(300, 200), box=(100, 50, 140, 70), fill=(0, 0, 0)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=fill)
    return image


def _stroke_layer(size=(120, 90), color=(0, 0, 0, 255)) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).line([(10, 10), (100, 70)], fill=color, width=5)
    return layer


def _flatten(layer: Image.Image) -> Image.Image:
    return Image.alpha_composite(Image.new("RGBA", layer.size, "white"), layer).convert("RGB")


# ---------------------------------------------------------------------------------------------
# canvas_to_image


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK"])
def test_canvas_to_image_any_mode_gives_rgb(mode):
    out = canvas_to_image(_drawing().convert(mode))
    assert out.mode == "RGB" and out.size == (300, 200)
    assert ink_bbox(out) == (100, 50, 140, 70)


def test_transparent_pixels_become_white_whatever_their_colour():
    layer = Image.new("RGBA", (20, 10), (0, 0, 0, 0))  # transparent *black*
    assert np.all(np.asarray(canvas_to_image(layer)) == 255)
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0])
    pal.info["transparency"] = 0
    assert np.all(np.asarray(canvas_to_image(pal)) == 255)


@pytest.mark.parametrize(
    "array",
    [
        np.full((20, 30), 255, np.uint8),
        np.ones((20, 30, 3), np.float32),
        np.full((20, 30, 4), 255.0),
        np.ones((20, 30, 1), np.float64),
        np.zeros((20, 30, 4), np.uint8),  # fully transparent
        np.full((20, 30, 3), 65535, np.uint16),
    ],
)
def test_numpy_canvases_blank_are_white(array):
    out = canvas_to_image(array)
    assert out.mode == "RGB" and out.size == (30, 20)
    assert np.all(np.asarray(out) == 255)


def test_numpy_float_unit_range_and_byte_range_agree():
    ink = np.ones((20, 30, 3))
    ink[5:9, 10:20] = 0.0
    assert np.array_equal(np.asarray(canvas_to_image(ink)), np.asarray(canvas_to_image(ink * 255)))
    assert ink_bbox(canvas_to_image(ink)) == (10, 5, 20, 9)


def test_numpy_rgba_layer_equals_pil_layer():
    layer = _stroke_layer()
    assert np.array_equal(
        np.asarray(canvas_to_image(np.asarray(layer))), np.asarray(canvas_to_image(layer))
    )


def test_path_and_gradio_filedata(tmp_path):
    path = tmp_path / "layer.png"
    _stroke_layer().save(path)
    expected = np.asarray(_flatten(_stroke_layer()))
    for value in (str(path), path, {"path": str(path)}):
        assert np.array_equal(np.asarray(canvas_to_image(value)), expected)


def test_editor_dict_layers_over_white_when_background_is_none():
    layer = _stroke_layer()
    value = {"background": None, "layers": [layer], "composite": None}
    assert np.array_equal(np.asarray(canvas_to_image(value)), np.asarray(_flatten(layer)))


def test_editor_dict_layers_over_background_in_order():
    background = np.full((90, 120, 3), 255, np.uint8)
    background[0:5, 0:5] = 0
    red = _stroke_layer(color=(255, 0, 0, 255))
    blue = Image.new("RGBA", (120, 90), (0, 0, 0, 0))
    ImageDraw.Draw(blue).rectangle([50, 30, 60, 40], fill=(0, 0, 255, 255))
    out = np.asarray(canvas_to_image({"background": background, "layers": [red, blue], "composite": None}))
    assert tuple(out[2, 2]) == (0, 0, 0)  # background ink survives
    assert tuple(out[35, 55]) == (0, 0, 255)  # the later layer is on top
    assert tuple(out[85, 5]) == (255, 255, 255)


def test_editor_dict_prefers_composite_and_flattens_a_transparent_one():
    layer = _stroke_layer()
    # Gradio 6.31: opaque white composite; older versions: transparent composite.
    for composite in (_flatten(layer), layer, np.asarray(layer)):
        value = {"background": None, "layers": [], "composite": composite}
        assert np.array_equal(np.asarray(canvas_to_image(value)), np.asarray(_flatten(layer)))


@pytest.mark.parametrize(
    "value",
    [None, {}, {"background": None, "layers": [], "composite": None}, {"layers": [None]}],
)
def test_nothing_drawn_is_an_empty_sketch_error(value):
    with pytest.raises(EmptySketchError, match="nothing drawn"):
        canvas_to_image(value)


def test_zero_area_canvas_is_empty():
    with pytest.raises(EmptySketchError):
        canvas_to_image(np.zeros((0, 10, 3), np.uint8))


def test_unreadable_values_are_other_errors():
    with pytest.raises(TypeError, match="unsupported canvas value"):
        canvas_to_image(42)
    with pytest.raises(ValueError, match="shape"):
        canvas_to_image(np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="cannot read canvas image"):
        canvas_to_image("/nonexistent/canvas.png")


def test_flatten_scales_16_bit_instead_of_clipping():
    arr = np.full((4, 4), 32768, np.uint16)
    image = Image.fromarray(arr)
    assert image.mode.startswith("I;16")
    assert np.all(np.abs(np.asarray(flatten_to_rgb(image)).astype(int) - 128) <= 1)


# ---------------------------------------------------------------------------------------------
# crop_to_ink


def test_crop_to_ink_squares_centres_and_adds_margin():
    out = crop_to_ink(_drawing(box=(100, 50, 140, 70)), margin=0.1)
    assert out.mode == "RGB" and out.size == (48, 48)  # 40 + 2 * 4
    assert ink_bbox(out) == (4, 14, 44, 34)
    assert crop_to_ink(_drawing(), margin=0).size == (40, 40)


@pytest.mark.parametrize("colour", [(255, 255, 0), (255, 0, 0), (0, 0, 255), (200, 200, 200)])
def test_any_visible_colour_is_ink(colour):
    assert crop_to_ink(_drawing(fill=colour), margin=0).size == (40, 40)


def test_near_white_noise_is_not_ink():
    noisy = np.random.default_rng(0).integers(245, 256, (50, 50, 3), dtype=np.uint8)
    with pytest.raises(EmptySketchError):
        crop_to_ink(Image.fromarray(noisy))


def test_crop_to_ink_blank_raises_and_bad_margin_refused():
    with pytest.raises(EmptySketchError):
        crop_to_ink(Image.new("RGB", (64, 64), "white"))
    with pytest.raises(ValueError, match="margin"):
        crop_to_ink(_drawing(), margin=-0.1)


def test_same_strokes_anywhere_on_the_canvas_crop_to_the_same_pixels(quickdraw_root):
    strokes = load_ndjson(quickdraw_root / "cat.ndjson", limit=1)[0]["drawing"]
    crops = [
        np.asarray(crop_to_ink(_flatten(draw_strokes_on_canvas(strokes, (1400, 1100), offset, 1.0, 5))))
        for offset in [(0, 0), (37, 211), (290, 3)]
    ]
    assert crops[0].shape[0] == crops[0].shape[1]
    for other in crops[1:]:
        assert other.shape == crops[0].shape
        # Pillow's wide lines are not exactly translation-invariant: allow a rare edge pixel.
        differs = np.abs(other.astype(int) - crops[0].astype(int)).max(axis=2) > 32
        assert differs.mean() < 0.002


# ---------------------------------------------------------------------------------------------
# render_strokes


def test_render_strokes_frames_like_crop_to_ink():
    size, margin = 240, 0.1
    image = render_strokes(SQUARE, size=size, stroke_width=0.05, margin=margin)
    assert image.mode == "RGB" and image.size == (size, size)
    left, top, right, bottom = ink_bbox(image)
    box = size / (1 + 2 * margin)  # 200 px of ink, 20 px margin each side
    assert abs((right - left) - box) <= 2 and abs((bottom - top) - box) <= 2
    assert abs(left - (size - right)) <= 1 and abs(top - (size - bottom)) <= 1
    # Re-framing a rendered sketch changes (almost) nothing: both paths meet here.
    assert abs(crop_to_ink(image, margin).width - size) <= 3


def test_render_strokes_keeps_aspect_ratio():
    image = render_strokes([[[0, 300], [50, 50]]], size=100, stroke_width=0.02, margin=0.0)
    left, top, right, bottom = ink_bbox(image)
    assert right - left >= 98 and bottom - top <= 4
    assert abs((top + bottom) / 2 - 50) <= 1


def test_render_strokes_accepts_times_records_and_arrays():
    with_times = [[[0, 10, 20], [0, 10, 0], [0, 16, 33]]]
    a = np.asarray(render_strokes(with_times, size=64))
    b = np.asarray(render_strokes({"word": "v", "drawing": with_times}, size=64))
    c = np.asarray(render_strokes([np.array(with_times[0])], size=64))
    assert np.array_equal(a, b) and np.array_equal(a, c)


@pytest.mark.parametrize(
    "strokes",
    [[], [[[], []]], [[[NAN], [NAN]]], [[[INF, -INF, 1.0], [0.0, 1.0, NAN]]], None],
)
def test_render_strokes_with_nothing_finite_is_empty(strokes):
    with pytest.raises(EmptySketchError):
        render_strokes(strokes)


def test_single_point_is_a_centred_dot():
    image = render_strokes([[[5.0], [7.0]]], size=100, stroke_width=0.1, margin=0.1)
    left, top, right, bottom = ink_bbox(image)
    assert 4 <= right - left <= 12 and 4 <= bottom - top <= 12
    assert abs((left + right) / 2 - 50) <= 1 and abs((top + bottom) / 2 - 50) <= 1


def test_non_finite_points_split_the_stroke_instead_of_joining_it():
    # (0,0)-(10,0) | NaN | (10,10)-(0,10): joined, it would draw a vertical bar on the right.
    image = np.asarray(render_strokes([[[0, 10, NAN, 10, 0], [0, 0, NAN, 10, 10]]], size=100, margin=0))
    right_middle = image[40:60, 90:100]
    assert right_middle.min() == 255
    assert image[:10].min() < 100 and image[-10:].min() < 100  # both halves are drawn


@pytest.mark.parametrize(
    "coords",
    [
        [[0, 1e12], [0, 1e12]],
        [[-1e308, 1e308], [1e308, -1e308]],
        [[1e12, 1e12 + 1], [5, 5]],
        [[0, 5e-324], [0, 0]],
    ],
)
def test_huge_and_tiny_coordinates_render_in_bounded_time_and_memory(coords):
    start = time.perf_counter()
    image = render_strokes([coords], size=64)
    assert time.perf_counter() - start < 1.0
    assert image.size == (64, 64) and ink_bbox(image) is not None


def test_thousands_of_strokes():
    rng = np.random.default_rng(0)
    strokes = [[rng.uniform(0, 500, 8).tolist(), rng.uniform(0, 500, 8).tolist()] for _ in range(3000)]
    start = time.perf_counter()
    image = render_strokes(strokes, size=128)
    assert time.perf_counter() - start < 5.0
    assert ink_bbox(image) is not None


@pytest.mark.parametrize(
    "strokes, message",
    [
        ([[[1, 2]]], r"\[xs, ys\]"),
        ([[[1, 2], [1]]], "x values"),
        ([[["a", "b"], [1, 2]]], "non-numeric"),
    ],
)
def test_malformed_strokes_are_value_errors_not_empty(strokes, message):
    with pytest.raises(ValueError, match=message) as info:
        render_strokes(strokes)
    assert not isinstance(info.value, EmptySketchError)


def test_render_strokes_refuses_bad_arguments():
    for kwargs in ({"size": 0}, {"stroke_width": 1.0}, {"stroke_width": -0.1}, {"margin": -1}):
        with pytest.raises(ValueError):
            render_strokes(SQUARE, **kwargs)


# ---------------------------------------------------------------------------------------------
# draw_strokes_on_canvas, load_ndjson


def test_draw_strokes_on_canvas_is_a_transparent_layer():
    layer = draw_strokes_on_canvas(SQUARE, (400, 300), offset=(50, 60), scale=2.0, stroke_px=4, color=(255, 0, 0))
    assert layer.mode == "RGBA" and layer.size == (400, 300)
    alpha = np.asarray(layer)[:, :, 3]
    assert alpha[0, 0] == 0 and alpha[60, 150] == 255
    assert tuple(np.asarray(layer)[60, 150, :3]) == (255, 0, 0)
    left, top, right, bottom = ink_bbox(_flatten(layer))
    assert abs(left - 48) <= 1 and abs(right - 252) <= 1 and abs(top - 58) <= 1 and abs(bottom - 262) <= 1
    with pytest.raises(ValueError, match="finite"):
        draw_strokes_on_canvas(SQUARE, scale=NAN)


def test_load_ndjson_real_files_render(quickdraw_root):
    files = sorted(quickdraw_root.glob("*.ndjson"))[::50]
    assert files
    for path in files:
        records = load_ndjson(path, limit=3)
        assert 1 <= len(records) <= 3
        for record in records:
            assert isinstance(record["word"], str)
            image = render_strokes(record["drawing"], size=96)
            assert ink_bbox(image) is not None


def test_load_ndjson_names_the_bad_line(tmp_path: Path):
    path = tmp_path / "bad.ndjson"
    path.write_text('{"word": "a", "drawing": [[[0, 1], [0, 1]]]}\n\n{not json\n')
    assert len(load_ndjson(path, limit=1)) == 1
    with pytest.raises(ValueError, match=r"bad\.ndjson:3"):
        load_ndjson(path)
    path.write_text('{"word": "a"}\n')
    with pytest.raises(ValueError, match="drawing"):
        load_ndjson(path)


# ---------------------------------------------------------------------------------------------
# parse_strokes: stroke JSON from the network (the app's canvas, API clients)

import json  # noqa: E402

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sketchlvm.preprocess.strokes import (  # noqa: E402
    MAX_COORDINATE,
    MAX_NESTING,
    MAX_POINTS,
    MAX_STROKE_BYTES,
    MAX_STROKES,
    StrokeFormatError,
    parse_strokes,
)

PROPERTY = settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def test_parse_strokes_accepts_the_canvas_and_quickdraw_formats(quickdraw_root):
    record = load_ndjson(quickdraw_root / "cat.ndjson", limit=1)[0]
    for payload in (json.dumps(record["drawing"]), json.dumps(record), record["drawing"], json.dumps(record).encode()):
        strokes = parse_strokes(payload)
        assert len(strokes) == len(record["drawing"])
        assert strokes[0][0] == [float(x) for x in record["drawing"][0][0]]
    canvas = '[[[10.5, 20, 30], [40, 50.25, 60], [0, 16, 33]], [[100], [100], [80]]]'  # what canvas.js sends
    assert parse_strokes(canvas) == [[[10.5, 20.0, 30.0], [40.0, 50.25, 60.0], [0.0, 16.0, 33.0]],
                                     [[100.0], [100.0], [80.0]]]
    for empty in (None, "", "  \n", "[]", '{"drawing": []}', []):
        assert parse_strokes(empty) == []


@pytest.mark.parametrize(("payload", "reason"), [
    ("[[[1, 2]", "not valid JSON"),
    ("[[[NaN], [1]]]", "finite"),
    ("[[[1], [Infinity]]]", "finite"),
    ("[[[1e309], [1]]]", "out of range"),
    (f"[[[{MAX_COORDINATE * 2}], [1]]]", "out of range"),
    ("[[[" + "1" * 5000 + "], [1]]]", "out of range"),  # beyond Python's int-from-text digit limit too
    ("[[[true], [1]]]", "numbers only"),
    ("[[[null], [1]]]", "numbers only"),
    ('[[["1"], [1]]]', "numbers only"),
    ("[[[], []]]", "non-empty"),
    ("[[[1, 2], [1]]]", "different lengths"),
    ("[[[1], [2], [3], [4]]]", "[xs, ys] or [xs, ys, ts]"),
    ("[[1, 2]]", "xs must be a non-empty list of numbers"),
    ('"strokes"', "expected a list of strokes"),
    ('{"word": "cat"}', '"drawing"'),
    ("[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1), "nested"),
    (json.dumps([[[1], [1]]] * (MAX_STROKES + 1)), "strokes sent"),
    (json.dumps([[[1] * (MAX_POINTS // 2 + 1), [1] * (MAX_POINTS // 2 + 1)]] * 2, separators=(",", ":")), "points"),
    ("[" + " " * MAX_STROKE_BYTES + "]", "bytes"),
    ("[[[1], [1]]]".encode("utf-16"), "UTF-8"),
    (42, "expected a list of strokes"),
])
def test_parse_strokes_refuses_with_a_message(payload, reason):
    with pytest.raises(StrokeFormatError, match=re.escape(reason)):
        parse_strokes(payload)


def test_parse_strokes_refuses_huge_payloads_quickly():
    for payload in ("[" * 2_000_000, "[" + "1," * 600_000 + "1]", '{"a":' * 400_000):
        started = time.perf_counter()
        with pytest.raises(StrokeFormatError):
            parse_strokes(payload)
        assert time.perf_counter() - started < 2.0


finite_coordinate = st.floats(-MAX_COORDINATE, MAX_COORDINATE, allow_nan=False)


@st.composite
def valid_strokes(draw, max_strokes=8, max_points=20):
    strokes = []
    for _ in range(draw(st.integers(0, max_strokes))):
        n = draw(st.integers(1, max_points))
        columns = [draw(st.lists(finite_coordinate, min_size=n, max_size=n)) for _ in range(2)]
        if draw(st.booleans()):
            columns.append(draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n)))
        strokes.append(columns)
    return strokes


@PROPERTY
@given(valid_strokes())
def test_parse_strokes_round_trips_valid_drawings(strokes):
    parsed = parse_strokes(json.dumps(strokes))
    assert parsed == [[[float(v) for v in col] for col in s] for s in strokes]


json_junk = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=30,
)


def _valid_result(strokes) -> None:
    assert isinstance(strokes, list) and len(strokes) <= MAX_STROKES
    assert sum(len(s[0]) for s in strokes) <= MAX_POINTS
    for s in strokes:
        assert len(s) in (2, 3) and len({len(c) for c in s}) == 1 and len(s[0]) >= 1
        assert all(isinstance(v, float) and math.isfinite(v) and abs(v) <= MAX_COORDINATE for c in s for v in c)


@PROPERTY
@given(st.one_of(json_junk.map(lambda v: json.dumps(v)), json_junk, st.text(max_size=200),
                 valid_strokes().map(json.dumps).map(lambda t: t[: len(t) // 2])))
def test_parse_strokes_returns_valid_strokes_or_a_format_error(payload):
    """Whatever arrives: a valid stroke list, or StrokeFormatError. No other exception."""
    try:
        strokes = parse_strokes(payload)
    except StrokeFormatError as error:
        assert str(error)
        return
    _valid_result(strokes)


@PROPERTY
@given(valid_strokes(max_strokes=5, max_points=10).filter(bool), st.sampled_from([32, 64, 224]))
def test_parsed_strokes_always_render_some_ink(strokes, size):
    """Every accepted non-empty drawing renders to a size x size sketch with ink on it (no EmptySketchError)."""
    image = render_strokes(parse_strokes(json.dumps(strokes)), size=size)
    assert image.size == (size, size) and image.mode == "RGB"
    assert ink_bbox(image) is not None


@PROPERTY
@given(valid_strokes(max_strokes=4, max_points=8).filter(bool), st.integers(-6, 6), st.floats(-1000, 1000))
def test_rendering_ignores_where_and_how_large_a_drawing_is(strokes, power, shift):
    """Canvas units are arbitrary: scaling by a power of two and shifting renders (almost) the same sketch."""
    strokes = [[[v / 1000.0 for v in c] for c in s[:2]] for s in strokes]  # keep the shifted values exact-ish
    moved = [[[v * 2.0**power + shift for v in s[0]], [v * 2.0**power + shift for v in s[1]]] for s in strokes]

    def spans(drawing):
        points = np.array([[x, y] for s in drawing for x, y in zip(s[0], s[1])])
        return points.max(axis=0) - points.min(axis=0)

    # Only moves that floating point carries out: adding 1.0 to a 1e-248-tall stroke flattens it to a dot.
    assume(np.allclose(spans(moved), spans(strokes) * 2.0**power, rtol=1e-6, atol=0))
    a = np.asarray(render_strokes(strokes, size=64), dtype=np.int16)
    b = np.asarray(render_strokes(moved, size=64), dtype=np.int16)
    assert np.mean(np.abs(a - b) > 64) < 0.01


def test_canvas_brush_matches_the_renderer():
    """The canvas draws lines line_width_ratio() of the drawing's extent wide: what the renderer draws."""
    from sketchlvm.webapp.canvas import line_width_ratio

    image = render_strokes([[[0, 400], [0, 0]]], size=512, supersample=8)  # one horizontal line
    left, top, right, bottom = ink_bbox(image)
    width, length = bottom - top, right - left  # the line's thickness and its extent (round caps included)
    assert width / (length - width) == pytest.approx(line_width_ratio(), rel=0.15)
