"""The app's query and indexing paths on CUDA through the ZeroGPU gate, with ``spaces`` installed: one prepared
script for a machine with a GPU (not run where this was written: no GPU was lent).

Off ZeroGPU ``@spaces.GPU`` hands the functions back, so this runs exactly the code a ZeroGPU worker runs
(``sketchlvm.runtime.zerogpu.encode_images`` / ``encode_tokens`` on the GPU copy of the model) minus the
scheduler, next to the CPU path that answers whatever ZeroGPU refuses. It checks and prints:

    agreement      GPU (torch fp32, TF32 off) vs CPU (ONNX Runtime fp32) vectors: min cosine, max abs diff,
                   for sketches, photos and words (the index identity allows cosine >= 0.99999, diff <= 1e-4)
    sketch query   p50 / p95 ms of one sketch encode, GPU vs CPU (ratio GPU / CPU)
    index chunk    photos/s for chunks of 32 real photos, GPU vs CPU (ratio)
    index build    a small gallery indexed end to end with the gate attached (count, seconds)

    python bench/zerogpu_cuda_check.py                     # ViT-B/32, random weights (no download)
    python bench/zerogpu_cuda_check.py --photos 256
    python bench/zerogpu_cuda_check.py --model SketchLVM-Tiny --device cpu --calls 3   # dry run, no GPU

Real photos come from ../shared/data/sketchy/photo (SKETCHLVM_SHARED_DATA).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np


def _ms(call, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(n - 1, round(0.95 * (n - 1)))]


def _agreement(a: np.ndarray, b: np.ndarray) -> str:
    cosine = float(np.min(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))
    return f"min cosine {cosine:.7f}, max abs diff {float(np.max(np.abs(a - b))):.2e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32-quickgelu")
    parser.add_argument("--photos", type=int, default=128)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of this script where there is no GPU")
    args = parser.parse_args(argv)

    import torch
    from PIL import Image

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: this script checks the GPU path", file=sys.stderr)
        return 2
    from sketchlvm.config import IndexConfig
    from sketchlvm.gallery import build_gallery_index
    from sketchlvm.model.factory import create_sketchlvm
    from sketchlvm.runtime import zerogpu
    from sketchlvm.runtime.engine import example_sketches

    shared = Path(os.environ.get("SKETCHLVM_SHARED_DATA", ROOT.parent / "shared" / "data"))
    paths = sorted((shared / "sketchy" / "photo").glob("*/*.jpg"))[: args.photos]
    if len(paths) < 32:
        print(f"needs at least 32 photos under {shared / 'sketchy' / 'photo'}", file=sys.stderr)
        return 2
    model = create_sketchlvm(args.model, "none", device="cpu", runtime="onnx", text=True)  # as on ZeroGPU
    sketches = example_sketches()
    photos = [Image.open(p).convert("RGB") for p in paths]
    chunks = [photos[i:i + 32] for i in range(0, len(photos) - 31, 32)]

    cpu_sketch = model.encode_sketches(sketches, "category")
    cpu_photo = np.concatenate([model.encode_photos(c, "category") for c in chunks])
    cpu_words = model.encode_text("a red cup")
    cpu_query = _ms(lambda: model.encode_sketches(sketches[:1], "category"), args.calls)
    started = time.perf_counter()
    for chunk in chunks:
        model.encode_photos(chunk, "category")
    cpu_rate = len(chunks) * 32 / (time.perf_counter() - started)

    gate = zerogpu.attach(model, policy="all", device=args.device)
    model.text_tower.use_runtime(model.runtime)  # forget cached words: encode them through the gate
    gpu_sketch = model.encode_sketches(sketches, "category")
    gpu_photo = np.concatenate([model.encode_photos(c, "category") for c in chunks])
    gpu_words = model.encode_text("a red cup")
    gpu_query = _ms(lambda: model.encode_sketches(sketches[:1], "category"), args.calls)
    if args.device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for chunk in chunks:
        model.encode_photos(chunk, "category")
    gpu_rate = len(chunks) * 32 / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as tmp:
        gallery = Path(tmp) / "gallery"
        for p in paths:
            (gallery / p.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, gallery / p.parent.name / p.name)
        started = time.perf_counter()
        index = build_gallery_index(gallery, model, Path(tmp) / "index", IndexConfig(), show_progress_bar=False)
        build_s = time.perf_counter() - started

    where = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (dry run)"
    print(f"{args.model} (random weights), {where}, torch {torch.__version__}")
    print(f"gate: {gate.describe()}; GPU calls {gate.gpu_calls}, CPU fallbacks {gate.cpu_fallbacks}")
    print(f"agreement sketches  {_agreement(gpu_sketch, cpu_sketch)}")
    print(f"agreement photos    {_agreement(gpu_photo, cpu_photo)}")
    print(f"agreement words     {_agreement(gpu_words[None], cpu_words[None])}")
    print(f"sketch query  GPU p50 {gpu_query[0]:.1f} ms p95 {gpu_query[1]:.1f} · CPU p50 {cpu_query[0]:.1f} ms "
          f"p95 {cpu_query[1]:.1f} · ratio {gpu_query[0] / cpu_query[0]:.3f}")
    print(f"index chunks  GPU {gpu_rate:.1f} photos/s · CPU {cpu_rate:.1f} photos/s · ratio {gpu_rate / cpu_rate:.1f}")
    print(f"index build   {len(index)} photos in {build_s:.1f} s with the gate attached")
    return 0


if __name__ == "__main__":
    sys.exit(main())
