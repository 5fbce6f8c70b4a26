"""Shared test fixtures.

Tests run offline on CPU with tiny random-weight models. Real data comes from ../shared/data
(beside the project root); tests that need it skip, naming the missing folder, when it is absent.
"""

from __future__ import annotations

import http.client
import os
import urllib.parse

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SKETCHLVM_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))



def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real test data not found at {path} (set SKETCHLVM_SHARED_DATA or place ../shared/data)")
    return path


@pytest.fixture(scope="session")
def sketchy_root() -> Path:
    """Real Sketchy subset: photo/<class>/<id>.jpg and sketch/<class>/<id>-<k>.png."""
    return _require(SHARED_DATA / "sketchy")


@pytest.fixture(scope="session")
def quickdraw_root() -> Path:
    """Real Quick, Draw! strokes: <word>.ndjson."""
    return _require(SHARED_DATA / "quickdraw")


@pytest.fixture(scope="session", autouse=True)
def _onnx_cache_in_tmp(tmp_path_factory):
    """Exported ONNX graphs of the tests' random-weight models go to pytest's temp folder, not ~/.cache."""
    if not os.environ.get("SKETCHLVM_ONNX_CACHE"):
        os.environ["SKETCHLVM_ONNX_CACHE"] = str(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="session", autouse=True)
def _no_folder_watcher():
    """The tests' apps do not watch their gallery folders unless a test asks (--watch): a watcher would
    rebuild beside the rebuilds a test makes itself. tests/gallery/test_watch.py asks."""
    if not os.environ.get("SKETCHLVM_WATCH"):
        os.environ["SKETCHLVM_WATCH"] = "off"


@pytest.fixture
def galleries_in_tmp(tmp_path, monkeypatch):
    """Nothing a test builds may land in the project's galleries/ folder."""
    monkeypatch.setenv("SKETCHLVM_GALLERIES_DIR", str(tmp_path / "galleries"))


@pytest.fixture
def isolated_runtime(tmp_path, monkeypatch, galleries_in_tmp):
    """The test's own export cache (so reuse is only what the test made), no runtime from the environment."""
    monkeypatch.setenv("SKETCHLVM_ONNX_CACHE", str(tmp_path / "onnx"))
    monkeypatch.delenv("SKETCHLVM_RUNTIME", raising=False)


def copy_class_photos(sketchy_root: Path, dest: Path, classes: tuple[str, ...], per_class: int) -> Path:
    """The first ``per_class`` Sketchy photos of each of ``classes``, copied to ``dest/<class>/``."""
    import shutil

    for c in classes:
        (dest / c).mkdir(parents=True)
        for photo in sorted((sketchy_root / "photo" / c).glob("*.jpg"))[:per_class]:
            shutil.copy2(photo, dest / c / photo.name)
    return dest


def class_images(sketchy_root: Path, kind: str, classes: tuple[str, ...], per_class: int) -> list:
    """The first ``per_class`` Sketchy sketches (``kind="sketch"``) or photos of each of ``classes``, as RGB
    PIL images, class by class."""
    from PIL import Image

    pattern = "*.png" if kind == "sketch" else "*.jpg"
    return [Image.open(p).convert("RGB") for c in classes
            for p in sorted((sketchy_root / kind / c).glob(pattern))[:per_class]]


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET with the path exactly as written: no client-side normalisation of '..' or percent-escapes."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def write_image_parquet(path: Path, rows: list[tuple[Path, object]], names: list[str] | None = None,
                        features: bool = True, row_group_size: int | None = None) -> Path:
    """A parquet file in the Hub's image layout, as the datasets library writes it: an ``image`` column of
    {bytes, path} and a ``label`` column (ints with ``names``, else strings; none when every label is None).
    ``features``: the ``huggingface`` schema metadata that names the classes (a ClassLabel) and the image."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [{"bytes": Path(p).read_bytes(), "path": Path(p).name} for p, _ in rows]
    columns = {"image": pa.array(images, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))}
    meta = {"image": {"_type": "Image"}}
    if any(label is not None for _, label in rows):
        if names is not None:
            columns["label"] = pa.array([int(label) for _, label in rows], type=pa.int64())
            meta["label"] = {"names": list(names), "_type": "ClassLabel"}
        else:
            columns["label"] = pa.array([str(label) for _, label in rows], type=pa.string())
            meta["label"] = {"dtype": "string", "_type": "Value"}
    table = pa.table(columns)
    if features:
        table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": meta}})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def run_at_once(jobs: list[tuple[str, object]], repeat: int, timeout_s: float = 120) -> list[tuple[str, object]]:
    """Each (label, job) in a thread of its own, all started together, each job called ``repeat`` times:
    (label, result) for every call, as the app's threads run queries and index slices side by side. The
    first error a thread met is raised here."""
    import threading

    found, errors, lock = [], [], threading.Lock()

    def work(label: str, job) -> None:
        try:
            for _ in range(repeat):
                out = job()
                with lock:
                    found.append((label, out))
        except BaseException as error:  # noqa: BLE001 - raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=pair) for pair in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    if errors:
        raise errors[0]
    assert len(found) == len(jobs) * repeat, f"{len(found)} of {len(jobs) * repeat} calls finished"
    return found


def serve_in_process(state) -> tuple[object, str]:
    """The page for ``state`` launched in this process on a free 127.0.0.1 port, as app.py launches it:
    (the Blocks, to close; its URL)."""
    import socket

    from sketchlvm.webapp import page

    demo = page.build_demo(state)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = page.launch(demo, **page.launch_kwargs(state, "127.0.0.1", port), prevent_thread_lock=True,
                            quiet=True)
    return demo, url
