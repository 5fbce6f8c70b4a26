"""Thumbnails in the gallery cache (sketchlvm/gallery/thumbnails.py), made by the index build."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from sketchlvm.gallery import build_gallery_index
from sketchlvm.model.factory import create_sketchlvm
from sketchlvm.gallery.thumbnails import THUMBNAIL_DIR, THUMBNAIL_SIDE, sync_thumbnails, thumbnail_path


@pytest.fixture(scope="module")
def model():
    return create_sketchlvm(arch="SketchLVM-Tiny", pretrained="none", device="cpu")


def _thumbs(cache) -> set[str]:
    return {p.name for p in (cache / THUMBNAIL_DIR).iterdir()}


def _version(index, relpath):
    cols = index.manifest["photos"]
    i = cols["relpath"].index(relpath)
    return cols["size"][i], cols["mtime_ns"][i]


def test_build_makes_thumbnails_incrementally_and_drops_them_with_their_photo(tmp_path, model, sketchy_root):
    gallery, cache = tmp_path / "gallery", tmp_path / "cache"
    for name in ("cat", "fish"):
        (gallery / name).mkdir(parents=True)
        for photo in sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:2]:
            shutil.copy(photo, gallery / name / photo.name)
    index = build_gallery_index(gallery, model, cache_dir=cache, show_progress_bar=False)
    first = _thumbs(cache)
    assert len(first) == len(index) == 4
    for photo in index.photos:
        path = thumbnail_path(cache, photo.relpath, *_version(index, photo.relpath))
        with Image.open(path) as image, Image.open(gallery / photo.relpath) as source:
            assert image.format == "WEBP" and max(image.size) == min(THUMBNAIL_SIDE, max(source.size))
            assert abs(image.width / image.height - source.width / source.height) < 0.02
    mtimes = {n: os.stat(cache / THUMBNAIL_DIR / n).st_mtime_ns for n in first}

    # Unchanged gallery: nothing is remade. A removed photo's thumbnail leaves; a changed photo gets a new one.
    removed = next(gallery.rglob("*.jpg"))
    old_name = thumbnail_path(cache, removed.relative_to(gallery).as_posix(),
                              *_version(index, removed.relative_to(gallery).as_posix())).name
    removed.unlink()
    changed = sorted(gallery.rglob("*.jpg"))[0]
    Image.open(changed).rotate(90).save(changed)
    (cache / THUMBNAIL_DIR / "leftover.webp.123.tmp").write_bytes(b"half a file")  # a killed build's leftover
    index = build_gallery_index(gallery, model, cache_dir=cache, show_progress_bar=False)
    second = _thumbs(cache)
    assert len(second) == len(index) == 3 and old_name not in second
    assert not any(n.endswith(".tmp") for n in second)
    for name in first & second:
        assert os.stat(cache / THUMBNAIL_DIR / name).st_mtime_ns == mtimes[name]  # never rewritten
    assert len(second - first) == 1  # only the changed photo's

    # A lost thumbnail (or an index built before thumbnails existed) is made again by the next build.
    victim = sorted(second)[0]
    (cache / THUMBNAIL_DIR / victim).unlink()
    assert sync_thumbnails(cache, index.manifest) == (1, 0)
    assert _thumbs(cache) == second


def test_thumbnails_are_upright_and_small_for_big_photos(tmp_path, model):
    """EXIF orientation is applied; 12 thumbnails of 3000 x 3000 noise photos weigh at most 400 kB."""
    gallery, cache = tmp_path / "gallery", tmp_path / "cache"
    gallery.mkdir()
    rng = np.random.default_rng(0)
    wide = Image.fromarray(rng.integers(0, 255, (1000, 3000, 3), dtype=np.uint8))  # 3000 wide, 1000 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the photo is shown 1000 wide, 3000 high
    wide.save(gallery / "rotated.jpg", exif=exif, quality=90)
    for i in range(12):
        big = Image.fromarray(rng.integers(0, 255, (3000, 3000, 3), dtype=np.uint8) // 2 + 64)
        big.save(gallery / f"big{i:02d}.jpg", quality=90)
    index = build_gallery_index(gallery, model, cache_dir=cache, show_progress_bar=False)
    with Image.open(thumbnail_path(cache, "rotated.jpg", *_version(index, "rotated.jpg"))) as image:
        assert image.size[1] == THUMBNAIL_SIDE and image.size[0] < image.size[1]  # portrait, as displayed
    sizes = [thumbnail_path(cache, f"big{i:02d}.jpg", *_version(index, f"big{i:02d}.jpg")).stat().st_size
             for i in range(12)]
    assert sum(sizes) <= 400_000, sizes
    assert sum((gallery / f"big{i:02d}.jpg").stat().st_size for i in range(12)) > 10 * sum(sizes)
