"""The app while its gallery is indexed in the background: the page answers at once, its progress
advances, search covers (and says) what is indexed so far, and thumbnails exist for each commit.

Real Gradio server in-process, driven through gradio_client; the build is stepped batch by batch by a
gate on ``model.encode_photos`` (``GatedEncoder``), the tiny random-weight model on real Sketchy photos.
"""

from __future__ import annotations

import json
import re

import pytest
from test_app import CAPTION, free_port
from test_index import _make_gallery
from test_index_background import CONFIG, GatedEncoder, _until

import app as app_module
from sketchlvm import create_sketchlvm
from sketchlvm.config import TINY_ARCH
from sketchlvm.gallery.background import BackgroundIndexer
from sketchlvm.search import Searcher
from sketchlvm.gallery.thumbnails import thumbnail_path

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning"
)

N_CLASSES, PER_CLASS = 3, 5  # 15 photos, batches of 2
SEARCHABLE = re.compile(r"Indexing: (\d+) of 15 photos searchable · (\d+)/15 embedded")
TRIANGLE = json.dumps([[[10, 60, 110], [10, 60, 10]], [[10, 110], [110, 110]]])  # a drawn triangle


@pytest.fixture
def model():
    return create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu", text=True)


def launch_gated(model, gallery, cache, monkeypatch):
    gate = GatedEncoder(model, monkeypatch)
    searcher = Searcher(model, None, default_k=20)
    indexer = BackgroundIndexer(gallery, model, cache_dir=cache, config=CONFIG, on_index=searcher.set_index)
    state = app_module.AppState(searcher, gallery_dir=gallery, cache_dir=indexer.cache_dir, indexer=indexer)
    indexer.start()
    demo = app_module.build_demo(state)
    _, url, _ = app_module.launch(demo, **app_module.launch_kwargs(state, "127.0.0.1", free_port()),
                                  prevent_thread_lock=True, quiet=True)
    return demo, url.rstrip("/"), state, gate


def counts(status: str) -> tuple[int, int] | None:
    match = SEARCHABLE.search(status)
    return (int(match[1]), int(match[2])) if match else None


def test_page_answers_during_a_build_and_search_covers_what_is_indexed(model, sketchy_root, tmp_path,
                                                                      monkeypatch):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery", n_classes=N_CLASSES, per_class=PER_CLASS)
    demo, url, state, gate = launch_gated(model, gallery, tmp_path / "cache", monkeypatch)
    try:
        client = Client(url, verbose=False, analytics_enabled=False)
        # Nothing embedded yet: the page and its status answer, search says the gallery is being indexed.
        _until(gate.waiting.is_set, "the first batch to wait at the gate")
        status = client.predict(api_name="/status")
        assert "Indexing" in status and "0 of 15" in status or "looking for photos" in status, status
        results, message = client.predict(TRIANGLE, "category", 20, api_name="/search")
        assert results == [] and "being indexed" in message, message

        seen = []
        for _ in range(2):
            gate.allow()
            before = seen[-1][0] if seen else 0
            now = _until(lambda before=before: (c := counts(client.predict(api_name="/status"))) and c[0] > before
                         and c, f"the status to show more than {before} searchable")
            seen.append(now)
            results, message = client.predict(TRIANGLE, "category", 20, api_name="/search")
            names = {CAPTION.match(r["caption"])["name"] for r in results}
            indexed = {p.relpath.rsplit("/", 1)[-1] for p in state.searcher.index.photos}
            assert names == indexed and len(names) == now[0], (names, now)
            assert f"Results from the {now[0]} of 15 photos indexed so far; indexing continues." in message
            for photo in state.searcher.index.photos:  # thumbnails made with each commit, not only at the end
                stat = (gallery / photo.relpath).stat()
                assert thumbnail_path(state.cache_dir, photo.relpath, stat.st_size, stat.st_mtime_ns).is_file()
        assert seen[0][0] < seen[1][0] and seen[0][1] < seen[1][1]

        gate.open()
        state.indexer.wait(60)
        status = client.predict(api_name="/status")
        assert "15 photos indexed" in status and counts(status) is None, status
        results, message = client.predict(TRIANGLE, "category", 20, api_name="/search")
        assert len(results) == 15 and "indexed so far" not in message

        # "Rebuild index" runs the same background build; the new photo becomes searchable.
        extra = sorted((sketchy_root / "photo").iterdir())[N_CLASSES]
        photo = sorted(extra.glob("*.jpg"))[0]
        (gallery / extra.name).mkdir()
        (gallery / extra.name / photo.name).write_bytes(photo.read_bytes())
        message = client.predict(api_name="/rebuild_index")[1]
        assert "in the background" in message
        _until(lambda: "16 photos indexed" in client.predict(api_name="/status"), "the rebuild to finish")
    finally:
        gate.open()
        demo.close()
        state.indexer.stop(10)


def test_prepare_starts_the_page_before_the_index(sketchy_root, tmp_path, monkeypatch):
    """app.prepare returns while the gallery is still being indexed (the gate holds the first batch)."""
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery", n_classes=2, per_class=3)
    monkeypatch.setenv("SKETCHLVM_GALLERIES_DIR", str(tmp_path / "galleries"))
    from sketchlvm.model import factory as model_module

    made = []
    create = model_module.create_sketchlvm

    def create_gated(*args, **kwargs):
        made.append(kwargs)
        m = create(*args, **{**kwargs, "runtime": "torch"})
        made.append(GatedEncoder(m, monkeypatch))
        return m

    monkeypatch.setattr(model_module, "create_sketchlvm", create_gated)
    args = app_module.build_parser().parse_args(
        ["--gallery", str(gallery), "--model", TINY_ARCH, "--pretrained", "none", "--device", "cpu"])
    state = app_module.prepare(args)
    gate = made[1]
    try:
        assert made[0]["text"] is True and state.searcher.supports_text
        _until(gate.waiting.is_set, "the build to reach its first batch")
        assert state.indexer.snapshot().running and len(state.searcher) == 0
        gate.open()
        assert state.indexer.wait(60).state == "done" and len(state.searcher) == 6
    finally:
        gate.open()
        state.indexer.stop(10)


@pytest.mark.browser
def test_progress_is_visible_in_a_real_browser_and_advances(model, sketchy_root, tmp_path, monkeypatch):
    """Headless Chromium: the page shows 'Indexing: N of 15 photos searchable', the timer's polls move it
    on as batches commit, and it disappears when the gallery is complete. Screenshots in tmp_path."""
    from test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    playwright = pytest.importorskip("playwright.sync_api")
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery", n_classes=N_CLASSES, per_class=PER_CLASS)
    demo, url, state, gate = launch_gated(model, gallery, tmp_path / "cache", monkeypatch)
    try:
        gate.allow()  # one batch: 2 photos searchable
        _until(lambda: state.indexer.snapshot().searchable == 2, "the first commit")
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(url)
            line = page.locator("#sketchlvm-progress")
            line.get_by_text(re.compile(r"Indexing: 2 of 15 photos searchable · 2/15 embedded")).wait_for()
            page.screenshot(path=str(tmp_path / "progress-2.png"))
            gate.allow(2)  # two more batches: 6 searchable; the page has to poll to show it
            line.get_by_text(re.compile(r"Indexing: 6 of 15 photos searchable · 6/15 embedded")).wait_for()
            page.screenshot(path=str(tmp_path / "progress-6.png"))
            gate.open()
            page.wait_for_function(
                "() => !document.querySelector('#sketchlvm-progress').innerText.includes('Indexing')")
            page.screenshot(path=str(tmp_path / "progress-done.png"))
            browser.close()
    finally:
        gate.open()
        demo.close()
        state.indexer.stop(10)
    print(f"screenshots in {tmp_path}")
