"""The export folder the serving tests run on: a tiny random-weight tower with trained category prompts
(so category mode runs prompted graphs, fine-grained mode the plain tower), written by ``sketchlvm export``.

The full install makes it (``python tests/serving_export.py DIR``, as .ci/run does before it runs the
serving tests in the serving environment, where torch cannot be imported); the tests make it themselves
when torch is there and ``$SKETCHLVM_TEST_EXPORT`` is not set.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXPORT_ENV = "SKETCHLVM_TEST_EXPORT"


def trained_checkpoint(path: Path) -> Path:
    """A checkpoint with category prompts and LayerNorms perturbed away from the backbone (a stand-in for training)."""
    import open_clip
    import torch

    from sketchlvm.config import TINY_ARCH
    from sketchlvm.model.checkpoint import learned_state, save_checkpoint
    from sketchlvm.model.encoder import freeze_except, trainable_parameter_names
    from sketchlvm.model.factory import build_prompted_encoder
    from sketchlvm.model.weights import register_model_configs, resolve_weights_source

    register_model_configs()
    torch.manual_seed(0)
    clip = open_clip.create_model(TINY_ARCH, pretrained=None)
    encoder = build_prompted_encoder(clip.visual, "category", 3)
    names = trainable_parameter_names(encoder, "paper")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in freeze_except(encoder, "paper"):
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    metadata = {"arch": TINY_ARCH, "pretrained": resolve_weights_source("none").identity(), "n_prompts": 3,
                "trainable": "paper", "training": {"dataset": "sketchy", "split": "sketchy_21"}}
    return save_checkpoint(path, {"category": learned_state(encoder, names)}, metadata)


def tiny_model(checkpoint: Path):
    from sketchlvm.model.factory import create_sketchlvm

    return create_sketchlvm(pretrained="none", checkpoint=checkpoint, device="cpu", text=True, runtime="onnx")


def make_export(dest: Path) -> Path:
    """Write the test export into ``dest`` (and its checkpoint beside it); returns ``dest``."""
    from sketchlvm.model.folder_export import write_export

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_export(tiny_model(trained_checkpoint(dest.parent / f"{dest.name}-checkpoint.safetensors")), dest)
    return dest


def export_folder_fixture(tmp_path_factory) -> Path:
    """``$SKETCHLVM_TEST_EXPORT`` (the serving environment), else one made now (the full install)."""
    import os

    import pytest

    given = os.environ.get(EXPORT_ENV)
    if given:
        return Path(given)
    pytest.importorskip("torch", reason=f"no torch here and no ${EXPORT_ENV}: make one with tests/serving_export.py")
    return make_export(tmp_path_factory.mktemp("export") / "tiny")


if __name__ == "__main__":
    print(make_export(Path(sys.argv[1])))
