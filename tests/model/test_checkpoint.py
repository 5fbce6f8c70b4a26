"""Learned-state checkpoints: small, self-describing, identical embeddings after a round trip."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from sketchlvm.model.checkpoint import CheckpointMismatchError, learned_state, load_checkpoint, save_checkpoint
from sketchlvm.config import TINY_ARCH
from sketchlvm.model.encoder import trainable_parameter_names
from sketchlvm.model.factory import ZERO_SHOT_LABEL, build_prompted_encoder, create_sketchlvm
from sketchlvm.model.weights import register_model_configs

register_model_configs()  # the tiny test tower


from tiny_checkpoint import _metadata, _trained_states  # noqa: E402  (shared with other test folders)


@pytest.fixture
def real_images(sketchy_root):
    sketches = [Image.open(p) for p in sorted((sketchy_root / "sketch" / "cow").glob("*.png"))[:3]]
    photos = [Image.open(p) for p in sorted((sketchy_root / "photo" / "cow").glob("*.jpg"))[:3]]
    return sketches, photos


def test_round_trip_gives_identical_embeddings(tmp_path, real_images):
    sketches, photos = real_images
    states = _trained_states()
    path = save_checkpoint(tmp_path / "ckpt.safetensors", states, _metadata())
    loaded = load_checkpoint(path)
    assert loaded.modes == ["category", "fine_grained"]
    assert loaded.metadata["training"]["split"] == "sketchy_21"
    assert loaded.metadata["metrics"]["mAP@200"] == 0.5
    for mode in states:
        for name, tensor in states[mode].items():
            torch.testing.assert_close(loaded.states[mode][name], tensor, rtol=0, atol=0)

    model_a = create_sketchlvm(pretrained="none", checkpoint=path, device="cpu")
    model_b = create_sketchlvm(pretrained="none", checkpoint=path, device="cpu")
    plain = create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu")
    assert model_a.arch == TINY_ARCH  # taken from the checkpoint
    for mode in ("category", "fine_grained"):
        np.testing.assert_array_equal(model_a.encode_sketches(sketches, mode), model_b.encode_sketches(sketches, mode))
        np.testing.assert_array_equal(model_a.encode_photos(photos, mode), model_b.encode_photos(photos, mode))
        assert not np.allclose(model_a.encode_photos(photos, mode), plain.encode_photos(photos, mode), atol=1e-4)
    assert model_a.identity("category")["checkpoint_sha256"] == loaded.sha256
    assert plain.describe()["checkpoint"] == ZERO_SHOT_LABEL


def test_checkpoint_holds_only_the_learned_state_with_json_metadata(tmp_path):
    states = _trained_states(modes=("category",))
    path = save_checkpoint(tmp_path / "c.safetensors", states, _metadata())
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        meta = json.loads(handle.metadata()["sketchlvm"])
    assert keys == {f"category/{n}" for n in states["category"]}
    assert all(k.startswith("category/prompts.") or ".ln_" in k for k in keys)
    assert meta["arch"] == TINY_ARCH and meta["modes"] == ["category"] and meta["n_prompts"] == 3


def test_a_single_mode_checkpoint_leaves_the_other_mode_zero_shot(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", _trained_states(modes=("fine_grained",)), _metadata())
    model = create_sketchlvm(pretrained="none", checkpoint=path, device="cpu")
    assert model.describe()["mode category"] == ZERO_SHOT_LABEL
    assert "trained prompts" in model.describe()["mode fine_grained"]
    assert model.identity("category")["checkpoint_sha256"] is None


def test_mismatched_checkpoint_fails_with_a_clear_message(tmp_path):
    states = _trained_states(modes=("category",))
    wrong_arch = save_checkpoint(tmp_path / "a.safetensors", states, _metadata(arch="ViT-B-32-quickgelu"))
    with pytest.raises(CheckpointMismatchError, match="architecture: checkpoint 'ViT-B-32-quickgelu', model 'SketchLVM-Tiny'"):
        create_sketchlvm(arch=TINY_ARCH, pretrained="none", checkpoint=wrong_arch, device="cpu")

    trained_on_random = save_checkpoint(tmp_path / "r.safetensors", states, _metadata())
    local_weights = tmp_path / "w.pt"
    torch.save(open_clip.create_model(TINY_ARCH, pretrained=None).state_dict(), local_weights)
    with pytest.raises(CheckpointMismatchError, match="backbone weights: checkpoint trained on random"):
        create_sketchlvm(pretrained=str(local_weights), checkpoint=trained_on_random, device="cpu")

    bad_shape = {"category": {**states["category"], "prompts.tokens.sketch": torch.zeros(3, 99)}}
    bad = save_checkpoint(tmp_path / "s.safetensors", bad_shape, _metadata())
    with pytest.raises(CheckpointMismatchError, match=r"prompts.tokens.sketch: checkpoint shape \(3, 99\), model \(3, 128\)"):
        create_sketchlvm(pretrained="none", checkpoint=bad, device="cpu")

    unknown = {"category": {**states["category"], "visual.not_a_layer.weight": torch.zeros(2)}}
    path = save_checkpoint(tmp_path / "u.safetensors", unknown, _metadata())
    with pytest.raises(CheckpointMismatchError, match="not_a_layer.weight: not a parameter"):
        create_sketchlvm(pretrained="none", checkpoint=path, device="cpu")

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="not a readable safetensors checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_paper_checkpoint_for_vit_b32_is_small(tmp_path):
    clip = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    encoder = build_prompted_encoder(clip.visual, "category", 3)
    state = learned_state(encoder, trainable_parameter_names(encoder, "paper"))
    path = save_checkpoint(tmp_path / "b32.safetensors", {"category": state}, _metadata(arch="ViT-B-32-quickgelu"))
    assert path.stat().st_size < 300_000  # ~40k LayerNorm + 4.6k prompt floats


def test_merge_two_single_mode_checkpoints_for_the_app(tmp_path):
    category = save_checkpoint(tmp_path / "c.safetensors", _trained_states(modes=("category",)), _metadata())
    fine = save_checkpoint(tmp_path / "f.safetensors", _trained_states(modes=("fine_grained",), seed=5), _metadata())
    from sketchlvm.model.cli import checkpoint_main as main

    assert main(["merge", str(tmp_path / "both.safetensors"), str(category), str(fine)]) == 0
    both = load_checkpoint(tmp_path / "both.safetensors")
    assert both.modes == ["category", "fine_grained"]
    torch.testing.assert_close(both.states["fine_grained"]["prompts.tokens.shared"],
                               load_checkpoint(fine).states["fine_grained"]["prompts.tokens.shared"])
    assert main(["merge", str(tmp_path / "x.safetensors"), str(category), str(category)]) == 2
    other = save_checkpoint(tmp_path / "o.safetensors", _trained_states(modes=("fine_grained",)), _metadata(arch="ViT-B-32-quickgelu"))
    assert main(["merge", str(tmp_path / "y.safetensors"), str(category), str(other)]) == 2
    assert main(["info", str(tmp_path / "both.safetensors")]) == 0


# --------------------------------------------------------------------------- preprocessing travels


def _trained_preprocess():
    from sketchlvm.config import PreprocessConfig

    return PreprocessConfig(sketch_mean=(0.959, 0.959, 0.959), sketch_std=(0.139, 0.139, 0.139),
                            photo_mean=(0.468, 0.451, 0.397), photo_std=(0.258, 0.246, 0.264))


def test_a_checkpoint_brings_its_preprocessing_wherever_it_is_loaded(tmp_path, real_images):
    import dataclasses

    from sketchlvm.model.checkpoint import preprocess_metadata

    trained = _trained_preprocess()
    meta = {**_metadata(), **preprocess_metadata(trained, image_size=64)}
    path = save_checkpoint(tmp_path / "c.safetensors", _trained_states(modes=("category",)), meta)

    model = create_sketchlvm(pretrained="none", checkpoint=path, device="cpu")  # as app/evaluate/index do
    assert model.preprocess == trained
    assert model.sketch_transform.config == trained and model.photo_transform.config == trained
    identity = model.identity("category")
    assert identity["photo_mean"] == list(trained.photo_mean) and identity["photo_std"] == list(trained.photo_std)
    plain = create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu")
    assert plain.identity("category")["photo_mean"] != identity["photo_mean"]  # a gallery index would be rebuilt

    # the embedding is the one the trained statistics give, not CLIP's defaults
    sketches, _ = real_images
    default = create_sketchlvm(pretrained="none", checkpoint=path, device="cpu",
                               preprocess=dataclasses.replace(trained, sketch_mean=(0.48145466, 0.4578275, 0.40821073)))
    assert not np.allclose(model.encode_sketches(sketches, "category"), default.encode_sketches(sketches, "category"))


def test_a_checkpoint_for_another_image_size_is_refused(tmp_path):
    from sketchlvm.model.checkpoint import preprocess_metadata

    meta = {**_metadata(), **preprocess_metadata(_trained_preprocess(), image_size=224)}
    path = save_checkpoint(tmp_path / "c.safetensors", _trained_states(modes=("category",)), meta)
    with pytest.raises(CheckpointMismatchError, match="image size: checkpoint 224, model 64"):
        create_sketchlvm(pretrained="none", checkpoint=path, device="cpu")


def test_merging_checkpoints_with_different_preprocessing_is_refused(tmp_path):
    from sketchlvm.model.checkpoint import merge_checkpoints, preprocess_metadata
    from sketchlvm.config import PreprocessConfig

    a = save_checkpoint(tmp_path / "a.safetensors", _trained_states(modes=("category",)),
                        {**_metadata(), **preprocess_metadata(_trained_preprocess(), 64)})
    b = save_checkpoint(tmp_path / "b.safetensors", _trained_states(modes=("fine_grained",)),
                        {**_metadata(), **preprocess_metadata(PreprocessConfig(), 64)})
    with pytest.raises(CheckpointMismatchError, match="preprocess differs"):
        merge_checkpoints(tmp_path / "ab.safetensors", [a, b])
    c = save_checkpoint(tmp_path / "c.safetensors", _trained_states(modes=("fine_grained",)),
                        {**_metadata(), **preprocess_metadata(_trained_preprocess(), 64)})
    merged = load_checkpoint(merge_checkpoints(tmp_path / "ac.safetensors", [a, c]))
    assert merged.metadata["preprocess"]["sketch_mean"] == [0.959, 0.959, 0.959]


def test_the_app_frames_drawings_the_way_the_checkpoint_was_trained(tmp_path):
    from sketchlvm.model.checkpoint import preprocess_metadata
    from sketchlvm.config import PreprocessConfig
    from sketchlvm.preprocess.transforms import SketchTransform

    paper = PreprocessConfig(sketch_framing="pad-square")
    path = save_checkpoint(tmp_path / "c.safetensors", _trained_states(modes=("category",)),
                           {**_metadata(), **preprocess_metadata(paper, 64)})
    model = create_sketchlvm(pretrained="none", checkpoint=path, device="cpu")
    drawing = Image.new("RGB", (300, 300), "white")
    drawing.paste(Image.new("RGB", (40, 8), "black"), (10, 10))  # a small stroke in a corner
    np.testing.assert_array_equal(np.asarray(model.sketch_transform.to_image(drawing)),
                                  np.asarray(SketchTransform(64, paper).to_image(drawing)))
    zero_shot = create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu")
    assert zero_shot.sketch_transform.config.sketch_framing == "ink-crop"  # the documented default


def test_a_checkpoint_trained_on_a_tag_brings_that_tag_and_never_random_weights(tmp_path, monkeypatch):
    """The weights' origin comes from the checkpoint when it records an open_clip tag; random weights are
    never inferred, and an architecture with no download says --pretrained none is the only way."""
    import sketchlvm.model.factory as factory
    from sketchlvm.model.weights import WeightsUnavailableError, load_clip

    asked = []

    def fake_load_clip(arch, pretrained, device):
        asked.append(pretrained)
        raise WeightsUnavailableError("stop here")

    monkeypatch.setattr(factory, "load_clip", fake_load_clip)
    tagged = _metadata()
    tagged["pretrained"] = {"kind": "tag", "value": "laion2b_s34b_b79k"}
    path = save_checkpoint(tmp_path / "tagged.safetensors", _trained_states(modes=("category",)), tagged)
    with pytest.raises(WeightsUnavailableError):
        create_sketchlvm(checkpoint=path, device="cpu")
    random_path = save_checkpoint(tmp_path / "random.safetensors", _trained_states(modes=("category",)), _metadata())
    with pytest.raises(WeightsUnavailableError):
        create_sketchlvm(checkpoint=random_path, device="cpu")
    with pytest.raises(WeightsUnavailableError):
        create_sketchlvm(checkpoint=path, pretrained="openai", device="cpu")  # a flag wins
    assert asked == ["laion2b_s34b_b79k", "openai", "openai"]

    monkeypatch.undo()
    with pytest.raises(WeightsUnavailableError, match=r"no pretrained weights at all.*--pretrained none") as error:
        load_clip(TINY_ARCH, "openai")
    assert "internet" not in str(error.value)  # no advice that cannot work
