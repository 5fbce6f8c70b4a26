"""PIL -> normalised float tensor, one pipeline per modality.

Sketches: canvas value -> framed square (``PreprocessConfig.sketch_framing``: the whole sketch
padded square, or cropped to the ink) -> resize -> normalise with the sketch statistics. Photos: decoded safely by :func:`load_photo` (EXIF orientation, every mode to RGB,
size checked before decoding) -> pad to a white square -> resize -> normalise with the photo
statistics. Padding, not centre-cropping, keeps the whole object, as the sketch pipeline does.

No torch here: ``.array()`` gives the numpy array the ONNX Runtime serving install feeds its graphs,
and calling a transform wraps that same array as a torch tensor (torch imported only then), so both
installs see the same pixels.
"""

from __future__ import annotations

import io
import logging
import warnings
from os import PathLike
from collections.abc import Sequence
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps

from sketchlvm.config import PreprocessConfig
from sketchlvm.preprocess.drawing import FRAMED_KEY, StrokeDrawing, check_framing, framed_signature, render_drawing
from sketchlvm.preprocess.strokes import WHITE, EmptySketchError, canvas_to_image, crop_to_ink, flatten_to_rgb, ink_bbox

logger = logging.getLogger(__name__)

_DEFAULTS = PreprocessConfig()

# CLIP's resampling filter; PIL's resize is anti-aliased when it shrinks.
RESAMPLE = Image.Resampling.BICUBIC


class ImageLoadError(ValueError):
    """A photo could not be used: empty, truncated, not an image, corrupt or too large."""


def _describe(source: Any) -> str:
    if isinstance(source, (str, PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<PIL image>"
    return str(getattr(source, "name", f"<{type(source).__name__}>"))


def _heif_opener() -> bool:
    """Phones save HEIC: pillow-heif (a well-kept libheif binding) teaches Pillow to open it. It applies
    the file's rotation itself and resets EXIF orientation to 1, so photos come out upright once, as a
    JPEG's do. Pinned to 1.8.1: 1.9 needs Pillow 13, which gradio 6.31 refuses."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


HEIF = _heif_opener()
# What photos and sketches may be: the formats of the gallery's extensions (IndexConfig.extensions).
# Cameras' multi-picture JPEGs open through "JPEG" too (Pillow then calls them MPO). AVIF: Pillow 12's own
# decoder (libavif in its wheels); HEIF only with pillow-heif installed.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "AVIF") + (("HEIF",) if HEIF else ())
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def _unreadable_reason(source: Any) -> str:
    """Why Pillow could not identify ``source``: a HEIC photo without pillow-heif says so."""
    try:
        if isinstance(source, (str, PathLike)):
            with open(source, "rb") as f:
                head = f.read(12)
        elif hasattr(source, "seek") and hasattr(source, "read"):
            source.seek(0)
            head = source.read(12)
        else:
            head = b""
    except (OSError, ValueError):
        head = b""
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS and not HEIF:
        return "a HEIC/HEIF photo, and this install cannot decode HEIC: pip install pillow-heif==1.8.1"
    return "not a recognised image format"


def load_photo(
    source: str | PathLike | IO[bytes] | bytes | Image.Image,
    max_pixels: int = _DEFAULTS.max_image_pixels,
    draft_size: int | None = None,
    max_decoded_pixels: int | None = None,
) -> Image.Image:
    """Decode a photo to an upright RGB PIL image, refusing anything unsafe or unreadable.

    ``source``: a path, a binary file-like object, raw bytes, or an already opened PIL image.
    The declared size is checked against ``max_pixels`` before any pixel is decoded. EXIF
    orientation is applied; greyscale, CMYK, palette, 16-bit and alpha images (flattened onto
    white) become RGB; animated images give their first frame. ``draft_size``: for JPEGs, let the
    decoder shrink by 2/4/8 while both sides stay >= ``draft_size`` (much faster for big photos).
    ``max_decoded_pixels``: a second limit on the pixels actually decoded (after a JPEG's draft), for
    queries that are shrunk to the model's size anyway: a big JPEG passes, a PNG that size does not.
    Only ``FORMATS`` are opened (the gallery's extensions): Pillow would otherwise run Ghostscript for
    an EPS wherever it is installed, whatever the file is called.
    Raises :class:`ImageLoadError` naming the file and the reason.
    """
    name = _describe(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    if isinstance(source, (str, PathLike)):
        try:
            with open(source, "rb") as f:
                if not f.read(1):
                    raise ImageLoadError(f"cannot load image {name!r}: the file is empty (0 bytes)")
        except OSError as e:
            raise ImageLoadError(f"cannot load image {name!r}: {e.strerror or e}") from e
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below is the guard; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if isinstance(source, Image.Image):  # possibly lazy (Image.open without load)
                return _finish(source, name, max_pixels)
            with Image.open(source, formats=FORMATS) as im:
                _check_size(im, name, max_pixels)
                if draft_size and im.format in ("JPEG", "MPO"):
                    im.draft(None, (int(draft_size), int(draft_size)))
                if max_decoded_pixels is not None:
                    _check_size(im, name, max_decoded_pixels, "for a query (a JPEG may be larger)")
                im.load()  # first frame only for animated images
                return _finish(im, name, max_pixels)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"cannot load image {name!r}: too large ({e})") from e
    except Image.UnidentifiedImageError as e:
        raise ImageLoadError(f"cannot load image {name!r}: {_unreadable_reason(source)}") from e
    except Exception as e:  # Pillow's decoders raise OSError, SyntaxError, struct.error, ...
        raise ImageLoadError(
            f"cannot load image {name!r}: corrupt or truncated ({type(e).__name__}: {e})"
        ) from e


def _check_size(im: Image.Image, name: str, max_pixels: int, what: str = "(PreprocessConfig.max_image_pixels)") -> None:
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"cannot load image {name!r}: it has zero area ({width}x{height})")
    if width * height > max_pixels:
        raise ImageLoadError(
            f"cannot load image {name!r}: {width}x{height} = {width * height:,} pixels is over the "
            f"limit of {max_pixels:,} {what}"
        )


def _finish(im: Image.Image, name: str, max_pixels: int) -> Image.Image:
    """Orientation + mode conversion; always returns a new image independent of any file."""
    _check_size(im, name, max_pixels)
    try:
        upright = ImageOps.exif_transpose(im)
    except Exception as e:  # a broken EXIF block should not cost the photo
        logger.warning("ignoring unreadable EXIF orientation in %s: %s", name, e)
        upright = im
    rgb = flatten_to_rgb(upright)
    return rgb.copy() if rgb is im else rgb


def _to_array(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """RGB PIL (S, S) -> float32 array (3, S, S), normalised ``(x / 255 - mean) / std``."""
    arr = np.asarray(image, dtype=np.float32) / 255.0  # (S, S, 3)
    chw = np.ascontiguousarray(arr.transpose(2, 0, 1))  # (3, S, S)
    mean_a = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    std_a = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    return (chw - mean_a) / std_a


def _to_tensor(image: Image.Image, mean: Sequence[float], std: Sequence[float]):
    """RGB PIL (S, S) -> float32 torch tensor (3, S, S): :func:`_to_array`'s array, for the torch paths."""
    import torch

    return torch.from_numpy(_to_array(image, mean, std))


def denormalise(tensor, mean: Sequence[float], std: Sequence[float]):
    """Undo the normalisation of a torch tensor: (..., 3, S, S) -> values in [0, 1] (for reports and tests)."""
    import torch

    mean_t = torch.tensor(mean, dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)
    return tensor * std_t + mean_t


def _check_size_arg(image_size: int) -> int:
    if int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    return int(image_size)


def pad_to_square(image: Image.Image, size: int) -> Image.Image:
    """Fit the whole image into a white size x size square, centred (resize first, then pad: the
    same result as pad-then-resize without a huge square canvas)."""
    width, height = image.size
    scale = size / max(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = image if new == image.size else image.resize(new, RESAMPLE, reducing_gap=3.0)
    out = Image.new("RGB", (size, size), WHITE)
    out.paste(resized, ((size - new[0]) // 2, (size - new[1]) // 2))
    return out


class SketchTransform:
    """Canvas value, sketch image or stroke drawing -> float32 tensor (3, S, S).

    A :class:`~sketchlvm.preprocess.drawing.StrokeDrawing` (the app's canvas, Quick, Draw! strokes, a partial
    drawing) is rendered and framed once, at S, by :func:`~sketchlvm.preprocess.drawing.render_drawing` with
    this transform's config, so every stroke path gives the same tensor. An image: canvas_to_image (flatten
    onto white) -> frame (``config.sketch_framing``: ``pad-square`` keeps the whole sketch, ``ink-crop`` crops
    to the ink with ``config.sketch_margin``) -> resize to S. An image that ``render_drawing`` already framed
    for this config and size is not framed twice. Then normalise with ``config.sketch_mean/std``. Raises
    :class:`~sketchlvm.preprocess.strokes.EmptySketchError` when nothing is drawn.
    """

    def __init__(self, image_size: int, config: PreprocessConfig | None = None):
        self.image_size = _check_size_arg(image_size)
        self.config = config or PreprocessConfig()
        check_framing(self.config)
        self._framed = framed_signature(self.config, self.image_size)

    def to_image(self, sketch: Any) -> Image.Image:
        """The framed, resized RGB sketch that the tensor is made from (S x S). It is marked as framed, so
        handing it back (an uploaded sketch kept as the app's query) gives the same tensor, not a second
        resampling."""
        if isinstance(sketch, StrokeDrawing):
            return render_drawing(sketch, self.config, self.image_size)
        image = canvas_to_image(sketch)
        if image.info.get(FRAMED_KEY) == self._framed and image.size == (self.image_size, self.image_size):
            return image
        if self.config.sketch_framing == "pad-square":
            if ink_bbox(image, self.config.ink_threshold) is None:
                raise EmptySketchError(f"nothing drawn: no pixel darker than {255 - self.config.ink_threshold} "
                                       f"on a {image.size} canvas")
            framed = pad_to_square(image, self.image_size)
        else:
            framed = crop_to_ink(image, self.config.sketch_margin, self.config.ink_threshold)
            framed = framed.resize((self.image_size, self.image_size), RESAMPLE, reducing_gap=3.0)
        framed.info[FRAMED_KEY] = self._framed
        return framed

    def array(self, sketch: Any) -> np.ndarray:
        """The normalised float32 (3, S, S) array, without torch (the serving install)."""
        return _to_array(self.to_image(sketch), self.config.sketch_mean, self.config.sketch_std)

    def __call__(self, sketch: Any):
        """The same as :meth:`array`, as a torch tensor (3, S, S)."""
        return _to_tensor(self.to_image(sketch), self.config.sketch_mean, self.config.sketch_std)

    def __repr__(self) -> str:
        return (f"SketchTransform(image_size={self.image_size}, framing={self.config.sketch_framing}, "
                f"margin={self.config.sketch_margin})")


class PhotoTransform:
    """Photo -> float32 tensor (3, S, S).

    Accepts anything :func:`load_photo` reads (PIL image, path, file-like, bytes; JPEG files are
    draft-decoded near S). Upright RGB -> pad to a square with white, centred -> resize to S ->
    normalise with ``config.photo_mean/std``.
    """

    def __init__(self, image_size: int, config: PreprocessConfig | None = None):
        self.image_size = _check_size_arg(image_size)
        self.config = config or PreprocessConfig()

    def to_image(self, photo: Any) -> Image.Image:
        """The padded, resized RGB photo that the tensor is made from (S x S)."""
        # PIL images go through load_photo too: EXIF orientation, every mode, lazy-load errors.
        image = load_photo(photo, self.config.max_image_pixels, draft_size=self.image_size)
        width, height = image.size
        if width == 0 or height == 0:
            raise ImageLoadError(f"cannot use photo: it has zero area ({width}x{height})")
        return pad_to_square(image, self.image_size)

    def array(self, photo: Any) -> np.ndarray:
        """The normalised float32 (3, S, S) array, without torch (the serving install)."""
        return _to_array(self.to_image(photo), self.config.photo_mean, self.config.photo_std)

    def __call__(self, photo: Any):
        """The same as :meth:`array`, as a torch tensor (3, S, S)."""
        return _to_tensor(self.to_image(photo), self.config.photo_mean, self.config.photo_std)

    def __repr__(self) -> str:
        return f"PhotoTransform(image_size={self.image_size})"
