"""argparse value types and the model flags shared by every command line (app, index, cluster, evaluate,
partial, export), so flags read and fail the same everywhere. No torch."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value:g}")
    return value


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {text!r}")
    return value


def runtime(text: str) -> str:
    """auto, torch, onnx or onnx-int8 (sketchlvm.runtime.engine)."""
    from sketchlvm.runtime.onnx_sessions import requested_runtime

    try:
        return requested_runtime(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N, refused at parse time when CUDA is asked for but absent."""
    try:
        from sketchlvm.device import resolve_device
    except ImportError:  # the serving install (no torch): ONNX Runtime on the CPU
        if text.strip().lower() in ("auto", "cpu"):
            return text.strip().lower()
        raise argparse.ArgumentTypeError(f"device {text!r} needs torch (the full install: pip install -r "
                                         "requirements.txt); the serving install runs on the CPU (auto or cpu)") from None
    try:
        resolve_device(text)
    except (RuntimeError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"{error} (expected auto, cpu, cuda or cuda:N)") from None
    return text.strip().lower()


# The model flags every command that loads a model shares (app, index, cluster, evaluate, partial, export),
# one definition each, so their meaning and spelling cannot drift apart; model/loader.py reads them.
MODEL_FLAGS = ("model", "pretrained", "checkpoint", "device", "runtime")


def add_model_arguments(parser: argparse.ArgumentParser, *, exports: bool = False, with_device: bool = True,
                        with_runtime: bool = False, check: bool = True, defaults: dict | None = None,
                        variables: bool = False, checkpoint_help: str | None = None) -> None:
    """--model, --pretrained, --checkpoint and, as asked for, --device and --runtime.

    ``exports``: --model also takes an export folder or hf://USER/REPO (what the serving install runs).
    ``check``: parse-time checks of --device and --runtime (they import torch and ONNX Runtime); the app
    checks them itself after its port, so ``--help`` answers at once. ``defaults``: flag -> default (None:
    the checkpoint decides, see ``create_sketchlvm``). ``variables``: each help ends with the flag's
    environment variable (the app's defaults come from them). ``checkpoint_help`` says what the prompts are for."""
    from sketchlvm.config import ModelConfig, env_var

    model_defaults = ModelConfig()
    given = defaults or {}

    def env(flag: str) -> str:
        return f" [{env_var(flag)}]" if variables else ""

    if exports:
        parser.add_argument(
            "--model", metavar="ARCH|EXPORT_FOLDER|hf://USER/REPO", default=given.get("model"),
            help=f"open_clip architecture (default: the checkpoint's, else {model_defaults.arch}), or a folder written "
            "by `sketchlvm export` (local or hf://USER/REPO[/SUBDIR]): its ONNX graphs run the model, and the serving "
            "install (requirements-serve.txt, no torch) needs one" + env("model"))
    else:
        parser.add_argument("--model", metavar="ARCH", default=given.get("model"),
                            help=f"open_clip architecture (default: the checkpoint's, else {model_defaults.arch})"
                            + env("model"))
    pretrained = given.get("pretrained")
    parser.add_argument(
        "--pretrained", metavar="TAG|FILE|FOLDER|none", default=pretrained,
        help="CLIP weights: an open_clip tag (downloaded once into the Hugging Face cache), a weights file, an "
        "open_clip folder (or local-dir:FOLDER), or 'none' for random weights (testing only); if they cannot be "
        "loaded, the command stops and says how to provide them. Default: "
        + (pretrained if pretrained else f"the tag the checkpoint was trained on, else {model_defaults.pretrained}")
        + env("pretrained"))
    parser.add_argument(
        "--checkpoint", metavar="FILE", default=given.get("checkpoint"),
        help=(checkpoint_help or "trained prompts (a SketchLVM checkpoint: .safetensors, or hf://USER/REPO/FILE)")
        + "; without it every mode is zero-shot CLIP with no trained prompts" + env("checkpoint"))
    if with_device:
        parser.add_argument(
            "--device", metavar="auto|cpu|cuda", type=device if check else str,
            default=given.get("device", "auto"),
            help="where the model runs (cuda:N also accepted); auto, the default, picks CUDA when present"
            + env("device"))
    if with_runtime:
        parser.add_argument(
            "--runtime", metavar="auto|torch|onnx|onnx-int8", type=runtime if check else str,
            default=given.get("runtime"),
            help="what runs the encoder: auto (the default) = ONNX Runtime fp32 on CPU when installed, torch on "
            "CUDA; torch; onnx; onnx-int8 = int8 sketches, only if their rankings agree with fp32 on the gallery"
            + f" [{env_var('runtime')}]")  # read when the flag is not given, in every command
