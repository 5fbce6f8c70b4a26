"""An export folder as a model: what the serving install (no torch, no open_clip) holds instead of ``SketchLVM``.

``sketchlvm export`` (``model/folder_export.py``, full install) writes the folder; docs/serving.md
describes it. It follows the layout immich publishes its CLIP exports in (``config.json``,
``visual/model.onnx`` + ``visual/preprocess_cfg.json``, ``textual/model.onnx`` + tokenizer), with our
own ``sketchlvm.json`` beside it: which graph each (mode, modality) runs (prompted graphs are
``visual/<name>.onnx``), the preprocessing and framing, the text template and tokenizer, and each
mode's identity, which gallery indexes are keyed by. That identity is the one the torch model had
when it exported, so an index built by either install is the same index to the other.

A folder without ``sketchlvm.json`` but with immich's files (a plain zero-shot CLIP export from its
Hub repositories) is served too, as zero-shot CLIP in both modes with its own identity. Sketches and
photos are still framed our way (padded, not centre-cropped), and its tokenizer is read from
``textual/tokenizer.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sketchlvm.config import MODES, PreprocessConfig, RuntimeConfig, merge_into
from sketchlvm.hub import is_hub_path, resolve_folder
from sketchlvm.model.base import EncodingModel
from sketchlvm.model.text import TEXT_TEMPLATE, TextTower
from sketchlvm.preprocess.tokenizer import DEFAULT_CONTEXT_LENGTH, ClipTokenizer
from sketchlvm.preprocess.transforms import PhotoTransform, SketchTransform
from sketchlvm.runtime.folder_runtime import ExportedRuntime, ExportUnavailableError

log = logging.getLogger(__name__)

MANIFEST = "sketchlvm.json"
FORMAT = 1  # bump when the folder's layout or sketchlvm.json changes meaning
CLIP_CONFIG = "config.json"  # open_clip's model config (immich's layout)
VISUAL_PLAIN = "visual/model.onnx"  # the tower without prompts (immich's path)
VISUAL_PREPROCESS = "visual/preprocess_cfg.json"
TEXTUAL = "textual/model.onnx"
HOW_TO_EXPORT = "write one with `sketchlvm export --out FOLDER` on the full install (docs/serving.md)"


def is_export(value: Any) -> bool:
    """Whether ``--model`` names an export folder (a folder holding ``sketchlvm.json`` or immich's
    ``config.json`` + ``visual/model.onnx``, or an ``hf://`` repository) rather than an open_clip architecture."""
    if value is None:
        return False
    if is_hub_path(value):
        return True
    folder = Path(str(value)).expanduser()
    return folder.is_dir() and ((folder / MANIFEST).is_file() or (folder / VISUAL_PLAIN).is_file())


@dataclass(frozen=True)
class ExportedWeights:
    """What the export says about its CLIP weights (as ``WeightsSource`` does for the full install)."""

    kind: str
    value: str
    label: str
    recorded: dict

    def identity(self) -> dict:
        return dict(self.recorded)


class _Cpu:
    """The device an export runs on (ONNX Runtime on the CPU), shaped like ``torch.device`` for describe()."""

    type = "cpu"

    def __str__(self) -> str:
        return "cpu"


def sha256_of(path: Path) -> str:
    """A file's sha256, read in 1 MB blocks (graphs are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _immich_manifest(folder: Path) -> dict:
    """``sketchlvm.json`` for a plain immich-style export: zero-shot CLIP in both modes."""
    clip = json.loads((folder / CLIP_CONFIG).read_text()) if (folder / CLIP_CONFIG).is_file() else {}
    pre = json.loads((folder / VISUAL_PREPROCESS).read_text()) if (folder / VISUAL_PREPROCESS).is_file() else {}
    size = pre.get("size", clip.get("vision_cfg", {}).get("image_size", 224))
    size = int(size[0] if isinstance(size, list) else size)
    preprocess = PreprocessConfig()
    if "mean" in pre and "std" in pre:
        preprocess.sketch_mean = preprocess.photo_mean = tuple(pre["mean"])
        preprocess.sketch_std = preprocess.photo_std = tuple(pre["std"])
    weights = {"kind": "export", "value": folder.name, "visual_sha256": sha256_of(folder / VISUAL_PLAIN)}
    photo_encoder = {"numerics": "fp32", "exported": "immich layout"}
    modes = {}
    for mode in MODES:
        identity = {"arch": f"export:{folder.name}", "weights": weights, "mode": mode, "checkpoint_sha256": None,
                    "n_prompts": 0, "image_size": size, "photo_mean": list(preprocess.photo_mean),
                    "photo_std": list(preprocess.photo_std), "photo_encoder": photo_encoder}
        modes[mode] = {"identity": identity, "trained": False, "label": "zero-shot CLIP, no trained prompts",
                       "sketch": VISUAL_PLAIN, "photo": VISUAL_PLAIN}
    textual = folder / TEXTUAL
    tokenizer = folder / "textual" / "tokenizer.json"
    text = None
    if textual.is_file() and tokenizer.is_file():
        text = {"graph": TEXTUAL, "tokenizer": "textual/tokenizer.json", "template": TEXT_TEMPLATE,
                "context_length": int(clip.get("text_cfg", {}).get("context_length", DEFAULT_CONTEXT_LENGTH))}
    return {"format": FORMAT, "arch": f"export:{folder.name}", "image_size": size,
            "weights": {"kind": "export", "value": folder.name, "label": f"immich-style export {folder.name}",
                        "identity": weights},
            "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(preprocess).items()},
            "photo_identity": photo_encoder, "modes": modes, "text": text, "checkpoint": None}


def read_manifest(folder: Path) -> dict:
    """The folder's ``sketchlvm.json`` (or one made up for an immich-style folder); refuses what it cannot serve."""
    path = folder / MANIFEST
    if not path.is_file():
        if (folder / VISUAL_PLAIN).is_file():
            return _immich_manifest(folder)
        raise ExportUnavailableError(f"{folder} is not an export folder (no {MANIFEST} and no {VISUAL_PLAIN}); "
                                     + HOW_TO_EXPORT)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ExportUnavailableError(f"cannot read {path}: {error}") from error
    if manifest.get("format") != FORMAT:
        raise ExportUnavailableError(f"{path} is export format {manifest.get('format')!r}; this version serves "
                                     f"format {FORMAT}: export it again with this version ({HOW_TO_EXPORT})")
    return manifest


class ExportedSketchLVM(EncodingModel):
    """The exported graphs of an export folder, with the same surface the gallery, search and app use on
    ``SketchLVM`` (identity, encoder keys, labels, describe, encode_*)."""

    def __init__(self, folder: Path, manifest: dict, runtime: str | None = "auto",
                 runtime_config: RuntimeConfig | None = None):
        self.folder = folder
        self.manifest = manifest
        self.arch = manifest["arch"]
        w = manifest["weights"]
        self.weights = ExportedWeights(w["kind"], w["value"], w["label"], w["identity"])
        self.checkpoint = None  # trained prompts are baked into the graphs; see trained_modes()
        self.device = _Cpu()
        self.preprocess = PreprocessConfig()
        merge_into(self.preprocess, manifest["preprocess"])
        self.image_size = int(manifest["image_size"])
        self.sketch_transform = SketchTransform(self.image_size, self.preprocess)
        self.photo_transform = PhotoTransform(self.image_size, self.preprocess)
        self._modes = manifest["modes"]
        graphs = {}
        for mode, entry in self._modes.items():
            for modality in ("sketch", "photo"):
                graphs[(mode, modality)] = self._file(entry[modality])
        text = manifest.get("text")
        text_graph = self._file(text["graph"]) if text else None
        self.runtime = ExportedRuntime(graphs, text_graph, manifest["photo_identity"], runtime_config, runtime)
        self.text_tower = None
        if text:
            tokenizer = ClipTokenizer.from_file(self._file(text["tokenizer"]), text["context_length"])
            self.text_tower = TextTower(None, tokenizer, self.device, template=text["template"])
            self.text_tower.use_runtime(self.runtime)

    def _file(self, relpath: str) -> Path:
        path = self.folder / relpath
        if not path.is_file():
            raise ExportUnavailableError(f"the export folder {self.folder} is incomplete: {relpath} is missing; "
                                         + HOW_TO_EXPORT)
        return path

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self._modes)

    def trained_modes(self) -> list[str]:
        return [m for m, entry in self._modes.items() if entry["trained"]]

    def mode_label(self, mode: str) -> str:
        return self._modes[mode]["label"]

    def encoder_key(self, mode: str, modality: str) -> tuple:
        """Modes that run the same graph file on the same modality share an embedding (as on ``SketchLVM``)."""
        return ("graph", self._modes[mode][modality], modality)

    def identity(self, mode: str) -> dict[str, Any]:
        """The identity the torch model had for ``mode`` when it exported (see the module doc)."""
        return json.loads(json.dumps(self._modes[mode]["identity"]))

    def describe(self) -> dict[str, str]:
        checkpoint = self.manifest.get("checkpoint")
        return {
            "model": f"{self.arch} (exported: {self.folder})",
            "weights": self.weights.label,
            "checkpoint": (f"{checkpoint['name']} ({', '.join(checkpoint['modes'])})" if checkpoint
                           else "zero-shot CLIP, no trained prompts"),
            "device": "cpu",
            "runtime": self.runtime.describe(),
            **{f"mode {m}": self.mode_label(m) for m in self.modes},
        }


def load_export(spec: str | Path, runtime: str | None = "auto", runtime_config: RuntimeConfig | None = None,
                checkpoint: str | None = None) -> ExportedSketchLVM:
    """An export folder (or ``hf://USER/REPO[/SUBDIR]``, fetched once into the Hugging Face cache) as a model.

    Raises ``ExportUnavailableError`` (what is wrong and the fix) and ``HubUnavailableError``."""
    if checkpoint:
        raise ExportUnavailableError("--checkpoint cannot be combined with an export folder: its prompts are baked "
                                     "into the graphs. Export the checkpoint (`sketchlvm export --checkpoint FILE "
                                     "--out FOLDER`, full install) and serve that folder")
    folder = resolve_folder(spec)
    if not folder.is_dir():
        raise ExportUnavailableError(f"export folder {str(folder)!r} does not exist; " + HOW_TO_EXPORT)
    model = ExportedSketchLVM(folder.resolve(), read_manifest(folder), runtime, runtime_config)
    log.info("serving the export %s (%s)", folder, model.runtime.describe())
    return model
