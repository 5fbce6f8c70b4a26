"""Learned-state checkpoints: only what was trained, as safetensors, with self-describing metadata.

A checkpoint holds one or both modes. Tensor keys are ``<mode>/<name>`` where ``<name>`` is relative
to a ``PromptedVisionEncoder`` (``prompts.tokens.sketch``, ``visual.ln_pre.weight``...). The JSON
metadata (architecture, weights, prompt config, modes, training data, metrics) lives in the
safetensors header under the key ``sketchlvm``, so the file cannot be separated from its config.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sketchlvm.config import MODES, PreprocessConfig, merge_into

FORMAT = "sketchlvm-checkpoint"
FORMAT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the backbone it is being loaded into; the message lists every mismatch."""


@dataclass
class Checkpoint:
    """Learned tensors per mode plus metadata (``arch``, ``pretrained``, ``n_prompts``, ``trainable``...)."""

    states: dict[str, dict[str, torch.Tensor]]
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    sha256: str | None = None

    @property
    def modes(self) -> list[str]:
        return sorted(self.states)


def learned_state(encoder: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """A snapshot (copied, on the CPU) of the tensors named by the trainable rule."""
    params = dict(encoder.named_parameters())
    return {name: params[name].detach().float().cpu().clone() for name in names}


def save_checkpoint(path: str | Path, states: dict[str, dict[str, torch.Tensor]], metadata: dict[str, Any]) -> Path:
    """Write atomically (temporary file + rename) so an interrupted save never leaves a broken file."""
    unknown = set(states) - set(MODES)
    if unknown:
        raise ValueError(f"unknown mode(s) {sorted(unknown)}; modes are {MODES}")
    meta = {"format": FORMAT, "version": FORMAT_VERSION, **metadata, "modes": sorted(states)}
    tensors = {f"{mode}/{name}": tensor for mode, state in states.items() for name, tensor in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"sketchlvm": json.dumps(meta, sort_keys=True)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def preprocess_metadata(preprocess: PreprocessConfig, image_size: int) -> dict[str, Any]:
    """The checkpoint metadata that fixes how images become tensors: everything besides the weights
    that changes an embedding. Loading a checkpoint with other statistics or framing would feed the
    prompts inputs they never saw in training."""
    import dataclasses

    return {"preprocess": dataclasses.asdict(preprocess), "image_size": int(image_size)}


def preprocess_from_metadata(metadata: dict[str, Any]) -> PreprocessConfig | None:
    """The preprocessing a checkpoint was trained with, or None for checkpoints that predate it."""
    values = metadata.get("preprocess")
    if values is None:
        return None
    config = PreprocessConfig()
    merge_into(config, values)
    return config


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:
        raise CheckpointMismatchError(f"{path} is not a readable safetensors checkpoint: {error}") from error
    if "sketchlvm" not in header:
        raise CheckpointMismatchError(f"{path} has no SketchLVM metadata; was it written by sketchlvm.model.checkpoint?")
    metadata = json.loads(header["sketchlvm"])
    if metadata.get("format") != FORMAT or metadata.get("version") != FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{path} is format {metadata.get('format')!r} v{metadata.get('version')}; expected {FORMAT!r} v{FORMAT_VERSION}"
        )
    states: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        mode, _, name = key.partition("/")
        states.setdefault(mode, {})[name] = tensor
    return Checkpoint(states=states, metadata=metadata, path=path, sha256=file_sha256(path))


def check_fits(checkpoint: Checkpoint, arch: str, pretrained_identity: dict, image_size: int | None = None) -> None:
    """Refuse a checkpoint trained on another backbone, naming each difference and the fix."""
    meta = checkpoint.metadata
    problems = []
    if image_size is not None and meta.get("image_size") not in (None, image_size):
        problems.append(f"image size: checkpoint {meta['image_size']}, model {image_size}")
    if meta.get("arch") != arch:
        problems.append(f"architecture: checkpoint {meta.get('arch')!r}, model {arch!r} (pass --model {meta.get('arch')})")
    trained_on = meta.get("pretrained", {})
    if trained_on.get("kind") != pretrained_identity.get("kind") or (
        trained_on.get("kind") == "tag" and trained_on.get("value") != pretrained_identity.get("value")
    ):
        problems.append(
            f"backbone weights: checkpoint trained on {trained_on.get('kind')} {trained_on.get('value')!r}, "
            f"model has {pretrained_identity.get('kind')} {pretrained_identity.get('value')!r}"
        )
    if problems:
        raise CheckpointMismatchError(f"checkpoint {checkpoint.path} does not fit this model:\n  - " + "\n  - ".join(problems))


def apply_state(encoder: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Copy learned tensors into an encoder, reporting unknown names and shape differences together."""
    params = dict(encoder.named_parameters())
    problems = []
    for name, tensor in state.items():
        if name not in params:
            problems.append(f"{name}: not a parameter of this model")
        elif params[name].shape != tensor.shape:
            problems.append(f"{name}: checkpoint shape {tuple(tensor.shape)}, model {tuple(params[name].shape)}")
    if problems:
        raise CheckpointMismatchError(f"{where} does not fit this model:\n  - " + "\n  - ".join(problems))
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def merge_checkpoints(out: str | Path, paths: list[str | Path]) -> Path:
    """One file holding the modes of several checkpoints (e.g. a category and a fine-grained run)
    for the app; they must share architecture, backbone weights and prompt count."""
    loaded = [load_checkpoint(p) for p in paths]
    first = loaded[0].metadata
    states: dict[str, dict[str, torch.Tensor]] = {}
    training = {}
    for ckpt in loaded:
        for key in ("arch", "pretrained", "n_prompts", "preprocess", "image_size"):
            if ckpt.metadata.get(key) != first.get(key):
                raise CheckpointMismatchError(
                    f"cannot merge {ckpt.path} into {loaded[0].path}: {key} differs "
                    f"({ckpt.metadata.get(key)!r} vs {first.get(key)!r})"
                )
        for mode, state in ckpt.states.items():
            if mode in states:
                raise CheckpointMismatchError(f"mode {mode!r} appears in more than one checkpoint ({ckpt.path})")
            states[mode] = state
            training[mode] = {"from": str(ckpt.path), "training": ckpt.metadata.get("training"),
                              "metrics": ckpt.metadata.get("metrics")}
    meta = {k: first[k] for k in ("arch", "pretrained", "n_prompts", "trainable", "preprocess", "image_size") if k in first}
    return save_checkpoint(out, states, {**meta, "training": training, "metrics": {}})
