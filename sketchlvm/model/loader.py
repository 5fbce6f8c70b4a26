"""The one way every command and the app load a model: an export folder (or hf://) or an open_clip architecture.

``--model`` names either. An export folder runs its ONNX graphs with no torch (``model/folder_model.py``,
what the serving install can run); anything else is an architecture for ``create_sketchlvm`` (torch,
``model/factory.py``), which the serving install lacks: it is then refused with the fix, not an
ImportError. The flags come from ``arguments.add_model_arguments``; ``model_from_args`` reads them.
No torch at import: the factory is imported only when an architecture is asked for.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sketchlvm.config import RuntimeConfig
from sketchlvm.model.base import EncodingModel
from sketchlvm.model.folder_model import is_export, load_export
from sketchlvm.runtime.folder_runtime import ExportUnavailableError

NEEDS_TORCH = ("serves export folders only: pass --model FOLDER or --model hf://USER/REPO (written by `sketchlvm "
               "export` on the full install), or install everything with pip install -r requirements.txt")


def load_model(model: str | Path | None = None, pretrained: str | None = None, checkpoint: str | Path | None = None,
               device: Any = "auto", runtime: str | None = None, *, text: bool = False, exports: bool = True,
               runtime_config: RuntimeConfig | None = None, check_images: list | None = None) -> EncodingModel:
    """``model`` as an export folder (when ``exports`` and it is one) or an architecture with its weights,
    checkpoint, device and runtime (see ``create_sketchlvm``; ``text`` keeps CLIP's text tower).

    Raises what the two loaders raise (``ExportUnavailableError``, ``WeightsUnavailableError``,
    ``HubUnavailableError``, ``CheckpointMismatchError``), and ``ExportUnavailableError`` naming the fix when
    an architecture is asked of an install without torch, or an export of a command that needs torch."""
    if is_export(model):
        if not exports:
            raise ExportUnavailableError(f"--model {model}: this command runs the torch model, and an export folder "
                                         "holds ONNX graphs only: give the architecture and --checkpoint it was "
                                         "exported from")
        return load_export(model, runtime=runtime, runtime_config=runtime_config, checkpoint=checkpoint)
    try:
        from sketchlvm.model.factory import create_sketchlvm
    except ImportError as error:  # the serving install: no torch, no open_clip
        raise ExportUnavailableError(f"this install has no {error.name or 'torch'} (the serving install), so it "
                                     + NEEDS_TORCH) from error
    return create_sketchlvm(arch=str(model) if model else None, pretrained=pretrained, checkpoint=checkpoint,
                            device=device, text=text, runtime=runtime, runtime_config=runtime_config,
                            check_images=check_images)


def model_from_args(args: argparse.Namespace, **options: Any) -> EncodingModel:
    """``load_model`` on the flags ``add_model_arguments`` defined (--device and --runtime when present);
    ``options`` (``device``, ``runtime``, ``text``, ``exports``, ...) override or add to them."""
    flags = {"device": getattr(args, "device", "auto"), "runtime": getattr(args, "runtime", None), **options}
    return load_model(args.model, args.pretrained, args.checkpoint, **flags)
