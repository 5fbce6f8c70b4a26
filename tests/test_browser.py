"""A person's path through the app: headless Chromium draws real Quick, Draw! strokes with the mouse.

No tool is clicked first: the canvas must take strokes at once (white background value, see
shared/NOTES.md), and the live search must fill the results after the strokes. A screenshot is saved
to the test's tmp_path for a human look.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

import pytest

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
    from sketchlvm.index import build_gallery_index
    from sketchlvm.model import create_sketchlvm
    from sketchlvm.search import Searcher

    root = tmp_path_factory.mktemp("browser") / "gallery"
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for photo in sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:3]:
            shutil.copy(photo, root / name / photo.name)
    model = create_sketchlvm(arch="SketchLVM-Tiny", pretrained="none", device="cpu")
    index = build_gallery_index(root, model, cache_dir=root.parent / "cache", show_progress_bar=False)
    state = app_module.AppState(Searcher(model, index, default_k=K), gallery_dir=root, cache_dir=index.cache_dir)
    demo = app_module.build_demo(state)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = app_module.launch(
        demo, **app_module.launch_kwargs(state, "127.0.0.1", port), prevent_thread_lock=True, quiet=True
    )
    yield url, state
    demo.close()


@pytest.fixture(scope="module")
def page(sync_playwright):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def simplify(stroke: list, points: int) -> tuple[list, list]:
    """At most ``points`` evenly spaced points of a stroke, ends kept.

    Every pointer move while the brush is down costs the editor 0.3-1.5 s in headless Chromium on 2
    busy cores (software WebGL), so the raw Quick, Draw! points (dozens per stroke) would take minutes.
    """
    xs, ys = stroke[0], stroke[1]
    keep = sorted({round(i * (len(xs) - 1) / max(1, points - 1)) for i in range(points)})
    return [xs[i] for i in keep], [ys[i] for i in keep]


def drawing(quickdraw_root: Path, max_strokes: int = 3, points_per_stroke: int = 4) -> list:
    """A real 'fish' drawing: its first strokes, each cut to a few points: [[xs, ys], ...]."""
    path = quickdraw_root / "fish.ndjson"
    if not path.is_file():
        path = sorted(quickdraw_root.glob("*.ndjson"))[0]
    from sketchlvm.strokes import load_ndjson

    records = [r for r in load_ndjson(path, limit=50) if sum(len(s[0]) > 1 for s in r["drawing"]) >= 2]
    assert records, f"no drawing of 2+ strokes in {path}"
    record = next((r for r in records if r.get("recognized")), records[0])
    return [simplify(s, points_per_stroke) for s in record["drawing"] if len(s[0]) > 1][:max_strokes]


def draw(page, strokes: list, box: dict, only=None) -> None:
    """Replay strokes with the mouse, scaled to fit the middle 60 % of the canvas element.

    The editor shows its 512 x 512 image centred and zoomed to fit its element, so the middle of the
    element is always on the image.
    """
    xs = [x for stroke in strokes for x in stroke[0]]
    ys = [y for stroke in strokes for y in stroke[1]]
    side = 0.6 * min(box["width"], box["height"])
    scale = side / max(max(xs) - min(xs), max(ys) - min(ys), 1)
    left = box["x"] + (box["width"] - (max(xs) - min(xs)) * scale) / 2
    top = box["y"] + (box["height"] - (max(ys) - min(ys)) * scale) / 2
    for i, stroke in enumerate(strokes):
        if only is not None and i not in only:
            continue
        points = [(left + (x - min(xs)) * scale, top + (y - min(ys)) * scale) for x, y in zip(stroke[0], stroke[1])]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y)
        page.mouse.up()


def test_drawing_with_the_mouse_fills_the_results(app_url, page, quickdraw_root, tmp_path):
    url, state = app_url
    page.goto(url)
    canvas = page.locator("#sketchlvm-canvas canvas").first
    canvas.wait_for(state="visible")
    page.wait_for_timeout(1000)  # let the editor finish laying out its image
    assert page.locator("#sketchlvm-results img").count() == 0
    before = state.searcher.encode_calls
    strokes = drawing(quickdraw_root)
    box = canvas.bounding_box()

    # One stroke, no tool clicked first: the results fill in after it (not one stroke late).
    draw(page, strokes, box, only=[0])
    results = page.locator("#sketchlvm-results img")
    results.nth(K - 1).wait_for(state="visible")
    assert results.count() == K
    page.wait_for_function(  # captions render with the tiles
        "k => document.querySelectorAll('#sketchlvm-results .caption-label').length >= k", arg=K
    )
    captions = [c.strip() for c in page.locator("#sketchlvm-results .caption-label").all_inner_texts()]
    assert len(captions) >= K and all(CAPTION.match(c) for c in captions[:K]), captions
    assert "best matches" in page.locator("#sketchlvm-message").inner_text()
    assert state.searcher.encode_calls >= before + 1  # that stroke reached the server and was encoded

    # The rest of the drawing: each new stroke searches again.
    draw(page, strokes, box, only=range(1, len(strokes)))
    for _ in range(60):  # the server sees the new strokes (Playwright's waits drive the page meanwhile)
        if state.searcher.encode_calls >= before + 2:
            break
        page.wait_for_timeout(500)
    assert state.searcher.encode_calls >= before + 2
    page.screenshot(path=str(tmp_path / "sketchlvm-after-drawing.png"), full_page=True)

    # Switching the mode re-ranks the same drawing live.
    page.get_by_label("Fine-grained").check()
    page.wait_for_function(
        "() => document.querySelector('#sketchlvm-message').innerText.includes('Fine-grained mode')"
    )
    assert page.locator("#sketchlvm-results img").count() == K

    # The Clear button empties the canvas and the results.
    page.get_by_role("button", name="Clear", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('#sketchlvm-results img').length === 0")
    assert "Draw something" in page.locator("#sketchlvm-message").inner_text()
