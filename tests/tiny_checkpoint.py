"""A stand-in for a trained checkpoint on the tiny tower: the trainable set perturbed, and its metadata.

Shared by the model, preprocess, evaluation, hub and search tests (``from tiny_checkpoint import ...``: this folder
is on the path, as for ``serving_export``). Needs torch, so conftest.py (loaded by the torch-free serving tests
too) does not import it.
"""

from __future__ import annotations

import open_clip
import torch

from sketchlvm.config import TINY_ARCH
from sketchlvm.model.checkpoint import learned_state
from sketchlvm.model.encoder import freeze_except, trainable_parameter_names
from sketchlvm.model.factory import build_prompted_encoder
from sketchlvm.model.weights import resolve_weights_source


def _trained_states(rule="paper", modes=("category", "fine_grained"), seed=0):
    """Stand-in for training: perturb exactly the trainable set so it differs from the backbone."""
    torch.manual_seed(0)
    clip = open_clip.create_model(TINY_ARCH, pretrained=None)
    states = {}
    for i, mode in enumerate(modes):
        encoder = build_prompted_encoder(clip.visual, mode, 3)
        names = trainable_parameter_names(encoder, rule)
        generator = torch.Generator().manual_seed(seed + i)
        with torch.no_grad():
            for param in freeze_except(encoder, rule):
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
        states[mode] = learned_state(encoder, names)
    return states


def _metadata(arch=TINY_ARCH, pretrained="none"):
    return {
        "arch": arch,
        "pretrained": resolve_weights_source(pretrained).identity(),
        "n_prompts": 3,
        "trainable": "paper",
        "training": {"dataset": "sketchy", "split": "sketchy_21"},
        "metrics": {"mAP@200": 0.5},
    }
