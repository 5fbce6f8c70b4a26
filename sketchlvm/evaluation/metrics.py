"""Retrieval metrics for (zero-shot) sketch-based image retrieval: array code over NumPy arrays.

Every query is ranked against the *whole* gallery it is given (never a sampled gallery: the released
validation ranked each sketch against one random same-class photo, which made it meaningless;
docs/evaluation.md). Features are
L2-normalised float32 and compared by inner product (cosine similarity); the similarity matrix is
computed in query chunks, so a QuickDraw-sized run (92,291 queries x 54,151 photos x 512-d) needs
only ``chunk_size x n_gallery`` scores at a time (a few hundred MB), not 20 GB.

Ranking rule (deterministic): higher score first, ties broken by lower gallery index. The ranking
itself (:mod:`sketchlvm.evaluation.ranking`) runs in NumPy or, when a GPU is present, in torch on it, with
identical results. Scores are
bit-identical whatever ``chunk_size`` is (each query's scores always come from the same aligned BLAS
call) and exactly duplicated gallery vectors get exactly equal scores (they are scored once), so
equal vectors always rank by index.

AP conventions (the biggest reproduction hazard, so the names say which one):

* ``mAP@all``: SAKE-style **VOC-interpolated** AP over the whole ranked gallery: precision made
  monotone from the right, integrated over recall; recall denominator = number of relevant photos.
* ``mAP@all_noninterp``: **non-interpolated** AP over the whole ranked gallery (mean precision at each
  relevant photo; denominator = number of relevant photos): scikit-learn's ``average_precision_score`` on
  the query's scores, which the QuickDraw-extended baselines report. The paper's table (SAKE-style code)
  uses the interpolated ``mAP@all``; this one is reported beside it so either can be compared.
* ``mAP@200``: the same interpolated AP on the top 200 only; denominator ``min(200, n_relevant)``.
  This is what ZS-SBIR papers (and CLIP for All Things) report for Sketchy.
* ``mAP@200_lenient``: **non-interpolated** AP of the truncated top-200 list with denominator =
  relevant items *inside* the top 200 (what scikit-learn / torchmetrics give on the truncated list);
  0 for a query with no relevant photo in its top 200. Always >= the non-interpolated strict value;
  reported so numbers from such code can be compared, not as our headline number.
* ``P@k``: relevant items in the top k / k (k clipped to the gallery size, as SAKE does).
* ``Acc@k`` (instance-level, when query/gallery ids are given): share of queries whose own photo
  (the gallery item with the same id) ranks within the top k of the gallery passed in.

All values are fractions in [0, 1].

Queries with no relevant gallery item (``no_relevant``): their AP is undefined (recall 0/0). The
default ``"exclude"`` leaves them out of every label-based mean (mAP, P@k, the PR curve) and logs a
warning with the count; it matches SAKE for mAP (its ``np.nanmean`` skips the NaN APs), though SAKE
keeps such queries in P@k as 0. ``"zero"`` scores them 0 everywhere (what torchmetrics-style code
does), ``"raise"`` refuses. In the standard zero-shot splits every sketch class has photos, so this
only triggers on a broken split; it never silently changes a correct evaluation. The same policy
applies to Acc@k for queries whose id has no photo in the gallery.

Generalised ZS-SBIR is just a bigger gallery: pass seen + unseen photos (with their labels) as the
gallery and the unseen sketches as queries; labels may be any comparable values (ints or strings).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from sketchlvm.evaluation.ranking import GalleryGroups, resolve_ranker

logger = logging.getLogger(__name__)

NoRelevantPolicy = Literal["exclude", "zero", "raise"]
NO_RELEVANT_POLICIES = ("exclude", "zero", "raise")

DEFAULT_CHUNK_SIZE = 256  # queries per chunk: ~0.3 GB of working memory for a 54k-photo gallery
# Scores are computed in query blocks of this many rows aligned to global query indices, so a
# query's scores never depend on chunk_size (BLAS rounds differently for different block shapes).
_MATMUL_BLOCK = 256  # = DEFAULT_CHUNK_SIZE: one BLAS call per chunk (256 rows: ~13% less CPU than 128)
_INDEX_MASK = np.uint64(0xFFFFFFFF)


# ----------------------------------------------------------------------------------------------
# Scoring and deterministic ranking
# ----------------------------------------------------------------------------------------------


def _as_features(x: np.ndarray, name: str, normalize: bool) -> np.ndarray:
    """(n, d) array-like -> C-contiguous float32 (n, d), optionally L2-normalised, -0.0 -> +0.0."""
    x = np.array(x, dtype=np.float32, order="C", copy=True)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, dim); got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf; check the encoder output")
    if normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x /= np.maximum(norms, np.float32(1e-12))
    x += np.float32(0.0)  # canonical zero, so equal values have equal bits
    return x


class _Scorer:
    """Cosine scores of query rows against a fixed gallery, reproducible bit for bit.

    query (Q, d), gallery (N, d) float32 -> ``rows(start, stop)`` gives (stop - start, N) float32.
    """

    def __init__(self, query: np.ndarray, gallery: np.ndarray):
        if query.shape[1] != gallery.shape[1]:
            raise ValueError(
                f"query and gallery feature sizes differ: {query.shape[1]} vs {gallery.shape[1]}"
            )
        if gallery.shape[0] == 0:
            raise ValueError("the gallery is empty")
        if gallery.shape[0] >= 2**32:
            raise ValueError(f"gallery too large for 32-bit indices: {gallery.shape[0]}")
        self.query = query
        # Score each distinct gallery vector once: BLAS can give two identical columns different
        # last bits, which would break the "equal score -> lower index first" rule.
        rows = np.ascontiguousarray(gallery).view(np.dtype((np.void, gallery.dtype.itemsize * gallery.shape[1])))
        _, first, inverse = np.unique(rows.ravel(), return_index=True, return_inverse=True)
        if first.size < gallery.shape[0]:
            order = np.argsort(first)  # keep the gallery's own order for the unique rows
            rank_of = np.empty_like(order)
            rank_of[order] = np.arange(order.size)
            self.gallery = np.ascontiguousarray(gallery[first[order]])
            self.expand = rank_of[inverse.ravel()]  # (N,) unique column for each gallery item
        else:
            self.gallery, self.expand = gallery, None
        self.n_gallery = gallery.shape[0]
        self._last_start, self._last = -1, None

    def _block(self, bs: int) -> np.ndarray:
        """Scores of the aligned query block starting at ``bs``; the last one is kept, so chunks
        smaller than a block do not recompute it."""
        if self._last_start != bs:
            be = min(bs + _MATMUL_BLOCK, self.query.shape[0])
            self._last = self.query[bs:be] @ self.gallery.T  # (block, N_unique)
            self._last += np.float32(0.0)  # -0.0 -> +0.0
            self._last_start = bs
        return self._last

    def rows(self, start: int, stop: int) -> np.ndarray:
        if start % _MATMUL_BLOCK == 0 and stop - start == _MATMUL_BLOCK:
            out = self._block(start)  # the common case: the chunk is one block, no copy
            self._last_start = -1  # handed out (the caller may modify it): never reuse it
        else:
            out = np.empty((stop - start, self.gallery.shape[0]), dtype=np.float32)
            for bs in range(start // _MATMUL_BLOCK * _MATMUL_BLOCK, stop, _MATMUL_BLOCK):
                block = self._block(bs)
                lo, hi = max(bs, start), min(bs + block.shape[0], stop)
                out[lo - start : hi - start] = block[lo - bs : hi - bs]
        return out if self.expand is None else out[:, self.expand]


def _rank_keys(scores: np.ndarray) -> np.ndarray:
    """(B, N) float32 scores -> (B, N) uint64 keys whose ascending order is the ranking.

    High 32 bits: the score's bits mapped so that unsigned ascending = score descending; low 32
    bits: the gallery index. Keys are unique, so any sort gives the one deterministic ranking.
    """
    u = scores.view(np.uint32).copy()
    # ascending-orderable bits: flip every bit of a negative float, only the sign bit of a positive
    flip = u >> np.uint32(31)
    flip *= np.uint32(0x7FFFFFFF)
    flip |= np.uint32(0x80000000)
    u ^= flip
    np.invert(u, out=u)  # descending score -> ascending key
    keys = u.astype(np.uint64)
    keys <<= np.uint64(32)
    keys |= np.arange(scores.shape[1], dtype=np.uint64)
    return keys


def _row_sum(x: np.ndarray) -> np.ndarray:
    """(B, W) -> (B,) sums in a fixed left-to-right order.

    ``x.sum(axis=1)`` may pick a different loop (hence rounding) for different B, which would make
    per-query values depend on chunk_size in the last bit.
    """
    return np.cumsum(x, axis=1)[:, -1]


def top_k(
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    k: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    normalize: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best gallery items per query, faiss-style ``(D, I)``.

    query_features (Q, d), gallery_features (N, d) -> scores (Q, k') float32 cosine similarities
    and indices (Q, k') int64, best first, ties by lower gallery index; k' = min(k, N). Same
    scoring and tie rule as :func:`evaluate_retrieval`, so a report's example grid shows exactly
    the ranking the metrics were computed on.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    q = _as_features(query_features, "query_features", normalize)
    g = _as_features(gallery_features, "gallery_features", normalize)
    scorer = _Scorer(q, g)
    kk = min(k, g.shape[0])
    out_d = np.empty((q.shape[0], kk), dtype=np.float32)
    out_i = np.empty((q.shape[0], kk), dtype=np.int64)
    for start in range(0, q.shape[0], chunk_size):
        stop = min(start + chunk_size, q.shape[0])
        scores = scorer.rows(start, stop)
        keys = _rank_keys(scores)
        if kk < keys.shape[1]:
            keys = np.partition(keys, kk - 1, axis=1)[:, :kk]
        keys.sort(axis=1)
        idx = (keys & _INDEX_MASK).view(np.int64)
        out_i[start:stop] = idx
        out_d[start:stop] = np.take_along_axis(scores, idx, axis=1)
    return out_d, out_i


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


@dataclass
class RetrievalResult:
    """Everything :func:`evaluate_retrieval` measured.

    metrics: the summary (see module docstring for each key), fractions in [0, 1].
    per_query: (Q,) float64 arrays: ``AP@all`` and ``AP@200`` (interpolated), ``AP@200_lenient``,
        ``AP@all_noninterp`` (non-interpolated AP over the whole gallery, as scikit-learn's
        ``average_precision_score`` would give), ``P@<k>``, ``n_relevant``, and with ids
        ``match_rank`` (0-based rank of the query's own photo). NaN marks a query left out of the
        means under ``no_relevant="exclude"`` (``match_rank``: -1 when its photo is absent).
    pr_recall, pr_precision: (n_points,) mean interpolated precision at evenly spaced recall.
    n_queries, n_without_relevant, n_without_match: query counts behind the means;
        n_classes_without_match: classes left out of the within-class pass (set by the fine-grained evaluation).
    ranker: where the ranking ran (``numpy`` or ``torch:<device>``); never changes a value.
    """

    metrics: dict[str, float]
    per_query: dict[str, np.ndarray] = field(repr=False)
    pr_recall: np.ndarray = field(repr=False)
    pr_precision: np.ndarray = field(repr=False)
    n_queries: int = 0
    n_without_relevant: int = 0
    n_without_match: int = 0
    ranker: str = ""
    n_classes_without_match: int = 0  # fine-grained: classes none of whose sketches has its photo in the gallery


def _codes(query_values: np.ndarray, gallery_values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Map labels or ids (any comparable dtype) to shared int32 codes: (Q,), (N,)."""
    q = np.asarray(query_values).ravel()
    g = np.asarray(gallery_values).ravel()
    try:
        _, inv = np.unique(np.concatenate([q, g]), return_inverse=True)
    except TypeError as e:
        raise ValueError(f"query and gallery {name} cannot be compared ({q.dtype} vs {g.dtype})") from e
    inv = inv.ravel().astype(np.int32)  # int32 halves the (B, N) gathers of the ranked labels
    return inv[: q.size], inv[q.size :]


def _check_policy(policy: str) -> None:
    if policy not in NO_RELEVANT_POLICIES:
        raise ValueError(f"unknown no_relevant policy {policy!r}; available: {', '.join(NO_RELEVANT_POLICIES)}")


def evaluate_retrieval(
    query_features: np.ndarray,
    query_labels: Sequence | np.ndarray,
    gallery_features: np.ndarray,
    gallery_labels: Sequence | np.ndarray,
    query_ids: Sequence | np.ndarray | None = None,
    gallery_ids: Sequence | np.ndarray | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    no_relevant: NoRelevantPolicy = "exclude",
    map_cutoff: int = 200,
    precision_ks: Sequence[int] = (100, 200),
    accuracy_ks: Sequence[int] = (1, 5, 10),
    pr_points: int = 11,
    normalize: bool = True,
    ranker: str = "auto",
) -> RetrievalResult:
    """Rank every query against the whole gallery and measure it (see the module docstring).

    query_features (Q, d), query_labels (Q,), gallery_features (N, d), gallery_labels (N,);
    optional query_ids (Q,) and gallery_ids (N,) for instance-level Acc@k (a sketch and its own
    photo share an id). A photo is relevant to a sketch when their labels are equal.
    ``chunk_size`` queries are scored and ranked at a time; working memory stays under
    ``chunk_size * N * 30`` bytes (about ``chunk_size * N * 8`` with the NumPy ranker).
    ``map_cutoff`` is the 200 of mAP@200 (keys follow it); ``pr_points``: 11 or 101 recall points for the precision-recall curve. ``normalize=False``
    skips the L2 normalisation (features already unit-length; scores are then raw inner products).
    ``ranker``: where the ranking runs (:func:`sketchlvm.evaluation.ranking.resolve_ranker`: "auto" = the GPU
    through torch when present, else NumPy; "numpy"; a torch device). Every choice gives the same
    results bit for bit: the scores always come from the same NumPy product, and the rankers
    return the same integer ranks.

    Each protocol is its own function over a chunk's ranked hits: :func:`_whole_gallery_ap` (mAP@all, both
    conventions, and the PR curve), :func:`_top_of_ranking` (mAP@cut, lenient mAP@cut, P@k) and
    :func:`_accuracy` (Acc@k, from the rank of each query's own photo).
    """
    _check_options(no_relevant, chunk_size, map_cutoff, precision_ks, accuracy_ks, pr_points, query_ids, gallery_ids)
    q, g, q_lab, g_lab, q_id, g_id = _prepare(query_features, query_labels, gallery_features, gallery_labels,
                                              query_ids, gallery_ids, normalize)
    n_q, n_g = q.shape[0], g.shape[0]
    with_ids = q_id is not None

    # Relevant photos per query, known before ranking (every relevant photo is somewhere in it).
    class_count = np.bincount(g_lab, minlength=int(max(q_lab.max(), g_lab.max())) + 1)
    n_rel_all = class_count[q_lab]  # (Q,)
    missing = _without(n_rel_all == 0, no_relevant, "have no relevant gallery item (e.g. label {example!r}); check "
                       "that queries and gallery use the same class names", np.asarray(query_labels).ravel())
    if with_ids:
        id_count = np.bincount(g_id, minlength=int(max(q_id.max(), g_id.max())) + 1)
        no_match = _without(id_count[q_id] == 0, no_relevant, "have no gallery item with their id",
                            fix="; check the fine-grained pairing")
    else:
        no_match = np.zeros(n_q, dtype=bool)

    cut = min(map_cutoff, n_g)
    ks = sorted(set(precision_ks))
    depth = min(max([cut, *ks]), n_g)  # ranked positions needed densely for @cut and P@k
    width = max(int(n_rel_all.max()), 1)  # padded hits per query for the @all computation
    ap_all, ap_all_ni, ap_cut, ap_cut_len = (np.empty(n_q) for _ in range(4))
    prec_at = {k: np.empty(n_q) for k in ks}
    match_rank = np.full(n_q, -1, dtype=np.int64)
    pr_rows_all = np.empty((n_q, pr_points))  # per-query curves, averaged once at the end
    scorer = _Scorer(q, g)
    ranker = resolve_ranker(ranker)
    label_groups = GalleryGroups.of(g_lab, class_count.size)
    id_groups = GalleryGroups.of(g_id, id_count.size) if with_ids else None
    logger.debug("ranking %d queries x %d gallery items with %s", n_q, n_g, ranker.name)

    for start in range(0, n_q, chunk_size):
        stop = min(start + chunk_size, n_q)
        block = ranker.rank_block(
            scorer.rows(start, stop), q_lab[start:stop], label_groups,
            q_id[start:stop] if with_ids else None, id_groups,
        )
        n_rel = n_rel_all[start:stop]  # (B,)
        ap_all[start:stop], ap_all_ni[start:stop], pr_rows_all[start:stop] = _whole_gallery_ap(
            block.hit_ranks, n_rel, width, pr_points)
        ap_cut[start:stop], ap_cut_len[start:stop], top_prec = _top_of_ranking(block.hit_ranks, n_rel, depth, cut, ks)
        for k in ks:
            prec_at[k][start:stop] = top_prec[k]
        match_rank[start:stop] = block.match_rank
        logger.debug("ranked queries %d-%d of %d", start, stop, n_q)

    # Zero-relevant queries: 0/0 gave NaN above; apply the policy.
    for arr in (ap_all, ap_all_ni, ap_cut, ap_cut_len, *prec_at.values(), pr_rows_all):
        arr[missing] = np.nan if no_relevant == "exclude" else 0.0

    metrics = {
        "mAP@all": float(np.nanmean(ap_all)),
        "mAP@all_noninterp": float(np.nanmean(ap_all_ni)),
        f"mAP@{map_cutoff}": float(np.nanmean(ap_cut)),
        f"mAP@{map_cutoff}_lenient": float(np.nanmean(ap_cut_len)),
        **{f"P@{k}": float(np.nanmean(prec_at[k])) for k in ks},
    }
    per_query = {
        "AP@all": ap_all,
        f"AP@{map_cutoff}": ap_cut,
        f"AP@{map_cutoff}_lenient": ap_cut_len,
        "AP@all_noninterp": ap_all_ni,
        **{f"P@{k}": prec_at[k] for k in ks},
        "n_relevant": n_rel_all.astype(np.float64),
    }
    if with_ids:
        metrics.update(_accuracy(match_rank, no_match, no_relevant, accuracy_ks))
        per_query["match_rank"] = match_rank

    return RetrievalResult(
        metrics=metrics,
        per_query=per_query,
        pr_recall=np.arange(pr_points) / (pr_points - 1),
        pr_precision=np.nanmean(pr_rows_all, axis=0),
        n_queries=n_q,
        n_without_relevant=int(missing.sum()),
        n_without_match=int(no_match.sum()),
        ranker=ranker.name,
    )


def _prepare(query_features, query_labels, gallery_features, gallery_labels, query_ids, gallery_ids,
             normalize: bool) -> tuple[np.ndarray, ...]:
    """-> features (Q, d), (N, d) float32; label codes (Q,), (N,); id codes (Q,), (N,) or None, None."""
    q = _as_features(query_features, "query_features", normalize)
    g = _as_features(gallery_features, "gallery_features", normalize)
    n_q, n_g = q.shape[0], g.shape[0]
    q_lab, g_lab = _codes(query_labels, gallery_labels, "labels")
    if q_lab.size != n_q or g_lab.size != n_g:
        raise ValueError(
            f"labels do not match features: {q_lab.size} query labels for {n_q} queries, "
            f"{g_lab.size} gallery labels for {n_g} photos"
        )
    q_id = g_id = None
    if query_ids is not None:
        q_id, g_id = _codes(query_ids, gallery_ids, "ids")
        if q_id.size != n_q or g_id.size != n_g:
            raise ValueError(f"ids do not match features: {q_id.size} query ids, {g_id.size} gallery ids")
    if n_q == 0:
        raise ValueError("no queries to evaluate")
    return q, g, q_lab, g_lab, q_id, g_id


def _check_options(no_relevant: str, chunk_size: int, map_cutoff: int, precision_ks: Sequence[int],
                   accuracy_ks: Sequence[int], pr_points: int, query_ids, gallery_ids) -> None:
    _check_policy(no_relevant)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    if map_cutoff < 1 or any(k < 1 for k in (*precision_ks, *accuracy_ks)):
        raise ValueError("map_cutoff, precision_ks and accuracy_ks must be >= 1")
    if pr_points < 2:
        raise ValueError(f"pr_points must be >= 2; got {pr_points}")
    if (query_ids is None) != (gallery_ids is None):
        raise ValueError("give both query_ids and gallery_ids (for Acc@k) or neither")


def _without(mask: np.ndarray, policy: str, what: str, values: np.ndarray | None = None, fix: str = "") -> np.ndarray:
    """Queries left without a target (no relevant photo, or no own photo): refused when all are, or under the
    "raise" policy; otherwise logged. -> the (Q,) mask."""
    if mask.any():
        example = values[np.flatnonzero(mask)[0]] if values is not None else None
        msg = f"{int(mask.sum())} of {mask.size} queries " + what.format(example=example)
        if mask.all() or policy == "raise":
            raise ValueError(msg + fix)
        logger.warning("%s; no_relevant=%r", msg, policy)
    return mask


def _whole_gallery_ap(hit_ranks: np.ndarray, n_rel: np.ndarray, width: int,
                      pr_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mAP@all's protocol on one chunk: every relevant photo's rank (``hit_ranks``, ascending within each
    query, ``n_rel`` (B,) per query) -> VOC-interpolated AP (B,), non-interpolated AP (B,) and the
    interpolated precision at ``pr_points`` evenly spaced recalls (B, pr_points). 0/0 gives NaN."""
    b = n_rel.size
    rows = np.repeat(np.arange(b), n_rel)  # the query of each hit
    starts = np.cumsum(n_rel) - n_rel
    hit_no = np.arange(rows.size) - np.repeat(starts, n_rel)  # 0-based hit number in row
    hits = np.zeros((b, width))  # precision at each hit, padded; hit i of a row sits in column i
    hits[rows, hit_no] = (hit_no + 1) / (hit_ranks + 1)
    # VOC interpolation: running max from the right (computed on the reversed rows).
    interp_rev = np.maximum.accumulate(hits[:, ::-1], axis=1)  # column w-1-i <-> hit i
    with np.errstate(invalid="ignore", divide="ignore"):
        interpolated = _row_sum(interp_rev) / n_rel
        plain = _row_sum(hits) / n_rel
    # PR curve: at recall j/D the interpolated precision of hit ceil(j * n_rel / D) (>= 1).
    recall_grid = np.arange(pr_points, dtype=np.int64)
    need = np.maximum(-(-(recall_grid[None, :] * n_rel[:, None]) // (pr_points - 1)), 1)
    curve = np.take_along_axis(interp_rev, np.clip(width - need, 0, width - 1), axis=1)
    return interpolated, plain, curve


def _top_of_ranking(hit_ranks: np.ndarray, n_rel: np.ndarray, depth: int, cut: int,
                    ks: Sequence[int]) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """mAP@cut's and P@k's protocol on one chunk: the relevant photos' ranks -> interpolated AP@cut (B,)
    (denominator min(cut, relevant)), lenient AP@cut (B,) (denominator: relevant found in the top cut) and
    P@k (B,) for each k, from the relevance of the top ``depth`` ranks."""
    b = n_rel.size
    rows = np.repeat(np.arange(b), n_rel)
    inside = hit_ranks < depth
    top = np.zeros((b, depth), dtype=bool)  # relevance of the top ``depth`` ranks
    top[rows[inside], hit_ranks[inside]] = True
    tp = np.cumsum(top, axis=1, dtype=np.int64)  # (B, depth)
    prec = tp[:, :cut] / np.arange(1, cut + 1)
    interp = np.maximum.accumulate(prec[:, ::-1], axis=1)  # reversed columns
    top_cut = top[:, :cut]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap_cut = _row_sum(interp * top_cut[:, ::-1]) / np.minimum(cut, n_rel)
        found = tp[:, cut - 1]
        lenient = np.where(found > 0, _row_sum(prec * top_cut) / np.maximum(found, 1), 0.0)
    precision = {}
    for k in ks:
        kk = min(k, depth)  # k clipped to the gallery, as SAKE does (depth is the gallery size when k exceeds it)
        precision[k] = tp[:, kk - 1] / kk
    return ap_cut, lenient, precision


def _accuracy(match_rank: np.ndarray, no_match: np.ndarray, policy: str,
              accuracy_ks: Sequence[int]) -> dict[str, float]:
    """Acc@k's protocol: the share of counted queries whose own photo ranks within the top k (under
    "exclude", a query whose photo is not in the gallery is not counted)."""
    counted = ~no_match if policy == "exclude" else np.ones(match_rank.size, dtype=bool)
    ranks = match_rank[counted]
    return {f"Acc@{k}": float(np.mean((ranks >= 0) & (ranks < k))) for k in sorted(set(accuracy_ks))}


def retrieval_metrics(
    query_features: np.ndarray,
    query_labels: Sequence | np.ndarray,
    gallery_features: np.ndarray,
    gallery_labels: Sequence | np.ndarray,
    query_ids: Sequence | np.ndarray | None = None,
    gallery_ids: Sequence | np.ndarray | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    no_relevant: NoRelevantPolicy = "exclude",
) -> dict[str, float]:
    """Summary metrics: ``mAP@all``, ``mAP@200``, ``mAP@200_lenient``, ``P@100``, ``P@200``, and
    with ids ``Acc@1``, ``Acc@5``, ``Acc@10``; fractions in [0, 1].

    Shapes and conventions as in :func:`evaluate_retrieval` (which also gives per-query values
    and the precision-recall curve).
    """
    return evaluate_retrieval(
        query_features,
        query_labels,
        gallery_features,
        gallery_labels,
        query_ids,
        gallery_ids,
        chunk_size=chunk_size,
        no_relevant=no_relevant,
    ).metrics


def precision_recall_curve(
    query_features: np.ndarray,
    query_labels: Sequence | np.ndarray,
    gallery_features: np.ndarray,
    gallery_labels: Sequence | np.ndarray,
    n_points: int = 11,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    no_relevant: NoRelevantPolicy = "exclude",
) -> tuple[np.ndarray, np.ndarray]:
    """Mean interpolated precision-recall curve over the whole gallery, for plotting.

    -> recall (n_points,) = 0, 1/(n-1), ..., 1 and precision (n_points,): for each query the
    interpolated precision (best precision at any recall >= r), averaged over queries. The area
    under the 101-point curve approximates mAP@all. Use 11 (PASCAL VOC 2007) or 101 points.
    """
    res = evaluate_retrieval(
        query_features,
        query_labels,
        gallery_features,
        gallery_labels,
        chunk_size=chunk_size,
        no_relevant=no_relevant,
        pr_points=n_points,
    )
    return res.pr_recall, res.pr_precision
