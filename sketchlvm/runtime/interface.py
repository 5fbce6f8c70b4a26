"""What every runtime offers the model that holds it: the one interface both installs' runtimes implement.

``runtime/engine.py``'s ``Runtime`` (the full install: torch, or graphs exported from it and checked) and
``runtime/folder_runtime.py``'s ``ExportedRuntime`` (the serving install: an export folder's graphs) have the
same shape, so ``model/base.py``'s ``EncodingModel``, the gallery, the search and the app cannot tell them
apart. This Protocol states that shape; tests/runtime/test_interface.py checks both against it. No torch.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from sketchlvm.config import RuntimeConfig

# What ``release_torch`` answers when photo graphs still need checking on real photos: call it again with some.
PHOTOS_NEEDED = "no gallery photos to check the photo graphs on"


@runtime_checkable
class EncoderRuntime(Protocol):
    """Images and token ids -> unit vectors, and what runs them. Only what callers outside the runtime use."""

    config: RuntimeConfig

    @property
    def name(self) -> str:
        """What runs the images: "torch", "onnx" or "onnx-int8" (the app's int8 check and status read it)."""
        ...

    def encode(self, batch: Any, modality: str, mode: str, int8: bool = True) -> np.ndarray:
        """(B, 3, S, S) normalised images -> (B, D) float32 unit vectors; ``int8=False`` forces fp32."""
        ...

    def encode_text(self, tokens: Any) -> np.ndarray:
        """(N, context) token ids -> (N, D) float32 unit vectors."""
        ...

    def photo_identity(self) -> dict[str, Any]:
        """How photo vectors are computed, as the gallery index records it (an index keys on it)."""
        ...

    def describe(self) -> str:
        """One line for the page's status and the logs: what runs, and why when it is not the default."""
        ...

    def text_runtime(self) -> str:
        """What runs the text tower ("no text tower" when there is none)."""
        ...

    def uses_onnx(self, mode: str, modality: str) -> bool:
        ...

    def uses_int8(self, mode: str) -> bool:
        ...

    def release_torch(self, photos: list | None = None) -> str | None:
        """Free torch towers nothing needs any more (the app, once started); why they stay, or None.
        ``PHOTOS_NEEDED``: call again with a few gallery photos (RGB) to check the photo graphs on."""
        ...
