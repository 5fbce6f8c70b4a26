"""Training throughput (images/s): SketchLVM's step against open_clip's own forward+backward.

Both run on the same batch and backbone in this process. The baseline is the cheapest comparable
thing: ``clip.encode_image`` on the 3B images of a triplet batch with the same parameters trainable
and a trivial loss. Ours adds the prompt tokens, the triplet + text-classification loss (and, in
fine-grained mode, the patch-shuffle triplets, which embed 3B more images). Prints the ratio.

    python bench/bench_train.py                       # tiny tower, CPU
    python bench/bench_train.py --arch ViT-B-32-quickgelu --batch 32 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sketchlvm.config import LossConfig
from sketchlvm.device import autocast, resolve_device
from sketchlvm.model.encoder import freeze_except
from sketchlvm.model.factory import build_prompted_encoder
from sketchlvm.model.weights import load_clip
from sketchlvm.training.losses import TextClassifier, category_loss, fine_grained_loss, patch_shuffle_triplets


def _timed(steps: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per step; the steps are interleaved so background load hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for name, step in steps.items():
        step()  # warm-up
    for _ in range(repeats):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="SketchLVM-Tiny")
    p.add_argument("--batch", type=int, default=32, help="triplets per batch (3x images)")
    p.add_argument("--mode", choices=("category", "fine_grained"), default="category")
    p.add_argument("--rule", choices=("paper", "full-attention"), default="paper")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = resolve_device(args.device)

    clip, _ = load_clip(args.arch, "none", device)  # random weights: throughput does not depend on them
    size = clip.visual.image_size[0] if isinstance(clip.visual.image_size, tuple) else clip.visual.image_size
    encoder = build_prompted_encoder(clip.visual, args.mode, 3).to(device)
    trainable = freeze_except(encoder, args.rule)
    optimizer = torch.optim.Adam(trainable, lr=1e-5)
    n_classes = 8
    text = torch.nn.functional.normalize(torch.randn(n_classes, clip.visual.output_dim, device=device), dim=-1)
    classifier = TextClassifier(text).to(device)
    g = torch.Generator().manual_seed(0)
    sketch, positive, negative = (torch.randn(args.batch, 3, size, size, generator=g).to(device) for _ in range(3))
    # fine-grained batches are P x K: 8 classes of equal size
    labels = (torch.arange(args.batch) * n_classes // args.batch).to(device)
    config = LossConfig()

    def ours():
        with autocast(device):
            s = encoder(sketch, "sketch")
            pos, neg = encoder(torch.cat([positive, negative]), "photo").chunk(2)
            if args.mode == "category":
                loss, _ = category_loss(s, pos, neg, labels, classifier, config, negative_labels=labels.roll(1))
            else:
                def patches():
                    ps, pp, pn = patch_shuffle_triplets(sketch, positive, config.patch_grid)
                    return (encoder(ps, "sketch"), *encoder(torch.cat([pp, pn]), "photo").chunk(2))

                loss, _ = fine_grained_loss(s, pos, neg, labels, classifier, config, patch=patches)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    baseline_encoder = clip  # same tower, same trainable set (prompts excluded)
    baseline_optimizer = torch.optim.Adam([p for p in clip.visual.parameters() if p.requires_grad], lr=1e-5)
    batch = torch.cat([sketch, positive, negative])

    def baseline():
        with autocast(device):
            loss = baseline_encoder.encode_image(batch).float().pow(2).mean()
        baseline_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        baseline_optimizer.step()

    timings = _timed({"baseline": baseline, "ours": ours}, args.repeats, device)
    t_base, t_ours = timings["baseline"], timings["ours"]
    images = 3 * args.batch
    print(f"device {device}, {args.arch}, batch {args.batch} triplets ({images} images), mode {args.mode}, rule {args.rule}")
    print(f"open_clip encode_image fwd+bwd: {images / t_base:8.1f} images/s ({t_base * 1000:.0f} ms/step)")
    print(f"SketchLVM training step:        {images / t_ours:8.1f} images/s ({t_ours * 1000:.0f} ms/step)")
    print(f"throughput ratio (ours / open_clip): {t_base / t_ours:.2f}")


if __name__ == "__main__":
    main()
