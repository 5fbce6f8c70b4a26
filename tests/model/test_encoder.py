"""The prompted encoder: exactness against open_clip, CLS pooling, and the trainable sets."""

from __future__ import annotations

import open_clip
import pytest
import torch

from sketchlvm.model.encoder import PromptedVisionEncoder, freeze_except, trainable_parameter_names
from sketchlvm.model.factory import build_prompted_encoder
from sketchlvm.model.weights import register_model_configs

register_model_configs()  # the tiny test tower

from sketchlvm.config import TINY_ARCH


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    return open_clip.create_model(TINY_ARCH, pretrained=None).eval()


def _images(n=3, size=64, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_no_prompts_equals_open_clip_encode_image(tiny_clip):
    encoder = PromptedVisionEncoder(tiny_clip.visual, None)
    x = _images()
    with torch.no_grad():
        ours = encoder.embed(x, "photo")
        theirs = tiny_clip.encode_image(x)
        ours_normalised = encoder(x, "sketch")
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours_normalised, torch.nn.functional.normalize(theirs, dim=-1), rtol=1e-5, atol=1e-6)


def test_prompts_change_output_and_pool_the_class_token(tiny_clip):
    encoder = build_prompted_encoder(tiny_clip.visual, "category", n_prompts=3)
    x = _images()
    captured = {}
    hook = tiny_clip.visual.transformer.register_forward_hook(lambda m, i, o: captured.update(tokens=o))
    try:
        with torch.no_grad():
            prompted = encoder.embed(x, "sketch")
    finally:
        hook.remove()
    n_patches = (64 // 16) ** 2
    tokens = captured["tokens"]
    assert tokens.shape[1] == 1 + n_patches + 3  # CLS + patches + appended prompts
    visual = tiny_clip.visual
    with torch.no_grad():
        from_cls = visual.ln_post(tokens[:, 0]) @ visual.proj
        from_last_prompt = visual.ln_post(tokens[:, -1]) @ visual.proj
        plain = tiny_clip.encode_image(x)
    torch.testing.assert_close(prompted, from_cls)
    assert not torch.allclose(prompted, from_last_prompt, atol=1e-4)
    assert not torch.allclose(prompted, plain, atol=1e-4)


def test_category_prompts_differ_by_modality_fine_grained_shares_one(tiny_clip):
    x = _images()
    category = build_prompted_encoder(tiny_clip.visual, "category", 3)
    shared = build_prompted_encoder(tiny_clip.visual, "fine_grained", 3)
    assert sorted(category.prompts.tokens) == ["photo", "sketch"]
    assert list(shared.prompts.tokens) == ["shared"]
    with torch.no_grad():
        assert not torch.allclose(category(x, "sketch"), category(x, "photo"))
        torch.testing.assert_close(shared(x, "sketch"), shared(x, "photo"))


@pytest.mark.parametrize("rule", ["paper", "full-attention"])
@pytest.mark.parametrize("mode", ["category", "fine_grained"])
def test_gradients_reach_exactly_the_trainable_set(rule, mode):
    torch.manual_seed(0)
    clip = open_clip.create_model(TINY_ARCH, pretrained=None)
    encoder = build_prompted_encoder(clip.visual, mode, 3)
    trainable = freeze_except(encoder, rule)
    assert {id(p) for p in trainable} == {id(p) for p in encoder.parameters() if p.requires_grad}
    x = _images(4)
    loss = encoder(x, "sketch").sum() * 0 + (encoder(x, "sketch") @ encoder(x, "photo").T).pow(2).sum()
    loss.backward()
    got = {name for name, p in encoder.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    expected = set(trainable_parameter_names(encoder, rule))
    assert got == expected
    # and nothing outside the visual tower's learned set moved in the text tower either
    assert all(p.grad is None for p in clip.transformer.parameters())


def test_vit_b32_trainable_counts_match_the_paper_and_released_code():
    clip = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    encoder = build_prompted_encoder(clip.visual, "category", 3)
    params = dict(encoder.named_parameters())
    prompt_count = 2 * 3 * 768  # sketch + photo prompts, K=3, width 768

    def visual_count(rule):
        return sum(params[n].numel() for n in trainable_parameter_names(encoder, rule) if n.startswith("visual."))

    assert visual_count("paper") == 39_936
    assert visual_count("full-attention") == 21_733_632
    paper_total = sum(p.numel() for p in freeze_except(encoder, "paper"))
    assert paper_total == 39_936 + prompt_count


def test_unknown_rule_and_mode_are_clear_errors(tiny_clip):
    with pytest.raises(ValueError, match="unknown mode"):
        build_prompted_encoder(tiny_clip.visual, "fine-grain", 3)
    encoder = build_prompted_encoder(tiny_clip.visual, "category", 3)
    with pytest.raises(ValueError, match="unknown trainable rule"):
        trainable_parameter_names(encoder, "everything")
    with pytest.raises(ValueError, match="unknown modality"):
        encoder(_images(1), "drawing")
