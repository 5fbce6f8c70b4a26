"""A torch Dataset over a list of image paths (or already loaded images), for batched embedding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset


def load_item(item: Any) -> Any:
    """A path (or ``(path, ...)`` tuple) -> decoded RGB photo or sketch; a stroke drawing -> a
    :class:`~sketchlvm.preprocess.drawing.StrokeDrawing`, left for ``SketchTransform`` to render at its own
    size and framing (rendering here, at some other size, is how stroke paths used to drift apart)."""
    from sketchlvm.datasets.quickdraw import QuickDrawDrawing, QuickDrawSketches
    from sketchlvm.preprocess.drawing import StrokeDrawing
    from sketchlvm.preprocess.transforms import load_photo

    if isinstance(item, StrokeDrawing):
        return item
    if isinstance(item, QuickDrawDrawing):
        return QuickDrawSketches.drawing(item)
    if isinstance(item, tuple):  # e.g. FineGrainedPairs.pairs entries: the path comes first
        item = item[0]
    return load_photo(item)


class ImageListDataset(Dataset):
    """``dataset[i] -> (transform(loader(items[i])), i)`` for training and evaluation alike.

    ``loader`` defaults to :func:`load_item`: files through :func:`sketchlvm.preprocess.transforms.load_photo`
    (PIL RGB; raises ``ImageLoadError``), Quick, Draw! drawings and stroke drawings to the transform as strokes. Returning the
    index lets a DataLoader's output be matched back to paths and labels.
    """

    def __init__(
        self,
        paths_or_items: Sequence[Any],
        transform: Callable[[Any], Any] | None = None,
        loader: Callable[[Any], Any] | None = None,
    ) -> None:
        self.items = list(paths_or_items)
        self.transform = transform
        self.loader = loader or load_item

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.loader(self.items[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, index
