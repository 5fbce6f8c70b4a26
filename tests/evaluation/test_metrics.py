"""sketchlvm.evaluation.metrics against hand-computed cases and independent per-query computations."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from sketchlvm.evaluation.metrics import evaluate_retrieval, precision_recall_curve, retrieval_metrics, top_k

# ---------------------------------------------------------------------------------------------
# Independent references (written from the definitions in shared/METHOD.md, one query at a time)
# ---------------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ranked_relevance(q, ql, g, gl) -> list[np.ndarray]:
    """Per query: relevance of the gallery in ranked order (stable argsort on -score)."""
    scores = _unit(q) @ _unit(g).T
    return [np.asarray(gl)[np.argsort(-s, kind="stable")] == lab for s, lab in zip(scores, ql)]


def _voc_ap(tp: np.ndarray, n_pos: int) -> float:
    """SAKE's eval_AP_inner + VOCap, transcribed: interpolated AP of a ranked 0/1 list."""
    ctp = np.cumsum(tp)
    rec = ctp / n_pos
    prec = ctp / np.arange(1, len(tp) + 1)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    changed = mrec[1:] != mrec[:-1]
    return float(np.sum((mrec[1:][changed] - mrec[:-1][changed]) * mpre[1:][changed]))


def _line_gallery(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A query e0 and n unit gallery vectors whose ranking is exactly 0, 1, ..., n-1."""
    s = np.linspace(0.9, -0.9, n)
    return np.array([[1.0, 0.0]]), np.stack([s, np.sqrt(1 - s**2)], axis=1)


def _random_problem(seed: int, n_q=40, n_g=700, dim=16, n_classes=4):
    rng = np.random.default_rng(seed)
    # unequal class sizes, so some queries have > 200 relevant photos and some far fewer
    p = np.array([0.55, 0.25, 0.15, 0.05])[:n_classes]
    gl = rng.choice(n_classes, size=n_g, p=p / p.sum())
    ql = rng.integers(0, n_classes, size=n_q)
    centres = rng.standard_normal((n_classes, dim))
    g = centres[gl] + 1.5 * rng.standard_normal((n_g, dim))
    q = centres[ql] + 1.5 * rng.standard_normal((n_q, dim))
    return q.astype(np.float32), ql, g.astype(np.float32), gl


# ---------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relevance, interp, non_interp",
    [
        ([1, 0, 1], (1 + 2 / 3) / 2, (1 + 2 / 3) / 2),
        ([0, 1, 1], 2 / 3, (1 / 2 + 2 / 3) / 2),  # interpolation lifts the first hit to 2/3
        ([0, 0, 1, 0, 1], (2 / 5 + 2 / 5) / 2, (1 / 3 + 2 / 5) / 2),
        ([1, 1, 0], 1.0, 1.0),
    ],
)
def test_hand_computed_ap(relevance, interp, non_interp):
    q, g = _line_gallery(len(relevance))
    gl = np.array(relevance)
    res = evaluate_retrieval(q, [1], g, gl)
    assert res.per_query["AP@all"][0] == pytest.approx(interp)
    assert res.per_query["AP@all_noninterp"][0] == pytest.approx(non_interp)
    # the whole list is inside the top 200 and holds every relevant item: @200 == @all
    assert res.metrics["mAP@200"] == pytest.approx(interp)
    assert res.metrics["mAP@200_lenient"] == pytest.approx(non_interp)
    assert set(res.metrics) == {"mAP@all", "mAP@all_noninterp", "mAP@200", "mAP@200_lenient", "P@100", "P@200"}
    # P@k with k larger than the gallery averages over the whole (clipped) list, as SAKE does
    assert res.metrics["P@100"] == pytest.approx(np.mean(relevance))


def test_top_200_truncation_by_hand():
    # 300-photo gallery; relevant at ranks 1, 3 and 250 (1-based): 3 relevant in all
    q, g = _line_gallery(300)
    gl = np.zeros(300, dtype=int)
    gl[[0, 2, 249]] = 1
    m = evaluate_retrieval(q, [1], g, gl).metrics
    assert m["mAP@all"] == pytest.approx((1 + 2 / 3 + 3 / 250) / 3)
    assert m["mAP@200"] == pytest.approx((1 + 2 / 3) / 3)  # denominator min(200, 3) = 3
    assert m["mAP@200_lenient"] == pytest.approx((1 + 2 / 3) / 2)  # only the 2 found count
    assert m["P@100"] == pytest.approx(2 / 100)
    assert m["P@200"] == pytest.approx(2 / 200)


@pytest.mark.parametrize("rank", [1, 7, 200, 201, 345])
def test_single_relevant_item(rank):
    q, g = _line_gallery(400)
    gl = np.zeros(400, dtype=int)
    gl[rank - 1] = 1
    m = evaluate_retrieval(q, [1], g, gl).metrics
    assert m["mAP@all"] == pytest.approx(1 / rank)
    assert m["mAP@200"] == pytest.approx(1 / rank if rank <= 200 else 0.0)
    assert m["mAP@200_lenient"] == pytest.approx(1 / rank if rank <= 200 else 0.0)


def test_precision_recall_curve_by_hand():
    q, g = _line_gallery(3)
    recall, precision = precision_recall_curve(q, [1], g, [1, 0, 1], n_points=11)
    np.testing.assert_allclose(recall, np.linspace(0, 1, 11))
    # interpolated precision: 1 up to recall 1/2, then 2/3
    np.testing.assert_allclose(precision, [1.0] * 6 + [2 / 3] * 5)


def test_acc_at_k_by_hand():
    # three sketches whose own photos (same id) rank 1st, 4th and 8th
    q, g = _line_gallery(10)
    ids = np.array([f"p{i}" for i in range(10)])
    queries = np.repeat(q, 3, axis=0)
    m = retrieval_metrics(queries, [0, 0, 0], g, np.zeros(10), ["p0", "p3", "p7"], ids)
    assert m["Acc@1"] == pytest.approx(1 / 3)
    assert m["Acc@5"] == pytest.approx(2 / 3)
    assert m["Acc@10"] == pytest.approx(1.0)
    res = evaluate_retrieval(queries, [0, 0, 0], g, np.zeros(10), ["p0", "p3", "p7"], ids)
    np.testing.assert_array_equal(res.per_query["match_rank"], [0, 3, 7])


# ---------------------------------------------------------------------------------------------
# Random data against independent per-query computations
# ---------------------------------------------------------------------------------------------


def test_interpolated_ap_matches_sake_loop():
    q, ql, g, gl = _random_problem(0)
    res = evaluate_retrieval(q, ql, g, gl, chunk_size=16)
    ranked = _ranked_relevance(q, ql, g, gl)
    ap_all = [_voc_ap(r, r.sum()) for r in ranked]
    ap_200 = [_voc_ap(r[:200], min(200, r.sum())) for r in ranked]
    assert any(r.sum() > 200 for r in ranked) and any(r.sum() < 200 for r in ranked)
    np.testing.assert_allclose(res.per_query["AP@all"], ap_all, rtol=1e-12)
    np.testing.assert_allclose(res.per_query["AP@200"], ap_200, rtol=1e-12)
    assert res.metrics["mAP@all"] == pytest.approx(np.mean(ap_all))
    assert res.metrics["mAP@200"] == pytest.approx(np.mean(ap_200))
    for k in (100, 200):
        assert res.metrics[f"P@{k}"] == pytest.approx(np.mean([r[:k].mean() for r in ranked]))


def test_non_interpolated_ap_matches_scikit_learn():
    q, ql, g, gl = _random_problem(1)
    res = evaluate_retrieval(q, ql, g, gl, chunk_size=16)
    scores = _unit(q) @ _unit(g).T
    full = [average_precision_score(gl == lab, s) for s, lab in zip(scores, ql)]
    np.testing.assert_allclose(res.per_query["AP@all_noninterp"], full, rtol=1e-9)
    # lenient mAP@200: scikit-learn on the truncated top-200 list (0 when nothing relevant there)
    lenient = []
    for s, lab in zip(scores, ql):
        top = np.argsort(-s, kind="stable")[:200]
        y = gl[top] == lab
        lenient.append(average_precision_score(y, s[top]) if y.any() else 0.0)
    np.testing.assert_allclose(res.per_query["AP@200_lenient"], lenient, rtol=1e-9)
    assert res.metrics["mAP@200_lenient"] == pytest.approx(np.mean(lenient))
    # interpolation never lowers AP
    assert np.all(res.per_query["AP@all"] >= res.per_query["AP@all_noninterp"] - 1e-12)


def test_chunk_size_does_not_change_anything():
    q, ql, g, gl = _random_problem(2, n_q=150)
    g[10:20] = g[3]  # exact duplicates in the gallery too
    ids_q, ids_g = np.arange(150) % 700, np.arange(700)
    results = [evaluate_retrieval(q, ql, g, gl, ids_q, ids_g, chunk_size=c) for c in (1, 7, 64, 150, 1000)]
    for other in results[1:]:
        assert other.metrics == results[0].metrics
        assert other.per_query.keys() == results[0].per_query.keys()
        for key, arr in results[0].per_query.items():
            np.testing.assert_array_equal(other.per_query[key], arr)
        np.testing.assert_array_equal(other.pr_precision, results[0].pr_precision)
    d1, i1 = top_k(q, g, 25, chunk_size=3)
    d2, i2 = top_k(q, g, 25, chunk_size=500)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)


# ---------------------------------------------------------------------------------------------
# Ties
# ---------------------------------------------------------------------------------------------


def test_identical_gallery_vectors_rank_by_index():
    rng = np.random.default_rng(3)
    g = rng.standard_normal((300, 32)).astype(np.float32)
    dup = [250, 17, 140, 3, 299]
    g[dup] = g[42]
    q = rng.standard_normal((20, 32)).astype(np.float32)
    q[:10] = g[42] + 0.01 * rng.standard_normal((10, 32))  # the duplicates are these queries' best
    for chunk in (1, 4, 20):
        _, idx = top_k(q, g, 300, chunk_size=chunk)
        for row in idx:
            pos = np.flatnonzero(np.isin(row, dup + [42]))
            assert np.all(np.diff(pos) == 1), "identical vectors must be adjacent in the ranking"
            np.testing.assert_array_equal(row[pos], sorted(dup + [42]))


def test_tie_break_decides_ap_deterministically():
    # two identical photos: whichever has the lower index ranks first
    g = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    q = np.array([[1.0, 0.2]])
    assert retrieval_metrics(q, [1], g, [0, 1, 0])["mAP@all"] == pytest.approx(1 / 2)
    assert retrieval_metrics(q, [1], g, [1, 0, 0])["mAP@all"] == pytest.approx(1.0)
    scores, idx = top_k(q, g, 2)
    np.testing.assert_array_equal(idx, [[0, 1]])
    assert scores[0, 0] == scores[0, 1]


def test_top_k_matches_full_sort():
    q, _, g, _ = _random_problem(4, n_q=30, n_g=200)
    scores, idx = top_k(q, g, 10, chunk_size=7)
    ref = _unit(q) @ _unit(g).T
    np.testing.assert_array_equal(idx, np.argsort(-ref, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(scores, np.take_along_axis(ref, idx, axis=1), atol=1e-6)
    assert top_k(q, g, 1000)[1].shape == (30, 200)  # k is clipped to the gallery size


# ---------------------------------------------------------------------------------------------
# Queries without relevant photos, labels, errors
# ---------------------------------------------------------------------------------------------


def test_zero_relevant_queries_policy(caplog):
    q, ql, g, gl = _random_problem(5, n_q=30, n_classes=3)
    ql = ql.copy()
    ql[[4, 9]] = 7  # no photo of class 7 in the gallery
    keep = np.ones(30, dtype=bool)
    keep[[4, 9]] = False
    with caplog.at_level(logging.WARNING, logger="sketchlvm.evaluation.metrics"):
        excluded = evaluate_retrieval(q, ql, g, gl)
    assert "2 of 30 queries have no relevant gallery item" in caplog.text
    assert excluded.n_without_relevant == 2
    assert np.isnan(excluded.per_query["AP@all"][[4, 9]]).all()
    subset = retrieval_metrics(q[keep], ql[keep], g, gl)
    for key, value in subset.items():
        assert excluded.metrics[key] == pytest.approx(value)

    zero = retrieval_metrics(q, ql, g, gl, no_relevant="zero")
    for key, value in subset.items():
        assert zero[key] == pytest.approx(value * 28 / 30)

    with pytest.raises(ValueError, match="no relevant gallery item"):
        retrieval_metrics(q, ql, g, gl, no_relevant="raise")
    with pytest.raises(ValueError, match="no relevant"):  # nothing left to average
        retrieval_metrics(q, np.full(30, 7), g, gl)
    with pytest.raises(ValueError, match="unknown no_relevant policy"):
        retrieval_metrics(q, ql, g, gl, no_relevant="skip")


def test_string_labels_and_generalised_gallery():
    q, ql, g, gl = _random_problem(6, n_q=20, n_g=150)
    names = np.array(["bat", "cow", "door", "saw"])
    numeric = retrieval_metrics(q, ql, g, gl)
    assert retrieval_metrics(q, names[ql], g, names[gl]) == numeric
    # a bigger gallery (seen classes added) can only push relevant photos down
    extra = np.random.default_rng(0).standard_normal((100, 16)).astype(np.float32)
    bigger = retrieval_metrics(q, ql, np.vstack([g, extra]), np.r_[gl, np.full(100, 99)])
    assert bigger["mAP@all"] <= numeric["mAP@all"] + 1e-12


def test_input_errors():
    q, ql, g, gl = _random_problem(7, n_q=5, n_g=50)
    with pytest.raises(ValueError, match="feature sizes differ"):
        retrieval_metrics(q, ql, g[:, :8], gl)
    with pytest.raises(ValueError, match="labels do not match"):
        retrieval_metrics(q, ql[:3], g, gl)
    with pytest.raises(ValueError, match="both query_ids and gallery_ids"):
        retrieval_metrics(q, ql, g, gl, query_ids=np.arange(5))
    bad = q.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(bad, ql, g, gl)
