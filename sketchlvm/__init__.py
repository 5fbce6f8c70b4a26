"""SketchLVM: draw something, get the matching photos back (Sain et al., CVPR 2023, as a product).

The public names are imported lazily, so ``import sketchlvm.strokes`` or ``sketchlvm.metrics``
does not pay for torch and open_clip.
"""

from importlib import import_module

_EXPORTS = {
    "ExperimentConfig": "config",
    "ModelConfig": "config",
    "PreprocessConfig": "config",
    "SketchLVM": "model",
    "create_sketchlvm": "model",
    "WeightsUnavailableError": "weights",
    "register_model_configs": "weights",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'sketchlvm' has no attribute {name!r}")
