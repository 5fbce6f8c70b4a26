"""The evaluation benchmark's baselines compute the same metrics as the evaluator.

bench_metrics reports speed-ups over two per-query loops; a ratio against a loop that computed
something else (or something wrong) would mean nothing, so both are checked here against
``evaluate_retrieval`` on synthetic class-clustered features.
"""

import numpy as np
import pytest

from bench.bench_metrics import sake_loop, synthetic, vectorised_loop
from sketchlvm.evaluation.metrics import evaluate_retrieval


@pytest.mark.parametrize("loop", [sake_loop, vectorised_loop])
def test_loops_match_the_evaluator(loop):
    q, ql, g, gl = synthetic(40, 900, 16, 6, seed=3)
    ours = evaluate_retrieval(q, ql, g, gl, ranker="numpy", normalize=False)
    ref = loop(q, ql, g, gl)
    for key, values in ref.items():
        np.testing.assert_allclose(ours.per_query[key], values, atol=1e-6, err_msg=key)


def test_sake_voc_interpolation_on_a_hand_ranked_list():
    # relevant at ranks 1 and 3 of 4: AP = (1/1 + 2/3) / 2
    from bench.bench_metrics import _voc_ap

    tp = np.array([1, 1, 2, 2])
    fp = np.array([0, 1, 1, 2])
    assert _voc_ap(tp / 2, tp / (tp + fp)) == pytest.approx((1 + 2 / 3) / 2)
