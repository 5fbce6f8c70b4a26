"""Queries beyond a sketch, through the app's public gradio_client endpoints: sketch + words with the
weight slider (/search), "Search with this photo" (/search_like) and an uploaded photo (/search_photo).

The real Gradio server in-process, the tiny random-weight model with its text tower, real Sketchy
photos and Quick, Draw! strokes. Rankings are meaningless with random weights: the tests check that the
page gives exactly the library's rankings and clear messages, not retrieval quality.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_app import CAPTION, free_port, strokes_json
from test_index import _make_gallery

import app as app_module
from sketchlvm import create_sketchlvm
from sketchlvm.config import TINY_ARCH, IndexConfig
from sketchlvm.gallery import build_gallery_index
from sketchlvm.model.text import MAX_TEXT_CHARS
from sketchlvm.preprocess.strokes import load_ndjson
from sketchlvm.search import DEFAULT_TEXT_WEIGHT, Searcher
from sketchlvm.webapp import DRAW_HINT, handlers
from sketchlvm.webapp.markdown import escape  # noqa: E402

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning"
)

K = 8
MODES = ("category", "fine_grained")
BLANK = "[]"  # an empty canvas, as the browser sends it


@pytest.fixture(scope="module")
def running(sketchy_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("app-queries")
    gallery = _make_gallery(sketchy_root, root / "gallery", n_classes=4, per_class=4)
    model = create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu", text=True)
    index = build_gallery_index(gallery, model, root / "cache", IndexConfig(batch_size=8, decode_workers=1),
                                show_progress_bar=False)
    state = app_module.AppState(Searcher(model, index, default_k=K), gallery_dir=gallery, cache_dir=index.cache_dir)
    demo = app_module.build_demo(state)
    _, url, _ = app_module.launch(demo, **app_module.launch_kwargs(state, "127.0.0.1", free_port()),
                                  prevent_thread_lock=True, quiet=True)
    yield Client(url, verbose=False, analytics_enabled=False), state
    demo.close()


@pytest.fixture(scope="module")
def strokes(quickdraw_root) -> str:
    return strokes_json(load_ndjson(quickdraw_root / "cat.ndjson", limit=1)[0])


def names(gallery: list[dict]) -> list[str]:
    out = []
    for item in gallery:
        match = CAPTION.match(item["caption"])
        assert match, item["caption"]
        out.append(match["name"])
    return out


def library(results) -> list[str]:
    return [Path(r.relpath).name for r in results]


@pytest.mark.parametrize("mode", MODES)
def test_slider_ends_are_the_sketch_only_and_words_only_rankings(running, strokes, mode):
    client, state = running
    sketch = handlers.strokes_to_sketch(state, strokes)
    searcher = state.searcher
    sketch_only = library(searcher.search(sketch, mode, K))
    words_only = library(searcher.search(None, mode, K, text="red leather"))
    fused = library(searcher.search(sketch, mode, K, text="red leather", text_weight=0.3))
    assert sketch_only != words_only  # otherwise the ends prove nothing

    # Stroke-only calls (no words arguments) keep working, and equal weight 0.
    assert names(client.predict(strokes, mode, K, api_name="/search")[0]) == sketch_only
    assert names(client.predict(strokes, mode, K, "red leather", 0.0, api_name="/search")[0]) == sketch_only
    assert names(client.predict(strokes, mode, K, "red leather", 1.0, api_name="/search")[0]) == words_only
    assert names(client.predict(strokes, mode, K, "red leather", 0.3, api_name="/search")[0]) == fused
    # The default weight is the documented one.
    default = library(searcher.search(sketch, mode, K, text="red leather", text_weight=DEFAULT_TEXT_WEIGHT))
    assert names(client.predict(strokes, mode, K, "red leather", api_name="/search")[0]) == default
    # A blank canvas with words: the words alone, whatever the slider says.
    gallery, message = client.predict(BLANK, mode, K, "red leather", 0.5, api_name="/search")
    assert names(gallery) == words_only and f"{K} best matches" in message


def test_empty_and_overlong_words_get_a_message_not_a_traceback(running, strokes):
    client, _ = running
    gallery, message = client.predict(BLANK, "category", K, "   ", 0.5, api_name="/search")
    assert gallery == [] and message == DRAW_HINT
    gallery, message = client.predict(BLANK, "category", K, "x" * (MAX_TEXT_CHARS + 1), 0.5, api_name="/search")
    assert gallery == [] and "Those words could not be used" in message
    assert f"{MAX_TEXT_CHARS + 1} characters long; the limit is {MAX_TEXT_CHARS}" in message
    # Under the character limit but over CLIP's 77 tokens: searched, with a note that the end was cut.
    long_words = " ".join(["a"] * 140)
    gallery, message = client.predict(strokes, "category", K, long_words, 0.5, api_name="/search")
    assert len(gallery) == K and "Only the start of the text was used" in message
    gallery, message = client.predict(strokes, "category", K, "red", 0.5, api_name="/search")
    assert "Only the start" not in message


@pytest.mark.parametrize("mode", MODES)
def test_search_with_this_photo_puts_the_photo_first(running, mode):
    client, state = running
    relpath = state.searcher.index.photos[5].relpath
    gallery, message = client.predict(relpath, mode, K, api_name="/search_like")
    got = names(gallery)
    assert got[0] == Path(relpath).name and CAPTION.match(gallery[0]["caption"])["score"] == "1.000"
    assert got == library(state.searcher.search_like(relpath, mode, K))
    assert f"More like **{escape(Path(relpath).name)}**" in message  # file names are shown as text
    gallery, message = client.predict("gone/photo.jpg", mode, K, api_name="/search_like")
    assert gallery == [] and "gone/photo.jpg" not in message and "photo.jpg is not in the gallery index" in message
    assert "no longer" not in message  # it never was: say nothing untrue


def test_an_uploaded_photo_is_a_query(running, tmp_path):
    client, state = running
    photo = state.gallery_dir / state.searcher.index.photos[9].relpath
    gallery, message = client.predict(handle_file(str(photo)), "category", K, api_name="/search_photo")
    assert names(gallery)[0] == photo.name  # the same photo, encoded the same way, is its own best match
    assert names(gallery) == library(state.searcher.search_photo(photo, "category", K))
    assert f"Photo **{escape(photo.name)}**" in message
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    _, message = client.predict(handle_file(str(bad)), "category", K, api_name="/search_photo")
    assert "Photo refused" in message and str(tmp_path) not in message


def test_every_kind_of_search_counts_as_busy_while_it_runs(running, strokes, tmp_path, monkeypatch):
    """What mid-stroke searches give way to (webapp/busy.py): a drawing, a photo and "more like this",
    through the public API, each hold the count while the searcher runs and let it go after."""
    client, state = running
    seen = []
    for name in ("search", "search_like", "search_photo"):
        real = getattr(state.searcher, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            seen.append((_name, state.busy.running))
            return _real(*args, **kwargs)

        monkeypatch.setattr(state.searcher, name, counted)
    client.predict(strokes, "category", K, "", DEFAULT_TEXT_WEIGHT, api_name="/search")
    client.predict(state.searcher.index.photos[2].relpath, "category", K, api_name="/search_like")
    photo = state.gallery_dir / state.searcher.index.photos[3].relpath
    client.predict(handle_file(str(photo)), "category", K, api_name="/search_photo")
    assert seen == [("search", 1), ("search_like", 1), ("search_photo", 1)]
    assert state.busy.running == 0


@pytest.mark.browser
def test_words_and_search_with_this_photo_in_a_real_browser(running, tmp_path):
    """Headless Chromium: words typed beside a blank canvas search (Enter), clicking a result offers
    "Search with this photo", which re-ranks with the words still in the box and, without them, puts
    that photo first. Screenshots in tmp_path."""
    from test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    playwright = pytest.importorskip("playwright.sync_api")
    client, state = running
    captions = "#sketchlvm-results .caption-label"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.set_default_timeout(30_000)
        page.goto(client.src)
        page.locator("#sketchlvm-words textarea, #sketchlvm-words input").first.fill("a red mug")
        page.locator("#sketchlvm-words textarea, #sketchlvm-words input").first.press("Enter")
        page.wait_for_function(f"() => document.querySelectorAll('{captions}').length === {K}")
        words_only = library(state.searcher.search(None, "category", K, text="a red mug"))
        shown = [c.split(" · ")[-1] for c in page.locator(captions).all_inner_texts()]
        assert shown == words_only
        page.screenshot(path=str(tmp_path / "words.png"))
        page.locator("#sketchlvm-results .thumbnail-item").nth(2).click()
        like = page.locator("#sketchlvm-like")
        like.wait_for(state="visible")
        like.click()
        page.get_by_text(f"More like {words_only[2]}").wait_for()
        shown = [c.split(" · ")[-1] for c in page.locator(captions).all_inner_texts()]
        relpath = next(p.relpath for p in state.searcher.index.photos if p.relpath.endswith("/" + words_only[2]))
        # The words still in the box re-rank this query too (one query, every control applies) ...
        assert shown == library(state.searcher.search_like(relpath, "category", K, text="a red mug"))
        # ... and without them the photo alone is the query, and comes first.
        page.locator("#sketchlvm-words textarea, #sketchlvm-words input").first.fill("")
        page.locator("#sketchlvm-words textarea, #sketchlvm-words input").first.press("Enter")
        alone = library(state.searcher.search_like(relpath, "category", K))
        page.wait_for_function(f"(alone) => JSON.stringify([...document.querySelectorAll('{captions}')]"
                               ".map(c => c.innerText.split(' · ').pop().trim())) === JSON.stringify(alone)", arg=alone)
        assert alone[0] == words_only[2]
        page.screenshot(path=str(tmp_path / "more-like-this.png"))
        browser.close()
    print(f"screenshots in {tmp_path}")
