"""Evaluation speed at QuickDraw scale: ``evaluate_retrieval`` vs a SAKE-style per-query loop.

QuickDraw-extended's zero-shot test set is 92,291 sketches x 54,151 photos; with 512-d CLIP
features that is 5e9 scores, each query needing a full ranking for mAP@all. This script times
``sketchlvm.evaluation.metrics.evaluate_retrieval`` on synthetic L2-normalised vectors (110 classes, class
centres plus noise so that the metrics are not trivial) against two per-query loops, measured on a
sample of queries in the same run and extrapolated per query:

* the baseline the target is set against: the loop SAKE's evaluation code (Liu et al., ICCV 2019;
  copied by most ZS-SBIR repositories) runs, written here the same way: the score matrix computed
  up front (SAKE's ``cdist``; here the same blocked matrix product the evaluator uses, so scoring
  costs both sides the same), then for each query ``argsort`` of its row, cumulative true and false
  positives, and ``VOCap``'s interpolation as SAKE writes it, a Python loop from the right over the
  ranked list and a list comprehension for the recall steps. One argsort per query serves every
  metric (SAKE sorts again for each precision), so this is if anything faster than SAKE;
* a stricter reference: the same loop with one ``g @ q`` per query and NumPy's running maximum for
  the interpolation instead of the Python loop.

It checks that the evaluator and both loops give the same per-query APs on that sample, reports
the peak memory against the documented bound, and with ``--ranker`` times another ranker (e.g.
``cuda``) on the same features; every ranker must give identical metrics.

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

from sketchlvm.evaluation.metrics import evaluate_retrieval
from sketchlvm.evaluation.ranking import resolve_ranker

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


def _voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """SAKE's ``VOCap``: pad, running maximum from the right in a Python loop, sum over recall steps."""
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(mpre.size - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    steps = [a != b for a, b in zip(mrec[1:], mrec[:-1])]
    return float(np.sum((mrec[1:][steps] - mrec[:-1][steps]) * mpre[1:][steps]))


def sake_loop(q, ql, g, gl, cutoff=200, ks=(100, 200), block=256):
    """SAKE's evaluation loop: scores up front, then per query argsort, cumsum, ``VOCap``."""
    out = {"AP@all": [], f"AP@{cutoff}": [], **{f"P@{k}": [] for k in ks}}
    for start in range(0, q.shape[0], block):
        for row, lab in zip(q[start : start + block] @ g.T, ql[start : start + block]):
            positive = gl == lab
            n_pos = int(positive.sum())
            ranked = positive[np.argsort(-row)]
            tp = np.cumsum(ranked)
            fp = np.cumsum(~ranked)
            out["AP@all"].append(_voc_ap(tp / n_pos, tp / (tp + fp)))
            top_tp, top_fp = tp[:cutoff], fp[:cutoff]
            out[f"AP@{cutoff}"].append(_voc_ap(top_tp / min(cutoff, n_pos), top_tp / (top_tp + top_fp)))
            for k in ks:
                out[f"P@{k}"].append(tp[k - 1] / k)
    return {key: np.array(v) for key, v in out.items()}


def vectorised_loop(q, ql, g, gl, cutoff=200, ks=(100, 200)):
    """The stricter reference: one ``g @ q`` per query, NumPy's running maximum for VOC."""
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


def _time_loop(loop, name, q, ql, g, gl, n_queries):
    t0, c0 = time.perf_counter(), time.process_time()
    ref = loop(q, ql, g, gl)
    wall = (time.perf_counter() - t0) / q.shape[0]
    cpu = (time.process_time() - c0) / q.shape[0]
    print(f"{name}: {1e3 * wall:.2f} ms/query on {q.shape[0]} queries -> {wall * n_queries:.0f} s "
          f"extrapolated (CPU time {1e3 * cpu:.2f} ms/query)")
    return ref, wall, cpu


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
    qs, qls = q[sample], ql[sample]
    ref, t_loop, c_loop = _time_loop(sake_loop, "SAKE's loop (baseline)", qs, qls, g, gl, args.queries)
    ref_vec, t_vec, c_vec = _time_loop(vectorised_loop, "vectorised-VOC loop (stricter)", qs, qls, g, gl, args.queries)

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
    print(f"speed-up over SAKE's loop: {t_loop * args.queries / t_ours:.1f}x wall clock (target >= 15x), "
          f"{c_loop * args.queries / c_ours:.1f}x CPU time (all threads; less sensitive to a busy machine)")
    print(f"speed-up over the vectorised-VOC loop: {t_vec * args.queries / t_ours:.1f}x wall clock, "
          f"{c_vec * args.queries / c_ours:.1f}x CPU time")
    print(f"peak traced NumPy memory during evaluation: {peak / 2**20:.0f} MiB (includes a float32 copy of "
          f"the features; bound chunk_size x gallery x {BOUND_BYTES_PER_SCORE} B + features = "
          f"{bound / 2**20:.0f} MiB); process max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    print("metrics:", {k: round(v, 4) for k, v in res.metrics.items()})
    for name, loop_ref in (("SAKE's loop", ref), ("the vectorised-VOC loop", ref_vec)):
        worst = max(float(np.max(np.abs(res.per_query[k][sample] - loop_ref[k]))) for k in loop_ref)
        print(f"max |difference| to {name} on the sample: {worst:.2e} "
              "(float32 scores from different products can swap near-tied photos)")
        if worst > 1e-3:
            raise SystemExit(f"the evaluator disagrees with {name}: this is a bug")

    if resolve_ranker(args.ranker).name != "numpy":
        t0 = time.perf_counter()
        other = evaluate_retrieval(q, ql, g, gl, chunk_size=args.chunk_size, ranker=args.ranker)
        t_other = time.perf_counter() - t0
        same = other.metrics == res.metrics and all(
            np.array_equal(other.per_query[k], v, equal_nan=True) for k, v in res.per_query.items()
        )
        print(f"evaluate_retrieval ({other.ranker} ranker): {t_other:.1f} s "
              f"({t_loop * args.queries / t_other:.1f}x SAKE's loop, {t_ours / t_other:.1f}x the numpy ranker); "
              f"identical to the numpy ranker: {same}")
        if not same:
            raise SystemExit("rankers disagree: this is a bug")

if __name__ == "__main__":
    main()
