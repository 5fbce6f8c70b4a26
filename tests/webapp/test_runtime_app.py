"""The app on each runtime: parsed from the command line (or SKETCHLVM_RUNTIME), prepared with a real
gallery, answering a real Sketchy sketch, and saying in its status which runtime runs.

(The served app itself is exercised by test_app.py, on the default runtime.)
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from conftest import copy_class_photos
from PIL import Image

pytest.importorskip("onnxruntime")

import app as app_module  # noqa: E402
from sketchlvm import webapp  # noqa: E402
from sketchlvm.config import TINY_ARCH  # noqa: E402

CLASSES = ("airplane", "cat", "fish", "umbrella")
pytestmark = pytest.mark.usefixtures("isolated_runtime")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, sketchy_root) -> Path:
    return copy_class_photos(sketchy_root, tmp_path_factory.mktemp("runtime-app") / "gallery", CLASSES, per_class=4)


@pytest.fixture(scope="module")
def sketch(sketchy_root) -> Image.Image:
    return Image.open(sorted((sketchy_root / "sketch" / "cat").glob("*.png"))[0]).convert("RGB")


def prepared(gallery: Path, *flags: str):
    args = app_module.build_parser().parse_args(
        ["--gallery", str(gallery), "--model", TINY_ARCH, "--pretrained", "none", "--device", "cpu", *flags])
    state = app_module.prepare(args)
    assert state.indexer.wait(60).state == "done"  # the gallery is indexed in the background
    return state


def ranking(state, sketch, mode="category", k=5) -> list[str]:
    return [r.relpath for r in state.searcher.search(sketch, mode, k)]


def test_the_app_answers_on_each_runtime_and_says_which(gallery, sketch, capsys):
    reference = None
    for runtime, says in (("torch", "torch fp32 on cpu"), ("onnx", "onnx: ONNX Runtime"),
                          ("onnx-int8", "onnx-int8: ONNX Runtime")):
        state = prepared(gallery, "--runtime", runtime)
        assert state.searcher.model.runtime.name == runtime
        items, message, _ = webapp.run_search(state, sketch, "category", 5, live=False)
        assert len(items) == 5 and "5 best matches" in message
        status = webapp.status_markdown(state)
        assert f"- **Runtime:** {says}" in status
        if runtime == "onnx-int8":
            assert "int8: top-10 agreement" in status  # measured on the gallery at start
            assert "int8: top-10 agreement" in capsys.readouterr().out
        # torch and fp32 ONNX agree within 1e-4, so they rank the gallery the same.
        if runtime == "torch":
            reference = ranking(state, sketch)
        elif runtime == "onnx":
            assert ranking(state, sketch) == reference
        # One index serves every runtime: nothing is re-embedded after the first start.
        assert state.searcher.index.report.unchanged == (0 if runtime == "torch" else 16)


def test_runtime_comes_from_the_environment_and_the_flag_wins(monkeypatch, capsys):
    monkeypatch.setenv("SKETCHLVM_RUNTIME", "torch")
    assert app_module.build_parser().parse_args([]).runtime == "torch"
    assert app_module.build_parser().parse_args(["--runtime", "onnx"]).runtime == "onnx"
    monkeypatch.setenv("SKETCHLVM_RUNTIME", "tensorrt")
    # Checked in main(), after the port and before any model loads (so --help stays light): exit 2, one line.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SystemExit) as stopped:
        app_module.main(["--port", str(port)])
    assert stopped.value.code == 2
    assert "--runtime" in capsys.readouterr().err


def test_int8_refusal_stops_the_app_with_how_to_run_without(gallery, monkeypatch, capsys):
    from sketchlvm.config import RuntimeConfig

    monkeypatch.setattr("sketchlvm.runtime.engine.RuntimeConfig", lambda: RuntimeConfig(int8_min_agreement=1.01))
    code = app_module.main(["--gallery", str(gallery), "--model", TINY_ARCH, "--pretrained", "none",
                            "--device", "cpu", "--runtime", "onnx-int8"])
    err = capsys.readouterr().err
    assert code == 2
    assert "int8: top-10 agreement" in err and "--runtime onnx" in err
