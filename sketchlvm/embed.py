"""Turn a list of images (paths or stroke drawings) into a feature matrix with one encoder.

Shared by evaluation and by the trainer's per-epoch evaluation, so both rank exactly the same
features. Decoding runs in DataLoader workers; encoding is batched under no_grad, in fp32 unless
``precision="amp"`` (fp16 autocast on CUDA) is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .data import ImageListDataset
from .device import autocast
from .encoder import PromptedVisionEncoder


@torch.no_grad()
def embed_items(
    encoder: PromptedVisionEncoder,
    items: Sequence[Any],
    modality: str,
    transform: Callable[[Any], torch.Tensor],
    device: torch.device,
    batch_size: int = 64,
    num_workers: int = 0,
    loader: Callable[[Any], Any] | None = None,
    desc: str | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """items (N,) -> (N, D) float32 unit vectors, in input order."""
    dataset = ImageListDataset(items, transform=transform, loader=loader)
    batches = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = encoder.training
    encoder.eval()
    chunks = []
    try:
        for images, _ in tqdm(batches, desc=desc or f"embedding {modality}s", unit="batch", leave=False):
            with autocast(device, precision):
                chunks.append(encoder(images.to(device, non_blocking=True), modality).float().cpu().numpy())
    finally:
        encoder.train(was_training)
    if not chunks:
        return np.zeros((0, encoder.visual.output_dim), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
