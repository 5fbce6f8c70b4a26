"""Serving at the size of its weights (issue 30), on the full install: one ONNX Runtime session per graph
whatever the roles that run it, the text graph opened when words are first searched for, and the torch
towers freed once the app has started on ONNX Runtime (kept for --runtime torch). Every answer is the same
vector as before, to 1e-6, also when queries and index slices run at once on the shared session.

(The serving install's side: tests/runtime/test_serving.py.)
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
from conftest import class_images, copy_class_photos, run_at_once
from PIL import Image

pytest.importorskip("onnxruntime")

from sketchlvm.config import TINY_ARCH, RuntimeConfig  # noqa: E402
from sketchlvm.model.factory import create_sketchlvm  # noqa: E402
from sketchlvm.webapp.cli import build_parser, prepare  # noqa: E402

CLASSES = ("airplane", "cat", "fish", "umbrella")
WORDS = ("a cat", "an airplane in the sky")
pytestmark = pytest.mark.usefixtures("isolated_runtime")


@pytest.fixture(scope="module")
def sketches(sketchy_root) -> list[Image.Image]:
    return class_images(sketchy_root, "sketch", CLASSES, per_class=2)


@pytest.fixture(scope="module")
def photos(sketchy_root) -> list[Image.Image]:
    return class_images(sketchy_root, "photo", CLASSES, per_class=3)


@pytest.fixture
def gallery(tmp_path, sketchy_root) -> Path:
    return copy_class_photos(sketchy_root, tmp_path / "gallery", CLASSES, per_class=3)


def tiny(runtime: str = "onnx", config: RuntimeConfig | None = None, check_images=None):
    return create_sketchlvm(TINY_ARCH, "none", device="cpu", text=True, runtime=runtime, runtime_config=config,
                            check_images=check_images)


def vectors(model, sketches, photos) -> dict[str, np.ndarray]:
    out = {"words": np.stack([model.encode_text(words) for words in WORDS])}
    for mode in model.modes:
        out[f"{mode} sketch"] = model.encode_sketches(sketches, mode)
        out[f"{mode} sketch 1"] = model.encode_sketches(sketches[:1], mode)
        out[f"{mode} photo"] = model.encode_photos(photos, mode)
    return out


def assert_same(found: dict, expected: dict) -> None:
    assert found.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(found[key], expected[key], atol=1e-6, rtol=0, err_msg=key)


def test_one_session_per_graph_answers_as_a_session_per_role(sketches, photos):
    """Queries and index slices share one session; a config that gives the roles different threads still
    gets a session each (and pays for the weights): both answer the same vectors."""
    shared = tiny(check_images=sketches)
    separate = tiny(config=RuntimeConfig(index_threads=1), check_images=sketches)
    assert_same(vectors(shared, sketches, photos), vectors(separate, sketches, photos))
    graphs = {graph.path for graph in shared.runtime._graphs.values()} | {shared.runtime._text.path}
    assert shared.runtime._onnx.open_sessions() == len(graphs)  # zero-shot: one image graph, and the text one
    assert separate.runtime._onnx.open_sessions() == len(graphs) + 1  # the image graph once per role


def test_the_text_graph_opens_when_words_are_first_used(sketches, photos):
    model = tiny(check_images=sketches)
    assert model.runtime.text_runtime() == "ONNX Runtime fp32"  # exported and checked against torch at start
    model.encode_sketches(sketches[:1], "category")
    model.encode_photos(photos[:2], "category")
    assert model.runtime._onnx.open_sessions() == 1  # the image graph only
    torch_words = model.text_tower.encode_tokens_torch(model.text_tower.tokenizer([WORDS[0]]))
    onnx_words = model.runtime.encode_text(model.text_tower.tokenizer([WORDS[0]]))
    assert model.runtime._onnx.open_sessions() == 2
    assert float((torch_words * onnx_words).sum()) > 0.99999


def test_concurrent_queries_and_indexing_on_the_shared_session_answer_correctly(sketches, photos):
    """The app's threads: sketch queries, word queries and index slices at once on one session per graph."""
    model = tiny(check_images=sketches)
    expected = {"sketch": model.encode_sketches(sketches, "category"), "photo": model.encode_photos(photos, "category"),
                "words": model.runtime.encode_text(model.text_tower.tokenizer(list(WORDS)))}
    jobs = {"sketch": lambda: model.encode_sketches(sketches, "category"),
            "photo": lambda: model.encode_photos(photos, "category"),
            "words": lambda: model.runtime.encode_text(model.text_tower.tokenizer(list(WORDS)))}
    found = run_at_once([(kind, jobs[kind]) for kind in ("sketch", "photo", "photo", "words", "sketch")], repeat=4)
    for kind, out in found:
        np.testing.assert_allclose(out, expected[kind], atol=1e-6, rtol=0, err_msg=kind)
    assert model.runtime._onnx.open_sessions() == 2


def _prepared(gallery: Path, *flags: str):
    args = build_parser().parse_args(["--gallery", str(gallery), "--model", TINY_ARCH, "--pretrained", "none",
                                      "--device", "cpu", *flags])
    state = prepare(args)
    assert state.indexer.wait(120).state == "done"
    return state


def test_the_app_frees_the_torch_towers_and_answers_the_same(gallery, sketches, photos):
    reference = vectors(tiny(), sketches, photos)  # the same graphs (the test's cache), torch kept
    state = _prepared(gallery)
    model = state.searcher.model
    assert model.runtime.torch_released
    assert model.text_tower.clip_model is None
    assert all(not hasattr(encoder, "parameters") for encoder in model.encoders.values())
    assert_same(vectors(model, sketches, photos), reference)
    assert model.identity("category") == tiny().identity("category")
    assert model.encoder_key("category", "sketch") == model.encoder_key("fine_grained", "sketch")
    results = state.searcher.search(sketches[0], "category", 5, text="a cat")
    assert len(results) == 5
    state.indexer.stop(timeout=5)


def test_the_towers_are_gone_after_start_up_and_kept_for_runtime_torch(gallery, monkeypatch):
    """A weak reference to each tower is dead once the app has started on ONNX Runtime, alive on torch."""
    seen = {}
    real = create_sketchlvm

    def remembering(*args, **kwargs):
        model = real(*args, **kwargs)
        seen["visual"] = weakref.ref(model.encoders["category"].visual)
        seen["text"] = weakref.ref(model.text_tower.clip_model)
        return model

    monkeypatch.setattr("sketchlvm.model.factory.create_sketchlvm", remembering)
    state = _prepared(gallery)
    state.indexer.stop(timeout=5)
    gc.collect()
    assert seen["visual"]() is None and seen["text"]() is None
    assert state.searcher.model.describe()["runtime"].startswith("onnx: ONNX Runtime")

    state = _prepared(gallery, "--runtime", "torch")
    state.indexer.stop(timeout=5)
    gc.collect()
    assert seen["visual"]() is not None and seen["text"]() is not None
    assert state.searcher.model.runtime.release_torch() == "torch runs the encoder"
