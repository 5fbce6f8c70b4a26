"""Queries beyond a sketch, on real Sketchy photos and sketches with the tiny random-weight model: sketch +
words (late fusion), words alone, "more like this" from a stored vector, and an uploaded photo."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from tiny_checkpoint import _metadata, _trained_states
from test_index import _make_gallery

from sketchlvm import create_sketchlvm
from sketchlvm.model.checkpoint import save_checkpoint
from sketchlvm.config import TINY_ARCH, IndexConfig
from sketchlvm.gallery import build_gallery_index
from sketchlvm.search import DEFAULT_TEXT_WEIGHT, Searcher, fuse
from sketchlvm.preprocess.strokes import EmptySketchError
from sketchlvm.model.text import MAX_TEXT_CHARS, TEXT_TEMPLATE, TextQueryError
from sketchlvm.preprocess.transforms import ImageLoadError
from sketchlvm.model.weights import load_clip

CONFIG = IndexConfig(batch_size=8, decode_workers=1)
MODES = ("category", "fine_grained")


@pytest.fixture(scope="module")
def model():
    return create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu", text=True)


@pytest.fixture(scope="module")
def gallery_index(model, sketchy_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("queries")
    gallery = _make_gallery(sketchy_root, root / "gallery", n_classes=4, per_class=5)
    return build_gallery_index(gallery, model, root / "cache", CONFIG, show_progress_bar=False)


@pytest.fixture(scope="module")
def sketch(sketchy_root):
    return Image.open(sorted((sketchy_root / "sketch" / "airplane").glob("*.png"))[0]).convert("RGB")


def _ranking(index, query: np.ndarray, mode: str) -> list[str]:
    """Brute force: every photo by descending inner product with ``query``."""
    scores = np.asarray(index.vectors(mode)) @ np.asarray(query, dtype=np.float32).reshape(-1)
    return [index.photos[i].relpath for i in np.argsort(-scores, kind="stable")]


def _relpaths(results) -> list[str]:
    return [r.relpath for r in results]


def test_fused_vector_is_unit_norm_and_the_formula():
    rng = np.random.default_rng(0)
    s, t = rng.standard_normal((2, 64))
    s, t = s / np.linalg.norm(s), t / np.linalg.norm(t)
    for w in (0.0, 0.2, DEFAULT_TEXT_WEIGHT, 0.9, 1.0):
        q = fuse(s.astype(np.float32), t.astype(np.float32), w)
        assert q.shape == (1, 64) and q.dtype == np.float32
        assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-6)
        mixed = (1 - w) * s + w * t
        np.testing.assert_allclose(q[0], mixed / np.linalg.norm(mixed), atol=1e-6)
    np.testing.assert_allclose(fuse(s, t, 0.0)[0], s, atol=1e-6)
    np.testing.assert_allclose(fuse(s, t, 1.0)[0], t, atol=1e-6)
    for bad in (-0.01, 1.01, float("nan"), "half", None):
        with pytest.raises(ValueError, match="text weight"):
            fuse(s, t, bad)
    with pytest.raises(ValueError, match="cancel out"):
        fuse(s, -s, 0.5)


def test_sketch_plus_words_ranks_by_the_fused_query_in_both_modes(model, gallery_index, sketch):
    searcher = Searcher(model, gallery_index)
    n = len(gallery_index)
    text = "a red airplane on a beach"
    t = model.encode_text(text)
    assert t.shape == (64,) and np.linalg.norm(t) == pytest.approx(1.0, abs=1e-5)
    for mode in MODES:
        s = model.encode_sketches([sketch], mode)[0]
        for w in (0.3, DEFAULT_TEXT_WEIGHT):
            results = searcher.search(sketch, mode, n, text=text, text_weight=w)
            q = fuse(s, t, w)
            assert _relpaths(results) == _ranking(gallery_index, q, mode)
            expected = np.asarray(gallery_index.vectors(mode)) @ q[0]
            np.testing.assert_allclose([r.score for r in results], np.sort(expected)[::-1], atol=1e-5)

        # The slider's ends: 0 is the sketch alone, 1 is the words alone.
        sketch_only = searcher.search(sketch, mode, n)
        text_only = _ranking(gallery_index, t, mode)
        assert _relpaths(searcher.search(sketch, mode, n, text=text, text_weight=0.0)) == _relpaths(sketch_only)
        assert [r.score for r in searcher.search(sketch, mode, n, text=text, text_weight=0.0)] == \
            pytest.approx([r.score for r in sketch_only], abs=1e-6)
        assert _relpaths(searcher.search(sketch, mode, n, text=text, text_weight=1.0)) == text_only
        assert _relpaths(sketch_only) != text_only  # otherwise the two ends would prove nothing
        # Words alone, with no sketch or a blank canvas: CLIP text -> photo search.
        blank = Image.new("RGB", (256, 256), "white")
        for no_sketch in (None, blank):
            assert _relpaths(searcher.search(no_sketch, mode, n, text=text)) == text_only


def test_text_is_checked_limited_cached_and_truncation_reported(model, gallery_index, sketch):
    searcher = Searcher(model, gallery_index)
    blank = Image.new("RGB", (64, 64), "white")
    with pytest.raises(EmptySketchError, match="draw something or type a few words"):
        searcher.search(blank, "category", text="   ")
    with pytest.raises(EmptySketchError, match="nothing drawn"):  # no text box at all: the canvas's message
        searcher.search(blank, "category")
    assert _relpaths(searcher.search(sketch, "category", text=" \n")) == _relpaths(searcher.search(sketch))
    with pytest.raises(TextQueryError, match="no words to search with"):
        searcher.text_query("\t ")
    with pytest.raises(TextQueryError, match=f"301 characters long; the limit is {MAX_TEXT_CHARS}"):
        searcher.search(sketch, "category", text="x" * 301)
    with pytest.raises(TextQueryError, match="must be text"):
        searcher.search(sketch, "category", text=12)
    with pytest.raises(ValueError, match="text weight"):
        searcher.search(sketch, "category", text="red", text_weight=2)

    short = searcher.text_query("  red\u200b  leather\n")
    assert short.text == "red leather" and short.prompt == TEXT_TEMPLATE.format("red leather")
    assert not short.truncated and short.note() is None and short.used == short.prompt
    digits = " ".join(f"{i}{i}" for i in range(10, 60))  # 249 characters, 200 CLIP tokens
    assert len(digits) <= MAX_TEXT_CHARS
    long = searcher.text_query(digits)
    assert long.truncated and long.tokens > 77 and long.max_tokens == 77
    assert long.note().startswith("Only the start of the text was used (CLIP reads 77 tokens")
    assert long.prompt.startswith(long.used.strip()) and len(long.used) < len(long.prompt)
    assert len(searcher.search(sketch, "category", text=digits)) == searcher.default_k  # truncated, still searched

    tower = model.text_tower
    before = tower.encode_calls
    first = searcher.search(sketch, "category", text="on a beach")
    assert tower.encode_calls == before + 1
    assert searcher.search(sketch, "fine_grained", text="on  a beach ") and tower.encode_calls == before + 1
    assert searcher.search(sketch, "category", text="on a beach") == first and tower.encode_calls == before + 1


def test_text_tower_comes_from_the_same_weights(model):
    clip_model, _ = load_clip(TINY_ARCH, "none", "cpu")  # the very weights the image tower came from
    tokens = open_clip.get_tokenizer(TINY_ARCH)([TEXT_TEMPLATE.format("a leather shoe")])
    with torch.no_grad():
        expected = clip_model.encode_text(tokens, normalize=True)[0].numpy()
    np.testing.assert_allclose(model.encode_text("a leather shoe"), expected, atol=1e-6)
    assert model.text_tower.clip_model.visual is not model.encoders["category"].visual

    no_text = create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu")
    assert no_text.text_tower is None and not Searcher(no_text, None).supports_text
    with pytest.raises(TextQueryError, match=r"text=True"):
        Searcher(no_text, None).search(None, "category", text="red")


def test_more_like_this_uses_the_stored_vector_and_puts_the_photo_first(model, gallery_index, monkeypatch):
    searcher = Searcher(model, gallery_index)
    calls = []
    for name in ("encode_photos", "encode_sketches", "encode_text"):
        monkeypatch.setattr(model, name, lambda *a, name=name, **k: calls.append(name))
    n = len(gallery_index)
    for mode in MODES:
        vectors = np.asarray(gallery_index.vectors(mode))
        for i in (0, 7, n - 1):
            photo = gallery_index.photos[i].relpath
            results = searcher.search_like(i, mode, 6)
            assert len(results) == 6 and [r.rank for r in results] == [1, 2, 3, 4, 5, 6]
            assert results[0].relpath == photo and results[0].score == pytest.approx(1.0, abs=1e-5)
            scores, ids = gallery_index.search(vectors[i], mode, 7)
            neighbours = [(int(j), float(sc)) for sc, j in zip(scores[0], ids[0], strict=True) if j != i][:5]
            assert [(gallery_index.id_of(r.relpath), r.score) for r in results[1:]] == neighbours
            oracle = vectors @ vectors[i]
            oracle[i] = -np.inf
            np.testing.assert_allclose([r.score for r in results[1:]], np.sort(oracle)[::-1][:5], atol=1e-5)
            assert searcher.search_like(photo, mode, 6) == results  # by relpath: the same
        everything = searcher.search_like(3, mode, 1000)
        assert len(everything) == n and everything[0].relpath == gallery_index.photos[3].relpath
        assert len({r.relpath for r in everything}) == n
    assert calls == []  # nothing was encoded
    with pytest.raises(KeyError, match="no photo 'nope.jpg'"):
        searcher.search_like("nope.jpg")
    with pytest.raises(ValueError, match="no photo 99"):
        searcher.search_like(99)


def test_uploaded_photo_is_a_query(model, gallery_index, tmp_path):
    searcher = Searcher(model, gallery_index)
    for mode in MODES:
        for i in (2, 11):
            path = gallery_index.path_of(i)
            results = searcher.search_photo(path, mode, 5)
            assert results[0].relpath == gallery_index.photos[i].relpath
            assert results[0].score == pytest.approx(1.0, abs=1e-5)
            stored = np.asarray(gallery_index.vectors(mode))
            expected = np.sort(stored @ stored[i])[::-1][:5]  # decoded as the build did: its stored vector
            np.testing.assert_allclose([r.score for r in results], expected, atol=1e-5)
    before = searcher.encode_calls
    assert searcher.search_photo(gallery_index.path_of(2), "category", 5)[0].relpath == gallery_index.photos[2].relpath
    assert searcher.encode_calls == before  # the same pixels again: cached
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    with pytest.raises(ImageLoadError, match="not a recognised image"):
        searcher.search_photo(tmp_path / "broken.jpg")


def test_modes_share_an_embedding_exactly_when_they_share_an_encoder(model, gallery_index, sketch, tmp_path):
    """Zero-shot modes run one encoder: a drawing (or photo) is encoded once for both. A checkpoint gives
    a trained mode its own encoder: then each mode is encoded, and gets its own vector."""
    searcher = Searcher(model, gallery_index)
    vectors = [searcher.embed(sketch, mode) for mode in MODES]
    assert searcher.encode_calls == 1
    np.testing.assert_array_equal(vectors[0], vectors[1])
    np.testing.assert_allclose(vectors[1], model.encode_sketches([sketch], "fine_grained"), atol=1e-6)
    for mode in MODES:
        searcher.search_photo(gallery_index.path_of(3), mode, 5)
    assert searcher.encode_calls == 2  # one photo encode for both modes

    for trained in (("category",), MODES):
        path = save_checkpoint(tmp_path / f"{len(trained)}.safetensors", _trained_states(modes=trained), _metadata())
        tuned = create_sketchlvm(arch=TINY_ARCH, pretrained="none", checkpoint=path, device="cpu", runtime="torch")
        assert tuned.encoder_key("category", "sketch") != tuned.encoder_key("fine_grained", "sketch")
        searcher = Searcher(tuned, None)
        vectors = [searcher.embed(sketch, mode) for mode in MODES]
        assert searcher.encode_calls == 2, trained
        assert float(vectors[0][0] @ vectors[1][0]) < 0.9999, float(vectors[0][0] @ vectors[1][0])  # different encoders
        for mode, vector in zip(MODES, vectors, strict=True):
            np.testing.assert_allclose(vector, tuned.encode_sketches([sketch], mode), atol=1e-6)
            assert searcher.embed(sketch, mode) is vector  # and each is cached
        assert searcher.encode_calls == 2
