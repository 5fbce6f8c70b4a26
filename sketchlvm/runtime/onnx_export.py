"""One prompted encoder path -> an ONNX graph on disk, checked against torch before anyone uses it.

A *graph* is what one (mode, modality) pair computes, with the prompts that modality uses baked in as
constants: images (B, 3, S, S) in, unit vectors (B, D) out, B dynamic. Pairs that compute the same
function share one graph: category mode has a sketch graph and a photo graph, fine-grained mode one
shared graph, and every mode without trained prompts the plain tower. CLIP's text tower, for word
queries, is one more graph ("text"): token ids (N, context) int64 in, unit vectors (N, D) out.

Cache: one folder (``default_cache_dir``: the onnx_cache setting, else ``~/.cache/sketchlvm/onnx``),
outside the repository. A graph is ``<name>-<key>.onnx`` with ``<name>-<key>.json`` beside it, where
``<key>`` hashes the graph's full identity (architecture, weights, checkpoint hash, prompt set, image
size, preprocessing, and the torch / open_clip / opset versions that wrote it): any change is a new
file, never a stale reuse. Both files are written under a temporary name and renamed (graph first,
sidecar last), so a reader never sees half a graph. The check against torch runs every time a graph is
loaded, on this machine's ONNX Runtime kernels, not only when it was written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sketchlvm.config import env_var, settings
from sketchlvm.runtime.onnx_trace import traceable_tower

log = logging.getLogger(__name__)

OPSET = 18
EXPORT_FORMAT = 5  # bump when the exported graph changes (4: traced by onnx_trace; 5: patch embedding a Conv again)
INT8_FORMAT = 2  # bump when the int8 recipe changes (2: 7-bit weights, see ensure_int8_graph)
CACHE_ENV = env_var("onnx_cache")


class GraphRefusedError(RuntimeError):
    """An exported graph cannot be used (export failed, or it disagrees with torch); the message says why."""


def default_cache_dir() -> Path:
    chosen = settings().onnx_cache
    if chosen is not None:
        return chosen
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sketchlvm" / "onnx"


@dataclass(frozen=True)
class GraphSpec:
    """Which graph a (mode, modality) pair runs: ``name`` says what it is, ``identity`` everything in it."""

    name: str  # "plain", "category-sketch", "category-photo", "fine_grained-shared", "text"
    mode: str  # a mode whose encoder computes it ("text" for the text tower)
    modality: str  # the modality whose prompts are baked in ("text": CLIP's text tower, token ids in)
    identity: dict[str, Any]

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:16]

    def path(self, cache_dir: Path, suffix: str = "") -> Path:
        return cache_dir / f"{self.name}-{self.key}{suffix}.onnx"


def graph_spec(model: Any, mode: str, modality: str) -> GraphSpec:
    """The graph ``model`` (a ``SketchLVM``) runs for ``mode`` and ``modality``."""
    from sketchlvm.config import PROMPT_SETS

    encoder = model.encoders[mode]
    trained = encoder.prompts is not None or mode in model.trained_modes()
    prefix = "sketch" if modality == "sketch" else "photo"
    identity = {
        **_common_identity(model),
        "image_size": model.image_size,
        # The graph takes normalised tensors; the normalisation that made them is part of what it means.
        "mean": list(getattr(model.preprocess, f"{prefix}_mean")),
        "std": list(getattr(model.preprocess, f"{prefix}_std")),
    }
    if not trained:
        return GraphSpec("plain", mode, modality, identity)
    prompt_set = PROMPT_SETS[mode][modality]
    identity.update(
        mode=mode,
        prompt_set=prompt_set,
        n_prompts=encoder.prompts.n_prompts if encoder.prompts is not None else 0,
        checkpoint_sha256=model.checkpoint.sha256 if model.checkpoint else None,
        # The learned tensors themselves, for models built in memory (no checkpoint file to hash).
        state_sha256=_state_digest(encoder),
    )
    return GraphSpec(f"{mode}-{prompt_set}", mode, modality, identity)


def text_graph_spec(model: Any) -> GraphSpec:
    """The graph of ``model``'s CLIP text tower (``model.text_tower``): token ids in, unit vectors out.

    Its identity holds a digest of all the tower's tensors, besides the weights source: random weights
    all share one source name, and a text graph is reused only for exactly these weights."""
    tower = model.text_tower
    identity = {
        **_common_identity(model),
        "tower": "text",
        "context_length": tower.context_length,
        "state_sha256": _tensors_digest(tower.clip_model.state_dict()),
    }
    return GraphSpec("text", "text", "text", identity)


def _common_identity(model: Any) -> dict[str, Any]:
    """What every graph's identity holds: the export format and tools, the architecture, the weights."""
    import open_clip

    return {
        "format": EXPORT_FORMAT,
        "opset": OPSET,
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "arch": model.arch,
        "weights": model.weights.identity(),
    }


def _state_digest(encoder: nn.Module) -> str:
    """The learned part of a prompted encoder: its prompts and LayerNorms."""
    return _tensors_digest({name: tensor for name, tensor in encoder.state_dict().items()
                            if name.startswith("prompts.") or "ln" in name or "norm" in name})


def _tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


class _Graph(nn.Module):
    """One modality's path through a prompted encoder, as a function of the images alone (what ONNX traces)."""

    def __init__(self, encoder: nn.Module, modality: str):
        super().__init__()
        self.encoder = encoder
        self.modality = modality

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images, self.modality)  # (B, D) unit vectors


def _atomic_replace(tmp: Path, path: Path) -> None:
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared cache should be readable
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _temp_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def export_graph(encoder: nn.Module, modality: str, image_size: int, path: Path) -> None:
    """Trace ``encoder`` for ``modality`` into ``path`` (atomically), with a dynamic batch axis."""
    with traceable_tower(encoder.visual):
        _export(_Graph(encoder, modality), torch.zeros(2, 3, image_size, image_size), "images", path)


class _TextGraph(nn.Module):
    """CLIP's text tower as a function of token ids alone: (N, context) int64 -> (N, D) unit vectors."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.clip_model = clip_model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip_model.encode_text(tokens, normalize=True)


def export_text_graph(clip_model: nn.Module, context_length: int, path: Path) -> None:
    """Trace the text tower of ``clip_model`` into ``path`` (atomically), with a dynamic batch axis."""
    example = torch.zeros(2, context_length, dtype=torch.long)
    example[:, 0], example[:, 1] = 1, 2  # the tower pools at the largest id (the end token): make it unambiguous
    _export(_TextGraph(clip_model), example, "tokens", path)


def _export(graph: nn.Module, example: torch.Tensor, input_name: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    graph = graph.eval()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        # The fused attention kernel that a frozen tower takes in eval mode has no ONNX form: trace the
        # plain MultiheadAttention maths instead (same function).
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's tracer warnings are about code we do not run
            torch.onnx.export(
                graph, (example,), str(tmp), input_names=[input_name], output_names=["embeddings"],
                dynamic_axes={input_name: {0: "batch"}, "embeddings": {0: "batch"}},
                opset_version=OPSET, dynamo=False,
            )
        _atomic_replace(tmp, path)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        tmp.unlink(missing_ok=True)


def write_sidecar(path: Path, record: dict) -> None:
    tmp = _temp_path(path)
    try:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        _atomic_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_sidecar(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Agreement:
    """How closely two encoders agree on the same images: worst cosine and largest component difference."""

    min_cosine: float
    max_abs_diff: float
    n_images: int
    what: str = "images"  # what was compared: "images", or "prompts" for the text tower

    def within(self, min_cosine: float, max_abs_diff: float) -> bool:
        return self.min_cosine >= min_cosine and self.max_abs_diff <= max_abs_diff

    def __str__(self) -> str:
        return f"cosine >= {self.min_cosine:.6f}, max abs diff {self.max_abs_diff:.1e} on {self.n_images} {self.what}"


def agreement(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    """(N, D) unit vectors from two encoders of the same N images -> their worst agreement."""
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        return Agreement(-1.0, float("inf"), len(reference))
    cosines = (reference * candidate).sum(1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1) + 1e-12)
    return Agreement(float(cosines.min()), float(np.abs(reference - candidate).max()), len(reference))


def ensure_graph(spec: GraphSpec, encoder: nn.Module, image_size: int, cache_dir: Path) -> tuple[Path, bool]:
    """The cached graph for ``spec``, exported first when missing. Returns (path, exported_now).

    ``encoder`` is the prompted encoder, or for the "text" modality the CLIP model whose text tower it is
    (``image_size`` is then unused).

    Raises ``GraphRefusedError`` when the export fails.
    """
    path = spec.path(cache_dir)
    sidecar = path.with_suffix(".json")
    record = read_sidecar(sidecar)
    if path.is_file() and record and record.get("identity") == spec.identity and record.get("bytes") == path.stat().st_size:
        log.info("ONNX graph %s: reusing %s", spec.name, path)
        return path, False
    log.info("ONNX graph %s: exporting to %s (once per model identity)", spec.name, path)
    try:
        if spec.modality == "text":
            export_text_graph(encoder, spec.identity["context_length"], path)
        else:
            export_graph(encoder, spec.modality, image_size, path)
    except Exception as error:  # the exporter raises many types; all mean "no graph"
        raise GraphRefusedError(f"export of the {spec.name} graph failed: {type(error).__name__}: {error}") from error
    write_sidecar(sidecar, {"identity": spec.identity, "bytes": path.stat().st_size, "name": spec.name})
    return path, True


def ensure_int8_graph(spec: GraphSpec, fp32_path: Path, cache_dir: Path) -> Path:
    """Dynamic int8 (QInt8 weights, activations quantised on the fly) of a cached fp32 graph, cached beside it.

    Only the MatMuls (the transformer, ~97% of the FLOPs) are quantised: the patch-embedding Conv stays
    fp32 (ONNX Runtime's CPU ConvInteger took twice the fp32 Conv's time here, and quantising the
    patches as a MatMul cost ranking agreement for no measurable gain, with 8-bit weights).

    Weights are quantised to 7 bits (``reduce_range``). Without VNNI (AVX2 machines like the free
    Spaces' and ours) ONNX Runtime's uint8 x int8 kernel adds pairs of products in saturating 16-bit
    lanes, which full-range weights overflow: on ViT-B/32 with real sketches the int8 embeddings' cosine
    to fp32 was 0.981 with 8-bit weights and 0.9996 with 7-bit ones, at the same speed."""
    path = spec.path(cache_dir, "-int8")
    sidecar = path.with_suffix(".json")
    record = read_sidecar(sidecar)
    if (path.is_file() and record and record.get("identity") == spec.identity
            and record.get("int8_format") == INT8_FORMAT and record.get("bytes") == path.stat().st_size):
        return path
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = _temp_path(path)
        try:
            quantize_dynamic(str(fp32_path), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                             reduce_range=True)
            _atomic_replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except Exception as error:
        raise GraphRefusedError(f"int8 quantisation of the {spec.name} graph failed: {type(error).__name__}: {error}") from error
    write_sidecar(sidecar, {"identity": spec.identity, "int8_format": INT8_FORMAT, "bytes": path.stat().st_size,
                            "name": spec.name, "int8": True})
    return path
