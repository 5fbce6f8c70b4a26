"""PIL -> normalised tensor (sketchlvm/preprocess/transforms.py), on real Quick, Draw! strokes and Sketchy photos."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from sketchlvm.config import PreprocessConfig
from sketchlvm.preprocess.strokes import EmptySketchError, canvas_to_image, draw_strokes_on_canvas, load_ndjson, render_strokes
from sketchlvm.preprocess.transforms import ImageLoadError, PhotoTransform, SketchTransform, denormalise, load_photo

SIZE = 224
CONFIG = PreprocessConfig()


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def _white(mean, std) -> torch.Tensor:
    return (1 - torch.tensor(mean)) / torch.tensor(std)


def _points(strokes) -> np.ndarray:
    return np.concatenate([np.asarray(s[:2], dtype=float).T for s in strokes])


def _canvas(strokes, at, scale, brush_px) -> Image.Image:
    """A large white canvas with the strokes drawn so that their top-left lands at ``at``."""
    points = _points(strokes)
    offset = tuple(np.asarray(at) - points.min(axis=0) * scale)
    needed = np.asarray(at) + np.ptp(points, axis=0) * scale + brush_px + 10
    size = (max(1200, int(needed[0])), max(1000, int(needed[1])))
    layer = draw_strokes_on_canvas(strokes, size, offset, scale, brush_px)
    return canvas_to_image({"background": Image.new("RGB", size, "white"), "layers": [layer], "composite": None})


@pytest.fixture(scope="module")
def drawings(quickdraw_root) -> list[list]:
    files = sorted(quickdraw_root.glob("*.ndjson"))[::45][:8]
    assert len(files) == 8
    return [load_ndjson(path, limit=1)[0]["drawing"] for path in files]


@pytest.fixture(scope="module")
def photo_path(sketchy_root) -> Path:
    return sorted((sketchy_root / "photo" / "airplane").glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def photo(photo_path) -> Image.Image:
    with Image.open(photo_path) as im:
        return im.convert("RGB")


def _mad(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


# ---------------------------------------------------------------------------------------------
# SketchTransform


def test_sketch_transform_shape_and_white_background():
    sketch = render_strokes([[[0, 50, 100], [0, 80, 0]]], size=128)
    tensor = SketchTransform(SIZE, CONFIG)(sketch)
    assert tensor.shape == (3, SIZE, SIZE) and tensor.dtype == torch.float32
    assert torch.isfinite(tensor).all()
    corner = tensor[:, 0, 0]
    assert torch.allclose(corner, _white(CONFIG.sketch_mean, CONFIG.sketch_std), atol=1e-5)
    back = denormalise(tensor, CONFIG.sketch_mean, CONFIG.sketch_std)
    assert back.min() >= -1e-5 and back.max() <= 1 + 1e-5 and back.min() < 0.2


def test_sketch_transform_uses_the_sketch_statistics_and_margin():
    config = PreprocessConfig(sketch_mean=(0.5, 0.5, 0.5), sketch_std=(0.5, 0.5, 0.5), sketch_margin=0.0)
    image = Image.new("RGB", (100, 100), "white")
    image.paste((0, 0, 0), (20, 30, 60, 70))  # a 40 x 40 black square
    tensor = SketchTransform(32, config)(image)
    assert torch.allclose(tensor, torch.full_like(tensor, -1.0))  # margin 0: all ink, (0 - .5) / .5


def test_blank_canvases_raise_empty_sketch_error():
    transform = SketchTransform(SIZE)
    for value in (
        Image.new("RGB", (300, 300), "white"),
        Image.new("RGBA", (300, 300), (0, 0, 0, 0)),
        {"background": Image.new("RGB", (300, 300), "white"), "layers": [], "composite": None},
        {"background": None, "layers": [], "composite": None},
    ):
        with pytest.raises(EmptySketchError):
            transform(value)


def test_bad_image_size_refused():
    for size in (0, -3, 2.5):
        with pytest.raises(ValueError, match="image_size"):
            SketchTransform(size)


def test_real_strokes_anywhere_at_any_scale_give_the_same_tensor(drawings):
    """The same strokes drawn at other positions and sizes on a large canvas: same tensor.

    The brush scales with the drawing here; a fixed brush is the next test.
    """
    transform = SketchTransform(SIZE)
    reference = []
    for strokes in drawings:
        base = transform(_canvas(strokes, (10, 20), 1.0, 6))
        reference.append(base)
        for at, scale in [((233, 151), 1.0), ((37, 71), 0.6), ((300, 10), 1.5)]:
            other = transform(_canvas(strokes, at, scale, 6 * scale))
            assert _cos(base, other) > 0.98, (at, scale)
            assert float((base - other).abs().mean()) < 0.1, (at, scale)
    # The measure discriminates: different drawings are much further apart than 0.98.
    between = [_cos(a, b) for a, b in zip(reference, reference[1:])]
    assert max(between) < 0.95


def test_fixed_brush_at_another_scale_stays_close(drawings):
    """A real user's brush does not grow with the drawing: strokes get relatively thinner.

    Nothing re-normalises stroke width, so this is looser than the test above.
    """
    transform = SketchTransform(SIZE)
    for strokes in drawings[:4]:
        base = transform(_canvas(strokes, (10, 20), 1.0, 6))
        small = transform(_canvas(strokes, (40, 40), 0.6, 6))
        assert _cos(base, small) > 0.95


def test_rendered_strokes_match_the_same_strokes_drawn_on_a_canvas(drawings):
    transform = SketchTransform(SIZE)
    width = CONFIG.stroke_width
    for strokes in drawings:
        rendered = transform(render_strokes(strokes, size=256, stroke_width=width))
        extent = float(np.ptp(_points(strokes), axis=0).max())
        brush = width / (1 - width) * extent  # the same width relative to the inked box
        drawn = transform(_canvas(strokes, (50, 50), 1.0, brush))
        assert _cos(rendered, drawn) > 0.98
        assert float((rendered - drawn).abs().mean()) < 0.12


def test_gradio_dict_with_transparent_layers_equals_the_flattened_image(drawings, tmp_path):
    transform = SketchTransform(SIZE)
    strokes = drawings[0]
    size = (1000, 900)
    offset = tuple(-_points(strokes).min(axis=0) + 20)
    first = draw_strokes_on_canvas(strokes[: len(strokes) // 2], size, offset, 1.0, 5)
    second = draw_strokes_on_canvas(strokes[len(strokes) // 2 :], size, offset, 1.0, 5, color=(200, 30, 30))
    flat = Image.new("RGBA", size, "white")
    flat.alpha_composite(first)
    flat.alpha_composite(second)
    expected = transform(flat.convert("RGB"))
    second_path = tmp_path / "layer2.png"
    second.save(second_path)
    values = [
        {"background": None, "layers": [first, second], "composite": None},
        {"background": Image.new("RGB", size, "white"), "layers": [first, second], "composite": None},
        {"background": np.full((900, 1000, 3), 255, np.uint8), "layers": [np.asarray(first), str(second_path)],
         "composite": None},
        {"background": None, "layers": [first, second], "composite": flat},
    ]
    for value in values:
        assert torch.equal(transform(value), expected)


def test_real_sketchy_sketch(sketchy_root):
    path = sorted((sketchy_root / "sketch" / "airplane").glob("*.png"))[0]
    transform = SketchTransform(SIZE)
    tensor = transform(str(path))
    assert tensor.shape == (3, SIZE, SIZE) and torch.isfinite(tensor).all()
    with Image.open(path) as im:
        grey = im.convert("L")
    transparent = Image.new("RGBA", grey.size, (0, 0, 0, 0))
    transparent.putalpha(grey.point(lambda v: 255 - v))  # black ink on a transparent layer
    assert _cos(transform(transparent), tensor) > 0.99


# ---------------------------------------------------------------------------------------------
# PhotoTransform


def test_photo_transform_pads_with_white_centred():
    config = PreprocessConfig()
    red = Image.new("RGB", (100, 50), (255, 0, 0))
    transform = PhotoTransform(64, config)
    image = transform.to_image(red)
    arr = np.asarray(image)
    assert image.size == (64, 64)
    assert (arr[:15] == 255).all() and (arr[-15:] == 255).all()
    assert tuple(arr[32, 32]) == (255, 0, 0) and tuple(arr[32, 0]) == (255, 0, 0)
    tensor = transform(red)
    assert tensor.shape == (3, 64, 64) and torch.isfinite(tensor).all()
    assert torch.allclose(tensor[:, 0, 0], _white(config.photo_mean, config.photo_std), atol=1e-5)


def test_photo_transform_from_path_with_draft_matches_pil_route(photo, tmp_path):
    big = photo.resize((1024, 768), Image.Resampling.BICUBIC)
    path = tmp_path / "big.jpg"
    big.save(path, quality=95)
    transform = PhotoTransform(128)
    with Image.open(path) as im:
        from_pil = transform(im.convert("RGB"))
    from_path = transform(path)  # draft-decoded at 1/4 scale
    assert from_path.shape == (3, 128, 128)
    assert float((from_pil - from_path).abs().mean()) < 0.05
    with pytest.raises(ImageLoadError):
        transform(tmp_path / "missing.jpg")


# ---------------------------------------------------------------------------------------------
# load_photo: modes and orientation


@pytest.mark.parametrize(
    "mode, fmt",
    [("RGB", "JPEG"), ("CMYK", "JPEG"), ("L", "PNG"), ("L", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"),
     ("LA", "PNG"), ("RGB", "WEBP"), ("P", "GIF"), ("RGB", "BMP")],
)
def test_load_photo_converts_every_mode_to_rgb(photo, tmp_path, mode, fmt):
    path = tmp_path / f"photo.{fmt.lower()}"
    photo.convert(mode).save(path, fmt)
    out = load_photo(path)
    assert out.mode == "RGB" and out.size == photo.size
    reference = photo.convert(mode).convert("RGB") if mode in ("L", "LA", "P") else photo
    assert _mad(out, reference) < 6  # JPEG re-encoding; lossless formats are exact
    if fmt in ("PNG", "GIF", "BMP") and mode != "CMYK":
        assert _mad(out, reference) == 0
    with open(path, "rb") as f:  # file-like objects too
        assert _mad(load_photo(f), out) == 0
    assert _mad(load_photo(path.read_bytes()), out) == 0


def test_alpha_and_palette_transparency_become_white(photo, tmp_path):
    rgba = photo.convert("RGBA")
    alpha = Image.new("L", photo.size, 255)
    alpha.paste(0, (0, 0, photo.width // 2, photo.height))
    rgba.putalpha(alpha)
    rgba.save(tmp_path / "rgba.png")
    out = np.asarray(load_photo(tmp_path / "rgba.png"))
    assert (out[:, : photo.width // 2] == 255).all()
    assert np.array_equal(out[:, photo.width // 2 :], np.asarray(photo)[:, photo.width // 2 :])

    pal = photo.quantize(16)
    index = pal.getpixel((0, 0))
    pal.info["transparency"] = index
    pal.save(tmp_path / "pal.png")
    out = np.asarray(load_photo(tmp_path / "pal.png"))
    hidden = np.asarray(pal) == index
    assert hidden.any() and (out[hidden] == 255).all()
    assert not (out[~hidden] == 255).all()


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    arr = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    Image.fromarray(arr).save(tmp_path / "g16.png")
    out = np.asarray(load_photo(tmp_path / "g16.png")).astype(int)
    assert out.shape == (16, 64, 3)
    assert np.abs(out[0, :, 0] - np.round(np.linspace(0, 255, 64))).max() <= 1
    assert (out[:, :, 0] == out[:, :, 2]).all()


def test_animated_gif_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = np.asarray(load_photo(tmp_path / "anim.gif"))
    assert out.shape == (10, 20, 3) and (out == (255, 0, 0)).all()


def test_exif_orientation_is_applied(photo, tmp_path):
    upright = photo.crop((0, 0, 128, 96))  # not square, so the size shows the rotation too
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # the camera's sensor orientation
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    stored.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = load_photo(tmp_path / "rotated.jpg")
    assert out.mode == "RGB" and out.size == (128, 96)
    assert _mad(out, upright) < 3
    assert _mad(out, upright.transpose(Image.Transpose.ROTATE_180)) > 10


def test_photo_transform_orients_an_opened_pil_image(photo, tmp_path):
    upright = photo.crop((0, 0, 128, 64))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    transform = PhotoTransform(64)
    with Image.open(tmp_path / "rotated.jpg") as im:  # lazy, still sideways
        assert im.size == (64, 128)
        from_pil = transform(im)
    assert float((from_pil - transform(upright)).abs().mean()) < 0.05


# ---------------------------------------------------------------------------------------------
# load_photo: refusals


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_broken_files_raise_image_load_error_naming_file_and_reason(photo_path, tmp_path):
    data = photo_path.read_bytes()
    cases = {
        "empty.jpg": (b"", "empty"),
        "truncated.jpg": (data[: len(data) // 2], "truncated"),
        "text.jpg": (b"this is not an image\n" * 20, "not a recognised image"),
        "truncated.png": (_png_header_only(64, 64), "truncated"),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ImageLoadError, match=reason) as info:
            load_photo(path)
        assert name in str(info.value)
    with pytest.raises(ImageLoadError, match="missing.jpg"):
        load_photo(tmp_path / "missing.jpg")
    with pytest.raises(ImageLoadError):
        load_photo(io.BytesIO(b""))
    with Image.open(tmp_path / "truncated.jpg") as lazy:  # a PIL image whose pixels are missing
        with pytest.raises(ImageLoadError, match="truncated"):
            load_photo(lazy)


def test_corrupt_png_data(photo, tmp_path):
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 8
    data[start : start + 64] = bytes(64)  # zero the start of the compressed pixels
    (tmp_path / "corrupt.png").write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match="corrupt.png"):
        load_photo(tmp_path / "corrupt.png")


def test_over_max_pixels_refused_before_decoding(photo_path, tmp_path):
    with pytest.raises(ImageLoadError, match="over the limit"):
        load_photo(photo_path, max_pixels=100 * 100)
    # 9000 x 9000 = 81 M > 64 M default, below Pillow's own bomb threshold: our check fires. Only a
    # header exists, so a decode attempt would fail differently ("truncated"), and slowly.
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(9000, 9000))
    start = time.perf_counter()
    with pytest.raises(ImageLoadError, match="over the limit") as info:
        load_photo(path)
    assert time.perf_counter() - start < 0.5
    assert "huge.png" in str(info.value) and "9000x9000" in str(info.value)


def test_pillow_decompression_bomb_is_an_image_load_error(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(30000, 30000))  # 900 M: Pillow refuses it at open
    with pytest.raises(ImageLoadError, match="bomb.png"):
        load_photo(path, max_pixels=10**12)


def test_load_photo_leaves_pillow_globals_alone(photo_path):
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    load_photo(photo_path)
    with pytest.raises(ImageLoadError):
        load_photo(photo_path, max_pixels=10)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


# ---------------------------------------------------------------------------------------------
# Sketch framing: the paper's whole sketch padded square, or cropped to the ink


def test_pad_square_framing_keeps_the_whole_sketch_where_it_was_drawn(sketchy_root):
    """Sketchy sketches are drawn over their photo: pad-square keeps that alignment, ink-crop zooms."""
    path = sorted((sketchy_root / "sketch" / "cow").glob("*.png"))[0]
    with Image.open(path) as im:
        sketch = im.convert("RGB")
    side = sketch.width
    assert sketch.size == (side, side)
    paper = SketchTransform(side, PreprocessConfig(sketch_framing="pad-square"))
    np.testing.assert_array_equal(np.asarray(paper.to_image(sketch)), np.asarray(sketch))  # untouched
    cropped = SketchTransform(side, PreprocessConfig(sketch_framing="ink-crop")).to_image(sketch)
    assert not np.array_equal(np.asarray(cropped), np.asarray(sketch))

    # a wide canvas is padded with white above and below, the drawing stays put
    wide = Image.new("RGB", (200, 100), "white")
    wide.paste(Image.new("RGB", (10, 10), "black"), (0, 0))  # ink in the top-left corner
    framed = np.asarray(SketchTransform(200, PreprocessConfig(sketch_framing="pad-square")).to_image(wide))
    assert framed.shape == (200, 200, 3)
    assert (framed[:50] == 255).all() and (framed[150:] == 255).all()
    assert (framed[52:58, 2:8] < 30).all()  # the square of ink, 50 px down, at the left edge


def test_pad_square_framing_still_refuses_a_blank_canvas():
    transform = SketchTransform(64, PreprocessConfig(sketch_framing="pad-square"))
    with pytest.raises(EmptySketchError):
        transform(Image.new("RGB", (80, 60), "white"))


def test_unknown_framing_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="unknown sketch_framing 'zoom'.*pad-square"):
        SketchTransform(64, PreprocessConfig(sketch_framing="zoom"))


def test_paper_presets_frame_sketches_as_the_paper_does():
    from sketchlvm.config import list_presets, load_experiment

    for name in ("sketchy_category", "sketchy_fine_grained", "tuberlin_category", "quickdraw_category"):
        assert load_experiment(name).preprocess.sketch_framing == "pad-square", name
    assert "pad-square" in {load_experiment(n).preprocess.sketch_framing for n in list_presets()}
