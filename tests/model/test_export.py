"""``sketchlvm export`` (full install) and the index both installs share.

An index built by either install is used by the other: the same identity per mode, and photo vectors
within 1e-4 cosine. One engine builds, the other opens the index (no rebuild, no StaleIndexError) and
searches it, and its own vectors for the same photos are compared with the stored ones.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # exporting needs the full install

from conftest import copy_class_photos  # noqa: E402
from serving_export import tiny_model, trained_checkpoint  # noqa: E402

from sketchlvm.config import MODES  # noqa: E402
from sketchlvm.gallery import build_gallery_index, default_cache_dir, open_gallery_index  # noqa: E402
from sketchlvm.model.folder_export import ExportError, write_export  # noqa: E402
from sketchlvm.model.folder_model import MANIFEST, load_export  # noqa: E402
from sketchlvm.preprocess.tokenizer import VOCAB_FILE  # noqa: E402
from sketchlvm.search import Searcher  # noqa: E402

MAX_COSINE_GAP = 1e-4
pytestmark = pytest.mark.usefixtures("isolated_runtime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(torch model, the same model exported and loaded back as the serving install loads it)."""
    folder = tmp_path_factory.mktemp("export")
    model = tiny_model(trained_checkpoint(folder / "checkpoint.safetensors"))
    write_export(model, folder / "tiny")
    return model, load_export(folder / "tiny")


def _worst_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def test_the_folder_holds_every_graph_the_tokenizer_and_each_modes_identity(exported):
    model, served = exported
    folder = served.folder
    manifest = json.loads((folder / MANIFEST).read_text())
    for relpath in ("config.json", "visual/model.onnx", "visual/preprocess_cfg.json", "visual/category-sketch.onnx",
                    "visual/category-photo.onnx", "textual/model.onnx", f"textual/{VOCAB_FILE}"):
        assert (folder / relpath).is_file(), relpath
    assert manifest["modes"]["category"]["sketch"] == "visual/category-sketch.onnx"
    assert manifest["modes"]["fine_grained"]["photo"] == "visual/model.onnx"  # zero-shot: the plain tower
    assert served.trained_modes() == model.trained_modes() == ["category"]
    for mode in MODES:
        assert served.identity(mode) == json.loads(json.dumps(model.identity(mode)))
        assert served.mode_label(mode) == model.mode_label(mode)
    assert served.preprocess == model.preprocess


def test_exported_vectors_match_torch_on_real_sketches_and_photos(exported, sketchy_root):
    model, served = exported
    from PIL import Image

    sketches = [Image.open(p) for p in sorted((sketchy_root / "sketch" / "cow").glob("*.png"))[:4]]
    photos = [Image.open(p) for p in sorted((sketchy_root / "photo" / "cow").glob("*.jpg"))[:4]]
    for mode in MODES:
        with_torch = model.runtime._torch(np.stack([model.sketch_transform.array(s) for s in sketches]), "sketch", mode)
        assert _worst_cosine(with_torch, served.encode_sketches(sketches, mode)) > 1 - MAX_COSINE_GAP
        with_torch = model.runtime._torch(np.stack([model.photo_transform.array(p) for p in photos]), "photo", mode)
        assert _worst_cosine(with_torch, served.encode_photos(photos, mode)) > 1 - MAX_COSINE_GAP
    prompts = ["a photo of a cow.", "a photo of a red leather shoe on a beach."]
    tower = model.text_tower
    assert _worst_cosine(tower.encode_tokens_torch(tower.tokenizer(prompts)),
                         served.runtime.encode_text(served.text_tower.tokenizer(prompts))) > 1 - MAX_COSINE_GAP


@pytest.mark.parametrize("builder", ["torch", "served"])
def test_an_index_built_by_either_install_is_searched_by_the_other(builder, exported, sketchy_root, tmp_path):
    model, served = exported
    model.use_runtime("torch")  # the full install's engine at its plainest: torch itself
    try:
        build, search = (model, served) if builder == "torch" else (served, model)
        gallery = copy_class_photos(sketchy_root, tmp_path / "gallery", ("airplane", "cow"), 3)
        built = build_gallery_index(gallery, build, show_progress_bar=False)
        opened = open_gallery_index(default_cache_dir(gallery.resolve()), search)  # StaleIndexError if identities differ
        assert len(opened) == len(built) == 6
        again = build_gallery_index(gallery, search, show_progress_bar=False)  # the other install's build: no rework
        assert again.report.added == again.report.updated == 0 and again.report.unchanged == 6
        photos = [gallery / opened.photos[i].relpath for i in range(len(opened))]
        from PIL import Image

        for mode in MODES:
            own = search.encode_photos([Image.open(p) for p in photos], mode)
            assert _worst_cosine(own, opened.vectors(mode)) > 1 - MAX_COSINE_GAP
            results = Searcher(search, opened).search_like(0, mode, 3)
            assert results[0].relpath == opened.photos[0].relpath and results[0].score > 0.9999
    finally:
        model.use_runtime("onnx")


def test_export_refuses_a_model_without_text_tower_and_a_foreign_folder(exported, tmp_path):
    from sketchlvm.model.factory import create_sketchlvm

    model, _ = exported
    with pytest.raises(ExportError, match="text=True"):
        write_export(create_sketchlvm(arch="SketchLVM-Tiny", pretrained="none", device="cpu"), tmp_path / "x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not an export folder"):
        write_export(model, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_an_immich_style_folder_is_served_as_zero_shot_clip(exported, tmp_path):
    """immich's layout (config.json, visual/model.onnx + preprocess_cfg.json, textual/model.onnx +
    tokenizer.json) without our sketchlvm.json: both modes run its plain tower, words its text graph."""
    import shutil

    from sketchlvm.preprocess.tokenizer import ClipTokenizer

    _, served = exported
    folder = tmp_path / "immich"
    for relpath in ("config.json", "visual/model.onnx", "visual/preprocess_cfg.json", "textual/model.onnx"):
        (folder / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(served.folder / relpath, folder / relpath)
    ours = served.text_tower.tokenizer
    merges = [" ".join(pair) for pair, _ in sorted(ours.bpe_ranks.items(), key=lambda item: item[1])]
    (folder / "textual" / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "merges": merges}}))
    immich = load_export(folder)
    assert immich.trained_modes() == [] and immich.identity("category")["arch"] == "export:immich"
    from PIL import Image

    batch = np.stack([served.photo_transform.array(Image.new("RGB", (64, 48), colour)) for colour in ("red", "teal")])
    np.testing.assert_allclose(immich.encode_tensors(batch, "photo", "category"),
                               served.encode_tensors(batch, "photo", "fine_grained"), atol=1e-6)
    assert isinstance(immich.text_tower.tokenizer, ClipTokenizer)
    np.testing.assert_array_equal(immich.text_tower.tokenizer(["a photo of a cat."]), ours(["a photo of a cat."]))
