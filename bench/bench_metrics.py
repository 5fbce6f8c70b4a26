"""Evaluation speed at QuickDraw scale: ``evaluate_retrieval`` vs a SAKE-style per-query loop.

QuickDraw-extended's zero-shot test set is 92,291 sketches x 54,151 photos; with 512-d CLIP
features that is 5e9 scores, each query needing a full ranking for mAP@all. This script times
``sketchlvm.metrics.evaluate_retrieval`` on synthetic L2-normalised vectors (110 classes, class
centres plus noise so that the metrics are not trivial) against the loop SAKE's evaluation code
runs (for each query: one score row, argsort it, cumulative precision, VOC interpolation; here
with NumPy's running maximum instead of SAKE's Python loop, so the baseline is if anything
faster than SAKE), measured on a sample of queries in the same run and extrapolated per query.
It checks that both give the same per-query APs on that sample, reports the peak memory against
the documented bound, and with ``--ranker`` times another ranker (e.g. ``cuda``) on the same
features; every ranker must give identical metrics.

    python bench/bench_metrics.py                                 # full scale (minutes; once)
    python bench/bench_metrics.py --queries 2000 --gallery 20000  # quick check
    python bench/bench_metrics.py --ranker cuda                   # + the GPU ranking, compared
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

from sketchlvm.metrics import evaluate_retrieval
from sketchlvm.ranking import resolve_ranker

# The memory bound documented before the ranking rewrite (chunk_size x gallery x 30 bytes of
# working memory); the evaluator must stay within it.
BOUND_BYTES_PER_SCORE = 30


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


def sake_style_per_query(q, ql, g, gl, cutoff=200, ks=(100, 200)):
    """SAKE's loop: one query at a time, argsort its score row, cumulative precision, VOC AP."""
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
    p.add_argument("--ranker", default="auto",
                   help="also time this ranker against the numpy one: auto (CUDA when present), cpu, cuda, numpy")
    args = p.parse_args(argv)

    q, ql, g, gl = synthetic(args.queries, args.gallery, args.dim, args.classes, args.seed)
    print(f"{args.queries:,} queries x {args.gallery:,} gallery x {args.dim}-d, {args.classes} classes; "
          f"features {(q.nbytes + g.nbytes) / 2**20:.0f} MiB")

    rng = np.random.default_rng(args.seed + 1)
    sample = rng.choice(args.queries, size=min(args.sample, args.queries), replace=False)
    t0, c0 = time.perf_counter(), time.process_time()
    ref = sake_style_per_query(q[sample], ql[sample], g, gl)
    t_loop = (time.perf_counter() - t0) / sample.size
    c_loop = (time.process_time() - c0) / sample.size
    print(f"SAKE-style per-query loop: {1e3 * t_loop:.2f} ms/query on {sample.size} queries "
          f"-> {t_loop * args.queries:.0f} s extrapolated (CPU time {1e3 * c_loop:.2f} ms/query)")

    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    res = evaluate_retrieval(q, ql, g, gl, chunk_size=args.chunk_size, ranker="numpy")
    t_ours = time.perf_counter() - t0
    c_ours = time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    bound = args.chunk_size * args.gallery * BOUND_BYTES_PER_SCORE + q.nbytes + g.nbytes
    print(f"evaluate_retrieval (numpy ranker): {t_ours:.1f} s ({1e3 * t_ours / args.queries:.2f} ms/query), "
          f"chunk_size {args.chunk_size}")
    print(f"speed-up over the SAKE-style loop: {t_loop * args.queries / t_ours:.1f}x wall clock (target >= 15x), "
          f"{c_loop * args.queries / c_ours:.1f}x CPU time (all threads; less sensitive to a busy machine)")
    print(f"peak traced NumPy memory during evaluation: {peak / 2**20:.0f} MiB (includes a float32 copy of "
          f"the features; bound chunk_size x gallery x {BOUND_BYTES_PER_SCORE} B + features = "
          f"{bound / 2**20:.0f} MiB); process max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    print("metrics:", {k: round(v, 4) for k, v in res.metrics.items()})
    worst = max(float(np.max(np.abs(res.per_query[k][sample] - ref[k]))) for k in ref)
    print(f"max |difference| to the per-query loop on the sample: {worst:.2e} "
          "(float32 scores from gemm vs gemv can swap near-tied photos)")

    if resolve_ranker(args.ranker).name != "numpy":
        t0 = time.perf_counter()
        other = evaluate_retrieval(q, ql, g, gl, chunk_size=args.chunk_size, ranker=args.ranker)
        t_other = time.perf_counter() - t0
        same = other.metrics == res.metrics and all(
            np.array_equal(other.per_query[k], v, equal_nan=True) for k, v in res.per_query.items()
        )
        print(f"evaluate_retrieval ({other.ranker} ranker): {t_other:.1f} s "
              f"({t_loop * args.queries / t_other:.1f}x the loop, {t_ours / t_other:.1f}x the numpy ranker); "
              f"identical to the numpy ranker: {same}")
        if not same:
            raise SystemExit("rankers disagree: this is a bug")

if __name__ == "__main__":
    main()
