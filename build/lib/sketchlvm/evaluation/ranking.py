"""Where each query's relevant photos land in its ranking: the one expensive step of evaluation.

Every metric of :mod:`sketchlvm.evaluation.metrics` is a function of two things per query: the sorted 0-based
ranks of its relevant gallery items (same label) and the rank of its own photo (same id). This
module computes exactly those from a block of cosine scores, under the one ranking rule of the
metrics: higher score first, equal scores by lower gallery index. Two rankers give identical
integers (they are tested against each other, ties included), so the floating-point metric code
downstream runs once, in NumPy, whichever ranker was used:

* :class:`NumpyRanker` (CPU). Sorting a full row of unique 64-bit keys costs twice sorting its
  32-bit scores, and the ranks of the relevant items are all that is needed, so it sorts the
  float32 scores only and counts: the rank of item j with score v is #{score > v} (a binary
  search in the sorted row) plus #{score == v, index < j}. That second term is non-zero only for
  exact float ties, which are found from the sorted row and resolved by index; a row with many of
  them (duplicated photos) falls back to sorting (score, index) keys, so ties never cost more than
  that.
* :class:`TorchRanker` (a torch device; CUDA when present). Sorts the unique (score, index) keys
  on the device; only the ranks (a few KB per query) come back.

The scores themselves always come from the same NumPy matrix product, so the choice of ranker can
never change a result; it only changes how long the ranking takes. :func:`resolve_ranker` is the
one place that picks it ("auto": the GPU when torch sees one, else NumPy).
"""

from __future__ import annotations

import itertools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

RANKERS = ("auto", "numpy", "cpu", "cuda", "cuda:N")
# A row whose relevant items tie (exactly equal float32 score) with more distinct values than this
# is ranked by sorting (score, index) keys instead of resolving each tied value by a scan.
_MAX_TIED_VALUES = 16
_INDEX_BITS = 32


@dataclass
class GalleryGroups:
    """Gallery columns grouped by a code (label or id): members of code c are
    ``order[start[c]:start[c + 1]]``, ascending gallery index."""

    codes: np.ndarray  # (N,) int32, the code of each gallery item
    order: np.ndarray  # (N,) int64
    start: np.ndarray  # (n_codes + 1,) int64

    @classmethod
    def of(cls, codes: np.ndarray, n_codes: int) -> GalleryGroups:
        order = np.argsort(codes, kind="stable").astype(np.int64)
        counts = np.bincount(codes, minlength=n_codes)
        return cls(codes, order, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    def members(self, code: int) -> np.ndarray:
        if code + 1 >= self.start.size:
            return self.order[:0]
        return self.order[self.start[code] : self.start[code + 1]]


@dataclass
class RankedBlock:
    """What one block of B queries contributes to the metrics.

    hit_ranks: (sum of n_relevant,) int64, each query's relevant ranks in ascending order, the
        queries one after another (the order ``np.nonzero`` of a ranked relevance mask gives).
    match_rank: (B,) int64 best 0-based rank of a gallery item with the query's id, -1 when none
        (all -1 without ids).
    """

    hit_ranks: np.ndarray
    match_rank: np.ndarray


# ----------------------------------------------------------------------------------------------
# NumPy


def _sort_key_ranks(row: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Exact ranks of ``cols`` by sorting the row's unique (descending score, index) keys."""
    u = row.view(np.uint32).astype(np.uint64)
    negative = u >> np.uint64(31) == 1
    # ascending-orderable float bits, then complemented: ascending key = descending score
    u = np.where(negative, ~u & np.uint64(0xFFFFFFFF), u | np.uint64(0x80000000))
    keys = ((np.uint64(0xFFFFFFFF) - u) << np.uint64(_INDEX_BITS)) | np.arange(row.size, dtype=np.uint64)
    ranked = np.sort(keys) & np.uint64(0xFFFFFFFF)
    rank_of = np.empty(row.size, dtype=np.int64)
    rank_of[ranked.astype(np.int64)] = np.arange(row.size)
    return rank_of[cols]


def _row_ranks(row: np.ndarray, ascending: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(N,) scores, the same sorted ascending, (R,) columns -> (R,) exact 0-based ranks of cols."""
    values = row[cols]
    # NumPy's binary search reuses the previous answer when the keys come sorted: search them in
    # ascending order (a third faster on a 54k-photo row), then put the answers back.
    by_value = np.argsort(values)
    right = np.empty(values.size, dtype=np.int64)
    right[by_value] = np.searchsorted(ascending, values[by_value], side="right")  # = #{score <= v}
    ranks = (row.size - right).astype(np.int64)  # #{score > v}
    tied = ascending[np.maximum(right - 2, 0)] == values  # another item has exactly this score
    tied &= right >= 2
    if tied.any():
        tied_values = np.unique(values[tied])
        if tied_values.size > _MAX_TIED_VALUES:
            return _sort_key_ranks(row, cols)
        for value in tied_values:
            equal = np.flatnonzero(row == value)  # ascending gallery index
            mine = np.flatnonzero(values == value)
            ranks[mine] += np.searchsorted(equal, cols[mine])  # equal scores with a lower index
    return ranks


_POOL: ThreadPoolExecutor | None = None


def _thread_pool() -> ThreadPoolExecutor:
    """One pool for the process (created on first use), so repeated evaluations reuse threads."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max(2, _usable_cpus()), thread_name_prefix="sketchlvm-rank")
    return _POOL


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class NumpyRanker:
    """Ranks on the CPU with NumPy (see the module docstring for how).

    Rows are split over ``threads`` threads (default: the CPUs this process may use); NumPy's
    sort and binary search release the GIL, and each row's integers do not depend on the split.
    """

    name = "numpy"

    def __init__(self, threads: int | None = None):
        self.threads = max(1, int(threads or _usable_cpus()))

    def rank_block(
        self,
        scores: np.ndarray,
        query_labels: np.ndarray,
        labels: GalleryGroups,
        query_ids: np.ndarray | None = None,
        ids: GalleryGroups | None = None,
    ) -> RankedBlock:
        """scores (B, N) float32 (no NaN, no -0.0), query_labels (B,) and query_ids (B,) codes
        shared with the gallery's ``labels`` and ``ids`` groups -> :class:`RankedBlock`."""
        hits: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * scores.shape[0]
        match_rank = np.full(scores.shape[0], -1, dtype=np.int64)

        def rank_rows(lo: int, hi: int) -> None:
            for r in range(lo, hi):
                row = scores[r]
                sorted_row = np.sort(row)  # one row at a time: still in cache for the searches
                ranks = _row_ranks(row, sorted_row, labels.members(int(query_labels[r])))
                ranks.sort()
                hits[r] = ranks
                if ids is not None:
                    own = ids.members(int(query_ids[r]))
                    if own.size:
                        match_rank[r] = _row_ranks(row, sorted_row, own).min()

        bounds = np.linspace(0, scores.shape[0], min(self.threads, scores.shape[0]) + 1).astype(int)
        parts = list(itertools.pairwise(bounds))
        if len(parts) == 1:
            rank_rows(*parts[0])
        else:
            pool = _thread_pool()
            for future in [pool.submit(rank_rows, lo, hi) for lo, hi in parts]:
                future.result()
        hit_ranks = np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64)
        return RankedBlock(hit_ranks, match_rank)


# ----------------------------------------------------------------------------------------------
# torch


class TorchRanker:
    """Ranks on a torch device by sorting unique int64 (descending score, index) keys there."""

    def __init__(self, device):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.name = f"torch:{self.device}"
        self._cache: dict[int, object] = {}

    def _on_device(self, array: np.ndarray):
        """Gallery-sized constants go to the device once per evaluation, not once per block."""
        key = id(array)
        hit = self._cache.get(key)
        if hit is None or hit[0] is not array:
            codes = np.ascontiguousarray(array, dtype=np.int64)
            hit = (array, self.torch.from_numpy(codes).to(self.device))
            self._cache[key] = hit
        return hit[1]

    def keys(self, scores: np.ndarray):
        """(B, N) float32 -> (B, N) int64 on the device; ascending key = the ranking."""
        torch = self.torch
        bits = torch.from_numpy(scores).to(self.device).view(torch.int32)
        # signed-orderable float bits (negative floats: flip all bits but the sign) ...
        orderable = bits ^ ((bits >> 31) & 0x7FFFFFFF)
        descending = ~orderable  # ... complemented, so a higher score gets a smaller key
        index = torch.arange(scores.shape[1], device=self.device, dtype=torch.int64)
        # = (descending << 32) | index, written with * and + (shifting a negative int is not portable)
        return descending.to(torch.int64) * (1 << _INDEX_BITS) + index

    def rank_block(
        self,
        scores: np.ndarray,
        query_labels: np.ndarray,
        labels: GalleryGroups,
        query_ids: np.ndarray | None = None,
        ids: GalleryGroups | None = None,
    ) -> RankedBlock:
        """As :meth:`NumpyRanker.rank_block`."""
        torch = self.torch
        keys, _ = torch.sort(self.keys(scores), dim=1)
        order = keys & 0xFFFFFFFF  # (B, N) gallery index, best first
        g_lab = self._on_device(labels.codes)
        q_lab = torch.from_numpy(np.ascontiguousarray(query_labels)).to(self.device).to(torch.int64)
        relevant = g_lab[order] == q_lab[:, None]  # (B, N) bool, ranked
        hit_ranks = torch.nonzero(relevant)[:, 1]  # row-major: each row's ranks ascending
        match_rank = np.full(scores.shape[0], -1, dtype=np.int64)
        if ids is not None:
            g_id = self._on_device(ids.codes)
            q_id = torch.from_numpy(np.ascontiguousarray(query_ids)).to(self.device).to(torch.int64)
            own = g_id[order] == q_id[:, None]
            first = own.to(torch.uint8).argmax(dim=1)  # first True (argmax returns the first max)
            found = own.any(dim=1)
            match_rank = torch.where(found, first, torch.full_like(first, -1)).cpu().numpy().astype(np.int64)
        return RankedBlock(hit_ranks.cpu().numpy().astype(np.int64), match_rank)


# ----------------------------------------------------------------------------------------------
# The one place the ranker is chosen


def resolve_ranker(spec: str | NumpyRanker | TorchRanker = "auto"):
    """"auto" (CUDA through torch when present, else NumPy), "numpy", or a torch device
    ("cpu", "cuda", "cuda:N"; resolved by :func:`sketchlvm.device.resolve_device`)."""
    if isinstance(spec, (NumpyRanker, TorchRanker)):
        return spec
    name = (spec or "auto").strip().lower()
    if name == "numpy":
        return NumpyRanker()
    if name == "auto":
        try:
            from sketchlvm.device import resolve_device
        except ImportError:  # no torch installed: NumPy is the only choice
            return NumpyRanker()
        device = resolve_device("auto")
        return TorchRanker(device) if device.type == "cuda" else NumpyRanker()
    from sketchlvm.device import resolve_device

    try:
        return TorchRanker(resolve_device(name))
    except RuntimeError as e:
        raise ValueError(f"unknown ranker {spec!r}; choose one of {', '.join(RANKERS)}") from e
