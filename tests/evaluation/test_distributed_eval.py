"""Multi-process evaluation: every rank embeds its share, so no rank idles at a barrier for long.

Two gloo processes on CPU stand in for two GPUs (as the torchrun test in test_train.py does).
"""

from __future__ import annotations

import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sketchlvm.config import PreprocessConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _CountingTransform:
    """The photo transform, counting how many images this process decoded."""

    def __init__(self, transform):
        self.transform, self.calls = transform, 0

    def __call__(self, image):
        self.calls += 1
        return self.transform(image)


def _encoder():
    from sketchlvm.model.factory import build_prompted_encoder
    from sketchlvm.model.weights import load_clip

    torch.manual_seed(0)
    clip, _ = load_clip("SketchLVM-Tiny", "none")
    return build_prompted_encoder(clip.visual, "category", 3).eval()


def _worker(rank: int, world: int, port: int, paths: list[str], out: str) -> None:
    from sketchlvm.evaluation.embedding import embed_items
    from sketchlvm.preprocess.transforms import PhotoTransform

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        transform = _CountingTransform(PhotoTransform(64, PreprocessConfig()))
        features = embed_items(_encoder(), paths, "photo", transform, torch.device("cpu"), batch_size=4,
                               distributed=True)
        np.savez(f"{out}/rank{rank}.npz", features=features, calls=transform.calls)
        # Both ranks done before either tears gloo down: a rank that destroys its group while the other
        # still talks can abort ("terminate called without an active exception", seen once in CI).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_processes_each_embed_their_share_and_both_get_every_feature(sketchy_root, tmp_path):
    from sketchlvm.evaluation.embedding import embed_items
    from sketchlvm.preprocess.transforms import PhotoTransform

    paths = [str(p) for c in ("cow", "bat") for p in sorted((sketchy_root / "photo" / c).glob("*.jpg"))[:7]]
    mp.spawn(_worker, args=(2, _free_port(), paths, str(tmp_path)), nprocs=2, join=True)
    alone = embed_items(_encoder(), paths, "photo", PhotoTransform(64, PreprocessConfig()), torch.device("cpu"),
                        batch_size=4)
    results = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    assert [int(r["calls"]) for r in results] == [7, 7]  # 14 photos, half each
    for r in results:
        np.testing.assert_allclose(r["features"], alone, rtol=1e-5, atol=1e-6)  # in input order, on every rank


def test_the_process_group_timeout_fits_a_long_evaluation(monkeypatch):
    from sketchlvm.training import trainer

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(trainer.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(trainer.dist, "init_process_group", lambda backend, timeout: seen.update(timeout=timeout))
    monkeypatch.setattr(trainer.dist, "get_rank", lambda: 0)
    trainer._distributed(timeout_minutes=180)
    assert seen["timeout"].total_seconds() == 180 * 60  # NCCL's default is 10 minutes
