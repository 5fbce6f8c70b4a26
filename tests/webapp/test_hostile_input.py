"""Hostile input through the running app: bombs, broken files, oversized uploads, paths out of the gallery.

The app runs in this process on a free port (as in tests/webapp/test_app.py), so the process's resident memory
is the server's: each hostile request is made while a sampler thread watches RSS (``/proc/self/statm``;
psutil is not a dependency), and must leave it within ``RSS_BUDGET_MB`` of where it started.

Already covered elsewhere, not repeated here: ``load_photo``'s refusals of each kind of broken file
(tests/preprocess/test_transforms.py), a text file uploaded through the app and absolute paths outside the gallery
(tests/webapp/test_app.py), random canvases and stroke lists (tests/preprocess/test_preprocess_properties.py), broken
photos in a gallery (tests/gallery/test_index.py).

Two endpoints take sketches: ``/upload_sketch`` (the upload button: the file reaches the app's own
``load_photo``, which checks the declared size before decoding) and ``/search`` (the canvas value: stroke
JSON, text, which ``sketchlvm.preprocess.strokes.parse_strokes`` bounds in bytes, nesting, strokes, points and
coordinates before anything is rendered). Any API client can send anything to either.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import struct
import threading
import time
import urllib.parse
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")

from conftest import raw_get  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app as app_module  # noqa: E402
from sketchlvm.gallery import build_gallery_index  # noqa: E402
from sketchlvm.gallery.thumbnails import THUMBNAIL_SIDE  # noqa: E402
from sketchlvm.model.factory import create_sketchlvm  # noqa: E402
from sketchlvm.search import Searcher  # noqa: E402

pytestmark = pytest.mark.filterwarnings(  # pandas 3 deprecations inside gradio's queue
    "ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning"
)

CLASSES = ("cat", "fish")
PER_CLASS = 2
K = 10  # more than the gallery: every photo, the symlinked one included, comes back
RSS_BUDGET_MB = 100  # a decoded 40000 x 40000 bomb would be 1.6-4.8 GB; a 9000 x 9000 one 2.2 GB (measured)
TIME_BUDGET_S = 10.0
SECRET = b"SKETCHLVM-TOP-SECRET"
GENERIC_ERROR = "has not enabled verbose error reporting"  # gradio_client's text for an unhandled exception
RECOMMENDED_MAX_FILE_SIZE = "10mb"


# --------------------------------------------------------------------------------------------
# Memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Highest resident memory of this process (server included) while the block runs, sampled every 2 ms."""

    def __enter__(self) -> PeakRSS:  # noqa: PYI034
        if not Path("/proc/self/statm").is_file():
            pytest.skip("no /proc/self/statm: cannot watch resident memory on this platform")
        self.start = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, _rss_bytes())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


# --------------------------------------------------------------------------------------------
# Hostile files


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, rows: Iterator[bytes], bit_depth: int = 8, colour_type: int = 0,
              level: int = 9) -> bytes:
    """A PNG from filtered scanlines (each starting with its filter byte), compressed as it streams."""
    compressor = zlib.compressobj(level)
    idat = b"".join(compressor.compress(row) for row in rows) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def white_with_a_line(side: int, bit_depth: int = 8) -> bytes:
    """A valid side x side greyscale PNG: white, one black row across the middle; tiny once compressed."""
    row_bytes = side * bit_depth // 8
    white, black = b"\x00" + b"\xff" * row_bytes, b"\x00" + b"\x00" * row_bytes
    middle, block = side // 2, 64

    def rows() -> Iterator[bytes]:  # 64 scanlines at a time: fast to compress, small in memory
        for y in range(0, side, block):
            n = min(block, side - y)
            if y <= middle < y + n:
                yield white * (middle - y) + black + white * (y + n - middle - 1)
            else:
                yield white * n

    return png_bytes(side, side, rows(), bit_depth=bit_depth)


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory, sketchy_root) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    buffer = io.BytesIO()
    with Image.open(min((sketchy_root / "sketch" / "cat").glob("*.png"))) as sketch:
        sketch.save(buffer, "PNG")
    good = buffer.getvalue()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("sketch.png", good)
        zf.writestr("notes.txt", "not an image " * 1000)
    contents = {
        "truncated.png": good[: len(good) // 2],
        "random.png": np.random.default_rng(0).bytes(64 * 1024),
        "archive.png": archive.getvalue(),
        # Declares 40000 x 40000 (1.6 G pixels) in 65 bytes: no pixel data at all.
        "bomb-header-only.png": png_bytes(40000, 40000, iter(())),
        # A complete, valid 40000 x 40000 1-bit image in ~280 kB: 200 MB raw, 1.6-4.8 GB as 8-bit RGB(A).
        "bomb-valid.png": white_with_a_line(40000, bit_depth=1),
        # Valid, 9000 x 9000 = 81 M pixels in ~100 kB: over the app's 64 M limit, under Pillow's own guard.
        "huge-valid.png": white_with_a_line(9000),
    }
    paths = {}
    for name, data in contents.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    assert paths["bomb-valid.png"].stat().st_size < 1_000_000 and paths["huge-valid.png"].stat().st_size < 200_000
    return paths


# --------------------------------------------------------------------------------------------
# The app, over a gallery holding symlinks that point out of it


@pytest.fixture(scope="module")
def model():
    return create_sketchlvm(arch="SketchLVM-Tiny", pretrained="none", device="cpu")


@pytest.fixture(scope="module")
def layout(tmp_path_factory, sketchy_root) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("hostile-app")
    gallery, outside = base / "gallery", base / "outside"
    for name in CLASSES:
        (gallery / name).mkdir(parents=True)
        for photo in sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:PER_CLASS]:
            shutil.copy(photo, gallery / name / photo.name)
    outside.mkdir()
    secret_jpg = outside / "secret.jpg"  # an image outside the gallery (its bytes carry a marker)
    secret_jpg.write_bytes(next((sketchy_root / "photo" / "cat").glob("*.jpg")).read_bytes() + SECRET)
    secret_txt = outside / "secret.txt"
    secret_txt.write_bytes(SECRET + b"\n")
    (gallery / "cat" / "link.jpg").symlink_to(secret_jpg)  # indexed: it is a readable photo
    (gallery / "cat" / "link.txt").symlink_to(secret_txt)
    (gallery / "linked").symlink_to(outside, target_is_directory=True)  # a whole folder out of the gallery
    return {"gallery": gallery, "outside": outside, "secret_jpg": secret_jpg, "secret_txt": secret_txt,
            "photo": next((gallery / "fish").glob("*.jpg"))}


@pytest.fixture(scope="module")
def running(model, layout):
    """(url, state, launch kwargs) of the app launched as main() launches it, on a free 127.0.0.1 port."""
    gallery = layout["gallery"]
    index = build_gallery_index(gallery, model, cache_dir=gallery.parent / "cache", show_progress_bar=False)
    state = app_module.AppState(Searcher(model, index, default_k=K), gallery_dir=gallery, cache_dir=index.cache_dir)
    demo = app_module.build_demo(state)
    kwargs = app_module.launch_kwargs(state, "127.0.0.1", free_port())
    _, url, _ = app_module.launch(demo, **kwargs, prevent_thread_lock=True, quiet=True)
    yield url.rstrip("/"), state, kwargs
    demo.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def client(running, sketchy_root) -> Client:
    client = Client(running[0], verbose=False, analytics_enabled=False, download_files=False)
    # Warm up both endpoints first (lazy imports, thread pools), so memory growth below is the request's own.
    sketch = min((sketchy_root / "sketch" / "fish").glob("*.png"))
    client.predict(handle_file(str(sketch)), "category", K, api_name="/upload_sketch")
    client.predict(CAT_STROKES, "category", K, api_name="/search")
    return client


CAT_STROKES = json.dumps([[[10, 60, 110, 60, 10], [60, 10, 60, 110, 60]], [[40, 80], [50, 50]]])


def assert_still_serving(client: Client, sketchy_root: Path) -> None:
    gallery, message = client.predict(CAT_STROKES, "fine_grained", K, api_name="/search")
    assert gallery and "best match" in message


def assert_no_internals(text: str) -> None:
    for leak in ("Traceback", "/tmp/", "File \"", "gradio", "PIL.", "Error:"):
        assert leak not in text, f"{leak!r} shown to the user: {text!r}"


# --------------------------------------------------------------------------------------------
# The upload button: /upload_sketch

UPLOAD_REASONS = {
    "truncated.png": "corrupt or truncated",
    "random.png": "not a recognised image format",
    "archive.png": "not a recognised image format",
    "bomb-header-only.png": "too large",
    "bomb-valid.png": "too large",
    "huge-valid.png": "over the limit",
}


@pytest.mark.parametrize("name", list(UPLOAD_REASONS))
def test_hostile_upload_is_refused_with_a_message_cheaply(client, hostile_files, sketchy_root, name):
    with PeakRSS() as rss:
        started = time.perf_counter()
        _canvas, _gallery, message = client.predict(handle_file(str(hostile_files[name])), "category", K,
                                                    api_name="/upload_sketch")
        elapsed = time.perf_counter() - started
    assert message.startswith("**Upload refused:**") and name in message, message
    assert UPLOAD_REASONS[name] in message, message
    assert app_module.UPLOAD_HINT in message
    assert "Traceback" not in message and "/tmp/" not in message
    assert rss.growth_mb < RSS_BUDGET_MB, f"{name}: resident memory grew {rss.growth_mb:.0f} MB"
    assert elapsed < TIME_BUDGET_S, f"{name}: {elapsed:.1f} s"
    assert_still_serving(client, sketchy_root)


def test_upload_over_the_max_file_size_is_refused(running, client, tmp_path, sketchy_root):
    url, _, kwargs = running
    limit = kwargs.get("max_file_size")
    if limit is None:
        pytest.fail(f"app.launch_kwargs sets no max_file_size: uploads of any size are accepted (a 20 MB PNG "
                     f"was, here); add max_file_size={RECOMMENDED_MAX_FILE_SIZE!r}")
    from gradio.utils import _parse_file_size

    limit_bytes = _parse_file_size(limit)
    side = int((limit_bytes / 3) ** 0.5) + 64  # a valid RGB PNG of noise, stored uncompressed: over the limit
    rng = np.random.default_rng(1)
    big = tmp_path / "big-sketch.png"
    big.write_bytes(png_bytes(side, side, (b"\x00" + rng.bytes(side * 3) for _ in range(side)), colour_type=2,
                              level=0))
    assert big.stat().st_size > limit_bytes
    with PeakRSS() as rss, open(big, "rb") as handle:
        response = httpx.post(f"{url}/gradio_api/upload", files={"files": (big.name, handle, "image/png")}, timeout=60)
    assert response.status_code == 413, (response.status_code, response.text[:200])
    assert "maximum allowed size" in response.text
    assert rss.growth_mb < RSS_BUDGET_MB
    with pytest.raises(ValueError, match="maximum file size"):  # gradio_client checks before sending
        client.predict(handle_file(str(big)), "category", K, api_name="/upload_sketch")
    assert_still_serving(client, sketchy_root)


# --------------------------------------------------------------------------------------------
# The canvas value: /search takes stroke JSON (text); sketchlvm.preprocess.strokes.parse_strokes bounds it


def _search(client: Client, payload) -> str:
    """The message a canvas value gets: the handler's message, or the error text the client is given."""
    try:
        _gallery, message = client.predict(payload, "category", K, api_name="/search")
    except AppError as error:
        return f"error: {error}"
    return message


def _hostile_strokes() -> dict[str, tuple[object, str]]:
    """name -> (payload, what the message must say). Each is at most a few MB on the wire."""
    one = [[0.0, 10.0], [0.0, 10.0], [0, 16]]
    return {
        "not JSON": ("{{{{ not json", "not valid JSON"),
        "binary junk": (np.random.default_rng(2).bytes(4096).decode("latin-1"), "not valid JSON|nested"),
        "wrong shape": (json.dumps({"drawing": "a cat"}), "expected a list of strokes"),
        "a number": ("42", "expected a list of strokes"),
        "strings as coordinates": (json.dumps([[["1"], ["2"]]]), "numbers only"),
        "booleans as coordinates": (json.dumps([[[True], [False]]]), "numbers only"),
        "NaN": ("[[[NaN, 1], [1, 2]]]", "finite"),
        "Infinity": ("[[[-Infinity], [1]]]", "finite"),
        "overflowing float": ("[[[1e999], [1]]]", "out of range"),
        "huge float": ("[[[1e300, 0], [0, 1]]]", "out of range"),
        "huge integer": ("[[[" + "9" * 50_000 + "], [1]]]", "out of range"),
        "deeply nested (500k levels)": ("[" * 500_000 + "]" * 500_000, "nested"),
        "nested objects": ('{"drawing":' * 2000 + "[]" + "}" * 2000, "nested"),
        "too many strokes": (json.dumps([one] * 5_000), "strokes sent"),
        "too many points": (json.dumps([[[1] * 55_000, [2] * 55_000]] * 2, separators=(",", ":")), "points"),
        "over 1 MB": (json.dumps([[[123456.789] * 80_000, [123456.789] * 80_000]]), "bytes"),
    }


@pytest.mark.parametrize("name", list(_hostile_strokes()))
def test_hostile_strokes_get_a_clear_message_cheaply(client, sketchy_root, name):
    payload, reason = _hostile_strokes()[name]
    with PeakRSS() as rss:
        started = time.perf_counter()
        message = _search(client, payload)
        elapsed = time.perf_counter() - started
    assert message.startswith("**Those strokes could not be used:**"), message[:300]
    assert re.search(reason, message), message[:300]
    assert_no_internals(message)
    assert len(message) < 500  # the payload is not echoed back
    assert rss.growth_mb < RSS_BUDGET_MB, f"{name}: resident memory grew {rss.growth_mb:.0f} MB"
    assert elapsed < TIME_BUDGET_S, f"{name}: {elapsed:.1f} s"
    assert_still_serving(client, sketchy_root)


def test_strokes_of_several_mb_are_refused_before_gradio_reads_them(client, sketchy_root):
    """Over the body limit (sketchlvm.webapp.limits) the request never reaches Gradio: HTTP 413."""
    with PeakRSS() as rss:
        with pytest.raises(Exception, match="413") as refused:
            client.predict("[" + "0," * 2_500_000 + "0]", "category", K, api_name="/search")
    assert "Traceback" not in str(refused.value)
    assert rss.growth_mb < RSS_BUDGET_MB
    assert_still_serving(client, sketchy_root)


def test_strokes_at_the_limits_are_accepted_and_cost_little(client, sketchy_root):
    """The largest drawing the limits allow (1,000 strokes, 100,000 points, far-off coordinates) still
    searches: the renderer's cost depends on the point count and image size, not on coordinates."""
    from sketchlvm.preprocess.strokes import MAX_COORDINATE, MAX_POINTS, MAX_STROKES

    rng = np.random.default_rng(3)
    per = MAX_POINTS // MAX_STROKES
    strokes = []
    for _ in range(MAX_STROKES):  # one-digit coordinates (the byte limit binds first otherwise), ends far off
        xs, ys = rng.integers(0, 10, per).tolist(), rng.integers(0, 10, per).tolist()
        xs[0], xs[-1] = -int(MAX_COORDINATE), int(MAX_COORDINATE)
        strokes.append([xs, ys])
    payload = json.dumps(strokes, separators=(",", ":"))
    assert len(payload) < 1_000_000
    with PeakRSS() as rss:
        started = time.perf_counter()
        message = _search(client, payload)
        elapsed = time.perf_counter() - started
    assert "best match" in message, message
    assert rss.growth_mb < RSS_BUDGET_MB
    assert elapsed < TIME_BUDGET_S
    assert_still_serving(client, sketchy_root)


# --------------------------------------------------------------------------------------------
# Gradio's file route: only the gallery's own files



def _route_attacks(layout: dict[str, Path], port: int) -> dict[str, str]:
    g, cat = layout["gallery"], layout["gallery"] / "cat"
    quote = urllib.parse.quote
    return {
        "dot-dot": f"{g}/../outside/secret.txt",
        "dot-dot from a subfolder": f"{cat}/../../outside/secret.txt",
        "dot-dot to an image": f"{cat}/../../outside/secret.jpg",
        "percent-encoded dot-dot": f"{g}/%2e%2e/outside/secret.txt",
        "percent-encoded slashes": f"{g}/..%2foutside%2fsecret.txt",
        "whole path percent-encoded": quote(f"{g}/../outside/secret.txt", safe=""),
        "double-encoded dot-dot": f"{g}/%252e%252e/outside/secret.txt",
        "backslashes": f"{g}/..\\outside\\secret.txt",
        "doubled slashes": f"/{g}/../outside//secret.txt",
        "NUL byte": f"{cat}/link.txt%00.jpg",
        "relative to the working directory": "../../../../../../etc/passwd",
        "relative project file": "app.py",
        "home directory": "~/.bashrc",
        "process environment": "/proc/self/environ",
        "file URL": "file:///etc/passwd",
        "URL on this server (SSRF)": f"http://127.0.0.1:{port}/gradio_api/file={quote(str(layout['secret_txt']))}",
        "symlinked file -> outside image": f"{cat}/link.jpg",
        "symlinked file -> outside text": f"{cat}/link.txt",
        "symlinked folder -> outside": f"{g}/linked/secret.txt",
        "the gallery folder itself": str(g),
    }


def test_file_route_serves_nothing_outside_the_gallery(running, client, layout):
    url, _, _ = running
    port = urllib.parse.urlsplit(url).port
    gallery, _ = client.predict(CAT_STROKES, "category", K, api_name="/search")
    thumbnail = gallery[0]["image"]["path"]
    status, _ = raw_get(url, f"/gradio_api/file={thumbnail}")  # control: a result's thumbnail is served
    assert status == 200
    status, _ = raw_get(url, f"/gradio_api/file={layout['photo']}")  # a gallery photo by its path is not
    assert status == 403
    served = {}
    for what, path in _route_attacks(layout, port).items():
        status, body = raw_get(url, f"/gradio_api/file={path}")
        if status not in (403, 404) or SECRET in body or b"root:" in body or b"PATH=" in body:
            served[what] = (status, body[:80])
    for path in ("/file=/etc/passwd", "/static/../../../../etc/passwd", "/assets/../../../../etc/passwd",
                 f"/gradio_api/file=/{layout['secret_txt']}"):
        status, body = raw_get(url, path)
        if status not in (403, 404) or SECRET in body or b"root:" in body:
            served[path] = (status, body[:80])
    assert not served, served


def test_symlinked_photo_is_shown_as_a_thumbnail_not_served_by_path(running, client, layout, sketchy_root):
    """Decision: a symlink in the gallery pointing out of it is never served as a file; the app sends its
    thumbnail (a re-encoded copy in the cache) instead, so its result still shows, and nothing else leaks."""
    url, state, _ = running
    assert any(photo.relpath == "cat/link.jpg" for photo in state.searcher.index.photos)  # indexed
    gallery, _ = client.predict(CAT_STROKES, "category", K, api_name="/search")
    by_name = {item["caption"].rsplit(" · ", 1)[-1]: item["image"] for item in gallery}
    assert "link.jpg" in by_name and len(by_name) == len(state.searcher)
    link = by_name["link.jpg"]
    link_path = link["path"] if isinstance(link, dict) else link
    assert not Path(link_path).resolve().is_relative_to(layout["outside"])  # a copy in Gradio's cache
    with httpx.Client(timeout=10) as http:
        response = http.get(link["url"] if isinstance(link, dict) and link.get("url") else
                            f"{url}/gradio_api/file={link_path}")
        assert response.status_code == 200 and SECRET not in response.content
        with Image.open(io.BytesIO(response.content)) as thumbnail:
            assert max(thumbnail.size) <= THUMBNAIL_SIDE
        direct = http.get(f"{url}/gradio_api/file={layout['gallery'] / 'cat' / 'link.jpg'}")
        assert direct.status_code == 403 and SECRET not in direct.content
