"""Precision: fp32 (the paper's) unless mixed precision is asked for; evaluation defaults to fp32."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch

from sketchlvm.config import TrainConfig
from sketchlvm.device import autocast


def test_autocast_follows_the_requested_precision():
    cuda = torch.device("cuda")
    assert isinstance(autocast(cuda, "fp32"), contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available" on this machine
        assert isinstance(autocast(cuda, "amp"), torch.autocast)
    assert isinstance(autocast(torch.device("cpu"), "amp"), contextlib.nullcontext)
    with pytest.raises(ValueError, match="unknown precision 'fp16'; choose fp32 or amp"):
        autocast(cuda, "fp16")


def test_training_defaults_to_fp32_and_the_clis_offer_the_choice():
    from sketchlvm.evaluation.cli import _parser as evaluate_parser
    from sketchlvm.training.cli import _parser as train_parser

    assert TrainConfig().precision == "fp32"
    assert evaluate_parser().parse_args(["--out", "x"]).precision == "fp32"
    assert train_parser().parse_args(["--config", "x", "--precision", "amp"]).precision == "amp"
    with pytest.raises(SystemExit):
        train_parser().parse_args(["--config", "x", "--precision", "bf16"])


def test_evaluation_embeds_in_fp32_unless_told(sketchy_root, monkeypatch):
    from sketchlvm.evaluation import embedding as embed
    from sketchlvm.evaluation.evaluate import evaluate_category, load_test_data
    from sketchlvm.model.factory import create_sketchlvm

    seen = []
    real = embed.autocast
    monkeypatch.setattr(embed, "autocast", lambda device, precision: seen.append(precision) or real(device, precision))
    model = create_sketchlvm(arch="SketchLVM-Tiny", pretrained="none", device="cpu")
    _, unseen = load_test_data("sketchy", sketchy_root, "sketchy_21", max_classes=2, max_per_class=2)
    evaluate_category(model.encoders["category"], model.sketch_transform, model.photo_transform, unseen, model.device)
    assert seen and set(seen) == {"fp32"}
    seen.clear()
    evaluate_category(model.encoders["category"], model.sketch_transform, model.photo_transform, unseen, model.device,
                      precision="amp")
    assert set(seen) == {"amp"}
