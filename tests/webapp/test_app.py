"""The app end to end: the real Gradio server in-process, driven through gradio_client and HTTP.

A tiny random-weight model (SketchLVM-Tiny) and a 4 x 4 gallery of real Sketchy photos keep this
offline and quick; the canvas endpoint gets real Quick, Draw! strokes. Rankings are meaningless with
random weights, so the tests check the plumbing (ranked, captioned, descending scores, the same
ranking as the library, thumbnails, friendly messages, file access), not retrieval quality.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")

import app as app_module  # noqa: E402
import gradio  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from sketchlvm.gallery import build_gallery_index  # noqa: E402
from sketchlvm.model.factory import create_sketchlvm  # noqa: E402
from sketchlvm.search import EmptyGalleryError, Searcher  # noqa: E402
from sketchlvm.preprocess.strokes import EmptySketchError, load_ndjson, render_strokes  # noqa: E402
from sketchlvm.gallery.thumbnails import THUMBNAIL_DIR, THUMBNAIL_SIDE  # noqa: E402
from sketchlvm.webapp import handlers, page, results  # noqa: E402

pytestmark = pytest.mark.filterwarnings(  # pandas 3 deprecations inside gradio's queue
    "ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning"
)

CLASSES = ("airplane", "cat", "fish", "umbrella")
PER_CLASS = 4
K = 5
CAPTION = re.compile(r"^(?P<label>.+) · (?P<score>-?\d+\.\d+) · (?P<name>[^/]+)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def strokes_json(record: dict) -> str:
    """What the browser's canvas sends: the stroke list as JSON (Quick, Draw! raw format)."""
    return json.dumps(record["drawing"])


@pytest.fixture(scope="module")
def model():
    return create_sketchlvm(arch="SketchLVM-Tiny", pretrained="none", device="cpu")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, sketchy_root) -> Path:
    root = tmp_path_factory.mktemp("app") / "gallery"
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for photo in sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:PER_CLASS]:
            shutil.copy(photo, root / name / photo.name)
    return root


@pytest.fixture(scope="module")
def sketches(sketchy_root) -> dict[str, Path]:
    return {name: sorted((sketchy_root / "sketch" / name).glob("*.png"))[0] for name in CLASSES}


@pytest.fixture(scope="module")
def drawings(quickdraw_root) -> dict[str, dict]:
    """One real Quick, Draw! drawing per class."""
    return {name: load_ndjson(quickdraw_root / f"{name}.ndjson", limit=1)[0] for name in CLASSES}


@pytest.fixture(scope="module")
def index(gallery, model):
    return build_gallery_index(gallery, model, cache_dir=gallery.parent / "cache", show_progress_bar=False)


@pytest.fixture(scope="module")
def running(model, gallery, index):
    """(url, state) of the app launched in this process on a free 127.0.0.1 port."""
    state = app_module.AppState(Searcher(model, index, default_k=K), gallery_dir=gallery, cache_dir=index.cache_dir)
    demo = app_module.build_demo(state)
    kwargs = app_module.launch_kwargs(state, "127.0.0.1", free_port())
    # The tests' clients stand for several people but all come from 127.0.0.1, one address to the
    # per-client allowance (sketchlvm.webapp.fair_use, tested in tests/webapp/test_fair_use.py).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKETCHLVM_CLIENT_REQUESTS", "32")
        _, url, _ = app_module.launch(demo, **kwargs, prevent_thread_lock=True, quiet=True)
    yield url.rstrip("/"), state
    demo.close()


@pytest.fixture(scope="module")
def client(running) -> Client:
    return Client(running[0], verbose=False, analytics_enabled=False)


def parse_gallery(gallery: list[dict]) -> list[dict]:
    rows = []
    for item in gallery:
        match = CAPTION.match(item["caption"])
        assert match, f"caption not 'category · similarity · file': {item['caption']!r}"
        rows.append({"label": match["label"], "score": float(match["score"]), "name": match["name"]})
    return rows


# --------------------------------------------------------------------------------------------
# Searcher, directly


def test_searcher_reranks_without_reencoding(model, index, sketches, monkeypatch):
    calls: list[str] = []
    encode = model.encode_sketches

    def counting(sketches_, mode):
        calls.append(mode)
        return encode(sketches_, mode)

    monkeypatch.setattr(model, "encode_sketches", counting)
    searcher = Searcher(model, index, default_k=K)
    sketch = Image.open(sketches["fish"]).convert("RGB")

    first = searcher.search(sketch, "category")
    assert calls == ["category"]
    assert [r.rank for r in first] == list(range(1, K + 1))
    assert [r.score for r in first] == sorted((r.score for r in first), reverse=True)
    assert all(r.path == index.root / r.relpath and r.path.is_file() for r in first)
    assert all(r.label == Path(r.relpath).parent.name for r in first)

    assert searcher.search(sketch.copy(), "category", k=3) == first[:3]  # same pixels, new object: cached
    assert calls == ["category"]
    # Both modes are zero-shot here: one encoder, so the other mode re-ranks from the same embedding.
    assert model.encoder_key("category", "sketch") == model.encoder_key("fine_grained", "sketch")
    searcher.search(sketch, "fine_grained")
    assert calls == ["category"]
    searcher.search(sketch, "category", k=16)
    searcher.search({"background": None, "layers": [], "composite": sketch}, "fine_grained")  # editor dict
    assert calls == ["category"]
    searcher.search(Image.open(sketches["cat"]), "fine_grained")  # a new drawing is encoded
    assert calls == ["category", "fine_grained"]
    assert searcher.encode_calls == 2
    assert len(searcher.search(sketch, "category", k=100)) == len(index)  # k beyond the gallery: all of it


def test_searcher_empty_sketch_and_empty_gallery(model, index, sketches):
    blank = Image.new("RGB", (256, 256), "white")
    with pytest.raises(EmptySketchError):
        Searcher(model, index).search(blank, "category")
    empty = Searcher(model, None)
    with pytest.raises(EmptySketchError):  # a blank canvas is reported before the missing gallery
        empty.search(blank, "category")
    with pytest.raises(EmptyGalleryError, match="--gallery"):
        empty.search(Image.open(sketches["fish"]), "category")


# --------------------------------------------------------------------------------------------
# The running app through gradio_client


def test_api_lists_a_stable_search_endpoint(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert "/search" in endpoints and "/upload_sketch" in endpoints


@pytest.mark.parametrize("mode", ["category", "fine_grained"])
def test_search_returns_ranked_captioned_results(client, running, drawings, mode):
    _, state = running
    gallery, message = client.predict(strokes_json(drawings["fish"]), mode, K, api_name="/search")
    rows = parse_gallery(gallery)
    assert len(rows) == K
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert all(r["label"] in CLASSES for r in rows)
    assert all((state.gallery_dir / r["label"] / r["name"]).is_file() for r in rows)  # category = its folder
    assert all(Path(item["image"]).is_file() for item in gallery)  # the thumbnails were served
    assert f"{K} best matches" in message
    # The same ranking as the library gives for the strokes rendered by the dataset renderer.
    sketch = render_strokes(drawings["fish"]["drawing"], size=state.searcher.model.image_size)
    expected = state.searcher.search(sketch, mode, K)
    assert [r["name"] for r in rows] == [Path(r.relpath).name for r in expected]


def test_mode_switch_and_top_k_reuse_the_embedding(client, running, drawings):
    _, state = running
    sketch = strokes_json(drawings["umbrella"])
    client.predict(sketch, "category", K, api_name="/search")
    before = state.searcher.encode_calls
    gallery, _ = client.predict(sketch, "category", 3, api_name="/search")
    assert len(gallery) == 3
    client.predict(sketch, "fine_grained", K, api_name="/search")
    client.predict(sketch, "category", 8, api_name="/search")
    client.predict(sketch, "fine_grained", 2, api_name="/search")
    # Both modes are zero-shot CLIP here (no checkpoint): one encoder, so nothing was encoded again.
    assert state.searcher.encode_calls == before


def test_a_rerank_does_not_queue_behind_other_users_encodes(running, drawings, monkeypatch):
    """Encodes take turns on the CPU, but the page lets more searches in than that, so a drawing that is
    already encoded (a mode toggle, the slider, the same strokes) is answered while three other users'
    new drawings wait for the encoder. With room for only two searches at once it waited behind them.
    The re-rank comes from the same session (its own page): caches are per session (issue 19)."""
    import threading

    url, state = running
    cached = strokes_json(drawings["cat"])
    person = Client(url, verbose=False, analytics_enabled=False)
    alone, _ = person.predict(cached, "category", K, api_name="/search")
    model = state.searcher.model
    real_encode = model.encode_sketches
    gate, entered = threading.Event(), threading.Semaphore(0)

    def slow_encode(*args, **kwargs):  # an encode that takes as long as the test says
        entered.release()
        gate.wait(timeout=60)
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(model, "encode_sketches", slow_encode)
    others = []
    try:
        for name in ("airplane", "fish", "umbrella"):  # new drawings (half of each): every one encodes
            half = json.dumps(drawings[name]["drawing"][: max(1, len(drawings[name]["drawing"]) // 2)])
            client = Client(url, verbose=False, analytics_enabled=False)
            others.append(client.submit(half, "category", K, api_name="/search"))
        for _ in others:
            assert entered.acquire(timeout=30), "the other users' searches did not all get in"
        again = person.submit(cached, "category", K, api_name="/search")
        gallery, _ = again.result(timeout=30)  # answered while the three encodes are still held
        assert [item["caption"] for item in gallery] == [item["caption"] for item in alone]
        assert not gate.is_set() and not any(job.done() for job in others)
    finally:
        gate.set()
        for job in others:
            job.result(timeout=60)


def test_the_queue_summarises_its_analytics_every_100_events_not_after_each(model, index):
    """Gradio's default rebuilds a pandas summary of up to 10,000 past events after every event."""
    state = app_module.AppState(Searcher(model, index, default_k=K), gallery_dir=index.root, cache_dir=index.cache_dir)
    demo = app_module.build_demo(state)
    app_module.launch(demo, **app_module.launch_kwargs(state, "127.0.0.1", free_port()), prevent_thread_lock=True,
                      quiet=True)
    try:
        assert demo._queue.ANAYLTICS_CACHE_FREQUENCY == page.ANALYTICS_SUMMARY_EVERY == 100
    finally:
        demo.close()


def test_empty_sketch_gives_a_friendly_message(client):
    for value in ("", "[]", "  ", '{"drawing": []}'):
        gallery, message = client.predict(value, "category", K, api_name="/search")
        assert gallery == []
        assert message == app_module.DRAW_HINT


@pytest.mark.parametrize(("payload", "reason"), [
    ("[[[1, 2", "not valid JSON"),
    ('{"strokes": []}', '"drawing"'),
    ("[[[1, 2], [3]]]", "different lengths"),
    ('[[["a"], [1]]]', "numbers only"),
    ("[[[NaN], [1]]]", "finite"),
    ("[[[1e300], [1]]]", "out of range"),
    ("[" * 50 + "]" * 50, "nested"),
    (json.dumps([[[1], [1]]] * 1001), "1,000"),
])
def test_bad_strokes_get_a_clear_message(client, payload, reason):
    gallery, message = client.predict(payload, "category", K, api_name="/search")
    assert gallery == []
    assert message.startswith("**Those strokes could not be used:**") and reason in message, message
    assert "Traceback" not in message


def test_results_are_thumbnails_and_the_preview_is_the_original(client, running, drawings):
    _, state = running
    gallery, _ = client.predict(strokes_json(drawings["cat"]), "category", K, api_name="/search")
    thumbs = Path(state.cache_dir) / THUMBNAIL_DIR
    for item in gallery:
        path = Path(item["image"])
        with Image.open(path) as image:
            assert image.format == "WEBP" and max(image.size) <= THUMBNAIL_SIDE
    served = {Path(p).name for p in (item["image"] for item in gallery)}
    assert served <= {p.name for p in thumbs.iterdir()}  # what was sent: the cache's thumbnails
    relpath = next(iter(state.searcher.index.photos)).relpath
    preview = Path(results.original(state, relpath))  # the preview: the original file, as a served copy
    assert preview.read_bytes() == (state.gallery_dir / relpath).read_bytes()
    assert preview.is_relative_to(results.public_files(state).root)


def test_thumbnails_are_checked_first_among_gradios_static_paths(running):
    """Gradio checks every returned file against its static paths in turn, resolving both paths each
    time; with the thumbnails last (after Gradio's own icons) that was half a search's server CPU."""
    from gradio.data_classes import _StaticFiles
    from gradio.utils import is_static_file

    _, state = running
    folder = (Path(state.cache_dir) / THUMBNAIL_DIR).resolve()
    results.serve_thumbnails_in_place(state)  # a second app in the same process: still once, still first
    assert _StaticFiles.all_paths[0] == folder
    assert _StaticFiles.all_paths.count(folder) == 1
    assert len(_StaticFiles.all_paths) > 1, "Gradio's own icons are gone from the list: is the order test still needed?"
    thumbnail = next(folder.rglob("*.webp"))
    assert is_static_file(str(thumbnail))
    assert not is_static_file(str(state.gallery_dir / next(iter(state.searcher.index.photos)).relpath))


def test_bad_upload_gives_a_friendly_message(client, tmp_path):
    bad = tmp_path / "not-a-sketch.png"
    bad.write_text("this is a text file, not a PNG\n")
    _, _, message = client.predict(handle_file(str(bad)), "category", K, api_name="/upload_sketch")
    assert message.startswith("**Upload refused:**")
    assert "not-a-sketch.png" in message and "not a recognised image format" in message
    assert "Traceback" not in message and "/tmp/" not in message and "gradio" not in message


def test_blank_upload_is_refused_and_a_good_one_searches(client, tmp_path, sketches):
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    _, _, message = client.predict(handle_file(str(blank)), "category", K, api_name="/upload_sketch")
    assert "no dark lines" in message
    shown, gallery, message = client.predict(
        handle_file(str(sketches["cat"])), "category", K, api_name="/upload_sketch"
    )
    assert len(parse_gallery(gallery)) == K
    assert message.startswith("Uploaded **") and f"{K} best matches" in message
    assert shown is not None  # the sketch as searched is shown beside the canvas


def test_status_says_what_is_loaded(client, running):
    _, state = running
    status = client.predict(api_name="/status")
    for text in ("SketchLVM-Tiny", "random weights — for testing only", "zero-shot CLIP, no trained prompts",
                 f"**Gallery:** {state.gallery_dir.name} ({len(CLASSES) * PER_CLASS} photos)", "Skipped files:** 0"):
        assert text in status
    assert str(state.gallery_dir) not in status  # the server's folders are not given away


def test_rebuild_index_endpoint(client, running):
    """Rebuild runs in the background (the status shows its progress, then the count)."""
    _, state = running
    message = client.predict(api_name="/rebuild_index")[1]
    assert "Rebuilding the index in the background" in message
    assert state.indexer.wait(60).state == "done"
    assert f"{len(CLASSES) * PER_CLASS} photos indexed" in client.predict(api_name="/status")


def test_only_gallery_photos_are_served(running, tmp_path_factory):
    url, state = running
    outside = tmp_path_factory.mktemp("outside") / "secret.jpg"  # under the system temp dir, not the gallery
    shutil.copy(next(state.gallery_dir.rglob("*.jpg")), outside)
    cache_file = next(Path(state.cache_dir).glob("*.json"))  # the index cache: beside, not inside, the gallery
    photo = next(state.gallery_dir.rglob("*.jpg"))
    thumbnail = next((Path(state.cache_dir) / THUMBNAIL_DIR).glob("*.webp"))
    manifest = Path(state.cache_dir) / "manifest.json"
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{url}/gradio_api/file={thumbnail}").status_code == 200
        original = results.original(state, photo.relative_to(state.gallery_dir).as_posix())
        assert http.get(f"{url}/gradio_api/file={original}").content == photo.read_bytes()  # a served copy
        for path in (str(photo), "/etc/passwd", str(outside), str(cache_file), str(manifest), f"{thumbnail.parent}/../manifest.json",
                     str(Path(app_module.__file__).resolve())):
            response = http.get(f"{url}/gradio_api/file={path}")
            assert response.status_code in (403, 404), path
            assert b"root:" not in response.content


# --------------------------------------------------------------------------------------------
# main(): flags, environment, empty state, missing weights


def test_help_lists_every_flag_and_variable(capsys):
    with pytest.raises(SystemExit) as exit_:
        app_module.main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--gallery", "--checkpoint", "--model", "--pretrained", "--device", "--top-k", "--host", "--port",
                 "--share"):
        assert flag in text
    for var in ("SKETCHLVM_GALLERY", "SKETCHLVM_CHECKPOINT", "SKETCHLVM_MODEL", "SKETCHLVM_PRETRAINED",
                "SKETCHLVM_DEVICE", "SKETCHLVM_TOP_K", "SKETCHLVM_HOST", "SKETCHLVM_PORT"):
        assert var in text
    assert "default: 127.0.0.1" in text and "ViT-B-32-quickgelu" in text


def test_environment_sets_flags_and_flags_win(monkeypatch):
    monkeypatch.setenv("SKETCHLVM_TOP_K", "7")
    monkeypatch.setenv("SKETCHLVM_PORT", "9999")
    monkeypatch.setenv("SKETCHLVM_PRETRAINED", "none")
    monkeypatch.setenv("SKETCHLVM_GALLERY", "/some/photos")
    args = app_module.build_parser().parse_args([])
    assert (args.top_k, args.port, args.pretrained, args.gallery, args.host) == (7, 9999, "none", "/some/photos",
                                                                                "127.0.0.1")
    args = app_module.build_parser().parse_args(["--top-k", "3", "--port", "8000", "--gallery", "/other"])
    assert (args.top_k, args.port, args.gallery) == (3, 8000, "/other")
    monkeypatch.setenv("SKETCHLVM_TOP_K", "zero")
    with pytest.raises(SystemExit):
        app_module.build_parser().parse_args([])


def test_missing_weights_exit_cleanly(capsys, tmp_path):
    missing = tmp_path / "nope.safetensors"
    code = app_module.main(["--model", "SketchLVM-Tiny", "--pretrained", str(missing), "--device", "cpu",
                            "--port", str(free_port())])  # the port is checked first: a free one
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err


def test_main_without_a_gallery_shows_the_empty_state(monkeypatch, tmp_path, drawings):
    monkeypatch.delenv("SKETCHLVM_GALLERY", raising=False)
    monkeypatch.setenv("SKETCHLVM_GALLERIES_DIR", str(tmp_path / "no-galleries"))  # latest_gallery() -> None
    launched = {}

    def launch_in_background(demo, **kwargs):
        launched["demo"] = demo
        launched["kwargs"] = kwargs
        return gradio.Blocks.launch(demo.queue(), **kwargs, prevent_thread_lock=True, quiet=True)

    monkeypatch.setattr("sketchlvm.webapp.cli.launch", launch_in_background)  # app.py runs main from there
    port = free_port()
    code = app_module.main(["--model", "SketchLVM-Tiny", "--pretrained", "none", "--device", "cpu",
                            "--port", str(port)])
    try:
        assert code == 0
        assert launched["kwargs"]["allowed_paths"] == []  # no gallery: nothing on disk is served
        assert launched["kwargs"]["server_name"] == "127.0.0.1"
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
        status = client.predict(api_name="/status")
        assert "No gallery loaded yet" in status and "--gallery" in status
        gallery, message = client.predict(strokes_json(drawings["fish"]), "category", K, api_name="/search")
        assert gallery == [] and "No gallery loaded yet" in message
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).json()
        banner = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "sketchlvm-banner"]
        assert "No gallery loaded yet" in banner[0]["props"]["value"]
    finally:
        launched["demo"].close()


def test_caption_and_fit_helpers():
    from sketchlvm.search import SearchResult

    result = SearchResult(Path("/g/cat/a.jpg"), "cat/a.jpg", "cat", 0.25, 1)
    assert results.caption(result) == "cat · 0.250 · a.jpg"
    uncategorised = SearchResult(Path("/g/a.jpg"), "a.jpg", None, -0.5, 2)
    assert results.caption(uncategorised) == "no category · -0.500 · a.jpg"
    fitted = handlers.fit_to_canvas(Image.new("RGB", (100, 50), "black"))
    assert fitted.size == (handlers.UPLOAD_SIDE, handlers.UPLOAD_SIDE)
    assert np.asarray(fitted)[0, 0].tolist() == [255, 255, 255]  # padded with white


def test_symlinks_out_of_the_gallery_are_shown_as_thumbnails(tmp_path, model, sketchy_root):
    """Gradio refuses files whose real path is outside allowed_paths; such a photo shows as its thumbnail
    (a copy in the cache), and its preview as pixels, never as the file it points to."""
    from sketchlvm.search import SearchResult

    photo = next((sketchy_root / "photo" / "cat").glob("*.jpg"))
    root = tmp_path / "gallery"
    (root / "cat").mkdir(parents=True)
    shutil.copy(photo, root / "cat" / "inside.jpg")
    (root / "cat" / "link.jpg").symlink_to(photo)  # points into ../shared/data, outside the gallery
    index = build_gallery_index(root, model, cache_dir=tmp_path / "cache", show_progress_bar=False)
    state = app_module.AppState(Searcher(model, index), gallery_dir=root, cache_dir=index.cache_dir)
    thumbs = (tmp_path / "cache" / THUMBNAIL_DIR).resolve()
    for name, score in (("inside.jpg", 0.5), ("link.jpg", 0.4)):
        item = results.gallery_item(state, SearchResult(root / "cat" / name, f"cat/{name}", "cat", score, 1))
        assert Path(item[0]).resolve().parent == thumbs and item[1] == f"cat · {score:.3f} · {name}"
    assert Path(results.original(state, "cat/inside.jpg")).read_bytes() == (root / "cat" / "inside.jpg").read_bytes()
    preview = results.original(state, "cat/link.jpg")
    assert isinstance(preview, Image.Image)
    assert not any(p.resolve().is_relative_to(root.resolve()) for p in results.served_folders(state))
