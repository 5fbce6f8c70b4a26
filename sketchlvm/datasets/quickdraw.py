"""Quick, Draw! ``<word>.ndjson`` stroke files (one JSON drawing per line)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from sketchlvm.datasets.folders import select_classes


@dataclass
class QuickDrawDrawing:
    """One Quick, Draw! drawing: ``strokes`` is the raw ``[[xs, ys, ts], ...]`` list."""

    word: str
    label: int
    strokes: list
    recognized: bool = True
    key_id: str = ""


class QuickDrawSketches:
    """Drawings from ``FOLDER/<word>.ndjson`` files, as a sketch source.

    ``classes`` (matched after normalisation; default all, sorted) and ``limit_per_class`` (the
    first N drawings of each file; 0 = all) select what is read. Iterating reads lazily.
    """

    def __init__(
        self,
        folder: str | PathLike,
        classes: Sequence[str] | None = None,
        limit_per_class: int = 0,
        recognized_only: bool = False,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"Quick, Draw! folder {str(self.folder)!r} does not exist")
        files = {p.stem: p for p in self.folder.iterdir() if p.suffix.lower() == ".ndjson"}
        if not files:
            raise ValueError(f"no .ndjson files in {str(self.folder)!r}")
        self.class_names: list[str] = select_classes(list(files), classes, 0)
        self.files = [files[name] for name in self.class_names]
        self.limit_per_class = int(limit_per_class)
        self.recognized_only = recognized_only

    def __iter__(self) -> Iterator[QuickDrawDrawing]:
        from sketchlvm.preprocess.strokes import load_ndjson  # the stroke-format owner parses the files

        for label, path in enumerate(self.files):
            count = 0
            for record in load_ndjson(path):
                if self.limit_per_class and count >= self.limit_per_class:
                    break
                if self.recognized_only and not record.get("recognized", True):
                    continue
                count += 1
                yield QuickDrawDrawing(
                    word=str(record.get("word", self.class_names[label])),
                    label=label,
                    strokes=record["drawing"],
                    recognized=bool(record.get("recognized", True)),
                    key_id=str(record.get("key_id", "")),
                )

    def load(self) -> list[QuickDrawDrawing]:
        return list(self)

    @staticmethod
    def drawing(item: QuickDrawDrawing | list) -> Any:
        """A drawing (or a raw stroke list) -> the :class:`~sketchlvm.preprocess.drawing.StrokeDrawing` that
        ``SketchTransform`` renders, placed on the app's canvas as a finished drawing is: the one renderer and
        framing the app and partial evaluation use, at the transform's own size and preprocessing."""
        from sketchlvm.preprocess.drawing import StrokeDrawing

        return StrokeDrawing(item.strokes if isinstance(item, QuickDrawDrawing) else item)

    @classmethod
    def render(cls, item: QuickDrawDrawing | list, size: int = 256, config: Any = None) -> Any:
        """Drawing -> the PIL RGB sketch a model with ``config`` (default ``PreprocessConfig()``) sees at
        ``size`` (see :meth:`drawing`)."""
        from sketchlvm.config import PreprocessConfig
        from sketchlvm.preprocess.drawing import render_drawing

        return render_drawing(cls.drawing(item), config or PreprocessConfig(), size)
