"""Turn a list of images (paths or stroke drawings) into a feature matrix with one encoder.

Shared by evaluation and by the trainer's per-epoch evaluation, so both rank exactly the same
features. Under torch.distributed (``distributed=True``) every rank embeds every N-th item and the
shares are gathered, so no rank waits idle (and risks the collective timeout) while another embeds. Decoding runs in DataLoader workers; encoding is batched under no_grad, in fp32 unless
``precision="amp"`` (fp16 autocast on CUDA) is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sketchlvm.datasets import ImageListDataset
from sketchlvm.device import autocast
from sketchlvm.model.encoder import PromptedVisionEncoder


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
    distributed: bool = False,
) -> np.ndarray:
    """items (N,) -> (N, D) float32 unit vectors, in input order (on every rank when ``distributed``)."""
    if distributed and dist.is_initialized() and dist.get_world_size() > 1:
        rank, world = dist.get_rank(), dist.get_world_size()
        mine = embed_items(encoder, list(items)[rank::world], modality, transform, device, batch_size, num_workers,
                           loader, desc, precision)
        shares: list[np.ndarray | None] = [None] * world
        dist.all_gather_object(shares, mine)
        out = np.empty((len(items), mine.shape[1]), dtype=np.float32)
        for r, share in enumerate(shares):
            out[r::world] = share
        return out
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
