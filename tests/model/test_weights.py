"""Honest weight loading: real weights by default, fast clear failure offline, random only when asked."""

from __future__ import annotations

import json
import time

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from sketchlvm.config import PACKAGE_DIR, TINY_ARCH, ModelConfig
from sketchlvm.model.weights import RANDOM_WEIGHTS_LABEL, register_model_configs, WeightsUnavailableError, load_clip, resolve_weights_source

register_model_configs()  # the tiny test tower


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path


def test_default_is_the_real_openai_weights():
    config = ModelConfig()
    assert config.arch == "ViT-B-32-quickgelu"
    assert config.pretrained == "openai"
    assert resolve_weights_source(config.pretrained).kind == "tag"


def test_missing_weights_offline_fail_fast_with_a_clear_message(empty_hf_cache):
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        load_clip("ViT-B-32-quickgelu", "openai")
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert elapsed < 10, f"took {elapsed:.1f}s to fail"
    assert "openai" in message and "timm/vit_base_patch32_clip_224.openai" in message
    assert "HF_HUB_OFFLINE" in message
    assert "--pretrained /path/to" in message and "local-dir:" in message


def test_unknown_tag_and_missing_file_are_errors_not_random_weights(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="no pretrained tag 'laion-nope'"):
        load_clip("ViT-B-32-quickgelu", "laion-nope")
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_clip(TINY_ARCH, str(tmp_path / "missing.safetensors"))


def test_a_corrupt_local_file_raises_instead_of_leaving_random_weights(tmp_path):
    bad = tmp_path / "weights.safetensors"
    save_file({"not_a_clip_tensor": torch.zeros(2)}, str(bad))
    with pytest.raises(WeightsUnavailableError, match="could not load CLIP weights"):
        load_clip(TINY_ARCH, str(bad))


def _tiny_state(seed=3):
    torch.manual_seed(seed)
    return open_clip.create_model(TINY_ARCH, pretrained=None).state_dict()


def test_local_weights_file_is_loaded(tmp_path):
    state = _tiny_state()
    path = tmp_path / "tiny.pt"
    torch.save(state, path)
    model, source = load_clip(TINY_ARCH, str(path))
    assert source.kind == "file" and source.identity()["size"] == path.stat().st_size
    torch.testing.assert_close(model.visual.proj, state["visual.proj"])


def test_local_dir_folder_is_loaded(tmp_path):
    state = _tiny_state(4)
    folder = tmp_path / "tiny-clip"
    folder.mkdir()
    config = json.loads((PACKAGE_DIR / "model_configs" / f"{TINY_ARCH}.json").read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "open_clip_model.safetensors"))
    for spec in (f"local-dir:{folder}", str(folder)):
        model, source = load_clip(TINY_ARCH, spec)
        assert source.kind == "folder"
        torch.testing.assert_close(model.visual.proj, state["visual.proj"])


def test_random_weights_only_when_asked_and_say_so(caplog):
    with caplog.at_level("WARNING"):
        model_a, source = load_clip(TINY_ARCH, "none")
    model_b, _ = load_clip(TINY_ARCH, "none")
    assert source.kind == "random" and source.label == RANDOM_WEIGHTS_LABEL
    assert "random weights" in source.label
    assert any("RANDOM WEIGHTS" in record.getMessage() for record in caplog.records)
    # seeded, so an index built on them stays valid across restarts
    torch.testing.assert_close(model_a.visual.proj, model_b.visual.proj)
