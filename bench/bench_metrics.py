"""Evaluation speed at QuickDraw scale: chunked ``retrieval_metrics`` vs a per-query NumPy loop.

QuickDraw-extended's zero-shot test set is 92,291 sketches x 54,151 photos; with 512-d CLIP
features that is 5e9 scores, each query needing a full ranking for mAP@all. This script times
``sketchlvm.metrics.retrieval_metrics`` on synthetic L2-normalised vectors (110 classes, class
centres plus noise so that the metrics are not trivial) and the straightforward implementation
(for each query: scores = gallery @ q, a full stable argsort, the VOC-interpolated AP loop)
measured on a sample of queries in the same run and extrapolated per query. It also checks that
both give the same per-query APs on that sample.

    python bench/bench_metrics.py                                 # full scale (minutes; once)
    python bench/bench_metrics.py --queries 2000 --gallery 20000  # quick check
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketchlvm.metrics import evaluate_retrieval  # noqa: E402


def synthetic(n_q: int, n_g: int, dim: int, n_classes: int, seed: int):
    """Unit float32 features around random class centres: (n_q, dim), (n_q,), (n_g, dim), (n_g,)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(n):
        labels = rng.integers(0, n_classes, size=n)
        x = centres[labels] + rng.standard_normal((n, dim), dtype=np.float32) * np.float32(4.0 / np.sqrt(dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x, labels

    q, ql = draw(n_q)
    g, gl = draw(n_g)
    return q, ql, g, gl


def naive_per_query(q, ql, g, gl, cutoff=200, ks=(100, 200)):
    """The straightforward loop: one query at a time, full argsort, SAKE-style VOC AP."""
    out = {"AP@all": [], f"AP@{cutoff}": [], **{f"P@{k}": [] for k in ks}}
    for qi, lab in zip(q, ql):
        scores = g @ qi
        order = np.argsort(-scores, kind="stable")
        rel = gl[order] == lab
        n_rel = rel.sum()
        tp = np.cumsum(rel)
        prec = tp / np.arange(1, rel.size + 1)
        interp = np.maximum.accumulate(prec[::-1])[::-1]
        out["AP@all"].append(interp[rel].sum() / n_rel)
        top_rel, top_prec = rel[:cutoff], prec[:cutoff]
        top_interp = np.maximum.accumulate(top_prec[::-1])[::-1]
        out[f"AP@{cutoff}"].append(top_interp[top_rel].sum() / min(cutoff, n_rel))
        for k in ks:
            out[f"P@{k}"].append(tp[k - 1] / k)
    return {key: np.array(v) for key, v in out.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=92_291)
    p.add_argument("--gallery", type=int, default=54_151)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=110)
    p.add_argument("--sample", type=int, default=200, help="queries timed with the per-query loop")
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    q, ql, g, gl = synthetic(args.queries, args.gallery, args.dim, args.classes, args.seed)
    print(f"{args.queries:,} queries x {args.gallery:,} gallery x {args.dim}-d, {args.classes} classes; "
          f"features {(q.nbytes + g.nbytes) / 2**20:.0f} MiB")

    rng = np.random.default_rng(args.seed + 1)
    sample = rng.choice(args.queries, size=min(args.sample, args.queries), replace=False)
    t0 = time.perf_counter()
    ref = naive_per_query(q[sample], ql[sample], g, gl)
    t_naive = (time.perf_counter() - t0) / sample.size
    print(f"per-query loop: {1e3 * t_naive:.2f} ms/query on {sample.size} queries "
          f"-> {t_naive * args.queries:.0f} s extrapolated")

    tracemalloc.start()
    t0 = time.perf_counter()
    res = evaluate_retrieval(q, ql, g, gl, chunk_size=args.chunk_size)
    t_ours = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"evaluate_retrieval: {t_ours:.1f} s ({1e3 * t_ours / args.queries:.2f} ms/query), "
          f"chunk_size {args.chunk_size}")
    print(f"speed-up: {t_naive * args.queries / t_ours:.1f}x")
    print(f"peak traced NumPy memory during evaluation: {peak / 2**20:.0f} MiB "
          f"(includes a float32 copy of the features); process max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    print("metrics:", {k: round(v, 4) for k, v in res.metrics.items()})
    worst = max(float(np.max(np.abs(res.per_query[k][sample] - ref[k]))) for k in ref)
    print(f"max |difference| to the per-query loop on the sample: {worst:.2e} "
          "(float32 scores from gemm vs gemv can swap near-tied photos)")


if __name__ == "__main__":
    main()
