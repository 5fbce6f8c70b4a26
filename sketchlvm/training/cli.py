"""Command line for training: ``python -m sketchlvm train --config sketchy_category --root DATA``.

A preset (``sketchlvm/configs/*.json``) or a JSON file sets the experiment; flags override it;
``--set section.key=value`` overrides anything else. The resolved config is written beside the
checkpoints. Multi-GPU: ``torchrun --nproc_per_node N -m sketchlvm train ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from sketchlvm.config import configure_cli_logging, list_presets, load_experiment, merge_into

# flag -> (section, key)
FLAG_FIELDS = {
    "root": ("data", "root"), "dataset": ("data", "dataset"), "split": ("data", "split"),
    "max_classes": ("data", "max_classes"), "max_per_class": ("data", "max_per_class"), "workers": ("data", "num_workers"),
    "mode": ("train", "mode"), "epochs": ("train", "epochs"), "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"), "prompt_lr": ("train", "prompt_lr"), "max_steps": ("train", "max_steps"),
    "seed": ("train", "seed"), "out": ("train", "out_dir"), "device": ("train", "device"),
    "precision": ("train", "precision"),
    "eval_metric": ("train", "eval_metric"), "select_on": ("train", "select_on"),
    "validation_fraction": ("data", "validation_fraction"), "validation_seed": ("data", "validation_seed"),
    "model": ("model", "arch"), "pretrained": ("model", "pretrained"), "trainable": ("model", "trainable"),
    "n_prompts": ("model", "n_prompts"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sketchlvm train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help=f"preset name ({', '.join(list_presets())}) or a JSON file")
    p.add_argument("--root", help="dataset folder (ROOT/sketch/<class>/*, ROOT/photo/<class>/*)")
    p.add_argument("--dataset", help="sketchy | tuberlin | quickdraw | sketchy_fg | shoev2 | chairv2")
    p.add_argument("--split", help="zero-shot split: sketchy_21, sketchy_25, tuberlin_30, quickdraw_30")
    p.add_argument("--mode", choices=("category", "fine_grained"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="category triplets per batch (fine-grained: see --set train.classes_per_batch)")
    p.add_argument("--lr", type=float, help="learning rate of the CLIP parameters (LayerNorms...)")
    p.add_argument("--prompt-lr", type=float, help="learning rate of the prompt tokens")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (0: all epochs)")
    p.add_argument("--max-classes", type=int, help="use this many classes per part (0: all)")
    p.add_argument("--max-per-class", type=int, help="cap images per class (0: all)")
    p.add_argument("--workers", type=int, help="image decoding workers")
    p.add_argument("--seed", type=int)
    p.add_argument("--model", help="open_clip architecture, e.g. ViT-B-32-quickgelu")
    p.add_argument("--pretrained", help="CLIP weights: openai (default), a file, a folder, or none (random: tests only)")
    p.add_argument("--trainable", choices=("paper", "full-attention"))
    p.add_argument("--n-prompts", type=int)
    p.add_argument("--eval-metric", help="metric that picks the best checkpoint: mAP@200, mAP@all, P@100, P@200; "
                   "fine-grained also Acc@{1,5,10}_within_class (ranked among the sketch's class) and "
                   "Acc@{1,5,10}_whole_gallery (among every photo of the evaluated classes)")
    p.add_argument("--select-on", choices=("validation", "test"),
                   help="data that picks the best checkpoint: validation (default; held-out sketches and photos of the "
                   "training classes) or test (the unseen test classes, by --eval-metric; the released code also chose on "
                   "the test classes, but by its triplet validation loss)")
    p.add_argument("--validation-fraction", type=float, help="share of each training class held out for validation (0.1)")
    p.add_argument("--validation-seed", type=int, help="seed of the validation split (0)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=("fp32", "amp"),
                   help="fp32 (default, the paper's) or amp (fp16 autocast on CUDA); evaluation always runs in fp32")
    p.add_argument("--out", help="output folder (checkpoints, history, config)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config field; VALUE is JSON (e.g. --set loss.margin=0.2)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --out holds an interrupted run")
    return p


def build_config(args: argparse.Namespace):
    config = load_experiment(args.config)
    overrides: dict = {}
    for flag, (section, key) in FLAG_FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    for item in args.set:
        path, sep, raw = item.partition("=")
        if not sep or "." not in path:
            raise ValueError(f"--set needs SECTION.KEY=VALUE, got {item!r}")
        section, key = path.split(".", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        overrides.setdefault(section, {})[key] = value
    merge_into(config, overrides)
    return config


def main(argv: list[str] | None = None) -> int:
    configure_cli_logging()
    args = _parser().parse_args(argv)
    from sketchlvm.training.trainer import train
    from sketchlvm.model.weights import WeightsUnavailableError

    try:
        config = build_config(args)
        result = train(config, resume=not args.no_resume)
    except (ValueError, FileNotFoundError, WeightsUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    print(f"best {config.train.eval_metric}: {result.best_metric}; checkpoint: {result.best_checkpoint}")
    return 0

