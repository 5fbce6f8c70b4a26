"""The page at a phone's 390x844 (touch) and a desktop's 1366x900, in headless Chromium, by positions.

On the phone the canvas and the first results must be on screen together after a stroke, with no
scrolling; the results are one strip that swipes sideways, each caption whole; the four examples fit
their box; the controls are a short scroll away and using them does not move the results. On the
desktop the canvas and the results sit side by side above the fold, as before. Screenshots are saved
to the test's tmp_path (and SKETCHLVM_SCREENSHOTS, when set) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_page_queries import browser, running, settle, stroke  # noqa: F401  (fixtures and helpers)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning"),
]


def save(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path))
    if os.environ.get("SKETCHLVM_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["SKETCHLVM_SCREENSHOTS"]) / name)


def touch_stroke(context, page) -> None:
    """A finger stroke across the canvas (CDP touch events, as a phone sends them)."""
    box = page.locator("#sketchlvm-canvas canvas").first.bounding_box()
    cdp = context.new_cdp_session(page)
    points = [(box["x"] + 40 + i * 9, box["y"] + 50 + i * 8) for i in range(20)]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": points[0][0], "y": points[0][1]}]})
    for x, y in points[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def test_phone_canvas_and_first_results_show_together(running, browser, tmp_path):  # noqa: F811
    url = running[0]
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(url)
        canvas = page.locator("#sketchlvm-canvas canvas").first
        canvas.wait_for(state="visible")
        page.wait_for_function("() => window.SketchLVMPage && window.SketchLVMPage.check")
        touch_stroke(context, page)
        settle(page)
        first = page.locator("#sketchlvm-results .thumbnail-item").first
        first.wait_for(state="visible")
        page.wait_for_timeout(300)  # thumbnails laid out
        save(page, tmp_path, "phone-390x844-after-stroke.png")
        assert page.evaluate("() => window.scrollY") == 0
        c, r = canvas.bounding_box(), first.bounding_box()
        assert c["y"] >= 0 and c["y"] + c["height"] <= 844, c  # the whole canvas on screen
        assert 0 <= r["y"] and r["y"] + r["height"] <= 844, r  # the first result too, whole
        assert r["y"] >= c["y"] + c["height"], (c, r)  # under the canvas
        # The strip: the first three tiles whole within the screen's width, the rest a swipe away.
        tiles = [t.bounding_box() for t in page.locator("#sketchlvm-results .thumbnail-item").all()[:3]]
        assert all(t["x"] >= 0 and t["x"] + t["width"] <= 390 for t in tiles), tiles
        assert page.evaluate("""() => { const g = document.querySelector('#sketchlvm-results .grid-container');
            return getComputedStyle(g).overflowX === 'auto' && g.scrollWidth > g.clientWidth; }""")
        # Captions whole: none cut short with an ellipsis.
        cut = page.evaluate("""() => [...document.querySelectorAll('#sketchlvm-results .caption-label')]
            .filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.innerText)""")
        assert cut == [], cut
        # The examples fit their box: each tile within it and within the screen.
        frame = page.locator("#sketchlvm-examples").bounding_box()
        for tile in page.locator("#sketchlvm-examples .thumbnail-item").all():
            t = tile.bounding_box()
            assert frame["x"] <= t["x"] and t["x"] + t["width"] <= min(frame["x"] + frame["width"], 390) + 0.5, (t, frame)
        # The controls: reached by scrolling, and using them re-ranks without moving the results.
        before = first.bounding_box()["y"] + page.evaluate("() => window.scrollY")
        page.get_by_role("radio", name="Fine-grained").tap()
        page.wait_for_function("() => window.SketchLVMPage.answer.mode === 'fine_grained'")
        settle(page)
        after = first.bounding_box()["y"] + page.evaluate("() => window.scrollY")
        assert abs(after - before) < 2, (before, after)
        page.evaluate("() => window.scrollTo(0, 0)")
        save(page, tmp_path, "phone-390x844-fine-grained.png")
        page.screenshot(path=str(tmp_path / "phone-390x844-full.png"), full_page=True)
    finally:
        context.close()
    print(f"screenshots in {tmp_path}")


def test_desktop_keeps_canvas_and_results_side_by_side(running, browser, tmp_path):  # noqa: F811
    url = running[0]
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    try:
        page.set_default_timeout(30_000)
        page.goto(url)
        page.wait_for_function("() => window.SketchLVMPage && window.SketchLVMPage.check")
        stroke(page, 5)
        settle(page)
        page.wait_for_timeout(300)
        save(page, tmp_path, "desktop-1366x900-after-stroke.png")
        assert page.evaluate("() => window.scrollY") == 0
        c = page.locator("#sketchlvm-canvas canvas").first.bounding_box()
        r = page.locator("#sketchlvm-results .thumbnail-item").first.bounding_box()
        mode = page.locator("#sketchlvm-mode").bounding_box()
        assert c["y"] + c["height"] <= 900 and r["y"] + r["height"] <= 900, (c, r)
        assert r["x"] >= c["x"] + c["width"], (c, r)  # results beside the canvas
        assert mode["y"] + mode["height"] <= 900 and mode["x"] >= c["x"] + c["width"], mode  # controls above the fold
        assert page.locator("#sketchlvm-results .thumbnail-item").count() == running[1].searcher.default_k
    finally:
        page.close()
