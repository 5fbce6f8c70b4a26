"""What every model the gallery, the search and the app hold does, whichever engine runs it. No torch here.

``SketchLVM`` (the full install: torch towers, graphs exported and checked on the fly) and
``ExportedSketchLVM`` (the serving install: the graphs of an export folder) share these methods, so
images and words reach the runtime the same way on both: preprocessed as numpy arrays by the same
transforms, encoded by ``self.runtime`` (``runtime/engine.py`` or ``runtime/folder_runtime.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sketchlvm.model.text import NO_TEXT_TOWER, TextQueryError
from sketchlvm.runtime.interface import EncoderRuntime


class EncodingModel:
    """Images and words -> unit vectors through ``self.runtime``, per mode.

    Subclasses set ``encoders`` (or ``modes``), ``runtime``, ``sketch_transform``, ``photo_transform``
    and ``text_tower``."""

    runtime: EncoderRuntime
    text_tower: Any = None

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.encoders)

    def encode_tensors(self, batch: Any, modality: str, mode: str) -> np.ndarray:
        """(B, 3, S, S) normalised images (numpy, or torch on the full install) -> (B, D) float32 unit vectors."""
        if mode not in self.modes:
            raise ValueError(f"unknown mode {mode!r}; choose one of {self.modes}")
        return self.runtime.encode(batch, modality, mode)

    def encode_sketches(self, sketches: Sequence[Any], mode: str) -> np.ndarray:
        """Canvas values or sketch images -> (N, D). Raises ``EmptySketchError`` for a blank drawing."""
        batch = np.stack([self.sketch_transform.array(s) for s in sketches])  # (N, 3, S, S)
        return self.encode_tensors(batch, "sketch", mode)

    def encode_photos(self, photos: Sequence[Any], mode: str) -> np.ndarray:
        """RGB photos -> (N, D)."""
        batch = np.stack([self.photo_transform.array(p) for p in photos])  # (N, 3, S, S)
        return self.encode_tensors(batch, "photo", mode)

    def encode_text(self, text: str) -> np.ndarray:
        """Words -> (D,) unit vector in the photo space (see ``sketchlvm.model.text``); cached per prompt.

        The text tower is plain CLIP in every mode (the prompts are visual only)."""
        if self.text_tower is None:
            raise TextQueryError(NO_TEXT_TOWER)
        return self.text_tower.encode(text)
