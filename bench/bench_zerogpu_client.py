"""What a ZeroGPU call costs before any GPU work, against the CPU encode it would replace.

Per-stroke queries stay on the CPU on ZeroGPU by default (docs/spaces.md). This measures the part of a GPU
call that can be measured without ZeroGPU: the ``spaces`` package's own client path (scheduler request,
hand-over to the forked worker with the query image pickled, result back, release request) against a
scheduler stand-in on 127.0.0.1 (no network, no queue, no GPU: a lower bound), with the function itself
doing nothing but return a (1, D) array. The baseline, in the same run: one sketch through the CPU path
the app uses (ONNX Runtime fp32, the same image). Rows, median and p95 in ms and the ratio to the baseline:

    cpu encode      SketchLVM.encode_sketches, ONNX Runtime fp32 (the baseline)
    spaces cold     the first decorated call: the worker process is forked
    spaces warm     later calls: the worker is reused (the scheduler says it is idle)

    python bench/bench_zerogpu_client.py                          # ViT-B/32, random weights, ~1 min
    python bench/bench_zerogpu_client.py --model SketchLVM-Tiny   # seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np


def _returns_a_vector(batch):
    """The decorated function: no GPU work, a (1, 512) float32 result as the encoder's would be."""
    return np.zeros((batch.shape[0], 512), dtype=np.float32)


def _times(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32-quickgelu")
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args(argv)

    import spaces
    from spaces.config import Config
    from spaces.zero import torch as zero_torch
    from zerogpu_standin import StandInScheduler

    from sketchlvm.model.factory import create_sketchlvm
    from sketchlvm.runtime.engine import example_sketches

    model = create_sketchlvm(args.model, "none", device="cpu", runtime="onnx")
    sketch = example_sketches()[0]
    batch = model.sketch_transform(sketch)[None]  # what a GPU call would carry: (1, 3, S, S) float32
    model.encode_sketches([sketch], "category")  # exports and checks the graph, warms the session
    cpu = _times(lambda: model.encode_sketches([sketch], "category"), args.calls)

    scheduler = StandInScheduler()
    Config.zero_gpu, Config.zero_device_api_url = True, scheduler.url
    for step in ("init", "move", "unpatch"):  # the worker's CUDA attach needs a GPU
        setattr(zero_torch, step, lambda *a, **k: None)
    call = spaces.GPU(_returns_a_vector, duration=5)
    cold = _times(lambda: call(batch), 1)
    warm = _times(lambda: call(batch), args.calls)

    base = statistics.median(cpu)
    print(f"model {args.model} (random weights), {args.calls} calls, runtime {model.runtime.name}")
    for name, values in (("cpu encode", cpu), ("spaces cold", cold), ("spaces warm", warm)):
        values = sorted(values)
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        print(f"{name:<14} p50 {statistics.median(values):8.1f} ms  p95 {p95:8.1f} ms  "
              f"ratio {statistics.median(values) / base:6.2f}")
    print(f"scheduler requests: {sum(1 for path, _ in scheduler.calls if path == '/schedule')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
