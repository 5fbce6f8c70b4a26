"""Running ONNX graphs: sessions, threads, whose turn it is, index slices. No torch here.

Both installs run their graphs through this one module: the full install's ``Runtime``
(``runtime/engine.py``, which exports graphs from torch and checks them against it) and the serving
install's ``ExportedRuntime`` (``runtime/folder_runtime.py``, which runs the graphs of an export folder). So a
query or an index slice costs the same on either, with the same threads and the same turn-taking.

Threads: query sessions (sketch and text graphs, batch 1) and index sessions (photo graphs, slices of
``RuntimeConfig.index_run_batch``) use every core without busy-waiting by default, so the app's other
searches, Gradio's threads or the index build's decoding threads get the CPU while an operator waits.
Query encodes take turns (``RuntimeConfig.serial_queries``), and those that queued behind a run go through
the next one together (``runtime/query_batches.py``); index runs never wait for them.

Memory: each graph file has one session, whatever roles run it, and the heap is trimmed once a session is
built (``trim_heap``): building one reads the file and pre-packs its MatMul weights, and glibc kept what
that freed, so ViT-B/32's 351 MB image graph held ~575 MB instead of ~350 MB. A second session per role
cost as much again for the same answers. The query and index
roles ask for the same settings by default (every core, no spinning), so one pre-packing session runs
both: batch-1 queries keep pre-packing's speed (~28% faster than without), index slices run exactly as
fast as on a session of their own, and a query during indexing is answered as fast as with two sessions
(bench/bench_sessions.py; docs/serving.md has the figures). Only a ``RuntimeConfig`` that gives the two
roles different threads or spinning gets a second session, and pays for its weights.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sketchlvm.config import RuntimeConfig, env_var, settings
from sketchlvm.runtime.query_batches import QueryBatches

RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")
RUNTIME_ENV = env_var("runtime")
ORT_MISSING = "onnxruntime is not installed (pip install -r requirements.txt)"


class Int8RefusedError(RuntimeError):
    """int8 sketch embeddings rank the gallery too differently from fp32; the message says how to run without."""


def requested_runtime(name: str | None = None) -> str:
    """``name``, else the runtime setting (``RUNTIME_ENV``, default "auto"); refuses anything but ``RUNTIMES``."""
    value = (name or settings().runtime).strip().lower()
    if value not in RUNTIMES:
        raise ValueError(f"unknown runtime {value!r}; choose one of {', '.join(RUNTIMES)} (--runtime / {RUNTIME_ENV})")
    return value


def onnxruntime_or_reason() -> tuple[Any, str | None]:
    try:
        import onnxruntime
    except ImportError:
        return None, ORT_MISSING
    return onnxruntime, None


def cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def role_settings(role: str, config: RuntimeConfig) -> tuple[int, bool]:
    """(intra-op threads, spinning) a role asks for: roles asking for the same share one session."""
    threads = config.query_threads if role == "query" else config.index_threads
    return threads or cpu_threads(), role == "query" and config.query_spinning


def session_options(ort: Any, role: str, config: RuntimeConfig) -> Any:
    """ONNX Runtime settings for "query" (latency) or "index" (throughput beside decoding threads)."""
    opts = ort.SessionOptions()
    threads, spinning = role_settings(role, config)
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
    return opts


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``). ONNX Runtime frees the file's
    bytes and the unpacked weights it pre-packed once a session is built, but glibc keeps such memory in
    its arenas: without this a ViT-B/32 image session holds ~575 MB of RSS, with it ~350 MB (its file is
    351 MB). A no-op where the C library is not glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def role_of(modality: str) -> str:
    """Sketches (and words) are queries (latency); photos are indexed (throughput)."""
    return "query" if modality in ("sketch", "text") else "index"


class OnnxSessions:
    """One ONNX Runtime session per graph file (per settings, see the module doc), made when first needed;
    thread-safe: ONNX Runtime runs one session from several threads at once."""

    def __init__(self, ort: Any, config: RuntimeConfig):
        self.ort = ort
        self.config = config
        self._sessions: dict[tuple[Path, tuple[int, bool]], Any] = {}
        self._lock = threading.Lock()
        self._query_turn = threading.RLock()  # one query encode at a time (RuntimeConfig.serial_queries)
        # Queries that queue behind a running one go through together (runtime/query_batches.py).
        self.query_batches = QueryBatches(max_batch=config.query_batch)

    def session(self, path: Path, role: str) -> Any:
        key = (Path(path), role_settings(role, self.config))
        with self._lock:  # Gradio calls from a thread pool; one session per file (and settings)
            if key not in self._sessions:
                self._sessions[key] = self.ort.InferenceSession(
                    str(path), session_options(self.ort, role, self.config), providers=["CPUExecutionProvider"])
                trim_heap()  # what building it read and pre-packed from, freed, leaves the process (module doc)
            return self._sessions[key]

    def open_sessions(self) -> int:
        """How many sessions are open (for tests: one per graph file by default)."""
        with self._lock:
            return len(self._sessions)

    def close(self, path: Path) -> None:
        """Drop ``path``'s sessions (their weights go with them); the next run opens it again. The full
        install closes the text graph once it is checked, so words cost memory only once they are used."""
        with self._lock:
            for key in [key for key in self._sessions if key[0] == Path(path)]:
                del self._sessions[key]

    def turn(self, role: str):
        """Query encodes, on either engine, take turns; index runs never wait."""
        if role == "query" and self.config.serial_queries:
            return self._query_turn
        return contextlib.nullcontext()

    def run(self, path: Path, role: str, inputs: dict[str, np.ndarray], batchable: bool = True) -> np.ndarray:
        """The graph's first output. Queries taking turns are batched with those queued beside them, unless
        ``batchable`` is False: a graph whose answer for one input depends on the rest of its batch (int8
        with dynamic quantisation computes one activation scale per batch: measured on ViT-B/32, up to
        2e-3 apart from the same sketch alone) must run each query alone, or one person's drawing would
        move another's scores."""
        session = self.session(path, role)

        def encode(batch: dict[str, np.ndarray]) -> np.ndarray:
            with self.turn(role):
                return session.run(None, batch)[0]

        if role == "query" and self.config.serial_queries and batchable:
            return self.query_batches.run(Path(path), inputs, encode)
        return encode(inputs)

    def describe(self) -> str:
        threads = self.config.query_threads or cpu_threads()
        return f"ONNX Runtime {self.ort.__version__} on CPU, {threads} query threads"


def in_slices(batch: Any, role: str, step: int, encode: Callable[[Any], np.ndarray]) -> np.ndarray:
    """``encode(batch)``, index batches in slices of ``step`` (``RuntimeConfig.index_run_batch``) on the CPU."""
    if role == "index" and 0 < step < len(batch):
        return np.concatenate([encode(batch[i : i + step]) for i in range(0, len(batch), step)])
    return encode(batch)
