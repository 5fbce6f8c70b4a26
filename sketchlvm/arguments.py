"""argparse value types shared by every command line (app, index, cluster), so bad flags read the same everywhere."""

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
