"""Canvas values and stroke lists -> one PIL sketch (black ink on white). No torch here.

Stroke JSON from the network (the app's canvas, API clients) is parsed strictly by
:func:`parse_strokes` first: it bounds size, nesting, counts and coordinates, so whatever arrives,
rendering costs no more than a drawing of ``MAX_POINTS`` points.

Two inputs meet in one path: what the Gradio canvas sends (a PIL image, a numpy array, a file path
or the ImageEditor dict ``{"background", "layers", "composite"}``) goes through
:func:`canvas_to_image`; Quick, Draw! stroke lists go through :func:`render_strokes`. Either way
:func:`crop_to_ink` then frames the ink the same way, so a sketch does not depend on where or how
large it was drawn.

"Nothing drawn" is :class:`EmptySketchError` (a ``ValueError``), never a blank image: the caller
decides whether that is an error (an API) or a no-op (a live search box).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from sketchlvm.config import PreprocessConfig

logger = logging.getLogger(__name__)

_DEFAULTS = PreprocessConfig()
WHITE = (255, 255, 255)

# Stroke geometry is normalised before drawing, so memory never depends on coordinate magnitude.
# Beyond this magnitude coordinates are rescaled first so that max - min cannot overflow to inf.
_RESCALE_ABOVE = 1e150


class EmptySketchError(ValueError):
    """Nothing was drawn: no ink on the canvas, or no finite point in the strokes."""


class StrokeFormatError(ValueError):
    """Stroke JSON that is malformed or over a limit. The message is written for the person sending it."""


# Limits on stroke JSON from the network (parse_strokes). A Quick, Draw! drawing has ~5-30 strokes
# and a few hundred points; a long careful canvas drawing a few thousand.
MAX_STROKE_BYTES = 1_000_000
MAX_STROKES = 1_000
MAX_POINTS = 100_000
MAX_COORDINATE = 1e6  # canvas units (the app's canvas is 0..CANVAS_UNITS); Quick, Draw! raw is < 1e4
MAX_NESTING = 8  # [[[1]]] is 3 deep; a {"drawing": ...} record 4


# --------------------------------------------------------------------------------------------
# Canvas values -> RGB image on white


def flatten_to_rgb(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Any PIL mode -> RGB; transparency is composited over ``background`` (white).

    Handles RGBA/LA/PA/RGBa/La, palette and RGB/L images with a ``transparency`` entry, CMYK,
    YCbCr, 1-bit, and 16/32-bit integer or float greyscale ('I;16*', 'I', 'F'), which are scaled
    to 8 bits instead of being clipped to white as a plain ``convert("L")`` would.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I") or mode == "F":
        image = _wide_grey_to_l(image)
        mode = "L"
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as e:  # e.g. LAB / HSV have no direct conversion
        raise ValueError(f"cannot convert image mode {mode!r} to RGB: {e}") from e


def _wide_grey_to_l(image: Image.Image) -> Image.Image:
    """'I;16*' / 'I' / 'F' greyscale -> 'L', scaling 16-bit (or [0, 1] float) data to 0-255."""
    arr = np.asarray(image).astype(np.float64)
    finite = arr[np.isfinite(arr)]
    top = float(finite.max()) if finite.size else 0.0
    if image.mode == "F" and top <= 1.0:
        arr = arr * 255.0
    elif image.mode.startswith("I;16") or top > 255.0:
        arr = arr / 257.0  # 65535 -> 255
    arr = np.nan_to_num(arr, nan=255.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def _array_to_image(array: np.ndarray) -> Image.Image:
    """HxW / HxWx1 / HxWx2 / HxWx3 / HxWx4 array (uint8, bool, other ints, float) -> PIL image.

    Floats whose finite maximum is <= 1 are read as [0, 1], otherwise as [0, 255]; NaN reads as
    white (and opaque).
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ValueError(
            f"canvas array must be HxW, HxWx1, HxWx2, HxWx3 or HxWx4; got shape {arr.shape}"
        )
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.bool_:
        out = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer):
        scaled = arr.astype(np.float64) / 257.0 if arr.dtype == np.uint16 else arr
        out = np.clip(scaled, 0, 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
        finite = arr[np.isfinite(arr)]
        if finite.size and finite.max() <= 1.0:
            arr = arr * 255.0
        arr = np.nan_to_num(arr, nan=255.0, posinf=255.0, neginf=0.0)
        out = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"canvas array has unsupported dtype {arr.dtype}")
    # uint8 HxW / HxWx2 / HxWx3 / HxWx4 -> L / LA / RGB / RGBA (fromarray infers the mode).
    return Image.fromarray(np.ascontiguousarray(out))


def _open_path(path: str | PathLike) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except Exception as e:  # Pillow raises many types for bad files; all mean "unreadable"
        raise ValueError(f"cannot read canvas image {str(path)!r}: {e}") from e


def _to_image(value: Any) -> Image.Image | None:
    """One canvas entry (PIL / numpy / path / Gradio FileData dict / None) -> PIL or None."""
    if value is None:
        return None
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, np.ndarray):
        return _array_to_image(value)
    if isinstance(value, (str, PathLike)):
        return _open_path(value)
    if isinstance(value, dict) and isinstance(value.get("path"), str):  # gradio FileData
        return _open_path(value["path"])
    raise TypeError(
        f"unsupported canvas value of type {type(value).__name__}; expected a PIL image, "
        "a numpy array, a file path or a Gradio ImageEditor dict"
    )


def _compose_editor(value: dict) -> Image.Image | None:
    """Gradio ImageEditor dict -> RGB, or None when it holds no image at all.

    The composite is Gradio's own flattening, so it wins when present. It can be None on an
    early event; then the layers (transparent RGBA) are composited over the background, or over
    white when there is no background. Layers of another size are pasted at the top-left.
    """
    composite = _to_image(value.get("composite"))
    if composite is not None:
        return flatten_to_rgb(composite)
    background = _to_image(value.get("background"))
    layers = [im for im in (_to_image(v) for v in (value.get("layers") or [])) if im is not None]
    if background is None and not layers:
        return None
    sizes = [im.size for im in ([background] if background is not None else []) + layers]
    width, height = max(s[0] for s in sizes), max(s[1] for s in sizes)
    canvas = Image.new("RGBA", (width, height), (*WHITE, 255))
    for im in ([background] if background is not None else []) + layers:
        if im.mode.startswith("I") or im.mode == "F":
            im = _wide_grey_to_l(im)
        layer = im if im.mode == "RGBA" else im.convert("RGBA")
        canvas.alpha_composite(layer, (0, 0))
    return canvas.convert("RGB")


def canvas_to_image(value: Any) -> Image.Image:
    """Whatever the canvas sends -> RGB PIL image, flattened onto white.

    ``value``: a PIL image (any mode), a numpy array (HxW, HxWx3, HxWx4; uint8 or float), a file
    path, or a Gradio ImageEditor dict ``{"background", "layers", "composite"}`` whose entries
    may each be None / PIL / numpy / path. Raises :class:`EmptySketchError` for None, a dict with
    no image in it, or a zero-area image; ``ValueError``/``TypeError`` for values it cannot read.
    """
    if isinstance(value, dict) and not isinstance(value.get("path"), str):
        image = _compose_editor(value)
    else:
        image = _to_image(value)
    if image is None:
        raise EmptySketchError("nothing drawn: the canvas is empty")
    if image.width == 0 or image.height == 0:
        raise EmptySketchError(f"nothing drawn: the canvas has zero area ({image.size})")
    return flatten_to_rgb(image)


# --------------------------------------------------------------------------------------------
# Framing


def ink_bbox(image: Image.Image, threshold: int = _DEFAULTS.ink_threshold) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the ink (exclusive right/bottom), or None if there is none.

    A pixel is ink when its darkest channel is more than ``threshold`` below 255, so strokes of
    any colour count (yellow has a blue channel of 0) and near-white noise does not.
    """
    rgb = np.asarray(flatten_to_rgb(image))
    if rgb.size == 0:
        return None
    # The darkest channel, as two element-wise minimums: numpy's min over a 3-long last axis is ~10x
    # slower (7 ms on a 512 x 512 upload here, on the request path).
    mask = np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2]) < 255 - threshold
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_to_ink(
    image: Image.Image,
    margin: float = _DEFAULTS.sketch_margin,
    threshold: int = _DEFAULTS.ink_threshold,
) -> Image.Image:
    """Crop to the ink's bounding box, add a white margin, pad to a square with the ink centred.

    ``margin`` is a fraction of the box's longer side, added on every side. Returns RGB of side
    ``longer + 2 * round(margin * longer)``. Raises :class:`EmptySketchError` if there is no ink.
    """
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    image = canvas_to_image(image)
    box = ink_bbox(image, threshold)
    if box is None:
        raise EmptySketchError(
            f"nothing drawn: no pixel darker than {255 - threshold} on a {image.size} canvas"
        )
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    longer = max(width, height)
    pad = int(round(margin * longer))
    side = longer + 2 * pad
    out = Image.new("RGB", (side, side), WHITE)
    out.paste(image.crop(box), ((side - width) // 2, (side - height) // 2))
    return out


# --------------------------------------------------------------------------------------------
# Stroke lists (Quick, Draw! format) -> image


def _stroke_segments(strokes: Any) -> list[np.ndarray]:
    """Strokes -> list of (N, 2) float64 arrays of finite points.

    A stroke is ``[xs, ys]`` or ``[xs, ys, ts]`` (times ignored). Non-finite points are pen-ups:
    the stroke is split there rather than joined across the gap.
    """
    if isinstance(strokes, dict):
        strokes = strokes.get("drawing", [])
    if strokes is None:
        return []
    if isinstance(strokes, np.ndarray) and strokes.ndim == 2 and strokes.shape[0] in (2, 3):
        strokes = [strokes]  # one stroke passed as an array
    segments: list[np.ndarray] = []
    for i, stroke in enumerate(strokes):
        if stroke is None or len(stroke) == 0:
            continue
        if len(stroke) not in (2, 3):
            raise ValueError(
                f"stroke {i} must be [xs, ys] or [xs, ys, ts]; got {len(stroke)} sequences"
            )
        try:
            xs = np.asarray(stroke[0], dtype=np.float64).reshape(-1)
            ys = np.asarray(stroke[1], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as e:
            raise ValueError(f"stroke {i} has non-numeric coordinates: {e}") from e
        if xs.shape != ys.shape:
            raise ValueError(f"stroke {i} has {xs.size} x values but {ys.size} y values")
        finite = np.isfinite(xs) & np.isfinite(ys)
        if finite.all():
            if xs.size:
                segments.append(np.stack([xs, ys], axis=1))
            continue
        # Split into runs of finite points.
        edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
        for start, stop in zip(edges[::2], edges[1::2]):
            segments.append(np.stack([xs[start:stop], ys[start:stop]], axis=1))
    return segments


def _rasterise(
    segments: Sequence[np.ndarray], size: tuple[int, int], width_px: float, supersample: int
) -> Image.Image:
    """Draw polylines (pixel coordinates) as an 'L' mask, 255 = ink, with round caps and joins.

    Drawn ``supersample`` times larger and box-reduced: a cheap anti-aliasing close to a
    browser canvas.
    """
    ss = max(1, int(supersample))
    mask = Image.new("L", (size[0] * ss, size[1] * ss), 0)
    draw = ImageDraw.Draw(mask)
    width = max(1, int(round(width_px * ss)))
    radius = max(width / 2.0, 0.5)
    limit = 4.0 * max(size) * ss + 4.0 * width  # keep far-off points within int range
    for seg in segments:
        with np.errstate(over="ignore"):  # coordinates near float max overflow to inf, then clip
            pts = np.clip(seg * ss + (ss - 1) / 2.0, -limit, limit)
        if len(pts) > 1:
            draw.line(pts.ravel().tolist(), fill=255, width=width)
        # A disc on every vertex: round caps and joins (3x faster than joint="curve"), and the
        # dot of a one-point stroke.
        for x, y in pts.tolist():
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    return mask.reduce(ss) if ss > 1 else mask


def render_strokes(
    strokes: Any,
    size: int = 256,
    stroke_width: float = _DEFAULTS.stroke_width,
    margin: float = _DEFAULTS.sketch_margin,
    supersample: int = 4,
) -> Image.Image:
    """Quick, Draw! strokes -> ``size`` x ``size`` RGB, black anti-aliased polylines on white.

    ``strokes``: a list of ``[xs, ys]`` or ``[xs, ys, ts]`` in screen pixels (or a Quick, Draw!
    record with a ``"drawing"`` key). The drawing is scaled to fit with its aspect kept and
    centred, framed as :func:`crop_to_ink` frames a canvas: the inked box (strokes included) is
    ``size / (1 + 2 * margin)`` wide and ``stroke_width`` is a fraction of that box. One-point
    strokes become dots; non-finite points are dropped (the stroke is split there). Raises
    :class:`EmptySketchError` when no finite point is left. Memory depends on ``size`` only.
    """
    if int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size!r}")
    if not 0 <= stroke_width < 1:
        raise ValueError(f"stroke_width must be in [0, 1), got {stroke_width!r}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    size = int(size)
    segments = _stroke_segments(strokes)
    if not segments:
        raise EmptySketchError("nothing drawn: no stroke has a finite point")
    points = np.concatenate(segments)
    biggest = float(np.abs(points).max())
    if biggest > _RESCALE_ABOVE:  # keep max - min finite
        segments = [seg / biggest for seg in segments]
        points = points / biggest
    low, high = points.min(axis=0), points.max(axis=0)
    extent = float((high - low).max())
    box = size / (1.0 + 2.0 * margin)  # side of the inked square, strokes included
    width_px = max(1.0, stroke_width * box)
    drawable = max(box - width_px, 0.0)  # side left for the stroke centre lines
    mid = size / 2.0
    if extent > 0:
        # Normalise to [0, 1] first: finite even for subnormal or 1e300-sized extents.
        span = (high - low) / extent
        pixel_segments = [((seg - low) / extent - span / 2.0) * drawable + mid for seg in segments]
    else:  # every point identical: one dot in the middle
        pixel_segments = [np.full_like(seg, mid) for seg in segments]
    mask = _rasterise(pixel_segments, (size, size), width_px, supersample)
    return Image.merge("RGB", [mask.point(lambda v: 255 - v)] * 3)


def draw_strokes_on_canvas(
    strokes: Any,
    canvas_size: tuple[int, int] = (800, 600),
    offset: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
    stroke_px: float = 3.0,
    color: tuple[int, int, int] = (0, 0, 0),
    supersample: int = 2,
) -> Image.Image:
    """Replay strokes as a user would draw them: a transparent RGBA layer of ``canvas_size``.

    Point ``(x, y)`` lands at ``(x * scale + offset[0], y * scale + offset[1])``; the brush is
    ``stroke_px`` wide, as on a Gradio canvas whose brush size does not change with the drawing.
    Composite it over a background (or pass it as a Gradio ``layers`` entry) to simulate a canvas.
    """
    if not (np.isfinite(scale) and np.all(np.isfinite(offset)) and np.isfinite(stroke_px)):
        raise ValueError(f"scale, offset and stroke_px must be finite; got {scale}, {offset}, {stroke_px}")
    shift = np.asarray(offset, dtype=np.float64)
    with np.errstate(over="ignore"):  # far-off points become +-inf and are clipped when drawn
        segments = [seg * scale + shift for seg in _stroke_segments(strokes)]
    mask = _rasterise(segments, (int(canvas_size[0]), int(canvas_size[1])), stroke_px, supersample)
    layer = Image.new("RGBA", mask.size, (*color, 0))
    layer.putalpha(mask)
    return layer


def load_ndjson(path: str | PathLike, limit: int | None = None) -> list[dict]:
    """Quick, Draw! ``.ndjson`` -> list of records (``word``, ``drawing``, ...), in file order.

    Blank lines are skipped; a line that is not JSON, or has no ``drawing``, is an error naming
    the file and line.
    """
    path = Path(path)
    records: list[dict] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if limit is not None and len(records) >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({e})") from e
            if not isinstance(record, dict) or "drawing" not in record:
                raise ValueError(f"{path}:{lineno}: not a Quick, Draw! record (no 'drawing')")
            records.append(record)
    return records



# --------------------------------------------------------------------------------------------
# Stroke JSON from the network -> validated stroke list


def _json_depth_ok(text: str, limit: int) -> bool:
    """True when brackets nest at most ``limit`` deep (outside strings): checked before json.loads, so
    deeply nested junk costs one linear scan instead of a RecursionError deep inside the parser."""
    depth = 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return False
        elif token in "]}":
            depth -= 1
    return True


_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _reject_constant(name: str) -> float:
    raise StrokeFormatError(f"coordinates must be finite numbers; got {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_COORDINATE:
        raise StrokeFormatError(f"coordinate {text[:20]} is out of range (at most {MAX_COORDINATE:g} in size)")
    return value


def _numbers(values: Any, what: str) -> list[float]:
    if not isinstance(values, list) or not values:
        raise StrokeFormatError(f"{what} must be a non-empty list of numbers")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise StrokeFormatError(f"{what} must hold numbers only; found {type(v).__name__}")
    try:
        return [float(v) for v in values]
    except OverflowError:  # an integer of hundreds of digits, sent as a list rather than JSON text
        raise StrokeFormatError(f"{what} has a coordinate out of range") from None


def parse_strokes(payload: str | bytes | list | dict | None) -> list[list[list[float]]]:
    """Stroke JSON (Quick, Draw! raw format) -> ``[[xs, ys, ts], ...]`` of floats, or StrokeFormatError.

    ``payload``: a JSON text (or already-parsed list / dict) holding a list of strokes, each
    ``[xs, ys]`` or ``[xs, ys, ts]`` of equal-length number lists, or a Quick, Draw! record
    ``{"drawing": [...]}``. Strict where :func:`render_strokes` is lenient, because this is what the
    network sends: no NaN/Infinity, no coordinate beyond ``MAX_COORDINATE``, at most ``MAX_STROKES``
    strokes, ``MAX_POINTS`` points, ``MAX_STROKE_BYTES`` bytes and ``MAX_NESTING`` levels. Empty
    input (None, "", "[]") is an empty list: "nothing drawn" is the caller's call.
    """
    if payload is None:
        return []
    if isinstance(payload, (bytes, bytearray)):
        if len(payload) > MAX_STROKE_BYTES:
            raise StrokeFormatError(
                f"the stroke data is {len(payload):,} bytes; at most {MAX_STROKE_BYTES:,} are accepted"
            )
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as e:
            raise StrokeFormatError("the stroke data is not UTF-8 text") from e
    if isinstance(payload, str):
        if len(payload) > MAX_STROKE_BYTES or len(payload.encode("utf-8", "surrogatepass")) > MAX_STROKE_BYTES:
            raise StrokeFormatError(
                f"the stroke data is over {MAX_STROKE_BYTES:,} bytes; draw fewer strokes or simplify them"
            )
        if not payload.strip():
            return []
        if not _json_depth_ok(payload, MAX_NESTING):
            raise StrokeFormatError(f"the stroke data is nested more than {MAX_NESTING} levels deep")
        try:
            data = json.loads(payload, parse_constant=_reject_constant, parse_float=_finite_float,
                              parse_int=_finite_float)
        except StrokeFormatError:
            raise
        except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
            raise StrokeFormatError(f"the stroke data is not valid JSON ({str(e)[:120]})") from None
    else:
        data = payload
    if isinstance(data, dict):
        if "drawing" not in data:
            raise StrokeFormatError('expected a list of strokes or a Quick, Draw! record with a "drawing" key')
        data = data["drawing"]
    if not isinstance(data, list):
        raise StrokeFormatError(f"expected a list of strokes [[xs, ys, ts], ...]; got {type(data).__name__}")
    if len(data) > MAX_STROKES:
        raise StrokeFormatError(f"{len(data):,} strokes sent; at most {MAX_STROKES:,} are accepted")
    strokes, points = [], 0
    for i, stroke in enumerate(data):
        if not isinstance(stroke, list) or len(stroke) not in (2, 3):
            raise StrokeFormatError(f"stroke {i} must be [xs, ys] or [xs, ys, ts]")
        columns = [_numbers(col, f"stroke {i} {name}") for col, name in zip(stroke, ("xs", "ys", "ts"))]
        if len({len(col) for col in columns}) != 1:
            lengths = ", ".join(str(len(c)) for c in columns)
            raise StrokeFormatError(f"stroke {i} has lists of different lengths ({lengths})")
        for col in columns:  # already-parsed payloads did not pass through _finite_float
            for v in col:
                if not math.isfinite(v) or abs(v) > MAX_COORDINATE:
                    raise StrokeFormatError(f"stroke {i} has a coordinate out of range ({v!r})")
        points += len(columns[0])
        if points > MAX_POINTS:
            raise StrokeFormatError(f"more than {MAX_POINTS:,} points sent; simplify the drawing")
        strokes.append(columns)
    return strokes
