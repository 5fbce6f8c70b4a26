"""A frozen open_clip vision tower with learned prompt tokens inserted between its own stages.

We wrap rather than fork the tower: patch embedding, class token and positional embedding come from
open_clip; the prompts are appended after them and before ``ln_pre``; the output is CLIP's class token
through ``ln_post`` and ``proj``. Appending (not prepending) matters: the released code prepended
and so pooled a prompt token instead of the class token.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from sketchlvm.model.prompts import VisualPrompts

log = logging.getLogger(__name__)

TRAINABLE_RULES = ("paper", "full-attention")
# Names (relative to the visual tower) that the released code's freeze rule left trainable.
_FULL_ATTENTION_SUFFIXES = ("attn.in_proj_weight", "attn.in_proj_bias")
_FULL_ATTENTION_NAMES = ("class_embedding", "positional_embedding", "proj")


class PromptedVisionEncoder(nn.Module):
    """One mode's encoder: an open_clip ``VisionTransformer`` plus optional ``VisualPrompts``."""

    def __init__(self, visual: nn.Module, prompts: VisualPrompts | None = None):
        super().__init__()
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
            raise ValueError("prompted encoding needs a class-token ViT (pool_type 'tok', no attention pooling)")
        self.visual = visual
        self.prompts = prompts

    @property
    def width(self) -> int:
        return self.visual.class_embedding.shape[-1]

    @property
    def image_size(self) -> int:
        size = self.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)

    def forward(self, images: torch.Tensor, modality: str) -> torch.Tensor:
        """Embed a batch of normalised images (B, 3, S, S) -> L2-normalised float32 (B, embed_dim)."""
        return F.normalize(self.embed(images, modality).float(), dim=-1)

    def embed(self, images: torch.Tensor, modality: str) -> torch.Tensor:
        """Unnormalised embedding; with no prompts this is exactly ``visual(images)``."""
        v = self.visual
        x = v.conv1(images)  # (B, width, grid, grid)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # (B, grid*grid, width)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # (B, 1, width)
        x = torch.cat([cls, x], dim=1)  # (B, 1 + grid*grid, width)
        x = x + v.positional_embedding.to(x.dtype)
        x = v.patch_dropout(x)
        if self.prompts is not None:
            prompt_tokens = self.prompts(modality, x.shape[0]).to(x.dtype)  # (B, K, width), no pos. emb.
            x = torch.cat([x, prompt_tokens], dim=1)  # (B, 1 + grid*grid + K, width); CLS stays at 0
        x = v.ln_pre(x)
        x = v.transformer(x)
        pooled, _ = v._pool(x)  # class token (index 0) through ln_post
        if v.proj is not None:
            pooled = pooled @ v.proj
        return pooled


def trainable_parameter_names(encoder: PromptedVisionEncoder, rule: str) -> list[str]:
    """Names (relative to ``encoder``) of the parameters a rule trains.

    "paper": the prompts and every LayerNorm of the visual tower.
    "full-attention": also attention in-projections, class/positional embeddings and ``proj``, which
    the released code's ``.weight``/``.bias`` freeze rule left trainable.
    """
    if rule not in TRAINABLE_RULES:
        raise ValueError(f"unknown trainable rule {rule!r}; choose one of {TRAINABLE_RULES}")
    names: list[str] = []
    for module_name, module in encoder.visual.named_modules():
        if isinstance(module, nn.LayerNorm):
            names += [f"visual.{module_name}.{p}" for p, _ in module.named_parameters(recurse=False)]
    if rule == "full-attention":
        for name, _ in encoder.visual.named_parameters():
            if name.endswith(_FULL_ATTENTION_SUFFIXES) or name in _FULL_ATTENTION_NAMES:
                names.append(f"visual.{name}")
    if encoder.prompts is not None:
        names += [f"prompts.{name}" for name, _ in encoder.prompts.named_parameters()]
    return sorted(set(names))


def freeze_except(encoder: PromptedVisionEncoder, rule: str) -> list[nn.Parameter]:
    """Freeze everything but the rule's set and return that set (the only thing an optimiser gets)."""
    wanted = set(trainable_parameter_names(encoder, rule))
    trainable = []
    for name, param in encoder.named_parameters():
        param.requires_grad_(name in wanted)
        if name in wanted:
            trainable.append(param)
    count = sum(p.numel() for p in trainable)
    log.info("trainable rule %r: %d tensors, %d parameters", rule, len(trainable), count)
    return trainable
