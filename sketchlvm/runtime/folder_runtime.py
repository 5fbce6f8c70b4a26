"""The serving install's runtime: the graphs of an export folder on ONNX Runtime, no torch anywhere.

The full install's ``Runtime`` (``runtime/engine.py``) exports each (mode, modality) graph from torch,
checks it against torch on real images and runs it; ``sketchlvm export`` writes exactly those checked
graphs into a folder. Here they are run as they are, through the same sessions, threads, turn-taking
and index slices (``runtime/onnx_sessions.py``), with the same interface, so the gallery, the search and
the app cannot tell the two apart. What needs torch (``--runtime torch``, checking graphs against it,
quantising to int8) is refused with a message that names the full install.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from sketchlvm.config import RuntimeConfig
from sketchlvm.runtime.onnx_sessions import OnnxSessions, in_slices, onnxruntime_or_reason, role_of

log = logging.getLogger(__name__)

class ExportUnavailableError(RuntimeError):
    """An export folder cannot be served (missing, incomplete, or asking for torch); the message says the fix."""


SERVED_RUNTIMES = ("auto", "onnx")
FULL_INSTALL = "pip install -r requirements.txt (the full install, with torch)"


def check_served_runtime(requested: str | None) -> str:
    """"auto" or "onnx" run an export; "torch" and "onnx-int8" need the full install (a clear error)."""
    value = (requested or "auto").strip().lower()
    if value == "torch":
        raise ExportUnavailableError("--runtime torch needs torch, and an export folder holds ONNX graphs only: "
                                     "serve it with --runtime onnx (the default), or serve the checkpoint with "
                                     f"the full install: {FULL_INSTALL}")
    if value == "onnx-int8":
        raise ExportUnavailableError("--runtime onnx-int8 quantises graphs and checks their rankings against fp32, "
                                     f"which needs the full install ({FULL_INSTALL}); an export folder serves fp32: "
                                     "--runtime onnx (the default)")
    if value not in SERVED_RUNTIMES:
        raise ValueError(f"unknown runtime {value!r}; an export folder runs on: {', '.join(SERVED_RUNTIMES)}")
    return value


class ExportedRuntime:
    """Encodes for an ``ExportedSketchLVM``: ``graphs[(mode, modality)]`` image graphs, ``text`` the text graph.

    ``photo_identity`` is what the export recorded (the tolerances its graphs met against torch), so an
    index built by either install is the same index to the other. Implements ``runtime.interface.EncoderRuntime``."""

    def __init__(self, graphs: dict[tuple[str, str], Path], text: Path | None, photo_identity: dict[str, Any],
                 config: RuntimeConfig | None = None, requested: str | None = "auto"):
        self.requested = check_served_runtime(requested)
        ort, missing = onnxruntime_or_reason()
        if ort is None:
            raise ExportUnavailableError(f"an export folder runs on ONNX Runtime, but {missing}")
        self.config = config or RuntimeConfig()
        self.graphs = dict(graphs)
        self.text = text
        self._photo_identity = photo_identity
        self._onnx = OnnxSessions(ort, self.config)
        self._inputs: dict[Path, tuple[str, Any]] = {}
        self.name = "onnx"
        self.fallbacks: dict[tuple[str, str], str] = {}  # nothing falls back: there is no torch to fall back to
        self.reason: str | None = None
        self.int8_status: str | None = None
        self.int8_agreement: dict[str, float] | None = None
        self.text_reason: str | None = None

    def _input(self, path: Path, role: str) -> tuple[str, Any]:
        """The graph's input name and dtype (ours: "images" float32 / "tokens" int64; immich's: "image" / "text" int32)."""
        if path not in self._inputs:
            spec = self._onnx.session(path, role).get_inputs()[0]
            dtype = {"tensor(int32)": np.int32, "tensor(int64)": np.int64}.get(spec.type, np.float32)
            self._inputs[path] = (spec.name, dtype)
        return self._inputs[path]

    def _run(self, path: Path, role: str, values: np.ndarray) -> np.ndarray:
        name, dtype = self._input(path, role)
        out = np.asarray(self._onnx.run(path, role, {name: np.ascontiguousarray(values, dtype=dtype)}), np.float32)
        # Our graphs end in a normalisation; other exports (immich's) may not: unit vectors either way.
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def encode(self, batch: Any, modality: str, mode: str, int8: bool = True) -> np.ndarray:
        """(B, 3, S, S) normalised images -> (B, D) float32 unit vectors (index batches in slices, as on torch's install)."""
        path = self.graphs.get((mode, modality))
        if path is None:
            raise ValueError(f"this export has no {modality} graph for mode {mode!r}")
        role = role_of(modality)
        return in_slices(np.asarray(batch), role, self.config.index_run_batch, lambda part: self._run(path, role, part))

    def encode_text(self, tokens: Any) -> np.ndarray:
        """(N, context) token ids -> (N, D) float32 unit vectors on the exported text graph."""
        if self.text is None:
            raise ExportUnavailableError("this export folder has no text graph (textual/model.onnx)")
        return self._run(self.text, "query", np.asarray(tokens))

    def text_runtime(self) -> str:
        return "ONNX Runtime fp32" if self.text is not None else "no text tower"

    def uses_onnx(self, mode: str, modality: str) -> bool:
        return (mode, modality) in self.graphs

    def uses_int8(self, mode: str) -> bool:
        return False

    def photo_identity(self) -> dict[str, Any]:
        return dict(self._photo_identity)

    def release_torch(self, photos: list | None = None) -> str | None:
        """Nothing to free: there is no torch here (see ``Runtime.release_torch``)."""
        return None

    def describe(self) -> str:
        text = f"onnx: {self._onnx.describe()}, fp32, exported graphs (no torch)"
        return text + (f"; text tower on {self.text_runtime()}" if self.text is not None else "")
