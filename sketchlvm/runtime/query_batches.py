"""Query encodes that queue behind a running one go through the encoder together. No torch here.

Query encodes take turns (``RuntimeConfig.serial_queries``): each batch-1 run already uses every core, so
two at once only slow each other down. Under load, though, several searches wait for the turn at once,
and encoding them one after another wastes the CPU that a batch saves: ViT-B/32 on ONNX Runtime, 2 cores,
costs 115 ms of CPU for one sketch alone, 93 ms each in a batch of 2 and 85 ms each in a batch of 4
(outputs bit-identical to one at a time). So the searches that queued while a run was going are
encoded in the next run, as one batch of up to ``RuntimeConfig.query_batch``. A search that finds the
encoder free runs at once, alone: one person drawing waits exactly as long as before.

Only inputs of the same graph with the same shapes and types join one batch (a sketch of the same size,
words of the same context length), and only on fp32 graphs: an int8 graph (dynamic quantisation) scales
its activations per batch, so its answer for one sketch would depend on the others beside it
(``OnnxSessions.run(batchable=False)``). If a batch fails, each of its queries runs again on its own, so
one query's failure is its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Inputs = dict[str, np.ndarray]


@dataclass(eq=False)
class _Query:
    key: Any
    inputs: Inputs
    out: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class QueryBatches:
    """Runs queries one batch at a time; ``runs`` counts the encoder runs and ``largest`` the largest batch
    (tests and benchmarks read them)."""

    max_batch: int = 8
    runs: int = 0
    largest: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _waiting: list[_Query] = field(default_factory=list)
    _running: bool = False

    def run(self, key: Any, inputs: Inputs, encode: Callable[[Inputs], np.ndarray]) -> np.ndarray:
        """``encode(inputs)``'s first output for this query, run alone or in one batch with the queries of the
        same ``key`` that are waiting (``encode`` takes a whole batch: each input stacked on axis 0)."""
        query = _Query((key, _shapes(inputs)), inputs)
        with self._cond:
            self._waiting.append(query)
            while self._running and not query.done:
                self._cond.wait()
            if not query.done:  # the encoder is free: this thread runs the next batch, its own query first
                batch = [query] + [q for q in self._waiting if q is not query and q.key == query.key]
                batch = batch[: max(1, self.max_batch)]
                for q in batch:
                    self._waiting.remove(q)
                self._running = True
        if not query.done:
            try:
                self._encode(batch, encode)
            finally:
                with self._cond:
                    self._running = False
                    for q in batch:
                        q.done = True
                    self._cond.notify_all()
        if query.error is not None:
            raise query.error
        return query.out

    def _encode(self, batch: list[_Query], encode: Callable[[Inputs], np.ndarray]) -> None:
        self.runs += 1
        self.largest = max(self.largest, len(batch))
        if len(batch) == 1:
            try:
                batch[0].out = encode(batch[0].inputs)
            except Exception as error:  # noqa: BLE001 (raised in the caller's thread)
                batch[0].error = error
            return
        try:
            stacked = {name: np.concatenate([q.inputs[name] for q in batch]) for name in batch[0].inputs}
            out = encode(stacked)
            start = 0
            for q in batch:
                rows = len(next(iter(q.inputs.values())))
                q.out = out[start : start + rows]
                start += rows
        except Exception:  # noqa: BLE001 (each query again on its own: its failure is its own)
            for q in batch:
                self._encode([q], encode)


def _shapes(inputs: Inputs) -> tuple:
    """What must match for two queries to share a run: each input's name, type and shape after the batch."""
    return tuple(sorted((name, str(a.dtype), tuple(a.shape[1:])) for name, a in inputs.items()))
