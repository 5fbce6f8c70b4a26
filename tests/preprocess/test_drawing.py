"""One stroke renderer and one framing (issue 20): the app's canvas, Quick, Draw! drawings in training and
evaluation, and partial-sketch evaluation turn the same strokes into the same tensor, with the framing,
stroke width and margin the checkpoint was trained with."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sketchlvm.config import TINY_ARCH, PreprocessConfig
from sketchlvm.datasets import ImageListDataset, QuickDrawDrawing
from sketchlvm.evaluation.partial.framing import load_stroke_sketches, partial_drawings, truncate_strokes
from sketchlvm.preprocess.drawing import CANVAS_UNITS, StrokeDrawing, place_on_canvas, render_drawing
from sketchlvm.preprocess.transforms import SketchTransform
from sketchlvm.webapp import handlers
from sketchlvm.webapp.canvas import fit_strokes

FRAMINGS = ("pad-square", "ink-crop")


@pytest.fixture(scope="module")
def giraffe(quickdraw_root):
    return next(s for s in load_stroke_sketches(quickdraw_root / "giraffe.ndjson") if len(s.strokes) >= 10)


def _app(transform, canvas_strokes) -> torch.Tensor:
    """What the app feeds the encoder for this canvas value (handlers -> the searcher's transform)."""
    state = SimpleNamespace(searcher=SimpleNamespace(model=SimpleNamespace(sketch_transform=transform)))
    image = handlers.strokes_to_sketch(state, json.dumps(canvas_strokes))
    return transform(image)


def _ink(tensor: torch.Tensor) -> np.ndarray:
    return tensor.mean(dim=0).numpy() < tensor.mean(dim=0).numpy().max() - 0.5


# Both framings, with the default placement and with a checkpoint's other margin and line width (issue 29).
CONFIGS = [PreprocessConfig(sketch_framing=f, **placed) for f in FRAMINGS
           for placed in ({}, {"sketch_margin": 0.25, "stroke_width": 0.05})]


def _example_on_canvas(drawing, config, tmp_path, monkeypatch) -> list:
    """The canvas value the app sets when ``drawing`` is one of its shipped examples, under a model whose
    checkpoint recorded ``config``."""
    from sketchlvm.webapp import query

    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "giraffe.json").write_text(json.dumps({"word": "giraffe", "drawing": drawing.strokes}))
    monkeypatch.setattr(query, "EXAMPLES_DIR", tmp_path / "examples")
    model = SimpleNamespace(preprocess=config, sketch_transform=SketchTransform(224, config))
    state = SimpleNamespace(examples=[tmp_path / "giraffe.png"], searcher=SimpleNamespace(model=model))
    value, _, _ = query.set_example(state, 0)
    return json.loads(value)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.sketch_framing}-m{c.sketch_margin}-w{c.stroke_width}")
def test_the_same_strokes_give_the_same_tensor_on_every_path(giraffe, config, tmp_path, monkeypatch):
    transform = SketchTransform(224, config)
    on_canvas = _example_on_canvas(giraffe, config, tmp_path, monkeypatch)  # an example drawing in the app

    app = _app(transform, on_canvas)
    dataset, _ = ImageListDataset([QuickDrawDrawing("giraffe", 0, giraffe.strokes)], transform=transform)[0]
    partial = transform(StrokeDrawing(partial_drawings(giraffe.strokes, "even", 10, "strokes")[-1],
                                      placed_as=giraffe.strokes))
    assert torch.equal(app, dataset) and torch.equal(app, partial)


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_partial_drawing_is_what_the_app_sees_at_that_point(giraffe, framing):
    """10% of the strokes: before, 0.26 IoU with the app's input under ink-crop (lines ~3.5x too thick) and 0.0
    under pad-square (left small and off-centre while the app zoomed it)."""
    transform = SketchTransform(224, PreprocessConfig(sketch_framing=framing))
    first = partial_drawings(giraffe.strokes, "even", 10, "strokes")[0]
    evaluated = transform(StrokeDrawing(first, placed_as=giraffe.strokes))
    app = _app(transform, truncate_strokes(fit_strokes(giraffe.strokes), 0.1))
    assert _ink(app).any() and torch.equal(evaluated, app)


def test_partial_evaluation_feeds_the_encoder_what_the_app_would(giraffe, quickdraw_root, sketchy_root, monkeypatch):
    """Through evaluate_partial itself: every step's items become the app's tensors."""
    from sketchlvm.evaluation import embedding
    from sketchlvm.evaluation.partial.run import evaluate_partial
    from sketchlvm.model.factory import create_sketchlvm

    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="torch")
    captured = []
    real = embedding.embed_items

    def spy(encoder, items, modality, transform, *args, **kwargs):
        if modality == "sketch":
            captured.append([transform(item) for item in items])
        return real(encoder, items, modality, transform, *args, **kwargs)

    monkeypatch.setattr(embedding, "embed_items", spy)
    evaluate_partial(model, [giraffe], sketchy_root / "photo", steps=4, max_photos_per_class=2)
    on_canvas = fit_strokes(giraffe.strokes)
    for k, fraction in enumerate((0.25, 0.5, 0.75, 1.0)):
        assert torch.equal(captured[k][0], _app(model.sketch_transform, truncate_strokes(on_canvas, fraction)))


def test_pad_square_keeps_the_drawing_where_it_stands_on_the_canvas(giraffe):
    """The canvas is the frame: a drawing in a corner stays small in the corner; ink-crop zooms it to fill."""
    small = [[[x * 0.25 for x in s[0]], [y * 0.25 for y in s[1]]] for s in fit_strokes(giraffe.strokes)]
    pad = np.asarray(render_drawing(StrokeDrawing(small, on_canvas=True), PreprocessConfig(sketch_framing="pad-square"), 224))
    ink = np.asarray(render_drawing(StrokeDrawing(small, on_canvas=True), PreprocessConfig(sketch_framing="ink-crop"), 224))
    rows, cols = np.nonzero(pad.min(axis=2) < 128)
    assert rows.max() < 224 * 0.3 and cols.max() < 224 * 0.3  # top-left quarter of the canvas
    rows, cols = np.nonzero(ink.min(axis=2) < 128)
    assert rows.max() - rows.min() > 224 * 0.7 or cols.max() - cols.min() > 224 * 0.7
    # a finished drawing placed on the canvas looks the same under both framings
    placed = place_on_canvas(giraffe.strokes)
    a, b = (np.asarray(render_drawing(StrokeDrawing(placed, on_canvas=True), PreprocessConfig(sketch_framing=f), 224))
            for f in FRAMINGS)
    ink_a, ink_b = a.min(axis=2) < 128, b.min(axis=2) < 128
    assert (ink_a & ink_b).sum() / (ink_a | ink_b).sum() > 0.9  # equal but for sub-pixel rounding
    assert CANVAS_UNITS == 512


def test_the_canvas_path_honours_the_checkpoints_framing_stroke_width_and_margin(giraffe, tmp_path):
    from sketchlvm.model.checkpoint import preprocess_metadata, save_checkpoint
    from sketchlvm.model.factory import create_sketchlvm
    from tiny_checkpoint import _metadata, _trained_states

    trained = PreprocessConfig(sketch_framing="pad-square", stroke_width=0.05, sketch_margin=0.25)
    path = save_checkpoint(tmp_path / "c.safetensors", _trained_states(modes=("category",)),
                           {**_metadata(), **preprocess_metadata(trained, 64)})
    model = create_sketchlvm(pretrained="none", checkpoint=path, device="cpu", runtime="torch")
    assert model.preprocess == trained
    small = [[[x * 0.5 for x in s[0]], [y * 0.5 for y in s[1]]] for s in fit_strokes(giraffe.strokes)]
    app = _app(model.sketch_transform, small)
    expected = np.asarray(render_drawing(StrokeDrawing(small, on_canvas=True), trained, 64))
    np.testing.assert_array_equal(np.asarray(handlers.strokes_to_sketch(
        SimpleNamespace(searcher=SimpleNamespace(model=model)), json.dumps(small))), expected)
    default = SketchTransform(64, PreprocessConfig())(StrokeDrawing(small, on_canvas=True))
    assert not torch.equal(app, default)
    # thicker lines than the default width: more ink
    thin = SketchTransform(64, PreprocessConfig(sketch_framing="pad-square"))(StrokeDrawing(small, on_canvas=True))
    assert _ink(app).sum() > _ink(thin).sum()


def test_training_triplets_take_drawings_through_the_same_path(giraffe, sketchy_root):
    from sketchlvm.preprocess.transforms import PhotoTransform
    from sketchlvm.training.trainer import TripletImages

    transform = SketchTransform(64, PreprocessConfig(sketch_framing="pad-square"))
    photo = min((sketchy_root / "photo" / "giraffe").glob("*.jpg"))
    images = TripletImages([QuickDrawDrawing("giraffe", 0, giraffe.strokes)], [photo, photo], [0, 0], transform,
                           PhotoTransform(64))
    assert torch.equal(images[(0, 0, 1, 0)][0], _app(transform, fit_strokes(giraffe.strokes)))
