"""Device choice in one place: CUDA when present, CPU otherwise, always overridable."""

from __future__ import annotations

import contextlib

import torch

from sketchlvm.config import PRECISIONS  # the one list of choices, beside the other settings'


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a torch.device, refusing unusable choices."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)  # raises RuntimeError on nonsense such as "gpu0"
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
    return device



def autocast(device: torch.device, precision: str = "amp"):
    """``amp``: mixed precision on CUDA (fp16 autocast); ``fp32``: none, as in the paper. Always a
    no-op context on CPU, where autocast would only slow down. Training and evaluation pass their
    configured precision (fp32 by default); the interactive encode path keeps amp on CUDA."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose {' or '.join(PRECISIONS)}")
    if device.type == "cuda" and precision == "amp":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()
