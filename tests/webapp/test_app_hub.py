"""The app on a gallery from the Hugging Face Hub (``--gallery hf://datasets/USER/REPO[/SUBDIR]`` or
``SKETCHLVM_GALLERY``), offline from a cache laid out as huggingface_hub lays it out: the page searches
and serves the photos (symlinks into the repository's blobs/), and a repository that is not cached stops
the app with one line naming it and exit status 2."""

from __future__ import annotations

import pytest
from test_app import CAPTION, free_port
from test_hub import GALLERY_URI, _cache_repo, _photos, hf_cache  # noqa: F401  (hf_cache is a fixture)

import app as app_module
from sketchlvm.config import TINY_ARCH

gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")
from gradio_client import Client  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning"
)

TINY = ["--model", TINY_ARCH, "--pretrained", "none", "--device", "cpu", "--runtime", "torch"]


def test_a_missing_hub_gallery_stops_the_app_in_one_line(hf_cache, capsys):  # noqa: F811
    code = app_module.main(["--gallery", GALLERY_URI, *TINY])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "dataset repository alice/sketch-photos" in err and "hf download" in err


def test_the_app_searches_and_serves_a_hub_gallery(hf_cache, sketchy_root, monkeypatch):  # noqa: F811
    files = _photos(sketchy_root)
    snapshot = _cache_repo(hf_cache, "dataset", "alice/sketch-photos", files)
    monkeypatch.setenv("SKETCHLVM_GALLERY", GALLERY_URI)  # as a Space sets it
    state = app_module.prepare(app_module.build_parser().parse_args(TINY))
    assert state.gallery_dir == (snapshot / "gallery").resolve()
    assert state.indexer.wait(60).state == "done" and len(state.searcher) == len(files)
    demo = app_module.build_demo(state)
    _, url, _ = app_module.launch(demo, **app_module.launch_kwargs(state, "127.0.0.1", free_port()),
                                  prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False, analytics_enabled=False)
        gallery, message = client.predict("[]", "category", 4, "a cat", 0.5, api_name="/search")
        assert len(gallery) == 4 and all(CAPTION.match(item["caption"]) for item in gallery), message
        photo = state.gallery_dir / state.searcher.index.photos[0].relpath  # a symlink into blobs/
        assert photo.is_symlink() and not photo.resolve().is_relative_to(snapshot)
        from sketchlvm.webapp import results

        original = results.original(state, state.searcher.index.photos[0].relpath)  # the preview's copy
        with httpx.Client(timeout=10) as http:
            response = http.get(f"{url.rstrip('/')}/gradio_api/file={original}")
            assert response.status_code == 200 and response.content == photo.read_bytes()
            # Nothing of the dataset's cache folder by its path: not the snapshot's file, not its blob.
            for path in (photo, photo.resolve(), snapshot.parent.parent / "refs" / "main"):
                assert http.get(f"{url.rstrip('/')}/gradio_api/file={path}").status_code in (403, 404), path
            assert http.get(f"{url.rstrip('/')}/gradio_api/file=/etc/passwd").status_code in (403, 404)
    finally:
        demo.close()
        state.indexer.stop(10)
