"""SketchLVM: draw something, get the matching photos back (Sain et al., CVPR 2023, as a product)."""

from .weights import register_model_configs

register_model_configs()

from .config import ExperimentConfig, ModelConfig, PreprocessConfig  # noqa: E402
from .model import SketchLVM, create_sketchlvm  # noqa: E402
from .weights import WeightsUnavailableError  # noqa: E402

__all__ = [
    "ExperimentConfig",
    "ModelConfig",
    "PreprocessConfig",
    "SketchLVM",
    "WeightsUnavailableError",
    "create_sketchlvm",
]
__version__ = "0.1.0"
