"""Photos as phones save them: HEIC (through pillow-heif) and AVIF (Pillow's own), with EXIF orientation,
as gallery files (indexed, thumbnailed) and as photo queries (the same limits as every format). The
photos are real Sketchy photos re-encoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from sketchlvm import create_sketchlvm
from sketchlvm.config import TINY_ARCH, IndexConfig
from sketchlvm.gallery import build_gallery_index
from sketchlvm.gallery.thumbnails import thumbnail_path
from sketchlvm.preprocess.transforms import HEIF, ImageLoadError, load_photo
from sketchlvm.search import Searcher

pytestmark = pytest.mark.usefixtures("galleries_in_tmp")
FORMATS = {".heic": "HEIF", ".avif": "AVIF"}
ORIENTATION = 0x0112


def _needs(ext: str) -> None:
    if ext == ".heic" and not HEIF:
        pytest.skip("pillow-heif is not installed")
    if ext == ".avif" and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF decoder")


def _sketchy_photo(sketchy_root: Path, name: str = "cup", i: int = 0) -> Image.Image:
    photos = sorted((sketchy_root / "photo" / name).glob("*.jpg"))
    if len(photos) <= i:
        pytest.skip(f"no Sketchy photo {i} of {name!r}")
    with Image.open(photos[i]) as im:
        return im.convert("RGB")


def _save(image: Image.Image, path: Path, orientation: int | None = None) -> Path:
    exif = Image.Exif()
    if orientation:
        exif[ORIENTATION] = orientation
    fmt = FORMATS.get(path.suffix, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, quality=95, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("ext", [".heic", ".avif"])
def test_a_phone_photo_loads_upright_as_the_same_jpeg_does(tmp_path, sketchy_root, ext):
    _needs(ext)
    photo = _sketchy_photo(sketchy_root).crop((0, 0, 256, 160))  # not square: a rotation shows
    for orientation, size in ((None, (256, 160)), (6, (160, 256)), (3, (256, 160)), (8, (160, 256))):
        phone = load_photo(_save(photo, tmp_path / f"o{orientation}{ext}", orientation))
        jpeg = load_photo(_save(photo, tmp_path / f"o{orientation}.jpg", orientation))
        assert phone.mode == "RGB" and phone.size == jpeg.size == size
        # Same pixels up to the two codecs' losses (a wrong rotation differs by far more).
        diff = np.abs(np.asarray(phone, np.float32) - np.asarray(jpeg, np.float32)).mean()
        assert diff < 12, (orientation, diff)


@pytest.mark.parametrize("ext", [".heic", ".avif"])
def test_a_phone_photo_over_the_query_limit_is_refused_before_it_is_decoded(tmp_path, sketchy_root, ext):
    _needs(ext)
    path = _save(_sketchy_photo(sketchy_root).resize((300, 200)), tmp_path / f"big{ext}")
    with pytest.raises(ImageLoadError, match="for a query"):
        load_photo(path, max_decoded_pixels=299 * 200)
    with pytest.raises(ImageLoadError, match="over the limit"):
        load_photo(path, max_pixels=299 * 200)
    assert load_photo(path, max_decoded_pixels=300 * 200).size == (300, 200)


def test_heic_and_avif_gallery_photos_are_indexed_thumbnailed_and_found_by_a_photo_query(tmp_path, sketchy_root):
    _needs(".heic")
    _needs(".avif")
    gallery = tmp_path / "phone"
    for i in range(3):
        landscape = _sketchy_photo(sketchy_root, "cup", i).crop((0, 0, 256, 160))
        _save(landscape, gallery / "cup" / f"IMG_{i}.heic", orientation=6)
        _save(_sketchy_photo(sketchy_root, "chair", i), gallery / "chair" / f"IMG_{i}.avif")
        _save(_sketchy_photo(sketchy_root, "umbrella", i), gallery / "umbrella" / f"IMG_{i}.jpg")
    model = create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu")
    index = build_gallery_index(gallery, model, config=IndexConfig(batch_size=4, decode_workers=1),
                                show_progress_bar=False)
    assert index.report.skipped == [] and len(index) == 9
    assert {p.relpath.rsplit(".", 1)[1] for p in index.photos} == {"heic", "avif", "jpg"}
    cols = index.manifest["photos"]
    for relpath, size, mtime in zip(cols["relpath"], cols["size"], cols["mtime_ns"]):
        thumb = thumbnail_path(index.cache_dir, relpath, size, mtime)
        with Image.open(thumb) as im:
            assert thumb.is_file() and max(im.size) <= 320
            if relpath.endswith(".heic"):
                assert im.height > im.width  # orientation 6: the landscape photo stands upright
    searcher = Searcher(model, index)
    for query in ("cup/IMG_1.heic", "chair/IMG_2.avif"):
        results = searcher.search_photo(gallery / query, "category", k=3)
        assert results[0].relpath == query  # the photo itself, as the build decoded it


def test_without_pillow_heif_a_heic_photo_is_refused_with_the_fix(tmp_path, sketchy_root, monkeypatch):
    _needs(".heic")
    from sketchlvm.preprocess import transforms

    path = _save(_sketchy_photo(sketchy_root), tmp_path / "IMG_0001.heic")
    monkeypatch.setattr(transforms, "HEIF", False)  # as in an install without pillow-heif
    monkeypatch.setattr(transforms, "FORMATS", tuple(f for f in transforms.FORMATS if f != "HEIF"))
    with pytest.raises(ImageLoadError, match="pip install pillow-heif"):
        load_photo(path)
