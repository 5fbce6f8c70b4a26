"""int8 sketch queries are used only once they rank the gallery (nearly) as fp32 queries do.

Dynamic int8 roughly halves ONNX Runtime's query time again, but what it costs depends on the real
weights (random weights say nothing about it, docs/cpu-inference.md), so it measures itself: the same real sketches
are encoded in fp32 and in int8, both search the gallery, and the agreement is the mean share of the
fp32 top-k that the int8 top-k also holds. Below ``RuntimeConfig.int8_min_agreement`` int8 is refused.
Only the query side is quantised; the gallery's photo vectors stay fp32, so an index never changes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sketchlvm.runtime.engine import RUNTIME_ENV, Int8RefusedError, example_sketches

log = logging.getLogger(__name__)


def top_k_agreement(ids_a: np.ndarray, ids_b: np.ndarray) -> float:
    """(Q, k) and (Q, k) ranked ids -> mean over queries of |top-k(a) ∩ top-k(b)| / k."""
    if ids_a.shape != ids_b.shape or ids_a.size == 0:
        raise ValueError(f"need two non-empty rankings of one shape, got {ids_a.shape} and {ids_b.shape}")
    k = ids_a.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids_a.tolist(), ids_b.tolist())]))


def measure_int8_agreement(model: Any, index: Any, sketches: Sequence[Any] | None = None,
                           k: int | None = None) -> dict[str, float]:
    """{mode: top-k agreement of int8 vs fp32 queries on ``index``} for each mode with an int8 sketch graph.

    ``sketches``: real drawings (images or canvas values); default: the app's example sketches.
    """
    runtime = model.runtime
    k = min(k or runtime.config.int8_top_k, len(index))
    sketches = list(sketches) if sketches is not None else example_sketches()
    if not sketches:
        raise ValueError("no sketches to measure int8 agreement with")
    if k < 1:
        raise ValueError("the gallery is empty: nothing to rank, so int8 agreement cannot be measured")
    batch = torch.stack([model.sketch_transform(s) for s in sketches])
    found = {}
    for mode in model.modes:
        if not runtime.uses_int8(mode):
            continue
        fp32 = runtime.encode(batch, "sketch", mode, int8=False)
        int8 = runtime.encode(batch, "sketch", mode, int8=True)
        _, ids_fp32 = index.search(np.ascontiguousarray(fp32), mode, k)
        _, ids_int8 = index.search(np.ascontiguousarray(int8), mode, k)
        found[mode] = top_k_agreement(ids_fp32, ids_int8)
    return found


def check_int8(model: Any, index: Any, sketches: Sequence[Any] | None = None) -> str:
    """Measure int8 agreement on ``index``, record it in the runtime's status, and refuse it when too low.

    Returns the status line ("int8: top-10 agreement 0.97 ..."); raises ``Int8RefusedError``.
    """
    runtime = model.runtime
    if runtime.name != "onnx-int8":
        return ""
    n = len(list(sketches)) if sketches is not None else len(example_sketches())
    found = measure_int8_agreement(model, index, sketches)
    if not found:
        return ""
    k = min(runtime.config.int8_top_k, len(index))
    worst = min(found.values())
    per_mode = ", ".join(f"{m} {v:.2f}" for m, v in found.items())
    status = f"int8: top-{k} agreement {worst:.2f} ({per_mode}; {n} sketches, {len(index)} photos)"
    runtime.int8_agreement = found
    if worst < runtime.config.int8_min_agreement:
        runtime.int8_status = f"{status} — refused, below {runtime.config.int8_min_agreement:.2f}"
        log.error("%s", runtime.int8_status)
        raise Int8RefusedError(
            f"{status} is below the {runtime.config.int8_min_agreement:.2f} needed: int8 sketch embeddings "
            f"rank this gallery too differently from fp32. Run without int8: --runtime onnx (exact, still fast "
            f"on CPU) or --runtime torch, or set {RUNTIME_ENV}=onnx")
    runtime.int8_status = status
    log.info("%s", status)
    return status
