"""A person's path through the app: headless Chromium draws real Quick, Draw! strokes with the mouse.

The stroke canvas (sketchlvm/webapp/canvas.py) must take strokes at once, the live search must fill the
results after each pen-up, and undo / redo (keyboard and buttons) and clear must each search again and
bring back the results of the drawing they restore. Screenshots are saved to the test's tmp_path for a
human look.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

import pytest
from conftest import serve_in_process

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning"),
]

CHROMIUM = Path(os.environ.get("SKETCHLVM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CLASSES = ("airplane", "cat", "fish", "umbrella")
K = 6
CAPTION = re.compile(r"^.+ · -?\d+\.\d{3} · .+\.jpg$")


@pytest.fixture(scope="module")
def sync_playwright():
    # .ci/run sets SKETCHLVM_REQUIRE_BROWSER=1 once it has installed Chromium: there a missing browser
    # is a failure, never a silent skip.
    unavailable = pytest.fail if os.environ.get("SKETCHLVM_REQUIRE_BROWSER") == "1" else pytest.skip
    if not CHROMIUM.is_file():
        unavailable(f"no Chromium at {CHROMIUM} (set SKETCHLVM_CHROMIUM); browser tests need a local Chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright Python package is not installed (pip install playwright)")
    return sync_playwright


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, sketchy_root, sync_playwright):
    import app as app_module
    from sketchlvm.gallery import build_gallery_index
    from sketchlvm.model.factory import create_sketchlvm
    from sketchlvm.search import Searcher

    root = tmp_path_factory.mktemp("browser") / "gallery"
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for photo in sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:3]:
            shutil.copy(photo, root / name / photo.name)
    model = create_sketchlvm(arch="SketchLVM-Tiny", pretrained="none", device="cpu")
    index = build_gallery_index(root, model, cache_dir=root.parent / "cache", show_progress_bar=False)
    state = app_module.AppState(Searcher(model, index, default_k=K), gallery_dir=root, cache_dir=index.cache_dir)
    demo, url = serve_in_process(state)  # as app.py serves it, on a free 127.0.0.1 port
    yield url, state
    demo.close()


@pytest.fixture(scope="module")
def browser(sync_playwright):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.set_default_timeout(30_000)
    yield page
    page.close()


def drawing(quickdraw_root: Path, min_strokes: int = 3) -> list:
    """A real 'fish' drawing of at least ``min_strokes`` strokes, all its points: [[xs, ys, ts], ...]."""
    path = quickdraw_root / "fish.ndjson"
    if not path.is_file():
        path = sorted(quickdraw_root.glob("*.ndjson"))[0]
    from sketchlvm.preprocess.strokes import load_ndjson

    records = [r for r in load_ndjson(path, limit=200) if sum(len(s[0]) > 1 for s in r["drawing"]) >= min_strokes]
    assert records, f"no drawing of {min_strokes}+ strokes in {path}"
    record = next((r for r in records if r.get("recognized")), records[0])
    return [s for s in record["drawing"] if len(s[0]) > 1]


def draw(page, strokes: list, box: dict, only) -> None:
    """Replay strokes with the mouse, every point, scaled to fit the middle 70 % of the canvas."""
    xs = [x for stroke in strokes for x in stroke[0]]
    ys = [y for stroke in strokes for y in stroke[1]]
    side = 0.7 * min(box["width"], box["height"])
    scale = side / max(max(xs) - min(xs), max(ys) - min(ys), 1)
    left = box["x"] + (box["width"] - (max(xs) - min(xs)) * scale) / 2
    top = box["y"] + (box["height"] - (max(ys) - min(ys)) * scale) / 2
    for i in only:
        stroke = strokes[i]
        points = [(left + (x - min(xs)) * scale, top + (y - min(ys)) * scale) for x, y in zip(stroke[0], stroke[1])]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y)
        page.mouse.up()


def captions(page) -> list[str]:
    return [c.strip() for c in page.locator("#sketchlvm-results .caption-label").all_inner_texts()]


def wait_for_new_results(page, previous: list[str]) -> list[str]:
    """Wait until K captioned results that differ from ``previous`` are shown, as the answer to the latest
    request and not to a drawing in progress (a slow stroke also sends the drawing so far); return them."""
    page.wait_for_function(
        """([k, previous]) => {
            const p = window.SketchLVMPage;
            if (!p || !p.answer || p.answer.partial || p.answer.seq !== p.seq || !p.isCurrent(p.answer)) return false;
            const now = [...document.querySelectorAll('#sketchlvm-results .caption-label')].map(c => c.innerText.trim());
            return now.length >= k && JSON.stringify(now) !== JSON.stringify(previous);
        }""",
        arg=[K, previous],
    )
    return captions(page)


def wait_for_message(page, text: str) -> str:
    """Wait until the message line says ``text``: it is its own output and may render after the results."""
    page.wait_for_function("(text) => document.querySelector('#sketchlvm-message')?.innerText.includes(text)",
                           arg=text)
    return page.locator("#sketchlvm-message").inner_text()


def sent_strokes(page) -> int:
    """How many strokes the canvas holds (the hint shows only on an empty canvas)."""
    return page.evaluate("() => document.querySelector('#sketchlvm-canvas .sketchlvm-empty') ? 0 : 1")


def test_drawing_undo_redo_clear_search_live(app_url, page, quickdraw_root, tmp_path):
    url, state = app_url
    page.goto(url)
    canvas = page.locator("#sketchlvm-canvas canvas").first
    canvas.wait_for(state="visible")
    assert page.locator("#sketchlvm-results img").count() == 0
    banner = page.locator("#sketchlvm-banner").inner_text()
    assert "Random weights" in banner and "zero-shot CLIP, no trained prompts" in banner
    before = state.searcher.encode_calls
    strokes = drawing(quickdraw_root)
    box = canvas.bounding_box()

    # One stroke, nothing clicked first: the results fill in after it.
    draw(page, strokes, box, only=[0])
    one = wait_for_new_results(page, [])
    assert len(one) >= K and all(CAPTION.match(c) for c in one[:K]), one
    assert "best matches" in wait_for_message(page, "best matches")
    assert state.searcher.encode_calls >= before + 1  # that stroke reached the server and was encoded
    # Results are the thumbnails (WebP, made at index time), not the original JPEGs.
    src = page.locator("#sketchlvm-results img").first.get_attribute("src")
    assert src.endswith(".webp"), src

    # Each further stroke searches again.
    draw(page, strokes, box, only=[1])
    two = wait_for_new_results(page, one)
    draw(page, strokes, box, only=range(2, len(strokes)))
    full = wait_for_new_results(page, two) if len(strokes) > 2 else two
    page.screenshot(path=str(tmp_path / "sketchlvm-after-drawing.png"), full_page=True)

    # Undo from the keyboard removes the last stroke(s) and shows that drawing's results again.
    for _ in range(len(strokes) - 2):
        page.keyboard.press("Control+z")
    assert wait_for_new_results(page, full) == two
    page.get_by_role("button", name="Undo").click()
    assert wait_for_new_results(page, two) == one
    page.keyboard.press("Shift+Control+z")  # redo
    assert wait_for_new_results(page, one) == two

    # Switching the mode re-ranks the same drawing live.
    page.get_by_label("Fine-grained").check()
    page.wait_for_function(
        "() => document.querySelector('#sketchlvm-message').innerText.includes('Fine-grained mode')"
    )
    assert page.locator("#sketchlvm-results img").count() == K

    # Clear empties the canvas and the results; undo brings the drawing back.
    page.get_by_role("button", name="Clear").click()
    page.wait_for_function("() => document.querySelectorAll('#sketchlvm-results img').length === 0")
    assert "Draw something" in page.locator("#sketchlvm-message").inner_text()
    assert sent_strokes(page) == 0
    page.keyboard.press("Control+z")
    page.locator("#sketchlvm-results img").nth(K - 1).wait_for(state="visible")
    assert sent_strokes(page) == 1

    # Clicking a result previews the original photo.
    page.locator("#sketchlvm-results img").first.click()
    preview = page.locator("#sketchlvm-preview img")
    preview.wait_for(state="visible")
    page.screenshot(path=str(tmp_path / "sketchlvm-preview.png"), full_page=True)


def test_an_example_loads_into_the_canvas_as_strokes(app_url, page):
    url, state = app_url
    page.goto(url)
    page.locator("#sketchlvm-canvas canvas").first.wait_for(state="visible")
    page.locator("#sketchlvm-examples img").first.click()
    page.locator("#sketchlvm-results img").nth(K - 1).wait_for(state="visible")
    assert "Example" in page.locator("#sketchlvm-message").inner_text()
    assert sent_strokes(page) == 1  # the canvas shows the example's strokes
    # Drawing on top of it searches the example plus the new stroke.
    before = captions(page)
    box = page.locator("#sketchlvm-canvas canvas").first.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + 60, box["y"] + 40)
    page.mouse.up()
    wait_for_new_results(page, before)


def test_drawing_with_a_finger_searches_and_does_not_scroll(app_url, browser):
    """On a phone-sized touch screen the canvas fits the width, a touch stroke draws instead of scrolling,
    and a finger that rests mid-stroke gets the results of the drawing so far, as the mouse does."""
    url, state = app_url
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(url)
        canvas = page.locator("#sketchlvm-canvas canvas").first
        canvas.wait_for(state="visible")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        assert box["width"] <= 390 and abs(box["width"] - box["height"]) < 2  # square, within the screen
        scrolled = page.evaluate("() => window.scrollY")
        cdp = context.new_cdp_session(page)
        points = [(box["x"] + 30 + i * 10, box["y"] + 40 + i * 12) for i in range(20)]  # a diagonal swipe
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": points[0][0], "y": points[0][1]}]})
        for i, (x, y) in enumerate(points[1:]):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
            if i == 10:  # the finger rests mid-swipe: the drawing so far is searched, as with a mouse
                page.wait_for_function("() => window.SketchLVMPage.answer && window.SketchLVMPage.answer.partial")
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        page.wait_for_function("() => window.SketchLVMPage.answer && !window.SketchLVMPage.answer.partial")
        page.locator("#sketchlvm-results img").nth(K - 1).wait_for(state="attached")
        assert "best matches" in wait_for_message(page, "best matches")
        assert page.evaluate("() => window.scrollY") == scrolled  # the swipe drew; the page did not move
        # CDP touch events do not start the browser's own pan gesture, so the line above cannot see a page
        # that would scroll; what stops a real finger from scrolling is this style:
        assert canvas.evaluate("c => getComputedStyle(c).touchAction") == "none"
    finally:
        context.close()


def test_escaped_file_names_render_as_plain_text_in_gradios_markdown(browser):
    """What sketchlvm.webapp.markdown.escape produces, rendered by Gradio's own Markdown in Chromium: no
    link, code span, emphasis or HTML element comes out of a hostile file name, and its text is intact."""
    import gradio as gr

    from sketchlvm.webapp.markdown import escape

    name = "[Session expired, sign in again](https:evil.example) `x` **bold** <b>b www.evil.example a@b.example.jpg"
    with gr.Blocks() as demo:
        gr.Markdown(f"More like **{escape(name)}** · 3 best matches", elem_id="escaped")
        gr.Markdown(f"More like **{name}**", elem_id="raw")  # control: the same name unescaped
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    page = browser.new_page()
    try:
        page.goto(url)
        page.locator("#escaped strong").first.wait_for(state="visible")
        raw = page.locator("#raw")
        assert raw.locator("a").count() >= 1  # the control: unescaped, Gradio makes a live link of it
        escaped = page.locator("#escaped")
        for tag in ("a", "code", "em", "b"):
            assert escaped.locator(tag).count() == 0, f"a <{tag}> came out of the file name"
        assert escaped.locator("strong").count() == 1  # only our own bold around the name
        assert escaped.locator("strong").inner_text() == name
    finally:
        page.close()
        demo.close()
