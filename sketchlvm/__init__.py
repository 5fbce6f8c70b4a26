"""SketchLVM: draw something, get the matching photos back (Sain et al., CVPR 2023, as a product).

The tree is the architecture; data flows down it one way:

    strokes -> preprocess/ -> model/ (prompted encoder; runtime/ runs it) -> gallery/ (index) -> search.py
            -> webapp/ (the page)
    datasets/ -> training/ (sampler, losses, trainer) -> model/checkpoint -> evaluation/
    cluster/ embeds very large galleries on Ray; cli.py is the ``sketchlvm`` command.

config.py holds the configuration, device.py CUDA/CPU choice, hub.py ``hf://`` paths, arguments.py the
command lines' argument types. The public names below are imported lazily, so ``import
sketchlvm.preprocess.strokes`` or ``sketchlvm.evaluation.metrics`` does not pay for torch and open_clip.
"""

from importlib import import_module

_EXPORTS = {
    "ExperimentConfig": "sketchlvm.config",
    "ModelConfig": "sketchlvm.config",
    "PreprocessConfig": "sketchlvm.config",
    "IndexConfig": "sketchlvm.config",
    "SketchLVM": "sketchlvm.model.factory",
    "create_sketchlvm": "sketchlvm.model.factory",
    "WeightsUnavailableError": "sketchlvm.model.weights",
    "register_model_configs": "sketchlvm.model.weights",
    "GalleryIndex": "sketchlvm.gallery",
    "build_gallery_index": "sketchlvm.gallery",
    "open_gallery_index": "sketchlvm.gallery",
    "Searcher": "sketchlvm.search",
    "SearchResult": "sketchlvm.search",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.3.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sketchlvm' has no attribute {name!r}")
