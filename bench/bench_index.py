"""Gallery indexing benchmarks (a script, not a test). Every figure is printed next to a baseline
measured in the same run, as a ratio, so runs on different machines stay comparable.

(a) Indexing throughput: ``build_gallery_index`` (decode in threads, batched encoding, manifest and
    atomic writes), one row per runtime (--runtimes: torch, onnx = ONNX Runtime fp32; photos are
    never int8), against bare batched open_clip ``encode_image`` on the same, already decoded images,
    with the same weights, at --batch-size (the baseline) and at the slices the library encodes in on
    the CPU (``RuntimeConfig.index_run_batch``; the ratio to the faster of the two shows what is left
    once bare torch gets the same slices); also against decoding + bare ``encode_image`` one after the
    other.
(b) faiss on synthetic 512-d unit vectors: exact ``IndexFlatIP`` against the approximate index the
    library would choose above ``IndexConfig.exact_max`` (HNSW, efSearch tuned to recall@10 >= 0.99
    on stored vectors): build time, p50 single-query latency, bytes, recall@10 on held-out queries.

    python bench/bench_index.py                                   # tiny model, 200 photos, 10k + 100k
    python bench/bench_index.py --arch ViT-B-32-quickgelu --pretrained none --photos 128
    python bench/bench_index.py --arch ViT-B-32-quickgelu --photos 128 --runtimes torch,onnx --skip-faiss
    python bench/bench_index.py --sizes 10k,100k,1M               # 1M: minutes and ~8 GB of memory
    python bench/bench_index.py --skip-faiss   |   --skip-indexing
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.photos import pick_photos  # noqa: E402
from sketchlvm import create_sketchlvm  # noqa: E402
from sketchlvm.config import TINY_ARCH, IndexConfig  # noqa: E402
from sketchlvm.gallery import build_gallery_index, build_search_index  # noqa: E402
from sketchlvm.model.weights import load_clip  # noqa: E402
from sketchlvm.preprocess.transforms import load_photo  # noqa: E402

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sketchy" / "photo"


def _size(text: str) -> int:
    text = text.strip().lower()
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if factor > 1 else text) * factor)


def _best_of(repeats: int, *fns) -> list[float]:
    """Best time of each function, run round-robin so that drifting machine load hits them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def bench_indexing(args: argparse.Namespace) -> None:
    photos = pick_photos(args.photo_root, args.photos)
    if not photos:
        raise SystemExit(f"no photos under {args.photo_root} (--photo-root)")
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    models = {r: create_sketchlvm(args.arch, args.pretrained, device=args.device, runtime=r) for r in runtimes}
    model = models[runtimes[0]]
    clip, _ = load_clip(model.arch, args.pretrained, model.device)
    device, bs = model.device, args.batch_size
    print(f"\n(a) indexing {len(photos)} photos: {model.arch}, {model.weights.label}, device {device}, "
          f"batch {bs}, {args.workers} decode threads, torch threads {torch.get_num_threads()}")
    for r, m in models.items():
        print(f"  runtime {r}: {m.describe()['runtime']}")

    # The baseline gets decoded images for free; it pays only preprocessing + the forward pass.
    images = [load_photo(p, draft_size=model.image_size) for p in photos]
    tensors = torch.stack([model.photo_transform(im) for im in images])

    def encode_only(size: int):
        @torch.no_grad()
        def run():
            for i in range(0, len(tensors), size):
                clip.encode_image(tensors[i : i + size].to(device)).cpu()
        return run

    small = model.runtime.config.index_run_batch or bs  # the slices the library encodes in on the CPU

    @torch.no_grad()
    def decode_and_encode():  # what a plain script would do: decode a batch, then encode it
        for i in range(0, len(photos), bs):
            batch = torch.stack([model.photo_transform(load_photo(p, draft_size=model.image_size))
                                 for p in photos[i : i + bs]])
            clip.encode_image(batch.to(device)).cpu()

    @torch.no_grad()
    def preprocess_and_encode():
        for i in range(0, len(images), bs):
            batch = torch.stack([model.photo_transform(im) for im in images[i : i + bs]])
            clip.encode_image(batch.to(device)).cpu()

    with tempfile.TemporaryDirectory() as tmp:
        gallery = Path(tmp) / "gallery"
        for p in photos:
            (gallery / p.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, gallery / p.parent.name / p.name)
        config = IndexConfig(batch_size=bs, decode_workers=args.workers)

        built = []

        def build(m):
            def run():
                shutil.rmtree(Path(tmp) / "cache", ignore_errors=True)
                built.append(build_gallery_index(gallery, m, Path(tmp) / "cache", config, show_progress_bar=False))
            return run

        def rebuild():
            build_gallery_index(gallery, model, Path(tmp) / "cache", config, show_progress_bar=False)

        encode_only(bs)()  # warm-up
        for m in models.values():
            build(m)()  # warm-up (and the runtime's one-time photo check)
        builds = [build(m) for m in models.values()]
        t_encode, t_small, t_pre, t_decode, *t_builds = _best_of(
            args.repeats, encode_only(bs), encode_only(small), preprocess_and_encode, decode_and_encode, *builds)
        build(model)()
        (t_noop,) = _best_of(args.repeats, rebuild)
        n_embeddings = len(built[-1].manifest["embeddings"])

    n = len(photos)
    print(f"  bare encode_image on ready tensors      {n / t_encode:9.1f} photos/s   (baseline)")
    label = f"bare encode_image, batch {small}"
    print(f"  {label:<39} {n / t_small:9.1f} photos/s   {t_encode / t_small:5.2f}x baseline")
    print(f"  preprocess + encode_image               {n / t_pre:9.1f} photos/s   {t_encode / t_pre:5.2f}x baseline")
    print(f"  decode + encode_image, one then other   {n / t_decode:9.1f} photos/s   {t_encode / t_decode:5.2f}x baseline")
    for (r, m), t_build in zip(models.items(), t_builds):
        label = f"build_gallery_index, {m.runtime.name}"
        print(f"  {label:<39} {n / t_build:9.1f} photos/s   {t_encode / t_build:5.2f}x baseline, "
              f"{min(t_encode, t_small) / t_build:5.2f}x the faster bare batch, "
              f"{t_decode / t_build:5.2f}x decode+encode   ({n_embeddings} embedding(s) for {len(m.modes)} modes)")
    print(f"  rebuild, nothing changed                {t_noop * 1000:9.1f} ms        "
          f"{t_noop / t_builds[0]:5.3f}x a full build")


def _synthetic(n: int, d: int, rng: np.random.Generator, kind: str, centers: np.ndarray | None) -> np.ndarray:
    """Unit vectors; 'clustered' mimics embeddings (many tight groups), 'uniform' is the hard case."""
    out = np.empty((n, d), np.float32)
    for lo in range(0, n, 100_000):
        m = min(100_000, n - lo)
        x = rng.standard_normal((m, d), dtype=np.float32)
        if kind == "clustered":
            x = centers[rng.integers(len(centers), size=m)] + x * np.float32(0.6 / np.sqrt(d))
        out[lo : lo + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _p50_ms(index: faiss.Index, queries: np.ndarray, k: int) -> float:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None], k)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def _bytes(index: faiss.Index, tmp: Path) -> int:
    path = tmp / "index.faiss"
    faiss.write_index(index, str(path))
    size = path.stat().st_size
    path.unlink()
    return size


def bench_faiss(args: argparse.Namespace) -> None:
    d, k = args.dim, 10
    rng = np.random.default_rng(0)
    config = IndexConfig(exact_max=0)  # force the approximate path to see what it would be
    print(f"\n(b) faiss, {d}-d {args.data} unit vectors, recall@10 on {args.queries} held-out queries, "
          f"latency: one query at a time on {args.threads} thread(s), build on {faiss.omp_get_max_threads()}")
    print(f"  {'size':>9} {'index':<13} {'build s':>9} {'p50 ms':>9} {'bytes/vec':>10} {'recall@10':>10}"
          "   ratios approx/exact")
    build_threads = faiss.omp_get_max_threads()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            centers = rng.standard_normal((max(10, n // 200), d), dtype=np.float32)
            centers /= np.linalg.norm(centers, axis=1, keepdims=True)
            xb = _synthetic(n, d, rng, args.data, centers)
            xq = _synthetic(args.queries, d, rng, args.data, centers)
            t0 = time.perf_counter()
            exact, _ = build_search_index(xb, IndexConfig(exact_max=n))
            t_exact = time.perf_counter() - t0
            t0 = time.perf_counter()
            approx, info = build_search_index(xb, config)
            t_approx = time.perf_counter() - t0
            _, truth = exact.search(xq, k)
            _, found = approx.search(xq, k)
            recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(truth.tolist(), found.tolist())])
            faiss.omp_set_num_threads(args.threads)
            lat_exact, lat_approx = _p50_ms(exact, xq, k), _p50_ms(approx, xq, k)
            faiss.omp_set_num_threads(build_threads)
            b_exact, b_approx = _bytes(exact, Path(tmp)), _bytes(approx, Path(tmp))
            ef = info["params"].get("efSearch", "-")
            print(f"  {n:>9,} {'IndexFlatIP':<13} {t_exact:9.2f} {lat_exact:9.3f} {b_exact / n:10.0f} {1.0:10.4f}")
            print(f"  {n:>9,} {info['kind'] + f' ef{ef}':<13} {t_approx:9.2f} {lat_approx:9.3f} {b_approx / n:10.0f} "
                  f"{recall:10.4f}   build {t_approx / t_exact:7.1f}x, p50 {lat_approx / lat_exact:6.3f}x "
                  f"({lat_exact / lat_approx:5.1f}x faster), memory {b_approx / b_exact:4.2f}x; "
                  f"recall on stored vectors {info['recall_at_10']:.4f}")
            del exact, approx, xb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default=TINY_ARCH, help=f"open_clip architecture (default {TINY_ARCH})")
    parser.add_argument("--pretrained", default="none", help="weights (default: none = seeded random weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--photo-root", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=IndexConfig().batch_size)
    parser.add_argument("--workers", type=int, default=IndexConfig().decode_workers)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timed runs")
    parser.add_argument("--runtimes", default="torch,onnx", help="build rows, comma-separated (default: torch,onnx)")
    parser.add_argument("--sizes", type=lambda s: [_size(x) for x in s.split(",")], default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="faiss threads for the latency measurement")
    parser.add_argument("--data", choices=("clustered", "uniform"), default="clustered")
    parser.add_argument("--skip-indexing", action="store_true")
    parser.add_argument("--skip-faiss", action="store_true")
    args = parser.parse_args()
    if not args.skip_indexing:
        bench_indexing(args)
    if not args.skip_faiss:
        bench_faiss(args)


if __name__ == "__main__":
    main()
