"""ZeroGPU (``sketchlvm.runtime.zerogpu``) with the real ``spaces`` package.

Off ZeroGPU the decorator must hand the functions back unchanged. On ZeroGPU the package asks a scheduler
over HTTP before every call; here that scheduler is a stand-in on 127.0.0.1 that grants or refuses as the
test says, answering in the formats ``spaces.zero.api`` parses. When it grants, the package forks its
worker process and runs the call there, exactly as on a Space; the one step stubbed is the worker's CUDA
attach (``spaces.zero.torch.init`` / ``move`` / ``unpatch``), which needs a GPU, and the GPU copy of the
model is put on the CPU (``device="cpu"``). So what is real: the decorator, its scheduler client and its
error messages, the fork, the pickling of arguments and results, the fallback and the page's message.
"""

from __future__ import annotations

import math
import shutil
import threading
import time

import numpy as np
import pytest
from zerogpu_standin import StandInScheduler

from sketchlvm.config import TINY_ARCH, IndexConfig
from sketchlvm.gallery import build_gallery_index
from sketchlvm.model.factory import create_sketchlvm
from sketchlvm.preprocess.strokes import load_ndjson, render_strokes
from sketchlvm.runtime import zerogpu
from sketchlvm.search import Searcher

spaces = pytest.importorskip("spaces")

pytestmark = pytest.mark.filterwarnings(
    "ignore:Error while reading infos from Nvidia driver FS:UserWarning",  # no GPU driver here
    "ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning",
)


@pytest.fixture
def scheduler(monkeypatch):
    """ZeroGPU switched on in ``spaces`` (as SPACES_ZERO_GPU=true does at import), talking to the stand-in."""
    from spaces.config import Config
    from spaces.zero import decorator
    from spaces.zero import torch as zero_torch

    stand_in = StandInScheduler()
    monkeypatch.setattr(Config, "zero_gpu", True)
    monkeypatch.setattr(Config, "zero_device_api_url", stand_in.url)
    monkeypatch.setattr(decorator, "decorated_cache", {})  # each test gets fresh wrappers and workers
    for step in ("init", "move", "unpatch"):  # the worker's CUDA attach: the one step that needs a GPU
        monkeypatch.setattr(zero_torch, step, lambda *args, **kwargs: None)
    yield stand_in
    stand_in.server.shutdown()


@pytest.fixture(scope="module")
def model():
    return create_sketchlvm(TINY_ARCH, "none", device="cpu", runtime="onnx", text=True)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, sketchy_root):
    root = tmp_path_factory.mktemp("zerogpu") / "gallery"
    for name in ("airplane", "cat", "fish"):
        (root / name).mkdir(parents=True)
        for photo in sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:5]:
            shutil.copy(photo, root / name / photo.name)
    return root


@pytest.fixture(scope="module")
def drawing(quickdraw_root):
    return render_strokes(load_ndjson(quickdraw_root / "cat.ndjson", limit=1)[0]["drawing"], size=224)


@pytest.fixture
def detached(model):
    """Whatever a test attaches is taken off the shared model afterwards."""
    yield model
    gate = getattr(model.runtime, "offload", None)
    if gate is not None:
        gate.close()
    model.runtime.offload = None


def test_off_zerogpu_the_decorator_hands_the_functions_back_and_they_encode_as_the_model(detached, drawing,
                                                                                        monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert not zerogpu.on_zerogpu()
    model = detached
    cpu_sketch = model.encode_sketches([drawing], "category")  # the model's own CPU path, before attaching
    cpu_words = model.encode_text("a cat")
    gate = zerogpu.attach(model, policy="all", device="cpu")
    assert gate._images is zerogpu.encode_images and gate._tokens is zerogpu.encode_tokens  # unchanged
    gpu_sketch = model.encode_sketches([drawing], "category")
    model.text_tower.use_runtime(model.runtime)  # drop the cached words: encode them again, through the gate
    gpu_words = model.encode_text("a cat")
    assert gate.gpu_calls == 2 and gate.cpu_fallbacks == 0
    np.testing.assert_allclose(gpu_sketch, cpu_sketch, atol=1e-4)  # torch fp32 vs ONNX Runtime fp32
    np.testing.assert_allclose(gpu_words, cpu_words, atol=1e-4)
    assert zerogpu.take_note() is None


def test_a_refused_gpu_is_answered_on_the_cpu_the_page_says_so_and_the_gpu_is_used_again(
        scheduler, detached, gallery, drawing, tmp_path):
    from sketchlvm.webapp.handlers import run_search
    from sketchlvm.webapp.app_state import AppState

    model = detached
    index = build_gallery_index(gallery, model, tmp_path / "index", IndexConfig(batch_size=8),
                                show_progress_bar=False)
    state = AppState(Searcher(model, index), gallery_dir=gallery, cache_dir=tmp_path / "index")
    _, cpu_message, cpu_shown = run_search(state, drawing, "category", 5, live=True)
    assert "CPU" not in cpu_message
    state.searcher.clear_cache()

    gate = zerogpu.attach(model, policy="all", device="cpu", retry_seconds=0.3, query_wait_seconds=30)
    scheduler.answers = ["quota"]  # the visitor's quota is spent
    _, message, shown = run_search(state, drawing, "category", 5, live=True)
    assert shown == cpu_shown  # the same results, from the CPU
    assert "Answered on the CPU" in message and "ZeroGPU quota exceeded" in message
    assert len(scheduler.schedules()) == 1 and gate.cpu_fallbacks == 1 and gate.gpu_calls == 0
    assert int(scheduler.schedules()[0]["durationSeconds"]) == zerogpu.QUERY_SECONDS  # a query's short request

    state.searcher.clear_cache()  # the same drawing again, right after the refusal: no scheduler round trip
    _, message, shown = run_search(state, drawing, "category", 5, live=True)
    assert shown == cpu_shown and "Answered on the CPU" in message and len(scheduler.schedules()) == 1

    time.sleep(0.35)  # past retry_seconds: the GPU is asked again, lends itself, and answers
    state.searcher.clear_cache()
    _, message, shown = run_search(state, drawing, "category", 5, live=True)
    assert len(scheduler.schedules()) == 2 and gate.gpu_calls == 1, message
    assert shown == cpu_shown and "CPU" not in message
    paths = [path for path, _ in scheduler.calls]
    assert paths[-3:] == ["/schedule", "/allow", "/release"]  # the worker ran it and gave the GPU back


def test_a_query_waits_for_the_gpu_only_briefly(scheduler, detached, drawing, monkeypatch):
    model = detached
    gate = zerogpu.attach(model, policy="all", device="cpu", query_wait_seconds=0.2)
    from spaces.zero import client

    original = client.schedule
    release = threading.Event()

    def slow_schedule(*args, **kwargs):  # a full node: the request waits in ZeroGPU's queue
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(client, "schedule", slow_schedule)
    started = time.perf_counter()
    vector = model.encode_sketches([drawing], "category")  # the CPU answers while the GPU request queues
    assert time.perf_counter() - started < 5 and vector.shape[0] == 1
    assert "no GPU within 0.2 s" in zerogpu.take_note()
    assert model.encode_sketches([drawing], "fine_grained") is not None  # a second query while the first waits
    assert "still busy" in zerogpu.take_note()
    release.set()
    deadline = time.monotonic() + 30
    while gate._query_busy and time.monotonic() < deadline:  # the queued request is granted and runs
        time.sleep(0.05)
    assert not gate._query_busy and gate.gpu_calls == 0  # its late answer was not used


def test_indexing_runs_in_bounded_gpu_calls_and_carries_on_on_the_cpu_when_refused(scheduler, detached, gallery,
                                                                                     tmp_path):
    model = detached
    reference = build_gallery_index(gallery, model, tmp_path / "cpu", IndexConfig(batch_size=4),
                                    show_progress_bar=False)
    gate = zerogpu.attach(model, policy="photos", device="cpu", retry_seconds=3600)
    scheduler.answers = ["grant", "busy"]  # the first chunk gets a GPU, the second finds none
    index = build_gallery_index(gallery, model, tmp_path / "zerogpu", IndexConfig(batch_size=4),
                                show_progress_bar=False)
    assert len(index) == len(reference) == 15
    requested = [int(s["durationSeconds"]) for s in scheduler.schedules()]
    assert requested == [math.ceil(zerogpu.CHUNK_BASE_SECONDS + 4 * zerogpu.CHUNK_PER_IMAGE_SECONDS)] * 2
    assert gate.gpu_calls >= 1 and gate.cpu_fallbacks >= 1  # later chunks on the CPU, no scheduler round trip
    for mode in model.modes:  # GPU (torch fp32) and CPU (ONNX Runtime fp32) chunks agree: one index
        np.testing.assert_allclose(index.vectors(mode), reference.vectors(mode), atol=1e-4)
    line = gate.status("photo")
    assert line.startswith("Indexing runs on the CPU") and "ZeroGPU client error" in line
    from sketchlvm.webapp.app_state import AppState, gpu_line

    assert gpu_line(AppState(Searcher(model, index))) == line  # what the progress line adds while indexing


def test_on_zerogpu_the_app_keeps_the_model_on_the_cpu_and_indexes_once_the_page_is_up(gallery, monkeypatch,
                                                                                        galleries_in_tmp):
    from functools import partial

    from sketchlvm.webapp import cli as app_main

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(zerogpu, "attach", partial(zerogpu.attach, device="cpu"))  # no GPU copy possible here
    tiny = ["--gallery", str(gallery), "--model", TINY_ARCH, "--pretrained", "none", "--runtime", "torch"]
    state = app_main.prepare(app_main.build_parser().parse_args(tiny))
    model = state.searcher.model
    try:
        assert model.device.type == "cpu" and isinstance(model.runtime.offload, zerogpu.ZeroGPU)
        assert "ZeroGPU: photos (index chunks, photo queries) in @spaces.GPU calls" in model.describe()["runtime"]
        assert state.indexer.snapshot().state == "idle"  # main() starts it after launch, once spaces is set up
    finally:
        model.runtime.offload.close()
    assert zerogpu.host_device("auto") == zerogpu.host_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="leave SKETCHLVM_DEVICE unset"):  # spaces makes cuda look present
        zerogpu.host_device("cuda")


STARTUP_ON_ZEROGPU = """
import json, os, sys
from zerogpu_standin import StandInScheduler
scheduler = StandInScheduler()
os.environ.update(SPACES_ZERO_GPU="true", SPACES_ZERO_DEVICE_API_URL=scheduler.url)
from sketchlvm.webapp import cli as app_main  # imports spaces, in ZeroGPU mode: torch is patched from here on
import torch
from sketchlvm.runtime import zerogpu
from sketchlvm.runtime.engine import example_sketches
state = app_main.prepare(app_main.build_parser().parse_args(sys.argv[1:]))
model = state.searcher.model
copy = next(zerogpu._TARGETS[model.runtime.offload.key].encoders["category"].parameters())
vector = model.encode_sketches(example_sketches()[:1], "category")
print(json.dumps({"patched": torch.cuda.is_available(), "device": str(model.device),
                  "runtime": model.runtime.describe(), "copy": str(copy.device), "vector": list(vector.shape),
                  "indexing": state.indexer.snapshot().state}))
"""


def test_startup_under_spaces_in_zerogpu_mode_keeps_onnx_runtime_for_the_cpu_path(gallery, tmp_path):
    """The app's start as on a ZeroGPU Space, in a process of its own (spaces patches torch process-wide at
    import): the CPU path still exports and runs its ONNX graphs, and the GPU copy sits on (emulated) cuda."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")]), "HF_HUB_OFFLINE": "1",
           "SKETCHLVM_ONNX_CACHE": str(tmp_path / "onnx"), "SKETCHLVM_GALLERIES_DIR": str(tmp_path / "galleries")}
    args = ["--gallery", str(gallery), "--model", TINY_ARCH, "--pretrained", "none"]
    done = subprocess.run([sys.executable, "-c", STARTUP_ON_ZEROGPU, *args], env=env, cwd=root, check=False,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["patched"] and facts["device"] == "cpu" and facts["copy"].startswith("cuda")
    assert facts["runtime"].startswith("onnx: ONNX Runtime") and "text tower on ONNX Runtime" in facts["runtime"]
    assert "ZeroGPU: photos" in facts["runtime"] and facts["vector"][0] == 1
    assert facts["indexing"] == "idle"  # main() starts it after launch
