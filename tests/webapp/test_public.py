"""The app as a public Space meets it: hostile traffic to a real server process, on 127.0.0.1 only.

The server is the real command line (``python app.py --gallery ...``, tiny random model) in its own
process, so its memory is measured apart from this one: before each hostile request the process's peak
resident memory is reset (``/proc/PID/clear_refs``), and after it ``VmHWM`` says how far it rose. Every
attack is one bounded request (or a few), each with a timeout.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
gradio_client = pytest.importorskip("gradio_client")

from conftest import raw_get  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

PROJECT = Path(__file__).resolve().parents[2]
CLASSES = ("cat", "fish")
PER_CLASS = 2
K = 8
START_TIMEOUT_S = 240
REFUSE_WITHIN_S = 5.0
MEMORY_BUDGET_MB = 250  # one hostile request: at most this much above where the server stood
CAT_STROKES = json.dumps([[[10, 60, 110, 60, 10], [60, 10, 60, 110, 60]], [[40, 80], [50, 50]]])

pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc to watch the server's memory"),
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python app.py`` in a subprocess, with its own temp folder (to see what it leaves behind)."""

    def __init__(self, base: Path, gallery: Path, args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None):
        self.base, self.gallery = base, gallery
        self.tmp = base / "tmp"
        self.tmp.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, TMPDIR=str(self.tmp), GRADIO_TEMP_DIR=str(self.tmp / "gradio"),
                   SKETCHLVM_GALLERIES_DIR=str(base / "galleries"), HF_HUB_OFFLINE="1",
                   GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
        env.pop("SKETCHLVM_RUNTIME", None)
        env.update(extra_env or {})
        self.log = open(base / "server.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "app.py", "--gallery", str(gallery), "--model", "SketchLVM-Tiny", "--pretrained", "none",
             "--device", "cpu", "--runtime", "torch", "--host", "127.0.0.1", "--port", str(self.port), *args],
            cwd=PROJECT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.pid = self.process.pid

    def wait_ready(self, photos: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            try:
                status = Client(self.url, verbose=False, analytics_enabled=False).predict(api_name="/status")
                if f"{photos} photos indexed" in status:
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(1.0)
        raise TimeoutError(f"app.py not ready in {START_TIMEOUT_S} s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        self.log.flush()
        return (self.base / "server.log").read_text(errors="replace")

    def status(self, field: str) -> int:
        """A field of /proc/PID/status in bytes (VmRSS, VmHWM)."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1)) * 1024

    def stop(self, how: signal.Signals = signal.SIGINT) -> None:
        if self.process.poll() is None:
            self.process.send_signal(how)  # SIGINT: Ctrl+C; SIGTERM: what Spaces, docker and systemd send
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


class PeakGrowth:
    """How far the server's peak resident memory rose above its resident memory at the start."""

    def __init__(self, server: Server):
        self.server = server

    def __enter__(self) -> PeakGrowth:
        try:
            Path(f"/proc/{self.server.pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError as error:
            pytest.skip(f"cannot reset the server's peak memory ({error})")
        self.start = self.server.status("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        self.peak = self.server.status("VmHWM")

    @property
    def mb(self) -> float:
        return (self.peak - self.start) / 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory, sketchy_root):
    base = tmp_path_factory.mktemp("public")
    gallery = base / "gallery"
    for name in CLASSES:
        (gallery / name).mkdir(parents=True)
        for photo in sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:PER_CLASS]:
            shutil.copy(photo, gallery / name / photo.name)
    # Things in the gallery folder that are not photos of it, and must never be served.
    (gallery / ".git").mkdir()
    (gallery / ".git" / "config").write_text("[remote]\n\turl = https://token@example.invalid/secret\n")
    (gallery / "notes.txt").write_text("private notes\n")
    shutil.copy(next((sketchy_root / "photo" / "cat").glob("*.jpg")), gallery / ".hidden.jpg")
    server = Server(base, gallery)
    try:
        server.wait_ready(len(CLASSES) * PER_CLASS)
        client = Client(server.url, verbose=False, analytics_enabled=False, download_files=False)
        client.predict(CAT_STROKES, "category", K, api_name="/search")  # warm up: lazy imports, thread pools
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server.url, verbose=False, analytics_enabled=False, download_files=False)


def assert_still_serving(client: Client) -> None:
    gallery, message = client.predict(CAT_STROKES, "category", K, api_name="/search")
    assert gallery and "best match" in message, message


# --------------------------------------------------------------------------------------------
# 1. Request bodies: refused by size before Gradio parses them


def nested_list_body(megabytes: float) -> bytes:
    """Gradio's queue/join body with the strokes as a nested list (not a JSON string): ~``megabytes`` MB."""
    stroke = b"[[1],[1]],"
    count = int(megabytes * 2**20 / len(stroke))
    return (b'{"data":[[' + stroke * count + b'[[1],[1]]],"category",8,"",0.5],"fn_index":0,'
            b'"session_hash":"hostile","event_data":null,"trigger_id":null}')


@pytest.mark.parametrize("route", ["/gradio_api/queue/join", "/gradio_api/call/search", "/gradio_api/run/search"])
def test_a_16_mb_nested_list_is_refused_at_once_and_costs_no_memory(server, client, route):
    body = nested_list_body(16)
    with PeakGrowth(server) as memory:
        started = time.perf_counter()
        response = httpx.post(server.url + route, content=body, headers={"content-type": "application/json"},
                              timeout=60)
        elapsed = time.perf_counter() - started
    print(f"16 MB nested list to {route}: HTTP {response.status_code} in {elapsed:.2f} s, peak +{memory.mb:.0f} MB")
    assert response.status_code == 413, (response.status_code, response.text[:200])
    assert "maximum allowed size" in response.text
    assert elapsed < REFUSE_WITHIN_S, f"{elapsed:.1f} s"
    assert memory.mb < MEMORY_BUDGET_MB, f"the server's peak memory rose {memory.mb:.0f} MB"
    assert_still_serving(client)


def test_a_chunked_body_without_length_is_refused_too(server, client):
    body = nested_list_body(16)

    def chunks():
        for i in range(0, len(body), 2**16):
            yield body[i:i + 2**16]

    with PeakGrowth(server) as memory:
        response = httpx.post(server.url + "/gradio_api/queue/join", content=chunks(),
                              headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code == 413
    assert memory.mb < MEMORY_BUDGET_MB, f"the server's peak memory rose {memory.mb:.0f} MB"
    assert_still_serving(client)


def test_the_largest_legal_stroke_string_still_gets_through(server, client):
    """The body limit sits above the handlers' own: 1 MB of stroke JSON gets the handler's message."""
    payload = json.dumps([[[123456.789] * 45_000, [123456.789] * 45_000]])  # ~1.1 MB: over the strokes' 1 MB
    _gallery, message = client.predict(payload, "category", K, api_name="/search")
    assert message.startswith("**Those strokes could not be used:**") and "bytes" in message, message[:200]


# --------------------------------------------------------------------------------------------
# 2. A photo as the query: a small file that decodes huge


def transparent_png(side: int) -> bytes:
    """A side x side fully transparent RGBA PNG at zlib level 9: a few hundred kB for 8000 x 8000."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (side * 4)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        import struct

        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    import struct

    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_small_png_that_decodes_to_gigabytes_is_refused_as_a_photo_query(server, client, tmp_path):
    bomb = tmp_path / "clear.png"
    bomb.write_bytes(transparent_png(8000))
    assert bomb.stat().st_size < 1_000_000
    with PeakGrowth(server) as memory:
        started = time.perf_counter()
        _gallery, message, *_ = client.predict(handle_file(str(bomb)), "category", K, api_name="/search_photo")
        elapsed = time.perf_counter() - started
    print(f"8000 x 8000 RGBA PNG as a photo query: {elapsed:.2f} s, peak +{memory.mb:.0f} MB")
    assert message.startswith("**Photo refused:**") and "clear.png" in message, message
    assert "over the limit" in message
    assert elapsed < REFUSE_WITHIN_S, f"{elapsed:.1f} s"
    assert memory.mb < MEMORY_BUDGET_MB, f"the server's peak memory rose {memory.mb:.0f} MB"
    assert_still_serving(client)


def test_a_big_jpeg_photo_is_still_searched(server, client, tmp_path):
    """A 48 MP phone photo is a JPEG: decoded at 1/8 scale, it passes the query limit."""
    photo = tmp_path / "phone.jpg"
    Image.new("RGB", (8000, 6000), (200, 120, 40)).save(photo, quality=70)
    with PeakGrowth(server) as memory:
        _gallery, message, *_ = client.predict(handle_file(str(photo)), "category", K, api_name="/search_photo")
    assert message.startswith("Photo **phone.jpg**") and "best match" in message, message
    assert memory.mb < MEMORY_BUDGET_MB


# --------------------------------------------------------------------------------------------
# 3. Files: thumbnails and indexed originals only; no server paths in public answers



def test_nothing_in_the_gallery_folder_is_served_by_its_path(server):
    g = server.gallery
    photo = next((g / "cat").glob("*.jpg"))
    for path in (g / ".git" / "config", g / "notes.txt", g / ".hidden.jpg", photo, g / "cat"):
        status, body = raw_get(server.url, f"/gradio_api/file={path}")
        assert status in (403, 404), (path, status)
        assert b"token@" not in body and b"private notes" not in body


def test_results_and_status_name_no_server_folder(server, client):
    gallery, message = client.predict(CAT_STROKES, "category", K, api_name="/search")
    status = client.predict(api_name="/status")
    answers = json.dumps(gallery) + message + status
    for secret in (str(server.gallery), str(server.base / "galleries"), str(PROJECT)):  # gallery, index cache
        assert secret not in answers, f"{secret!r} given away"
    assert "gallery" in status  # the folder is still named, by its own name
    with httpx.Client(timeout=10) as http:
        for item in gallery:  # and every result is served
            url = item["image"]["url"]
            response = http.get(url if url.startswith("http") else server.url + url)
            assert response.status_code == 200
            with Image.open(io.BytesIO(response.content)) as image:
                assert image.format == "WEBP"


# --------------------------------------------------------------------------------------------
# 7. With the disk full: results whose thumbnails are missing still come with a message


def test_with_the_disk_full_a_search_still_answers_with_a_message(server, client):
    import resource

    thumbnails = [p for p in (server.base / "galleries").rglob("thumbnails") if p.is_dir()]
    assert thumbnails
    for folder in thumbnails:  # as if the index predates thumbnails, or they were cleaned away
        for thumb in folder.glob("*.webp"):
            thumb.unlink()
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (0, hard))  # every write fails: EFBIG, as a full disk
    except (OSError, AttributeError) as error:
        pytest.skip(f"cannot limit the server's file size ({error})")
    try:
        gallery, message = client.predict(CAT_STROKES, "category", K, api_name="/search")
    finally:
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (hard, hard))
    assert "best match" in message and "could not be shown" in message, message
    assert gallery == []
    assert_still_serving(client)  # and once the disk has room, the thumbnails are made again


# --------------------------------------------------------------------------------------------
# 5. Nothing left in the temp folder after the app stops


def test_the_app_leaves_no_folder_of_its_own_in_the_temp_dir(server):
    made = sorted(p.name for p in server.tmp.iterdir() if p.name.startswith("sketchlvm-"))
    assert made, "the running app keeps its examples and served files in the temp folder"
    server.stop(signal.SIGTERM)
    left = sorted(p.name for p in server.tmp.iterdir() if p.name.startswith("sketchlvm-"))
    assert not left, f"left behind in {server.tmp}: {left}"
