"""CLIP's text tower on ONNX Runtime: agreement with torch on real prompts, the export cache, fallbacks
to torch, and words-only search ranking the same on both engines.

Random-weight towers say nothing about retrieval quality; these tests check numerics and plumbing with
the tolerances the runtime itself enforces (cosine >= 0.99999, max abs diff <= 1e-4).
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch
from test_index import _make_gallery

ort = pytest.importorskip("onnxruntime")

from sketchlvm import create_sketchlvm
from sketchlvm.runtime import onnx_export  # noqa: E402
from sketchlvm.config import TINY_ARCH, IndexConfig  # noqa: E402
from sketchlvm.gallery import build_gallery_index  # noqa: E402
from sketchlvm.search import Searcher  # noqa: E402
from sketchlvm.model.weights import load_clip  # noqa: E402

MIN_COSINE, MAX_ABS = 0.99999, 1e-4
TEXTS = ("airplane", "a red cat on a beach", "leather umbrella", "fish")
pytestmark = pytest.mark.usefixtures("isolated_runtime")


@pytest.fixture(scope="module")
def class_names(sketchy_root) -> list[str]:
    """The Sketchy categories as words, as people would type them ("alarm clock", "car (sedan)")."""
    return sorted(p.name.replace("_", " ") for p in (sketchy_root / "photo").iterdir() if p.is_dir())


def tiny(runtime: str, pretrained: str = "none"):
    """A tiny random-weight model with its text tower, its graphs prepared (exported or reused, checked) now."""
    model = create_sketchlvm(arch=TINY_ARCH, pretrained=pretrained, device="cpu", text=True, runtime=runtime)
    model.runtime.name  # noqa: B018 (graphs are prepared on first use)
    return model


def torch_vectors(model, texts) -> np.ndarray:
    tower = model.text_tower
    return tower.encode_tokens_torch(tower.tokenizer([tower.query(t).prompt for t in texts]))


def test_onnx_text_features_agree_with_torch_on_sketchy_class_names(class_names, monkeypatch):
    model = tiny("onnx")
    assert model.runtime.name == "onnx" and model.runtime._text is not None
    assert model.runtime._text.checked.within(MIN_COSINE, MAX_ABS)
    assert model.describe()["runtime"].endswith("text tower on ONNX Runtime fp32")
    tower = model.text_tower
    reference = torch_vectors(model, class_names)
    batched = model.runtime.encode_text(tower.tokenizer([tower.query(t).prompt for t in class_names]))
    found = onnx_export.agreement(reference, batched)
    assert found.within(MIN_COSINE, MAX_ABS), f"batch of {len(class_names)}: {found}"

    # One prompt at a time, through the model (and its cache): ONNX Runtime runs it, not torch.
    def no_torch(tokens):
        raise AssertionError("the text tower ran on torch")

    monkeypatch.setattr(tower, "encode_tokens_torch", no_torch)
    singles = np.stack([model.encode_text(t) for t in class_names])
    assert onnx_export.agreement(reference, singles).within(MIN_COSINE, MAX_ABS)
    calls = tower.encode_calls
    model.encode_text(class_names[0])
    assert tower.encode_calls == calls  # the per-prompt cache still answers repeats


def test_text_graph_is_fp32_under_onnx_int8(class_names):
    model = tiny("onnx-int8")
    assert model.runtime.name == "onnx-int8"
    assert model.runtime._text is not None and model.runtime._text.int8_path is None
    assert "-int8" not in model.runtime._text.path.name
    assert onnx_export.agreement(torch_vectors(model, class_names[:8]),
                                 np.stack([model.encode_text(t) for t in class_names[:8]])).within(MIN_COSINE, MAX_ABS)


def test_text_graph_cache_is_reused_and_invalidated_with_the_weights(tmp_path, monkeypatch):
    exported: list[str] = []
    real_export = onnx_export.export_text_graph

    def counting_export(clip_model, context_length, path):
        exported.append(path.name)
        real_export(clip_model, context_length, path)

    monkeypatch.setattr(onnx_export, "export_text_graph", counting_export)
    first = tiny("onnx")
    assert len(exported) == 1 and exported[0].startswith("text-")
    assert (tmp_path / "onnx" / exported[0]).is_file()

    again = tiny("onnx")
    assert again.runtime._text is not None and again.runtime._text.path.name == exported[0]
    assert len(exported) == 1 and again.runtime._text.checked is not None  # reused, and checked again

    # Other text-tower weights (a weights file whose token embedding differs): another graph.
    clip, _ = load_clip(TINY_ARCH, "none")
    with torch.no_grad():
        clip.token_embedding.weight.add_(0.5 * torch.randn(clip.token_embedding.weight.shape,
                                                           generator=torch.Generator().manual_seed(0)))
    weights = tmp_path / "tiny.pt"
    torch.save(clip.state_dict(), weights)
    other = tiny("onnx", str(weights))
    assert other.runtime._text is not None and len(exported) == 2 and exported[1] != exported[0]
    assert sorted(p.name for p in (tmp_path / "onnx").glob("text-*.onnx")) == sorted(exported)
    # The new graph computes the new weights' tower, not the old one.
    assert onnx_export.agreement(torch_vectors(other, TEXTS), np.stack([other.encode_text(t) for t in TEXTS])
                                 ).within(MIN_COSINE, MAX_ABS)
    assert not onnx_export.agreement(torch_vectors(first, TEXTS), torch_vectors(other, TEXTS)).within(MIN_COSINE, MAX_ABS)


def test_text_falls_back_to_torch_when_onnxruntime_is_missing(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with caplog.at_level(logging.WARNING):
        model = tiny("onnx")
        assert model.runtime.name == "torch" and model.runtime._text is None
    described = model.describe()["runtime"]
    assert "onnxruntime is not installed" in described and described.endswith("text tower on torch")
    np.testing.assert_array_equal(model.encode_text(TEXTS[1]), torch_vectors(model, TEXTS[1:2])[0])


def test_text_falls_back_to_torch_when_export_fails(monkeypatch, caplog):
    def broken_export(clip_model, context_length, path):
        raise RuntimeError("no ONNX form for this operator")

    monkeypatch.setattr(onnx_export, "export_text_graph", broken_export)
    with caplog.at_level(logging.WARNING):
        model = tiny("onnx")
        assert model.runtime.name == "onnx" and model.runtime._text is None  # the images still run on ONNX
    assert "text tower: export of the text graph failed: RuntimeError: no ONNX form" in caplog.text
    assert "text tower on torch (export of the text graph failed" in model.describe()["runtime"]
    np.testing.assert_array_equal(model.encode_text(TEXTS[0]), torch_vectors(model, TEXTS[:1])[0])


def test_a_text_graph_that_disagrees_with_torch_is_refused(monkeypatch, caplog):
    real_export = onnx_export.export_text_graph

    def perturbed_export(clip_model, context_length, path):
        weight = clip_model.token_embedding.weight
        saved = weight.detach().clone()
        with torch.no_grad():
            weight.add_(0.5 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
            try:
                real_export(clip_model, context_length, path)
            finally:
                weight.copy_(saved)

    monkeypatch.setattr(onnx_export, "export_text_graph", perturbed_export)
    with caplog.at_level(logging.WARNING):
        model = tiny("onnx")
        assert model.runtime._text is None
    assert "the exported text graph disagrees with torch" in model.runtime.text_reason
    assert "prompts" in model.runtime.text_reason and "disagrees" in caplog.text


def test_words_search_ranks_the_same_on_torch_and_onnx(sketchy_root, tmp_path):
    on_torch, on_onnx = tiny("torch"), tiny("onnx")
    assert on_onnx.runtime._text is not None
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery", n_classes=4, per_class=5)
    index = build_gallery_index(gallery, on_torch, tmp_path / "cache", IndexConfig(batch_size=8, decode_workers=1),
                                show_progress_bar=False)
    rankings = set()
    for mode in ("category", "fine_grained"):
        for text in TEXTS:
            want = Searcher(on_torch, index).search(None, mode, 20, text=text)
            got = Searcher(on_onnx, index).search(None, mode, 20, text=text)
            assert [r.relpath for r in got] == [r.relpath for r in want], (mode, text)
            np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-4)
            rankings.add(tuple(r.relpath for r in want))
    assert len(rankings) > 1  # the words change the ranking, so equal rankings say something
