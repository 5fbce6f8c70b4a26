"""Public-deployment behaviour of the app that needs no separate server process: per-session caches,
file names as text, sign-in and owner controls, and the small refusals (issue 19).

The app runs in this process on a free 127.0.0.1 port, as in tests/webapp/test_app.py.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app as app_module  # noqa: E402
from sketchlvm.gallery import build_gallery_index  # noqa: E402
from sketchlvm.model.factory import create_sketchlvm  # noqa: E402
from sketchlvm.search import Searcher  # noqa: E402
from sketchlvm.webapp import handlers  # noqa: E402
from sketchlvm.webapp.access import make_access, request_user  # noqa: E402
from sketchlvm.webapp.markdown import escape  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning")

K = 6
CAT_STROKES = json.dumps([[[10, 60, 110, 60, 10], [60, 10, 60, 110, 60]], [[40, 80], [50, 50]]])
# A photo name a third-party dataset could carry: a phishing link, a code span breaker, emphasis.
HOSTILE_NAME = "[Session expired, sign in again](https:evil.example) `x` **bold** <b>b.jpg"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def model():
    return create_sketchlvm(arch="SketchLVM-Tiny", pretrained="none", device="cpu", text=True)


@pytest.fixture(scope="module")
def state(tmp_path_factory, sketchy_root, model):
    root = tmp_path_factory.mktemp("public-app")
    gallery = root / "gallery"
    (gallery / "cat").mkdir(parents=True)
    photos = sorted((sketchy_root / "photo" / "cat").glob("*.jpg"))[:3]
    for photo in photos[:2]:
        shutil.copy(photo, gallery / "cat" / photo.name)
    shutil.copy(photos[2], gallery / "cat" / HOSTILE_NAME)
    index = build_gallery_index(gallery, model, cache_dir=root / "cache", show_progress_bar=False)
    return app_module.AppState(Searcher(model, index, default_k=K), gallery_dir=gallery, cache_dir=index.cache_dir)


def launched(state, **extra):
    demo = app_module.build_demo(state)
    kwargs = app_module.launch_kwargs(state, "127.0.0.1", free_port())
    kwargs.update(extra)
    _, url, _ = app_module.launch(demo, **kwargs, prevent_thread_lock=True, quiet=True)
    return demo, url


@pytest.fixture(scope="module")
def url(state):
    demo, url = launched(state)
    yield url
    demo.close()


def new_client(url: str, **kwargs) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, download_files=False, **kwargs)


# --------------------------------------------------------------------------------------------
# 4. Caches per session: one person's searches leave no trace another can time


def test_word_and_photo_caches_are_per_session(url, state, sketchy_root):
    tower = state.searcher.model.text_tower
    alice, bob = new_client(url), new_client(url)
    words = "a striped cat on a sofa"
    before = tower.encode_calls
    alice.predict("[]", "category", K, words, 1.0, api_name="/search")
    assert tower.encode_calls == before + 1
    alice.predict("[]", "category", K + 1, words, 1.0, api_name="/search")  # a re-rank in the same session
    assert tower.encode_calls == before + 1, "the same session's words were encoded again"
    bob.predict("[]", "category", K, words, 1.0, api_name="/search")
    assert tower.encode_calls == before + 2, "another session's words came from the first one's cache"

    photo = next((sketchy_root / "photo" / "fish").glob("*.jpg"))
    before = state.searcher.encode_calls
    alice.predict(handle_file(str(photo)), "category", K, api_name="/search_photo")
    alice.predict(handle_file(str(photo)), "category", K + 1, api_name="/search_photo")
    assert state.searcher.encode_calls == before + 1
    bob.predict(handle_file(str(photo)), "category", K, api_name="/search_photo")
    assert state.searcher.encode_calls == before + 2, "another session's photo came from the first one's cache"


def test_outside_the_app_the_cache_is_shared_as_before(state):
    """Library use (no Gradio request) keeps one cache: a script searching twice encodes once."""
    tower = state.searcher.model.text_tower
    before = tower.encode_calls
    state.searcher.search(None, "category", K, text="a grey cat asleep", text_weight=1.0)
    state.searcher.search(None, "category", K, text="a grey cat asleep", text_weight=1.0)
    assert tower.encode_calls == before + 1


# --------------------------------------------------------------------------------------------
# 3. Originals: indexed photos only, served from the app's own folder


def test_the_preview_is_a_served_copy_of_an_indexed_photo_only(state):
    from sketchlvm.webapp import results

    relpath = next(p.relpath for p in state.searcher.index.photos if "evil" not in p.relpath)
    copy = Path(results.original(state, relpath))
    public = results.public_files(state).root
    assert copy.is_relative_to(public) and copy.name == Path(relpath).name
    assert copy.read_bytes() == (state.gallery_dir / relpath).read_bytes()
    (state.gallery_dir / "cat" / ".hidden.jpg").write_bytes(copy.read_bytes())
    (state.gallery_dir / "notes.txt").write_text("private")
    for path in ("cat/.hidden.jpg", "notes.txt", f"cat/../{relpath}", "/etc/passwd", f"./{relpath}", ""):
        assert results.original(state, path) is None, path
    assert all(p.is_relative_to(public) or p.resolve().is_relative_to(state.cache_dir)
               for p in results.served_folders(state))


# --------------------------------------------------------------------------------------------
# 6. File names are text, never Markdown


def test_escape_leaves_no_markdown_syntax():
    text = escape(HOSTILE_NAME + "\nnext line")
    for raw in ("](", "`x`", "**bold**", "<b>", "\n"):
        assert raw not in text
    assert text.replace("\\", "") == (HOSTILE_NAME + " next line")  # the letters themselves are all there


def test_a_hostile_photo_name_is_shown_as_text(url, state):
    client = new_client(url)
    relpath = f"cat/{HOSTILE_NAME}"
    _gallery, message = client.predict(relpath, "category", K, api_name="/search_like")
    assert message.startswith("More like **") and "best match" in message, message
    assert "](https:evil.example)" not in message and "`x`" not in message and "**bold**" not in message
    assert escape(HOSTILE_NAME) in message
    # And in the page as rendered: no link, no code span (Gradio renders Markdown to HTML in the browser;
    # the Markdown it is given is what we control).


# --------------------------------------------------------------------------------------------
# 7. Small refusals


def test_a_400_digit_integer_in_list_strokes_gets_a_message(state):
    _gallery, message, _shown = handlers.search_strokes(state, [[[10**400, 1], [1, 2]]], "category", K, live=False)
    assert message.startswith("**Those strokes could not be used:**") and "out of range" in message, message


def test_eps_and_other_formats_outside_the_list_are_refused_unopened(tmp_path):
    from sketchlvm.preprocess.transforms import ImageLoadError, load_photo

    eps = tmp_path / "drawing.jpg"  # an EPS by its content, whatever its name says
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n"
                   "showpage\n%%EOF\n")
    with pytest.raises(ImageLoadError, match="not a recognised image format"):
        load_photo(eps)
    tiff = tmp_path / "photo.tif"
    Image.new("RGB", (8, 8), "red").save(tiff)  # a format Pillow reads, but not one of the gallery's
    with pytest.raises(ImageLoadError, match="not a recognised image format"):
        load_photo(tiff)


# --------------------------------------------------------------------------------------------
# 8. Sign-in and owner controls


def test_sign_in_settings_are_checked():
    assert not make_access().on
    access = make_access(auth="alice:one,bob:two", owners="alice")
    assert access.is_owner("alice") and not access.is_owner("bob") and access.may_search("bob")
    assert make_access(auth="alice:one,bob:two").owners == {"alice", "bob"}  # every listed user by default
    for bad in ({"auth": "alice"}, {"auth": "alice:one", "owners": "carol"}, {"owners": "alice"},
                {"auth": "a:b", "hf_sign_in": True}):
        with pytest.raises(ValueError):
            make_access(**bad)


def test_hf_sign_in_owner_defaults_to_the_space_author(monkeypatch):
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("authlib", "itsdangerous")):
        with pytest.raises(ValueError, match=r"gradio\[oauth\]"):  # said clearly, not at launch
            make_access(hf_sign_in=True, owners="alice")
        pytest.skip("gradio[oauth] is not installed: the rest of the Hugging Face sign-in is not checked here")
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "alice")
    access = make_access(hf_sign_in=True)
    assert access.owners == {"alice"} and not access.may_search(None) and not access.may_search("mallory")
    assert make_access(hf_sign_in=True, users="*").may_search("mallory")
    monkeypatch.delenv("SPACE_AUTHOR_NAME")
    with pytest.raises(ValueError, match="owner"):
        make_access(hf_sign_in=True)


def test_the_hugging_face_user_is_read_from_the_session():
    """Gradio's OAuth keeps the profile in a signed session cookie; this is what the app reads of it."""
    import time

    from gradio.route_utils import Request
    from starlette.requests import Request as StarletteRequest

    def request(session):
        return Request(StarletteRequest({"type": "http", "method": "GET", "path": "/", "headers": [],
                                         "session": session}))

    info = {"userinfo": {"preferred_username": "alice"}, "expires_at": time.time() + 60}
    assert request_user(request({"oauth_info": info})) == "alice"
    assert request_user(request({"oauth_info": {**info, "expires_at": time.time() - 1}})) is None
    assert request_user(request({})) is None


def test_with_password_sign_in_only_owners_rebuild_and_see_the_status(state):
    access = make_access(auth="owner:pw1,guest:pw2", owners="owner")
    state.access = access
    try:
        demo, url = launched(state, **access.launch_kwargs())
        try:
            assert httpx.get(url + "config", timeout=10).status_code == 401  # nothing without signing in
            owner, guest = new_client(url, auth=("owner", "pw1")), new_client(url, auth=("guest", "pw2"))
            assert "photos" in owner.predict(api_name="/status")
            guest_status = guest.predict(api_name="/status")
            assert "photos" not in guest_status and "owner" in guest_status
            gallery, message = guest.predict(CAT_STROKES, "category", K, api_name="/search")
            assert gallery and "best match" in message  # guests search
            with pytest.raises(AppError, match="owner"):
                guest.predict(api_name="/rebuild_index")
            assert "Rebuilding" in owner.predict(api_name="/rebuild_index")[1]
            state.indexer and state.indexer.wait(60)
        finally:
            demo.close()
    finally:
        state.access = None
