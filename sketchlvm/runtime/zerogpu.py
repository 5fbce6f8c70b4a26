"""ZeroGPU: a Space's GPU work in short ``@spaces.GPU`` calls, and the CPU whenever the GPU says no.

On a ZeroGPU Space (``SPACES_ZERO_GPU=true``) no GPU is attached to the app's process. The ``spaces``
package lends one to a forked worker process for the length of each decorated call, after asking its
scheduler, which may refuse: the visitor's daily quota is spent, no GPU is free within 60 s, or the
requested duration is over the visitor's limit. So, on ZeroGPU:

- the model stays on the CPU in the app's process, on its usual CPU path (ONNX Runtime), which answers
  whatever the GPU does not;
- a copy of its encoders goes to ``cuda`` at start (emulated by ``spaces`` until a call lands) and the
  decorated functions below run it in the worker. They take and return CPU tensors and numpy arrays only
  (arguments and results are pickled across the process boundary; a CUDA tensor must not cross back) and
  reach the copy through ``_TARGETS``, a module-level registry the forked worker inherits;
- each call asks for a duration that fits its work (:func:`image_seconds`, :func:`text_seconds`): the
  scheduler checks the visitor's remaining quota against the request, and shorter requests queue first;
- a refused or failed call is answered on the CPU. That kind of work then stays on the CPU for
  ``retry_seconds`` (no scheduler round trip per stroke after a "no"), and the first call after that
  asks the GPU again, so the GPU is used again as soon as it is lent again;
- someone is waiting for a single-image or words encode (a query): it waits for the GPU at most
  ``query_wait_seconds`` (a queued request can wait 60 s), then the CPU answers; the GPU's late answer is
  dropped, and until it is in, further queries go straight to the CPU;
- the page is told: :func:`take_note` gives the line for the query that just ran, :meth:`ZeroGPU.status`
  the line for background indexing.

What asks for the GPU is the zerogpu setting (``POLICY_ENV``): ``photos`` (the default: index chunks and photo queries),
``all`` (sketch strokes and words too) or ``off`` (the CPU only). Why strokes stay on the CPU by
default: docs/spaces.md.

GPU encodes run in fp32 with TF32 off, so that a gallery indexed partly on the GPU and partly on the CPU
(after a refusal) holds vectors within the tolerances its index identity records
(``Runtime.photo_identity``). Off ZeroGPU nothing here runs: ``spaces.GPU`` returns the function itself,
and the model runs on its own device as on a laptop.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sketchlvm.config import env_var, settings

if TYPE_CHECKING:  # torch is imported where it is used: the page's handlers import this module for take_note
    import torch

log = logging.getLogger(__name__)

# What ZeroGPU runs (hub-docs, docs/hub/spaces-zerogpu.md, August 2026); tests/webapp/test_spaces_config.py holds
# requirements.txt and the README's front matter to these lists.
ZEROGPU_TORCH = ("2.8.0", "2.9.1", "2.10.0", "2.11.0")
ZEROGPU_PYTHON = ("3.12.12", "3.10.13")

ZEROGPU_ENV = "SPACES_ZERO_GPU"  # set by Hugging Face on ZeroGPU hardware (read as the spaces package reads it)
POLICY_ENV = env_var("zerogpu")
POLICIES = ("photos", "all", "off")
KINDS = ("sketch", "photo", "text")

# Requested durations (seconds). The request covers the worker's start (fork, weights streamed to the GPU
# on a cold start) as well as the encode itself (milliseconds for ViT-B/32); it is checked against the
# visitor's remaining quota, and the quota is charged for the time really used.
QUERY_SECONDS = 5
CHUNK_BASE_SECONDS = 10
CHUNK_PER_IMAGE_SECONDS = 0.05
MAX_SECONDS = 60


def on_zerogpu() -> bool:
    """Whether this process runs on ZeroGPU hardware (``SPACES_ZERO_GPU``, as ``spaces.config`` reads it)."""
    return os.environ.get(ZEROGPU_ENV, "").strip().lower() in ("1", "t", "true")


def host_device(requested: str | None) -> str:
    """Where the model itself goes on ZeroGPU: the CPU (the GPU copy is made by :func:`attach`). A request
    for CUDA is refused with the reason: outside a ``@spaces.GPU`` call there is no GPU to run on."""
    if str(requested or "auto").strip().lower() in ("auto", "cpu"):
        return "cpu"
    raise ValueError(f"device {requested!r} on ZeroGPU: the model stays on the CPU there and its GPU work runs "
                     f"in @spaces.GPU calls; leave {env_var('device')} unset (or set it to auto)")


def requested_policy(name: str | None = None) -> str:
    value = (name or settings().zerogpu).strip().lower()
    if value not in POLICIES:
        raise ValueError(f"unknown ZeroGPU policy {value!r}; choose one of {', '.join(POLICIES)} ({POLICY_ENV})")
    return value


def image_seconds(key: int, batch: torch.Tensor, modality: str, mode: str) -> int:
    """The duration to ask for an image encode: a query's fixed budget, or one that grows with the chunk."""
    n = int(batch.shape[0])
    if n <= 1:
        return QUERY_SECONDS
    return min(MAX_SECONDS, math.ceil(CHUNK_BASE_SECONDS + CHUNK_PER_IMAGE_SECONDS * n))


def text_seconds(key: int, tokens: torch.Tensor) -> int:
    return QUERY_SECONDS


# ------------------------------------------------------------------------------------------------
# What runs in the GPU worker


@dataclass
class _Target:
    """The GPU copy of one model: its encoders per mode, and CLIP with its text tower (or None)."""

    encoders: dict[str, torch.nn.Module]
    text_model: torch.nn.Module | None
    device: torch.device


_TARGETS: dict[int, _Target] = {}  # filled before the first call, so a forked worker inherits it


def _exact(torch, device: torch.device) -> None:
    if device.type == "cuda":  # fp32 means fp32: TF32 would move vectors beyond the index's tolerances
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def encode_images(key: int, batch: torch.Tensor | np.ndarray, modality: str, mode: str) -> np.ndarray:
    """(B, 3, S, S) normalised CPU images (a tensor, or the numpy array the transforms make) -> (B, D) float32
    unit vectors, on the GPU copy of model ``key``."""
    import torch

    target = _TARGETS[key]
    _exact(torch, target.device)
    with torch.no_grad():
        features = target.encoders[mode](torch.as_tensor(batch).to(target.device), modality)
    return features.float().cpu().numpy()


def encode_tokens(key: int, tokens: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, context) token ids -> (N, D) float32 unit vectors, with the GPU copy of CLIP's text tower."""
    import torch

    target = _TARGETS[key]
    _exact(torch, target.device)
    with torch.no_grad():
        features = target.text_model.encode_text(torch.as_tensor(tokens).to(target.device), normalize=True)
    return features.float().cpu().numpy()


# ------------------------------------------------------------------------------------------------
# What the page is told

_NOTE: contextvars.ContextVar[str | None] = contextvars.ContextVar("sketchlvm_zerogpu_note", default=None)


def take_note() -> str | None:
    """The line for the page when the query that just ran in this request was answered on the CPU because
    the GPU was refused, busy or failed; None otherwise. Reading it clears it."""
    note = _NOTE.get()
    if note is not None:
        _NOTE.set(None)
    return note


def short_reason(error: BaseException) -> str:
    """One short phrase for the page: the title ``spaces`` gives its refusals ("ZeroGPU quota exceeded",
    "ZeroGPU queue timeout", ...), else the exception's type. The full message goes to the log."""
    title = getattr(error, "title", None)
    if isinstance(title, str) and title.strip():
        return title.strip()
    return type(error).__name__


# ------------------------------------------------------------------------------------------------
# The gate


class ZeroGPU:
    """Sends a model's encodes to ``@spaces.GPU`` calls where the policy says so; ``None`` back means "run
    it on your CPU path" (refused, failed, busy, or not for the GPU). One per model (``attach``)."""

    def __init__(self, model: Any, policy: str | None = None, device: str | torch.device = "cuda",
                 retry_seconds: float = 60.0, query_wait_seconds: float = 3.0):
        import spaces  # a no-op package off ZeroGPU; on ZeroGPU sketchlvm.webapp imported it before CUDA was touched
        import torch

        # On ZeroGPU, `spaces` has patched torch: CUDA emulation, and torch function and dispatch modes on the
        # thread that imported it. torch.onnx.export cannot trace under those modes (measured: "aten::view()
        # Expected a value of type 'Tensor'"), and the CPU path would lose ONNX Runtime. The modes are per
        # thread, so the CPU path's graphs are exported and checked on a thread of their own (reading
        # runtime.name does that), before the GPU copy is made.
        with ThreadPoolExecutor(1, thread_name_prefix="zerogpu-prepare") as prepare:
            prepare.submit(lambda: model.runtime.name).result()
        self.policy = requested_policy(policy)
        self.kinds = {"off": set(), "photos": {"photo"}, "all": set(KINDS)}[self.policy]
        self.device = torch.device(device)
        self.retry_seconds = float(retry_seconds)
        self.query_wait_seconds = float(query_wait_seconds)
        self.key = id(self)
        text_model = None
        if "text" in self.kinds and getattr(model, "text_tower", None) is not None:
            text_model = copy.deepcopy(model.text_tower.clip_model).to(self.device).eval()
        encoders = copy.deepcopy(model.encoders)  # one deepcopy: modes that share a tower still share it
        for encoder in encoders.values():
            encoder.to(self.device).eval()
        _TARGETS[self.key] = _Target(encoders, text_model, self.device)
        spaces.disable_gradio_auto_wrap()  # only these two functions take the GPU, never a whole page handler
        self._images = spaces.GPU(encode_images, duration=image_seconds)
        self._tokens = spaces.GPU(encode_tokens, duration=text_seconds)
        self._lock = threading.Lock()
        self._refused_until: dict[str, float] = {}  # kind -> monotonic time the GPU is asked again
        self._reasons: dict[str, str] = {}  # kind -> why it is on the CPU now
        self._query_busy = False  # a query's GPU call is still out (it may outlive its wait)
        self._waiter = ThreadPoolExecutor(1, thread_name_prefix="zerogpu-query")
        self.gpu_calls = 0  # answered by the GPU (for tests and the status line)
        self.cpu_fallbacks = 0  # answered on the CPU because the GPU refused, failed or was busy

    # -- the two entry points Runtime calls ---------------------------------------------------------

    def encode_images(self, batch: torch.Tensor, modality: str, mode: str) -> np.ndarray | None:
        kind = "sketch" if modality == "sketch" else "photo"
        return self._call(kind, self._images, (self.key, batch, modality, mode), query=len(batch) <= 1)

    def encode_tokens(self, tokens: torch.Tensor) -> np.ndarray | None:
        return self._call("text", self._tokens, (self.key, tokens), query=True)

    # -- state ---------------------------------------------------------------------------------------

    def status(self, kind: str = "photo") -> str | None:
        """A line for the page while ``kind`` work runs on the CPU after a refusal; None while it may use the GPU."""
        with self._lock:
            until = self._refused_until.get(kind)
            if until is None:
                return None
            left = until - time.monotonic()
            reason = self._reasons.get(kind, "refused")
        what = "Indexing" if kind == "photo" else "Search"
        when = f"in {math.ceil(left)} s" if left > 0 else "with the next batch"
        return f"{what} runs on the CPU: the GPU was refused ({reason}); ZeroGPU is asked again {when}."

    def describe(self) -> str:
        if not self.kinds:
            return "ZeroGPU: off (everything on the CPU)"
        names = {"photo": "photos (index chunks, photo queries)", "sketch": "sketches", "text": "words"}
        gpu = ", ".join(names[k] for k in KINDS if k in self.kinds)
        cpu = [names[k] for k in KINDS if k not in self.kinds]
        return f"ZeroGPU: {gpu} in @spaces.GPU calls" + (f"; {', '.join(cpu)} on the CPU" if cpu else "")

    def close(self) -> None:
        self._waiter.shutdown(wait=False)
        _TARGETS.pop(self.key, None)

    # -- the gate ------------------------------------------------------------------------------------

    def _call(self, kind: str, function, args: tuple, query: bool) -> np.ndarray | None:
        if kind not in self.kinds:
            return None  # this work is for the CPU by policy: no note, nothing was refused
        with self._lock:
            until = self._refused_until.get(kind)
            if until is not None and time.monotonic() < until:
                reason = self._reasons.get(kind, "refused")
                self.cpu_fallbacks += 1
                return self._fallback(query, f"the GPU was refused a moment ago ({reason})")
            if query and self._query_busy:
                self.cpu_fallbacks += 1
                return self._fallback(query, "the GPU is still busy with an earlier search")
            if query:
                self._query_busy = True
        if not query:
            try:
                out = function(*args)
            except Exception as error:  # noqa: BLE001 - spaces raises gr.Error, RuntimeError, httpx errors
                return self._refused(kind, error, query)
            return self._granted(kind, out)
        context = contextvars.copy_context()  # spaces reads the visitor's request (their quota) from it
        future = self._waiter.submit(context.run, function, *args)
        future.add_done_callback(lambda done: self._query_done(kind, done))
        try:
            out = future.result(timeout=self.query_wait_seconds)
        except FutureTimeout:
            self.cpu_fallbacks += 1
            log.info("ZeroGPU: no answer within %.1f s; this %s is answered on the CPU", self.query_wait_seconds, kind)
            return self._fallback(query, f"no GPU within {self.query_wait_seconds:g} s")
        except Exception as error:  # noqa: BLE001 - see above
            return self._refused(kind, error, query)
        return self._granted(kind, out)

    def _query_done(self, kind: str, future) -> None:
        """A query's GPU call is over, perhaps long after the CPU answered: a late refusal still counts."""
        error = None if future.cancelled() else future.exception()
        with self._lock:
            self._query_busy = False
            now = time.monotonic()
            if error is not None and self._refused_until.get(kind, 0.0) <= now:  # not already backing off
                self._refused_until[kind] = now + self.retry_seconds
                self._reasons[kind] = short_reason(error)

    def _granted(self, kind: str, out: Any) -> np.ndarray:
        with self._lock:
            self.gpu_calls += 1
            self._refused_until.pop(kind, None)
            self._reasons.pop(kind, None)
        return np.asarray(out, dtype=np.float32)

    def _refused(self, kind: str, error: BaseException, query: bool) -> None:
        reason = short_reason(error)
        log.warning("ZeroGPU refused or failed a %s encode (%s: %s); the CPU answers, and the GPU is asked "
                    "again in %g s", kind, reason, error, self.retry_seconds)
        with self._lock:
            self.cpu_fallbacks += 1
            self._refused_until[kind] = time.monotonic() + self.retry_seconds
            self._reasons[kind] = reason
        return self._fallback(query, f"the GPU was refused ({reason})")

    @staticmethod
    def _fallback(query: bool, why: str) -> None:
        if query:
            _NOTE.set(f"⚠️ Answered on the CPU: {why}.")


def attach(model: Any, policy: str | None = None, device: str | torch.device = "cuda", **options: Any) -> ZeroGPU:
    """Route ``model``'s encodes through a :class:`ZeroGPU` gate (``model.runtime.offload``)."""
    gate = ZeroGPU(model, policy, device, **options)
    model.runtime.offload = gate
    return gate
