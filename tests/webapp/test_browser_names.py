"""A gallery photo whose file name is not valid UTF-8, in a real browser: shown, opened, searched with.

Before issue 27 any page answer that included such a photo failed ("surrogates not allowed") and the
browser showed "Error". Now its caption shows U+FFFD for the bytes that cannot be decoded, its preview
opens, and "Search with this photo" finds it by its real name.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import serve_in_process

from test_browser import CHROMIUM, CHROMIUM_ARGS, browser, sync_playwright  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning"),
]

NAME = b"caf\xe9 \xff.jpg"
SHOWN = "caf\ufffd \ufffd.jpg"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, sketchy_root, sync_playwright):  # noqa: F811
    import app as app_module
    from sketchlvm.gallery import build_gallery_index
    from sketchlvm.model.factory import create_sketchlvm
    from sketchlvm.search import Searcher

    root = tmp_path_factory.mktemp("names") / "gallery"
    (root / "cat").mkdir(parents=True)
    photos = sorted((sketchy_root / "photo" / "cat").glob("*.jpg"))[:3]
    for photo in photos[1:]:
        shutil.copy(photo, root / "cat" / photo.name)
    with open(bytes(root / "cat") + b"/" + NAME, "wb") as out:
        out.write(photos[0].read_bytes())
    model = create_sketchlvm(arch="SketchLVM-Tiny", pretrained="none", device="cpu")
    index = build_gallery_index(root, model, cache_dir=root.parent / "cache", show_progress_bar=False)
    assert len(index) == 3
    state = app_module.AppState(Searcher(model, index, default_k=3), gallery_dir=root, cache_dir=index.cache_dir)
    demo, url = serve_in_process(state)  # as app.py serves it, on a free 127.0.0.1 port
    yield url
    demo.close()


def test_a_name_that_is_not_utf8_is_shown_opened_and_searched_with(app_url, browser, tmp_path):  # noqa: F811
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.set_default_timeout(30_000)
    try:
        page.goto(app_url)
        page.locator("#sketchlvm-examples img").first.click()  # an example searches the whole gallery (k = 3)
        page.wait_for_function(
            "(name) => [...document.querySelectorAll('#sketchlvm-results .caption-label')]"
            ".some(c => c.innerText.includes(name))", arg=SHOWN)
        labels = [c.strip() for c in page.locator("#sketchlvm-results .caption-label").all_inner_texts()]
        assert len(labels) == 3 and not page.locator("text=Error").count(), labels
        page.locator("#sketchlvm-results .thumbnail-item").nth(next(i for i, c in enumerate(labels) if SHOWN in c)).click()
        page.locator("#sketchlvm-preview-panel").wait_for(state="visible")
        page.locator("#sketchlvm-preview img").wait_for(state="visible")
        page.locator("#sketchlvm-like").click()
        page.wait_for_function("(name) => document.querySelector('#sketchlvm-message')?.innerText.includes('More like')"
                               " && document.querySelector('#sketchlvm-message').innerText.includes(name)", arg=SHOWN)
        page.screenshot(path=str(tmp_path / "not-utf8-name.png"))
    finally:
        page.close()
