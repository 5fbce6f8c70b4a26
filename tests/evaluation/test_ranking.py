"""sketchlvm.evaluation.ranking: the NumPy and torch rankers give the same integers as a full stable sort,
ties included, and evaluate_retrieval gives bit-identical results whichever ranker runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sketchlvm.evaluation.metrics import evaluate_retrieval
from sketchlvm.evaluation.ranking import GalleryGroups, NumpyRanker, TorchRanker, resolve_ranker


def _reference_ranks(scores: np.ndarray, q_lab, g_lab, q_id=None, g_id=None):
    """Full ranking by (score descending, index ascending), one query at a time."""
    hits, match = [], []
    for r, row in enumerate(scores):
        order = np.lexsort((np.arange(row.size), -row.astype(np.float64)))
        hits.append(np.flatnonzero(g_lab[order] == q_lab[r]))
        if q_id is not None:
            own = np.flatnonzero(g_id[order] == q_id[r])
            match.append(own[0] if own.size else -1)
    return np.concatenate(hits), np.array(match, dtype=np.int64)


def _tied_scores(seed: int, n_q=24, n_g=500, levels=40):
    """Scores on a coarse grid (many exact ties, negatives and zero included) + labels and ids."""
    rng = np.random.default_rng(seed)
    scores = (rng.integers(-levels // 2, levels // 2, size=(n_q, n_g)) / levels).astype(np.float32)
    scores += np.float32(0.0)  # canonical +0.0, as metrics._Scorer hands them over
    g_lab = rng.integers(0, 4, size=n_g).astype(np.int32)
    q_lab = rng.integers(0, 4, size=n_q).astype(np.int32)
    g_id = rng.integers(0, 300, size=n_g).astype(np.int32)  # some ids twice, some never
    q_id = rng.integers(0, 320, size=n_q).astype(np.int32)
    return scores, q_lab, g_lab, q_id, g_id


@pytest.mark.parametrize("levels", [40, 5000, 10**7])  # massive ties (sort fallback), some, none
def test_rankers_match_a_full_stable_sort(levels):
    scores, q_lab, g_lab, q_id, g_id = _tied_scores(levels, levels=levels)
    labels, ids = GalleryGroups.of(g_lab, 4), GalleryGroups.of(g_id, 320)
    want_hits, want_match = _reference_ranks(scores, q_lab, g_lab, q_id, g_id)
    assert (want_match == -1).any() and (want_match >= 0).any()
    for ranker in (NumpyRanker(threads=1), NumpyRanker(threads=3), TorchRanker("cpu")):
        block = ranker.rank_block(scores, q_lab, labels, q_id, ids)
        np.testing.assert_array_equal(block.hit_ranks, want_hits, err_msg=ranker.name)
        np.testing.assert_array_equal(block.match_rank, want_match, err_msg=ranker.name)


def test_a_tie_between_a_relevant_and_an_irrelevant_photo_goes_to_the_lower_index():
    scores = np.array([[0.5, 0.5, 0.9, 0.5]], dtype=np.float32)  # ranking: 2, 0, 1, 3
    for g_lab, want in (([0, 1, 0, 1], [2, 3]), ([1, 0, 0, 1], [1, 3])):
        g_lab = np.array(g_lab, dtype=np.int32)
        for ranker in (NumpyRanker(), TorchRanker("cpu")):
            block = ranker.rank_block(scores, np.array([1], dtype=np.int32), GalleryGroups.of(g_lab, 2))
            np.testing.assert_array_equal(block.hit_ranks, want)


def test_evaluate_retrieval_is_identical_with_every_ranker():
    rng = np.random.default_rng(7)
    g = rng.standard_normal((400, 8)).astype(np.float32)
    g[100:140] = g[7]  # exact duplicates: exactly tied scores
    g = np.round(g, 1)  # coarse features: many more exact ties
    q = np.round(rng.standard_normal((60, 8)), 1).astype(np.float32)
    gl, ql = rng.integers(0, 5, 400), rng.integers(0, 5, 60)
    ids_g, ids_q = np.arange(400), rng.integers(0, 420, 60)
    results = [
        evaluate_retrieval(q, ql, g, gl, ids_q, ids_g, chunk_size=16, ranker=name)
        for name in ("numpy", "cpu", NumpyRanker(threads=1))
    ]
    assert [r.ranker for r in results] == ["numpy", "torch:cpu", "numpy"]
    for other in results[1:]:
        assert other.metrics == results[0].metrics
        for key, arr in results[0].per_query.items():
            np.testing.assert_array_equal(other.per_query[key], arr, err_msg=key)
        np.testing.assert_array_equal(other.pr_precision, results[0].pr_precision)


def test_the_ranker_is_chosen_in_one_place():
    assert resolve_ranker("numpy").name == "numpy"
    assert resolve_ranker("cpu").name == "torch:cpu"
    auto = resolve_ranker("auto")
    assert auto.name == ("torch:cuda" if torch.cuda.is_available() else "numpy")
    with pytest.raises(ValueError, match="unknown ranker"):
        resolve_ranker("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_ranker("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device; the torch path is tested on CPU tensors above")
def test_cuda_ranker_matches_numpy():
    scores, q_lab, g_lab, q_id, g_id = _tied_scores(11, n_q=64, n_g=3000, levels=5000)
    labels, ids = GalleryGroups.of(g_lab, 4), GalleryGroups.of(g_id, 320)
    want = NumpyRanker().rank_block(scores, q_lab, labels, q_id, ids)
    got = TorchRanker("cuda").rank_block(scores, q_lab, labels, q_id, ids)
    np.testing.assert_array_equal(got.hit_ranks, want.hit_ranks)
    np.testing.assert_array_equal(got.match_rank, want.match_rank)
    assert resolve_ranker("auto").name.startswith("torch:cuda")
