"""``sketchlvm export``: one folder with everything the serving install needs (full install: torch writes it).

The folder (layout: ``model/folder_model.py`` and docs/serving.md) holds the graphs the full install's
ONNX Runtime path runs, each exported from torch and checked against it on real drawings before it
is copied in (``runtime/engine.py``: the same check the app makes); the text graph; CLIP's BPE
vocabulary; the preprocessing and framing; and each mode's identity, which gallery indexes are keyed
by. Before the folder replaces an older one, it is loaded the way the serving install loads it and
its vectors are compared with the torch model's own, so a folder that would serve different vectors
is never written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from sketchlvm.config import MODALITIES, TEXT_CHECK_WORDS
from sketchlvm.model.folder_model import (
    CLIP_CONFIG,
    FORMAT,
    MANIFEST,
    TEXTUAL,
    VISUAL_PLAIN,
    VISUAL_PREPROCESS,
    load_export,
    sha256_of,
)
from sketchlvm.preprocess.tokenizer import VOCAB_FILE, ClipTokenizer

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The model cannot be exported as it is (a graph fell back to torch, a tokenizer we cannot reproduce)."""


def _tokenizer_vocab(model: Any) -> Path:
    """open_clip's BPE file for the model's tokenizer, once our torch-free tokenizer gives its ids on real prompts."""
    import open_clip.tokenizer

    tower = model.text_tower
    vocab = Path(open_clip.tokenizer.default_bpe())
    if not isinstance(tower.tokenizer, open_clip.tokenizer.SimpleTokenizer):
        raise ExportError(f"{model.arch} uses the tokenizer {type(tower.tokenizer).__name__}; only CLIP's BPE "
                          "tokenizer (open_clip's SimpleTokenizer) can be served without torch")
    ours = ClipTokenizer.from_file(vocab, tower.context_length)
    prompts = [tower.template.format(w) for w in TEXT_CHECK_WORDS]
    if not np.array_equal(ours(prompts), tower.tokenizer(prompts).numpy()):
        raise ExportError(f"the torch-free tokenizer does not reproduce {model.arch}'s token ids")
    return vocab


def _clip_config(arch: str) -> dict:
    import open_clip

    return open_clip.get_model_config(arch) or {}


def _versions() -> dict[str, str]:
    import onnxruntime
    import open_clip
    import torch

    from sketchlvm import __version__

    return {"sketchlvm": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "onnxruntime": onnxruntime.__version__}


def _fill(model: Any, folder: Path) -> dict:
    """Copy the checked graphs and the tokenizer into ``folder``; the manifest (not yet written)."""
    runtime = model.runtime
    graphs: dict[str, dict] = {}
    modes: dict[str, dict] = {}
    for mode in model.modes:
        entry = {"identity": model.identity(mode), "trained": mode in model.trained_modes(),
                 "label": model.mode_label(mode)}
        for modality in MODALITIES:
            graph = runtime._graphs[(mode, modality)]
            relpath = VISUAL_PLAIN if graph.spec.name == "plain" else f"visual/{graph.spec.name}.onnx"
            if relpath not in graphs:
                (folder / relpath).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(graph.path, folder / relpath)
                graphs[relpath] = {"identity": graph.spec.identity, "checked": str(graph.checked),
                                   "sha256": sha256_of(folder / relpath)}
            entry[modality] = relpath
        modes[mode] = entry
    (folder / "textual").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(runtime._text.path, folder / TEXTUAL)
    graphs[TEXTUAL] = {"identity": runtime._text.spec.identity, "checked": str(runtime._text.checked),
                       "sha256": sha256_of(folder / TEXTUAL)}
    shutil.copyfile(_tokenizer_vocab(model), folder / "textual" / VOCAB_FILE)
    pre = model.preprocess
    # immich's files beside ours: its model config and preprocessing (our framing pads to a square: "pad").
    (folder / CLIP_CONFIG).write_text(json.dumps(_clip_config(model.arch), indent=1))
    (folder / VISUAL_PREPROCESS).parent.mkdir(parents=True, exist_ok=True)
    (folder / VISUAL_PREPROCESS).write_text(json.dumps(
        {"size": [model.image_size, model.image_size], "mode": "RGB", "mean": list(pre.photo_mean),
         "std": list(pre.photo_std), "interpolation": "bicubic", "resize_mode": "pad"}, indent=1))
    checkpoint = model.checkpoint
    return {
        "format": FORMAT,
        "arch": model.arch,
        "image_size": model.image_size,
        "weights": {"kind": model.weights.kind, "value": model.weights.value, "label": model.weights.label,
                    "identity": model.weights.identity()},
        "preprocess": dataclasses.asdict(pre),
        "photo_identity": runtime.photo_identity(),
        "modes": modes,
        "graphs": graphs,
        "text": {"graph": TEXTUAL, "tokenizer": f"textual/{VOCAB_FILE}", "template": model.text_tower.template,
                 "context_length": model.text_tower.context_length},
        "checkpoint": ({"name": checkpoint.path.name, "sha256": checkpoint.sha256, "modes": checkpoint.modes}
                       if checkpoint else None),
        "written_by": _versions(),
    }


def _verify(model: Any, folder: Path) -> None:
    """Load ``folder`` as the serving install does; its vectors must be the torch model's, within its tolerances."""
    from sketchlvm.runtime.engine import example_sketches
    from sketchlvm.runtime.onnx_export import agreement

    served = load_export(folder, runtime="onnx", runtime_config=model.runtime.config)
    sketches = example_sketches()
    config = model.runtime.config
    for mode in model.modes:
        for modality in MODALITIES:
            transform = model.sketch_transform if modality == "sketch" else model.photo_transform
            batch = np.stack([transform.array(s) for s in sketches])
            found = agreement(model.runtime._torch(batch, modality, mode), served.encode_tensors(batch, modality, mode))
            if not found.within(config.min_cosine, config.max_abs_diff):
                raise ExportError(f"the exported {mode} {modality} graph disagrees with torch when served: {found}")
    tower = model.text_tower
    tokens = tower.tokenizer([tower.template.format(w) for w in TEXT_CHECK_WORDS])
    found = agreement(tower.encode_tokens_torch(tokens), served.runtime.encode_text(tokens.numpy()))
    if not found.within(config.min_cosine, config.max_abs_diff):
        raise ExportError(f"the exported text graph disagrees with torch when served: {found}")


def write_export(model: Any, out: str | Path) -> dict:
    """Export ``model`` (a ``SketchLVM`` made with ``text=True``) into the folder ``out``; returns its manifest.

    ``out`` is replaced only once the new folder is complete and verified. Raises ``ExportError``."""
    if model.text_tower is None:
        raise ExportError("the export holds the text tower too: make the model with create_sketchlvm(..., text=True)")
    if model.runtime.requested != "onnx":
        model.use_runtime("onnx", model.runtime.config)
    runtime = model.runtime
    if runtime.name != "onnx":
        raise ExportError(f"the graphs cannot run on ONNX Runtime here: {runtime.describe()}")
    missing = [f"{mode} {modality}: {runtime.fallbacks.get((mode, modality), 'no graph')}"
               for mode in model.modes for modality in MODALITIES if (mode, modality) not in runtime._graphs]
    if runtime._text is None:
        missing.append(f"text: {runtime.text_reason or 'no graph'}")
    if missing:
        raise ExportError("some graphs did not reproduce torch, so they cannot be exported: " + "; ".join(missing))
    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ExportError(f"{out} exists and is not an export folder: choose an empty or new folder")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        manifest = _fill(model, tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        _verify(model, tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
