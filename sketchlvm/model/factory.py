"""The factory: one entry point that turns (architecture, weights, checkpoint, device) into a model.

``SketchLVM`` is what the indexer, the search and the app hold: images in, unit vectors out, for each
mode. A mode without learned state in the checkpoint is plain zero-shot CLIP (no prompts), and says so.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from sketchlvm.config import MODES, ModelConfig, PreprocessConfig, RuntimeConfig
from sketchlvm.device import resolve_device
from sketchlvm.hub import resolve_file
from sketchlvm.model.base import EncodingModel
from sketchlvm.model.checkpoint import Checkpoint, apply_state, check_fits, load_checkpoint, preprocess_from_metadata
from sketchlvm.model.encoder import PromptedVisionEncoder
from sketchlvm.model.prompts import VisualPrompts
from sketchlvm.model.text import TextTower
from sketchlvm.model.weights import WeightsSource, load_clip

log = logging.getLogger(__name__)

ZERO_SHOT_LABEL = "zero-shot CLIP, no trained prompts"


def build_prompted_encoder(visual: torch.nn.Module, mode: str, n_prompts: int, init_std: float = 1.0) -> PromptedVisionEncoder:
    """A trainable encoder for one mode on ``visual`` (prompt width read from the tower)."""
    width = visual.class_embedding.shape[-1]
    prompts = VisualPrompts(mode, n_prompts, width, init_std).to(visual.class_embedding.device)
    return PromptedVisionEncoder(visual, prompts)


class SketchLVM(EncodingModel):
    """Per-mode prompted encoders over one CLIP backbone, with their preprocessing (encoding: ``EncodingModel``)."""

    def __init__(
        self,
        encoders: dict[str, PromptedVisionEncoder],
        arch: str,
        weights: WeightsSource,
        checkpoint: Checkpoint | None,
        preprocess: PreprocessConfig,
        device: torch.device,
        text_tower: TextTower | None = None,
    ):
        from sketchlvm.preprocess.transforms import PhotoTransform, SketchTransform

        self.encoders = encoders
        self.arch = arch
        self.weights = weights
        self.checkpoint = checkpoint
        self.preprocess = preprocess
        self.device = device
        self.text_tower = text_tower  # CLIP's text tower, for word queries; None unless asked for
        self.image_size = next(iter(encoders.values())).image_size
        self.sketch_transform = SketchTransform(self.image_size, preprocess)
        self.photo_transform = PhotoTransform(self.image_size, preprocess)
        self.use_runtime("torch")  # create_sketchlvm then picks the requested one

    def use_runtime(self, runtime: str | None = "auto", config: RuntimeConfig | None = None,
                    cache_dir: str | Path | None = None, check_images: list | None = None) -> SketchLVM:
        """Encode through torch or ONNX Runtime (see ``sketchlvm.runtime.engine``); ``check_images`` are the real
        images exported graphs must reproduce torch on (default: the example sketches)."""
        from sketchlvm.runtime.engine import Runtime

        self.runtime = Runtime(self, runtime, config, cache_dir, check_images)
        if self.text_tower is not None:
            self.text_tower.use_runtime(self.runtime)
        return self

    def release_torch(self) -> None:
        """Drop the torch towers, keeping what identity and encoder keys read. Only the runtime calls this
        (``Runtime.release_torch``), once every encode runs on a checked ONNX graph."""
        towers: dict[int, _FreedTower] = {}  # modes that shared a tower share its stand-in (encoder_key)
        self.encoders = {mode: _FreedEncoder(encoder, towers.setdefault(id(encoder.visual), _FreedTower(encoder)))
                         for mode, encoder in self.encoders.items()}
        if self.text_tower is not None:
            self.text_tower.clip_model = None

    def trained_modes(self) -> list[str]:
        return self.checkpoint.modes if self.checkpoint else []

    def mode_label(self, mode: str) -> str:
        if mode in self.trained_modes():
            return f"trained prompts from {self.checkpoint.path.name}"
        return ZERO_SHOT_LABEL

    def encoder_key(self, mode: str, modality: str) -> tuple:
        """Equal keys for modes that turn the same image into the same vector, so a search can encode a
        drawing once for all of them: every zero-shot mode runs the one bare CLIP tower (and the same
        exported graph, see ``onnx_export.graph_spec``), while a trained mode has its own prompts or its
        own copy of the tower (``create_sketchlvm``)."""
        encoder = self.encoders[mode]
        if encoder.prompts is None and mode not in self.trained_modes():
            return ("zero-shot", id(encoder.visual), modality)
        return (mode, modality)

    def describe(self) -> dict[str, str]:
        """Human-readable facts for the UI and logs: what exactly is loaded."""
        return {
            "model": self.arch,
            "weights": self.weights.label,
            "checkpoint": (
                f"{self.checkpoint.path.name} ({', '.join(self.checkpoint.modes)})" if self.checkpoint else ZERO_SHOT_LABEL
            ),
            "device": str(self.device),
            "runtime": self.runtime.describe(),
            **{f"mode {m}": self.mode_label(m) for m in self.modes},
        }

    def identity(self, mode: str) -> dict[str, Any]:
        """Everything that changes a photo embedding in ``mode``; an index built under another identity is stale."""
        trained = mode in self.trained_modes()
        return {
            "arch": self.arch,
            "weights": self.weights.identity(),
            "mode": mode,
            "checkpoint_sha256": self.checkpoint.sha256 if trained else None,
            "n_prompts": self.encoders[mode].prompts.n_prompts if self.encoders[mode].prompts is not None else 0,
            "image_size": self.image_size,
            "photo_mean": list(self.preprocess.photo_mean),
            "photo_std": list(self.preprocess.photo_std),
            # How photo vectors are computed (fp32, within stated tolerances of torch): runtimes that
            # would disagree beyond them get another identity, so one index never mixes them.
            "photo_encoder": self.runtime.photo_identity(),
        }


class _FreedTower:
    """Stands for a freed image tower: its sizes, and an identity the modes that shared it share."""

    def __init__(self, encoder: PromptedVisionEncoder):
        self.image_size = encoder.image_size
        self.output_dim = int(encoder.visual.output_dim)


class _FreedEncoder:
    """A mode's encoder once its tower is freed: the prompts (small; identity counts them) and the stand-in."""

    def __init__(self, encoder: PromptedVisionEncoder, tower: _FreedTower):
        self.prompts = encoder.prompts
        self.visual = tower
        self.image_size = tower.image_size

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise RuntimeError("this model's torch towers were freed (the app serves its ONNX graphs only)")


def _checkpoint_preprocess(loaded: Checkpoint, requested: PreprocessConfig | None) -> PreprocessConfig | None:
    """The checkpoint's preprocessing unless the caller insists on another (then warn loudly)."""
    trained = preprocess_from_metadata(loaded.metadata)
    if trained is None:
        log.warning("checkpoint %s does not record its preprocessing (written before it was stored); "
                    "using %s", loaded.path, "the one passed in" if requested else "the defaults")
        return requested
    if requested is not None and requested != trained:
        log.warning("checkpoint %s was trained with preprocessing %s but %s was asked for; embeddings will differ "
                    "from training", loaded.path, trained, requested)
        return requested
    return trained


def create_sketchlvm(
    arch: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "auto",
    preprocess: PreprocessConfig | None = None,
    text: bool = False,
    runtime: str | None = None,
    runtime_config: RuntimeConfig | None = None,
    check_images: list | None = None,
) -> SketchLVM:
    """Load the backbone (honestly: see ``weights.load_clip``) and any learned state.

    ``arch`` defaults to the checkpoint's architecture, else ``ModelConfig.arch``; ``pretrained``
    defaults to the open_clip tag the checkpoint was trained on when it records one (its weights'
    origin), else ``ModelConfig.pretrained`` ("openai"). Random weights, files and folders are never
    inferred: a checkpoint trained on random weights cannot pull random weights in unasked. ``preprocess``
    defaults to the checkpoint's own (normalisation, sketch framing), else ``PreprocessConfig()``,
    so the app, the evaluator and the gallery index feed the encoder what it was trained on.
    ``checkpoint`` may be ``hf://USER/REPO/FILE.safetensors`` (see ``sketchlvm.hub``). ``text=True`` keeps
    CLIP's text tower (same weights) for word queries; without it the tower is dropped to save memory.
    ``runtime``
    ("auto" | "torch" | "onnx" | "onnx-int8", default: the runtime setting, else "auto") picks what
    encodes at inference; see ``sketchlvm.runtime.engine``.
    """
    defaults = ModelConfig()
    loaded = load_checkpoint(resolve_file(checkpoint)) if checkpoint else None  # hf:// -> the HF cache
    arch = arch or (loaded.metadata.get("arch") if loaded else None) or defaults.arch
    if pretrained is None:
        pretrained = _recorded_tag(loaded) or defaults.pretrained
    device = resolve_device(device)
    clip_model, weights = load_clip(arch, pretrained, device)
    visual = clip_model.visual.eval()
    for param in visual.parameters():
        param.requires_grad_(False)

    encoders: dict[str, PromptedVisionEncoder] = {}
    if loaded:
        check_fits(loaded, arch, weights.identity(), PromptedVisionEncoder(visual, None).image_size)
        preprocess = _checkpoint_preprocess(loaded, preprocess)
    for mode in MODES:
        if loaded and mode in loaded.states:
            # Each trained mode has its own LayerNorms (and maybe more), so it gets its own tower copy.
            encoder = build_prompted_encoder(copy.deepcopy(visual), mode, loaded.metadata["n_prompts"])
            apply_state(encoder, loaded.states[mode], f"checkpoint {loaded.path} mode {mode!r}")
        else:
            encoder = PromptedVisionEncoder(visual, None)
        encoders[mode] = encoder.eval().requires_grad_(False)
    text_tower = _text_tower(clip_model, arch, weights, device) if text else None
    del clip_model  # without text=True, the text tower is only needed for training
    model = SketchLVM(encoders, arch, weights, loaded, preprocess or PreprocessConfig(), device, text_tower)
    return model.use_runtime(runtime, runtime_config, check_images=check_images)


def _recorded_tag(loaded: Checkpoint | None) -> str | None:
    """The open_clip tag a checkpoint was trained on, when it records one (None for random, file, folder)."""
    trained_on = (loaded.metadata.get("pretrained") or {}) if loaded else {}
    return trained_on.get("value") if trained_on.get("kind") == "tag" else None


def _text_tower(clip_model: torch.nn.Module, arch: str, weights: WeightsSource, device: torch.device) -> TextTower:
    """The text half of the loaded CLIP (the visual tower lives on in the encoders) and its tokenizer."""
    import open_clip

    clip_model.visual = torch.nn.Identity()  # drop this reference to the image tower; encode_text does not use it
    tokenizer = open_clip.get_tokenizer(f"local-dir:{weights.value}" if weights.kind == "folder" else arch)
    return TextTower(clip_model, tokenizer, device)
