"""A visitor's first look at a Space (``SPACE_ID`` set, no gallery of the owner's), in headless Chromium:
the demo gallery with its credit line, and, when the demo cannot be fetched, one line saying there are no
photos yet. Neither page, nor the config Gradio sends it, holds an owner instruction (flags, variables,
cache paths). The demo comes from a Hugging Face cache laid out as a download leaves it, offline.
Screenshots (390x844 and 1366x900) go to the test's tmp_path, or to $SKETCHLVM_SCREENSHOTS."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest
from conftest import serve_in_process, write_image_parquet
from test_browser import CHROMIUM, CHROMIUM_ARGS, sync_playwright  # noqa: F401  (a fixture)
from test_hub import _cache_repo, hf_cache  # noqa: F401  (a fixture)

from sketchlvm.config import TINY_ARCH
from sketchlvm.gallery.demo import DEMO, DEMO_REVISION
from sketchlvm.webapp import cli as app_main

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TINY = ["--model", TINY_ARCH, "--pretrained", "none", "--device", "cpu", "--runtime", "torch"]
OWNER_WORDS = ("--gallery", "--checkpoint", "SKETCHLVM_", "python app.py", "galleries", "hf-cache", "hf download")
VIEWPORTS = {"phone": (390, 844), "desktop": (1366, 900)}


def _launch(state):
    return serve_in_process(state)


def _visit(sync_playwright, url: str, shots: Path, name: str) -> list[str]:  # noqa: F811
    """The page's visible text at each viewport, with a screenshot of each."""
    texts = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            for label, (width, height) in VIEWPORTS.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                page.set_default_timeout(30_000)
                page.goto(url)
                page.wait_for_selector("#sketchlvm-title")
                page.wait_for_timeout(1500)  # the first progress poll
                texts.append(page.inner_text("body"))
                page.screenshot(path=str(shots / f"space-{name}-{label}.png"))
                page.close()
        finally:
            browser.close()
    return texts


def _config_text(url: str) -> str:
    with urllib.request.urlopen(url.rstrip("/") + "/config", timeout=30) as response:
        return json.dumps(json.loads(response.read()))


@pytest.fixture
def on_a_space(hf_cache, monkeypatch, tmp_path):  # noqa: F811
    for variable in ("SKETCHLVM_GALLERY", "SKETCHLVM_DEMO", "SPACES_ZERO_GPU", "SKETCHLVM_GALLERY_CLASSES"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("SPACE_ID", "alice/sketchlvm")
    shots = Path(os.environ.get("SKETCHLVM_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    return hf_cache, shots


def _no_owner_words(text: str) -> None:
    found = [word for word in OWNER_WORDS if word in text]
    assert not found, f"owner instructions shown to a visitor: {found}"


def test_a_visitors_first_visit_shows_the_demo_with_its_credit(on_a_space, sketchy_root, sync_playwright,  # noqa: F811
                                                               tmp_path):
    pytest.importorskip("pyarrow")
    cache, shots = on_a_space
    names = ["chair", "cup", "umbrella"]
    rows = [(p, i) for i, n in enumerate(names) for p in sorted((sketchy_root / "photo" / n).glob("*.jpg"))[:4]]
    parquet = write_image_parquet(tmp_path / "train.parquet", rows, names)
    _cache_repo(cache, "dataset", "flwrlabs/caltech101", {"data/train-00000-of-00001.parquet": parquet},
                commit=DEMO_REVISION)
    state = app_main.prepare(app_main.build_parser().parse_args(TINY))
    assert state.indexer.wait(120).state == "done" and len(state.searcher) == len(rows)
    demo, url = _launch(state)
    try:
        for text in _visit(sync_playwright, url, shots, "demo"):
            assert "Demo gallery:" in text and "Caltech 101" in text and f"card states it: {DEMO.licence}" in text
            _no_owner_words(text)
        _no_owner_words(_config_text(url))
    finally:
        demo.close()
        state.indexer.stop(10)


def test_when_the_demo_cannot_be_fetched_a_visitor_reads_one_line(on_a_space, sync_playwright):  # noqa: F811
    _, shots = on_a_space
    state = app_main.prepare(app_main.build_parser().parse_args(TINY))  # nothing cached, offline
    assert state.gallery_dir is None
    demo, url = _launch(state)
    try:
        for text in _visit(sync_playwright, url, shots, "no-demo"):
            assert "This Space has no photos to search yet." in text
            _no_owner_words(text)
        _no_owner_words(_config_text(url))
    finally:
        demo.close()
