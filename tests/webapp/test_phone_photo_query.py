"""Phone photos as queries through the page's own paths: the upload buttons accept HEIC and AVIF files,
``/search_photo`` answers with the photo's match, and the query size limit refuses an oversized HEIC or
AVIF with its reason before decoding it. Real Sketchy photos, re-encoded; the tiny random-weight model."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image, features

from sketchlvm import create_sketchlvm
from sketchlvm.config import TINY_ARCH
from sketchlvm.gallery import build_gallery_index
from sketchlvm.preprocess.transforms import HEIF
from sketchlvm.search import Searcher
from sketchlvm.webapp import handlers, query
from sketchlvm.webapp.app_state import AppState

pytestmark = pytest.mark.usefixtures("galleries_in_tmp")
FORMATS = {".heic": "HEIF", ".avif": "AVIF"}


@pytest.fixture(scope="module")
def phone_state(tmp_path_factory, sketchy_root):
    if not HEIF or not features.check("avif"):
        pytest.skip("needs pillow-heif and Pillow's AVIF decoder")
    root = tmp_path_factory.mktemp("phone-query") / "gallery"
    for name in ("cup", "chair", "umbrella"):
        (root / name).mkdir(parents=True)
        for photo in sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:2]:
            shutil.copy(photo, root / name / photo.name)
    model = create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu")
    index = build_gallery_index(root, model, cache_dir=root.parent / "cache", show_progress_bar=False)
    return AppState(Searcher(model, index, default_k=3), gallery_dir=root, cache_dir=index.cache_dir)


def _phone_copy(state, ext: str, out, size: tuple[int, int] | None = None):
    photo = min(state.gallery_dir.glob("cup/*.jpg"))
    with Image.open(photo) as im:
        image = im.convert("RGB") if size is None else im.convert("RGB").resize(size)
    path = out / f"IMG_0001{ext}"
    image.save(path, FORMATS[ext], quality=95)
    return path, f"cup/{photo.name}"


@pytest.mark.parametrize("ext", [".heic", ".avif"])
def test_the_upload_buttons_accept_phone_photos(tmp_path, ext):
    from gradio_client.utils import is_valid_file

    assert is_valid_file(str(tmp_path / f"IMG_0001{ext}"), ["image"])  # the page's file_types=["image"]


@pytest.mark.parametrize("ext", [".heic", ".avif"])
def test_a_phone_photo_query_finds_its_own_photo_first(phone_state, tmp_path, ext):
    path, original = _phone_copy(phone_state, ext, tmp_path)
    gallery, message, shown = handlers.search_with_photo(phone_state, str(path), "category", 3)
    assert "refused" not in message and message.startswith(f"Photo **IMG\\_0001{ext}**")
    assert shown[0] == original and len(gallery) == 3


@pytest.mark.parametrize("ext", [".heic", ".avif"])
def test_an_oversized_phone_photo_is_refused_as_a_query_with_the_reason(phone_state, tmp_path, ext, monkeypatch):
    monkeypatch.setattr("sketchlvm.search.MAX_QUERY_PIXELS", 200 * 200)  # the cap, scaled down for the test
    path, _ = _phone_copy(phone_state, ext, tmp_path, size=(240, 200))
    _, message, _ = query.set_photo(phone_state, str(path), None)
    assert message.startswith("**Photo refused:**") and "for a query" in message and str(tmp_path) not in message
    _, message, _ = handlers.search_with_photo(phone_state, str(path), "category", 3)
    assert message.startswith("**Photo refused:**") and "for a query" in message
