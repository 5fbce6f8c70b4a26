"""The visual tower's modules rewritten for the ONNX tracer: the same maths, a graph that runs faster.

Traced as it is, torch's ``multi_head_attention_forward`` re-derives every shape from the input at run
time: ~130 Shape/Gather/Unsqueeze/Concat nodes per block, ~1,500 of the ViT-B/32 graph's 2,044 nodes,
each a small kernel launch (and a thread-pool hand-off) per query. A visual tower's token count is fixed
by the image size and the prompt count, so :class:`TracedSelfAttention` bakes it in and leaves only the
batch dynamic (``-1``): the graph drops to ~550 nodes with the same weights and the same operations
(``x @ W.T + b`` projections, scaled ``q @ k.T``, softmax, ``@ v``). The projections (attention and
MLP, :class:`TracedMlp`) run on 2-D rows as MatMul + Add: ONNX Runtime fuses that into one Gemm with
the bias for fp32, and dynamic int8 quantisation (which handles MatMul, not Gemm) still covers them.

The patch embedding stays a Conv, and int8 leaves it fp32 (``onnx_export.ensure_int8_graph``): traced
as a MatMul over the 32 x 32 patches it was quantised too, which saved nothing measurable and cost
int8 ranking agreement (0.97 -> 0.94 on bench_query's sketches, measured with 8-bit weights, before
int8 moved to 7-bit ones).

:func:`traceable_tower` swaps these into a tower for the duration of an export only; the torch path
never runs them, and every exported graph is checked against the torch path before it is used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


class TracedSelfAttention(nn.Module):
    """Batch-first self-attention of one ``nn.MultiheadAttention`` (its weights, not copies)."""

    def __init__(self, attention: nn.MultiheadAttention):
        super().__init__()
        if not (attention.batch_first and attention._qkv_same_embed_dim and attention.bias_k is None
                and not attention.add_zero_attn and attention.in_proj_bias is not None):
            raise ValueError("only plain batch-first self-attention with biases can be traced this way")
        self.attention = attention

    def forward(self, q_x, k_x=None, v_x=None, need_weights=False, attn_mask=None):
        if (k_x is not None and k_x is not q_x) or (v_x is not None and v_x is not q_x):
            raise ValueError("TracedSelfAttention computes self-attention only")
        a = self.attention
        tokens, width = int(q_x.shape[1]), int(q_x.shape[2])  # constants in the graph; the batch stays -1
        heads = a.num_heads
        head_dim = width // heads
        qkv = _linear(q_x, a.in_proj_weight, a.in_proj_bias)  # (B * T, 3 * width)
        qkv = qkv.reshape(-1, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, T, d)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = (q * head_dim**-0.5) @ k.transpose(-2, -1)  # (B, H, T, T)
        if attn_mask is not None:
            scores = scores + attn_mask
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2)  # (B, T, H, d)
        return _linear(out, a.out_proj.weight, a.out_proj.bias).reshape(-1, tokens, width), None


class TracedMlp(nn.Module):
    """A block's ``c_fc -> activation -> c_proj`` on (B * T, width) rows, so that both projections
    trace as 2-D MatMul + Add (fused into one Gemm by ONNX Runtime, bias included)."""

    def __init__(self, mlp: nn.Sequential):
        super().__init__()
        self.mlp = mlp

    def forward(self, x):
        tokens, width = int(x.shape[1]), int(x.shape[2])
        hidden = self.mlp.gelu(_linear(x, self.mlp.c_fc.weight, self.mlp.c_fc.bias))
        return _linear(hidden, self.mlp.c_proj.weight, self.mlp.c_proj.bias).reshape(-1, tokens, width)


def _linear(x, weight, bias):
    """``x @ W.T + b`` on the rows of ``x`` flattened to 2-D: MatMul + Add, which int8 quantisation
    covers (it leaves Gemm alone) and ONNX Runtime fuses into a Gemm for fp32."""
    return x.reshape(-1, weight.shape[1]) @ weight.t() + bias


@contextlib.contextmanager
def traceable_tower(tower: nn.Module) -> Iterator[None]:
    """Inside the block, ``tower``'s residual blocks trace their attention and MLP as
    :class:`TracedSelfAttention` and :class:`TracedMlp`; the original modules are put back afterwards,
    whatever happens."""
    swapped = []
    try:
        for block in getattr(getattr(tower, "transformer", None), "resblocks", []):
            attention = getattr(block, "attn", None)
            mlp = getattr(block, "mlp", None)
            if isinstance(attention, nn.MultiheadAttention):
                swapped.append((block, "attn", attention))
                block.attn = TracedSelfAttention(attention)
            if isinstance(mlp, nn.Sequential) and {"c_fc", "gelu", "c_proj"} <= set(mlp._modules):
                swapped.append((block, "mlp", mlp))
                block.mlp = TracedMlp(mlp)
        yield
    finally:
        for owner, name, module in reversed(swapped):
            setattr(owner, name, module)


__all__ = ["TracedMlp", "TracedSelfAttention", "traceable_tower"]
