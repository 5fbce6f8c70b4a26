"""Losses against values worked out by hand on 2-D vectors, plus gradient sanity."""

from __future__ import annotations

import math

import pytest
import torch

from sketchlvm.config import LossConfig
from sketchlvm.training.losses import (
    TextClassifier,
    build_class_text_features,
    category_loss,
    classification_loss,
    cosine_distance,
    fine_grained_loss,
    patch_shuffle,
    patch_shuffle_triplets,
    random_patch_permutations,
    separation_regulariser,
    triplet_loss,
)


def unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# ------------------------------------------------------------------ triplet


def test_cosine_distance_by_hand():
    a = t([[1, 0], [1, 0], [3, 0]])
    b = t([[0, 2], [1, 1], [-1, 0]])
    expected = t([1.0, 1 - 1 / math.sqrt(2), 2.0])
    assert torch.allclose(cosine_distance(a, b), expected)


def test_triplet_loss_by_hand():
    # Triplet 1: d(a,p) = 1 - 1/sqrt2, d(a,n) = 1 -> 0.3 + 0.2929 - 1 < 0 -> 0.
    # Triplet 2: d(a,p) = 1, d(a,n) = 0 -> 0.3 + 1 - 0 = 1.3.
    a = t([[1, 0], [1, 0]])
    p = t([[1, 1], [0, 1]])
    n = t([[0, 1], [3, 0]])
    assert triplet_loss(a, p, n, margin=0.3).item() == pytest.approx(1.3 / 2)
    assert triplet_loss(a, p, n, margin=0.2).item() == pytest.approx(1.2 / 2)
    # Scale invariant: normalised inside.
    assert triplet_loss(5 * a, 0.1 * p, 7 * n).item() == pytest.approx(0.65)


def test_triplet_loss_gradients():
    a = t([[1, 0], [1, 0]]).requires_grad_()
    p = t([[1, 1], [0, 1]]).requires_grad_()
    n = t([[0, 1], [3, 0]]).requires_grad_()
    triplet_loss(a, p, n).backward()
    # The satisfied triplet contributes nothing; the violated one pulls a towards p.
    assert torch.all(a.grad[0] == 0) and torch.all(p.grad[0] == 0)
    assert a.grad[1].abs().sum() > 0
    assert a.grad[1, 1] < 0  # descent moves a towards p = (0, 1)
    a2, p2, n2 = (torch.randn(4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda x, y, z: triplet_loss(x, y, z, margin=2.0), (a2, p2, n2))


def test_triplet_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        triplet_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 3))


# ------------------------------------------------------------------ classification


def test_classification_loss_by_hand():
    text = t([[1, 0], [0, 1]])
    f = t([[2, 0]])
    # scale 1: logits (1, 0), label 0 -> log(1 + e^-1)
    loss = classification_loss(f, torch.tensor([0]), text, scale=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))
    # scale 100, wrong label: logits (100, 0) -> CE ~ 100
    loss = classification_loss(f, torch.tensor([1]), text, scale=100.0)
    assert loss.item() == pytest.approx(100.0, abs=1e-6)
    # 45 degrees, scale 10: both logits equal -> log 2
    loss = classification_loss(t([[1, 1]]), torch.tensor([1]), text, scale=10.0)
    assert loss.item() == pytest.approx(math.log(2))


def test_classification_gradient_flows_to_features_only():
    text = torch.randn(5, 8, dtype=torch.float64)
    clf = TextClassifier(text, scale=10.0)
    assert list(clf.parameters()) == [] and "text_features" in clf.state_dict()
    f = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    clf.loss(f, torch.tensor([0, 4, 2])).backward()
    assert f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    assert clf(f).shape == (3, 5)


class _FakeTokenizer:
    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return torch.tensor([[len(x), x.count(" ")] for x in texts], dtype=torch.float32)


class _FakeClip(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(2, 4)
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(100.0)))

    def encode_text(self, tokens):
        return self.proj(tokens)


def test_build_class_text_features_prompts_and_norm():
    model, tok = _FakeClip(), _FakeTokenizer()
    names = ["hot-air_balloon", "car_(sedan)", "teddy_bear"]
    feats = build_class_text_features(model, tok, names, "a photo of a {}", "cpu", batch_size=2)
    assert tok.calls == [
        ["a photo of a hot-air balloon", "a photo of a car (sedan)"],
        ["a photo of a teddy bear"],
    ]
    assert feats.shape == (3, 4) and feats.dtype == torch.float32 and not feats.requires_grad
    assert torch.allclose(feats.norm(dim=1), torch.ones(3))
    clf = TextClassifier.from_clip(model, tok, names, LossConfig())
    assert clf.scale == pytest.approx(100.0, rel=1e-5)
    clf = TextClassifier.from_clip(model, tok, names, LossConfig(classification_scale=4.6))
    assert clf.scale == 4.6


# ------------------------------------------------------------------ separation regulariser


def _separation_inputs(deltas, class_ids):
    """Triplets whose delta d(s,n) - d(s,p) equals the given values: s = p, n at angle acos(1-delta)."""
    a = t([[1, 0]] * len(deltas))
    p = t([[1, 0]] * len(deltas))
    n = t([unit(math.acos(1 - d)) for d in deltas])
    return a, p, n, torch.tensor(class_ids)


def test_separation_regulariser_by_hand():
    # class 0 deltas (0, 0) -> (1/2, 1/2); class 1 deltas (ln 3, 0) -> (3/4, 1/4)
    a, p, n, ids = _separation_inputs([0.0, math.log(3), 0.0, 0.0], [1, 1, 0, 0])
    kl_01 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    kl_10 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    got = separation_regulariser(a, p, n, ids).item()
    assert got == pytest.approx((kl_01 + kl_10) / 2, rel=1e-9)


def test_separation_regulariser_three_classes_and_zero_cases():
    # Identical delta patterns in every class -> 0.
    a, p, n, ids = _separation_inputs([0.1, 0.5, 0.1, 0.5, 0.1, 0.5], [0, 0, 1, 1, 2, 2])
    assert separation_regulariser(a, p, n, ids).item() == pytest.approx(0.0, abs=1e-12)
    # Three classes: mean over the 6 ordered pairs.
    a, p, n, ids = _separation_inputs([0.0, 0.0, math.log(3), 0.0, math.log(3), 0.0], [0, 0, 1, 1, 2, 2])
    kl_01 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    kl_10 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    expected = (2 * kl_01 + 2 * kl_10 + 0 + 0) / 6
    assert separation_regulariser(a, p, n, ids).item() == pytest.approx(expected, rel=1e-9)


def test_separation_regulariser_single_class_and_unequal_counts():
    a, p, n, _ = _separation_inputs([0.1, 0.9, 0.4], [0, 0, 0])
    a.requires_grad_()
    zero = separation_regulariser(a, p, n, torch.tensor([3, 3, 3]))
    assert zero.item() == 0.0
    zero.backward()  # keeps the graph; gradient is zero
    with pytest.raises(ValueError, match=r"\{0: 2, 1: 1\}"):
        separation_regulariser(a, p, n, torch.tensor([0, 0, 1]))


def test_separation_regulariser_gradients():
    torch.manual_seed(0)
    a, p, n = (torch.randn(6, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    ids = torch.tensor([2, 0, 2, 0, 2, 0])
    assert torch.autograd.gradcheck(lambda x, y, z: separation_regulariser(x, y, z, ids), (a, p, n))


# ------------------------------------------------------------------ patch shuffle


def test_patch_shuffle_by_hand():
    img = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = patch_shuffle(img, 2, torch.tensor([3, 2, 1, 0]))
    expected = torch.tensor(
        [[10, 11, 8, 9], [14, 15, 12, 13], [2, 3, 0, 1], [6, 7, 4, 5]], dtype=torch.float32
    )
    assert torch.equal(out[0, 0], expected)
    assert torch.equal(patch_shuffle(img, 2, torch.arange(4)), img)
    # Slot i takes patch perm[i]: applying perm then its inverse restores the image.
    img = torch.randn(3, 3, 6, 9)
    perm = torch.tensor([4, 0, 8, 2, 6, 1, 3, 7, 5])
    back = patch_shuffle(patch_shuffle(img, 3, perm), 3, torch.argsort(perm))
    assert torch.equal(back, img)


def test_patch_shuffle_per_image_and_errors():
    img = torch.arange(32.0).reshape(2, 1, 4, 4)
    perms = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    out = patch_shuffle(img, 2, perms)
    assert torch.equal(out[0], img[0])
    assert torch.equal(out[1, 0, :2, :2], img[1, 0, :2, 2:])
    with pytest.raises(ValueError, match="not divisible by the patch grid 3"):
        patch_shuffle(img, 3, torch.arange(9))
    with pytest.raises(ValueError, match="not a permutation"):
        patch_shuffle(img, 2, torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ValueError, match="shape"):
        patch_shuffle(img, 2, torch.arange(9))


def test_patch_shuffle_triplets():
    photos = torch.randn(16, 3, 8, 8)
    sketches = photos.clone()
    g = torch.Generator().manual_seed(0)
    s, pos, neg = patch_shuffle_triplets(sketches, photos, 2, g)
    assert torch.equal(s, pos)  # same permutation for sketch and its photo
    assert all(not torch.equal(pos[i], neg[i]) for i in range(16))  # different for the negative
    s2, _, neg2 = patch_shuffle_triplets(sketches, photos, 2, torch.Generator().manual_seed(0))
    assert torch.equal(s, s2) and torch.equal(neg, neg2)  # seeded
    first, second = random_patch_permutations(500, 2, torch.Generator().manual_seed(1))
    assert not (first == second).all(dim=1).any()
    with pytest.raises(ValueError, match="grid >= 2"):
        patch_shuffle_triplets(sketches, photos, 1)
    with pytest.raises(ValueError, match="not divisible"):
        patch_shuffle_triplets(torch.zeros(1, 3, 7, 7), torch.zeros(1, 3, 7, 7), 2)


# ------------------------------------------------------------------ combined objectives


def test_category_loss_combines_terms():
    clf = TextClassifier(t([[1, 0], [0, 1]]), scale=1.0)
    s, p, n = t([[1, 0], [1, 0]]), t([[1, 1], [0, 1]]), t([[0, 1], [3, 0]])
    labels = torch.tensor([0, 1])
    total, parts = category_loss(s, p, n, labels, clf, LossConfig(margin=0.3))
    ce_s = classification_loss(s, labels, clf.text_features, 1.0).item()
    ce_p = classification_loss(p, labels, clf.text_features, 1.0).item()
    assert parts["triplet"] == pytest.approx(0.65)
    assert parts["ce_sketch"] == pytest.approx(ce_s) and parts["ce_photo"] == pytest.approx(ce_p)
    assert total.item() == pytest.approx(0.65 + 0.5 * (ce_s + ce_p)) == parts["total"]
    _, parts = category_loss(s, p, n, labels, clf, LossConfig(classification_weight=0.0))
    assert set(parts) == {"triplet", "total"} and parts["total"] == pytest.approx(0.65)
    # The paper's CE_photo is over the positive photos only, even when the negatives' labels are known...
    _, parts = category_loss(s, p, n, labels, clf, negative_labels=torch.tensor([1, 0]))
    assert parts["ce_photo"] == pytest.approx(ce_p)
    # ...the negative photos join it only when asked for (what this code did before).
    _, parts = category_loss(s, p, n, labels, clf, LossConfig(classify_negative_photos=True),
                             negative_labels=torch.tensor([1, 0]))
    both = classification_loss(torch.cat([p, n]), torch.tensor([0, 1, 1, 0]), clf.text_features, 1.0)
    assert parts["ce_photo"] == pytest.approx(both.item()) != pytest.approx(ce_p)


def test_fine_grained_loss_combines_terms():
    torch.manual_seed(0)
    clf = TextClassifier(torch.randn(3, 4), scale=20.0)
    s, p, n = (torch.randn(4, 4, requires_grad=True) for _ in range(3))
    labels = torch.tensor([0, 0, 2, 2])
    patch = tuple(torch.randn(4, 4) for _ in range(3))
    cfg = LossConfig()
    total, parts = fine_grained_loss(s, p, n, labels, clf, cfg, patch=patch)
    expected = (
        triplet_loss(s, p, n, cfg.margin)
        + 0.5 * (clf.loss(s, labels) + clf.loss(p, labels))
        + 0.1 * separation_regulariser(s, p, n, labels)
        + 1.0 * triplet_loss(*patch, margin=cfg.margin)
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    _, with_negatives = fine_grained_loss(s, p, n, labels, clf, LossConfig(classify_negative_photos=True), patch=patch)
    assert with_negatives["ce_photo"] == pytest.approx(clf.loss(torch.cat([p, n]), labels.repeat(2)).item())
    assert set(parts) == {"triplet", "ce_sketch", "ce_photo", "separation", "patch", "total"}
    total.backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in (s, p, n))

    calls = []

    def embed_patches():
        calls.append(1)
        return patch

    fine_grained_loss(s, p, n, labels, clf, cfg, patch=embed_patches)
    fine_grained_loss(s, p, n, labels, clf, LossConfig(patch_shuffle_weight=0.0), patch=embed_patches)
    assert calls == [1]
    _, parts = fine_grained_loss(s, p, n, labels, clf, cfg, patch=None)
    assert "patch" not in parts
