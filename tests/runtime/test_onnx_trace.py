"""The tower as traced for ONNX: same maths as open_clip's modules, a graph without run-time shapes.

The exported graphs are what the app runs on CPU, so the swap must be exact (checked against torch's
own module, with and without a mask), must leave the torch model untouched afterwards (even when the
export fails), and must really remove the shape arithmetic from the graph while keeping the batch
dynamic. The int8 graph must quantise the transformer's MatMuls and leave the patch Conv in fp32.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from sketchlvm.runtime import onnx_export  # noqa: E402
from sketchlvm.config import TINY_ARCH  # noqa: E402
from sketchlvm.model.factory import create_sketchlvm  # noqa: E402
from sketchlvm.runtime.onnx_trace import TracedMlp, TracedSelfAttention, traceable_tower  # noqa: E402


@pytest.fixture(scope="module")
def real_images(sketchy_root):
    from PIL import Image

    return [Image.open(p).convert("RGB") for p in sorted((sketchy_root / "sketch").rglob("*.png"))[:3]]


@pytest.mark.parametrize("masked", [False, True])
def test_traced_attention_matches_multihead_attention(masked):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    x = torch.randn(3, 7, 32)
    mask = torch.triu(torch.full((7, 7), float("-inf")), 1) if masked else None
    with torch.no_grad():
        expected = mha(x, x, x, need_weights=False, attn_mask=mask)[0]
        got, weights = TracedSelfAttention(mha)(x, x, x, need_weights=False, attn_mask=mask)
    assert weights is None
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_traced_mlp_matches_the_block_mlp():
    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="torch")
    mlp = model.encoders["category"].visual.transformer.resblocks[0].mlp
    width = mlp.c_fc.in_features
    x = torch.randn(2, 5, width)
    with torch.no_grad():
        torch.testing.assert_close(TracedMlp(mlp)(x), mlp(x), rtol=1e-5, atol=1e-6)


def test_traced_attention_refuses_what_it_does_not_compute():
    with pytest.raises(ValueError, match="batch-first"):
        TracedSelfAttention(nn.MultiheadAttention(32, 4, batch_first=False))
    traced = TracedSelfAttention(nn.MultiheadAttention(32, 4, batch_first=True))
    with pytest.raises(ValueError, match="self-attention"):
        traced(torch.randn(1, 3, 32), torch.randn(1, 3, 32), torch.randn(1, 3, 32))


def test_swap_is_undone_even_when_the_export_fails():
    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="torch")
    visual = model.encoders["category"].visual
    before = [(block.attn, block.mlp) for block in visual.transformer.resblocks]
    with pytest.raises(RuntimeError, match="boom"), traceable_tower(visual):
        assert all(isinstance(b.attn, TracedSelfAttention) and isinstance(b.mlp, TracedMlp)
                   for b in visual.transformer.resblocks)
        raise RuntimeError("boom")
    assert [(block.attn, block.mlp) for block in visual.transformer.resblocks] == before


def test_exported_graph_has_constant_shapes_and_a_dynamic_batch(tmp_path, real_images):
    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="torch")
    encoder = model.encoders["category"]
    blocks = len(encoder.visual.transformer.resblocks)
    path = tmp_path / "plain.onnx"
    onnx_export.export_graph(encoder, "sketch", model.image_size, path)
    ops = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    # torch's traced MultiheadAttention re-derives its shapes per block (dozens of Shape/Gather nodes);
    # what is left is the stem's (patch grid, class token): a handful, whatever the depth.
    assert ops["Shape"] <= 8 and ops["MatMul"] >= 4 * blocks, ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 3):  # the batch axis stays dynamic
        batch = torch.stack([model.sketch_transform(im) for im in real_images[:n]])
        with torch.no_grad():
            expected = encoder(batch, "sketch").numpy()
        got = session.run(None, {"images": batch.numpy()})[0]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-4


def test_int8_quantises_the_matmuls_and_keeps_the_conv_fp32(tmp_path, real_images):
    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="torch")
    spec = onnx_export.graph_spec(model, "category", "sketch")
    fp32, _ = onnx_export.ensure_graph(spec, model.encoders["category"], model.image_size, tmp_path)
    int8 = onnx_export.ensure_int8_graph(spec, fp32, tmp_path)
    before = Counter(node.op_type for node in onnx.load(str(fp32)).graph.node)
    after = Counter(node.op_type for node in onnx.load(str(int8)).graph.node)
    weight_matmuls = 4 * len(model.encoders["category"].visual.transformer.resblocks)  # qkv, out, fc, proj
    assert after["MatMulInteger"] + after["DynamicQuantizeMatMul"] >= weight_matmuls, after
    assert before["Conv"] == after["Conv"] == 1 and after["ConvInteger"] == 0


def test_int8_weights_are_7_bit_and_an_older_recipe_is_rebuilt(tmp_path, real_images):
    """7-bit weights keep AVX2's saturating uint8 x int8 products from overflowing (see
    ensure_int8_graph); an int8 graph cached by an earlier recipe is quantised again."""
    from onnx import numpy_helper

    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="torch")
    spec = onnx_export.graph_spec(model, "category", "sketch")
    fp32, _ = onnx_export.ensure_graph(spec, model.encoders["category"], model.image_size, tmp_path)
    int8 = onnx_export.ensure_int8_graph(spec, fp32, tmp_path)
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(int8)).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.dims]
    assert weights, "no int8 weights in the int8 graph"
    assert all(-64 <= w.min() and w.max() <= 64 for w in weights)  # onnxruntime's reduced int8 range
    assert max(int(np.abs(w).max()) for w in weights) >= 32  # the 7 bits are used, not fewer

    sidecar = int8.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    assert record["int8_format"] == onnx_export.INT8_FORMAT
    record["int8_format"] = onnx_export.INT8_FORMAT - 1  # as an earlier version left it
    sidecar.write_text(json.dumps(record))
    before = int8.stat().st_mtime_ns
    assert onnx_export.ensure_int8_graph(spec, fp32, tmp_path) == int8
    assert int8.stat().st_mtime_ns != before
    assert json.loads(sidecar.read_text())["int8_format"] == onnx_export.INT8_FORMAT
