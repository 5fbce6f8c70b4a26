"""Training losses: triplet, text classification, relative-separation regulariser, patch shuffle.

Every loss takes embeddings (any scale; they are L2-normalised here where it matters) and uses the
cosine distance d(a, b) = 1 - cos(a, b). ``category_loss`` and ``fine_grained_loss`` combine the
terms with the weights of :class:`~sketchlvm.config.LossConfig` and return ``(total, parts)`` where
``parts`` holds plain floats for logging.

Shapes: B triplets, D embedding width, C classes, G patch grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sketchlvm.config import LossConfig

__all__ = [
    "cosine_distance",
    "triplet_loss",
    "build_class_text_features",
    "clip_logit_scale",
    "classification_logits",
    "classification_loss",
    "TextClassifier",
    "separation_regulariser",
    "patch_shuffle",
    "random_patch_permutations",
    "patch_shuffle_triplets",
    "category_loss",
    "fine_grained_loss",
]


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise ``1 - cos(a, b)``: (B, D), (B, D) -> (B,)."""
    return 1.0 - (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(dim=-1)


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 0.3) -> Tensor:
    """Mean of ``max(0, margin + d(a, p) - d(a, n))`` over the B triplets; (B, D) x 3 -> scalar."""
    if not (anchor.shape == positive.shape == negative.shape):
        raise ValueError(
            f"triplet shapes differ: anchor {tuple(anchor.shape)}, positive {tuple(positive.shape)}, "
            f"negative {tuple(negative.shape)}"
        )
    d_pos = cosine_distance(anchor, positive)
    d_neg = cosine_distance(anchor, negative)
    return F.relu(margin + d_pos - d_neg).mean()


# --------------------------------------------------------------------------- text classification


def class_prompt(class_name: str, template: str = "a photo of a {}") -> str:
    """``hot-air_balloon`` -> ``a photo of a hot-air balloon`` (underscores read as spaces)."""
    return template.format(class_name.replace("_", " ").strip())


@torch.no_grad()
def build_class_text_features(
    clip_model: Any,
    tokenizer: Callable[[list[str]], Tensor],
    class_names: Sequence[str],
    template: str = "a photo of a {}",
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> Tensor:
    """Encode one prompt per class with the frozen CLIP text tower: -> (C, D) unit float32 rows.

    Done once before training (the text tower is slow and frozen); the result is a constant to be
    kept as a buffer, e.g. by :class:`TextClassifier`.
    """
    if not class_names:
        raise ValueError("build_class_text_features needs at least one class name")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prompts = [class_prompt(name, template) for name in class_names]
    chunks = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(prompts[start : start + batch_size]).to(device)
        chunks.append(clip_model.encode_text(tokens).float())
    return F.normalize(torch.cat(chunks, dim=0), dim=-1).detach()


def clip_logit_scale(clip_model: Any) -> float:
    """CLIP's learned temperature as a multiplier: ``exp(logit_scale)`` (100 for OpenAI weights)."""
    scale = getattr(clip_model, "logit_scale", None)
    if scale is None:
        raise ValueError(
            "the CLIP model has no logit_scale; set LossConfig.classification_scale explicitly"
        )
    return float(torch.as_tensor(scale).detach().float().exp())


def classification_logits(features: Tensor, text_features: Tensor, scale: float) -> Tensor:
    """``scale * norm(f) @ norm(T).T``: (B, D), (C, D) -> (B, C)."""
    return scale * F.normalize(features, dim=-1) @ F.normalize(text_features, dim=-1).t()


def classification_loss(
    features: Tensor, labels: Tensor, text_features: Tensor, scale: float = 100.0
) -> Tensor:
    """Cross-entropy of the image features against the class-prompt text features (scalar)."""
    logits = classification_logits(features, text_features.to(features.dtype), scale)
    return F.cross_entropy(logits, labels.to(features.device).long())


class TextClassifier(nn.Module):
    """Zero-weight classifier head: fixed class-prompt text features (a buffer) and a scale.

    Holds no parameters, so it never reaches the optimiser; the buffer moves with ``.to(device)``
    and is saved in ``state_dict`` (handy to check a checkpoint's class list was the same).
    """

    text_features: Tensor

    def __init__(self, text_features: Tensor, scale: float = 100.0) -> None:
        super().__init__()
        if text_features.ndim != 2:
            raise ValueError(f"text_features must be (C, D), got {tuple(text_features.shape)}")
        self.register_buffer("text_features", F.normalize(text_features.detach().float(), dim=-1))
        self.scale = float(scale)

    @classmethod
    def from_clip(
        cls,
        clip_model: Any,
        tokenizer: Callable[[list[str]], Tensor],
        class_names: Sequence[str],
        config: LossConfig | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ) -> "TextClassifier":
        """Build from the frozen text tower; the scale is ``config.classification_scale`` or, when
        that is None, CLIP's ``exp(logit_scale)``."""
        config = config or LossConfig()
        features = build_class_text_features(
            clip_model, tokenizer, class_names, config.class_prompt_template, device, batch_size
        )
        scale = config.classification_scale
        if scale is None:
            scale = clip_logit_scale(clip_model)
        return cls(features, scale)

    @property
    def num_classes(self) -> int:
        return int(self.text_features.shape[0])

    def forward(self, features: Tensor) -> Tensor:
        """(B, D) -> logits (B, C)."""
        return classification_logits(features, self.text_features.to(features.dtype), self.scale)

    def loss(self, features: Tensor, labels: Tensor) -> Tensor:
        return classification_loss(features, labels, self.text_features, self.scale)

    def extra_repr(self) -> str:
        return f"classes={self.num_classes}, scale={self.scale:g}"


# --------------------------------------------------------------------------- relative separation


def separation_regulariser(
    anchor: Tensor, positive: Tensor, negative: Tensor, class_ids: Tensor
) -> Tensor:
    """Relative-separation regulariser L_delta (fine-grained).

    Per triplet delta = d(s, n) - d(s, p); per class, a softmax over that class's K deltas (taken in
    batch order); the loss is the mean of KL(p_i || p_j) over all ordered pairs i != j of the classes
    in the batch. Needs the same triplet count K for every class (a P x K batch). Returns 0 (keeping
    the graph) when the batch has a single class.
    """
    class_ids = torch.as_tensor(class_ids, device=anchor.device).reshape(-1)
    if class_ids.numel() != anchor.shape[0]:
        raise ValueError(
            f"class_ids has {class_ids.numel()} entries for {anchor.shape[0]} triplets"
        )
    deltas = cosine_distance(anchor, negative) - cosine_distance(anchor, positive)  # (B,)
    classes, counts = torch.unique(class_ids, return_counts=True)  # sorted
    if classes.numel() < 2:
        return deltas.sum() * 0.0
    if not bool((counts == counts[0]).all()):
        per_class = {int(c): int(n) for c, n in zip(classes.tolist(), counts.tolist())}
        raise ValueError(
            "separation_regulariser needs the same number of triplets per class (a P x K batch); "
            f"got counts per class {per_class}"
        )
    grouped = torch.stack([deltas[class_ids == c] for c in classes])  # (C, K)
    log_p = F.log_softmax(grouped, dim=1)  # (C, K)
    p = log_p.exp()
    # kl[i, j] = sum_k p_i (log p_i - log p_j); the diagonal is 0.
    kl = (p * log_p).sum(dim=1, keepdim=True) - p @ log_p.t()  # (C, C)
    n = classes.numel()
    return kl.sum() / (n * (n - 1))


# --------------------------------------------------------------------------- patch shuffle


def patch_shuffle(images: Tensor, grid: int, permutation: Tensor) -> Tensor:
    """Cut (B, C, H, W) images into ``grid x grid`` patches (row-major) and rearrange them.

    ``permutation`` is a LongTensor of length grid*grid (one order for the whole batch) or
    (B, grid*grid) (one per image); output patch slot i receives input patch ``permutation[i]``.
    """
    if images.ndim != 4:
        raise ValueError(f"patch_shuffle needs (B, C, H, W) images, got {tuple(images.shape)}")
    if grid < 1:
        raise ValueError(f"patch grid must be >= 1, got {grid}")
    b, c, h, w = images.shape
    if h % grid or w % grid:
        raise ValueError(
            f"image size {h}x{w} is not divisible by the patch grid {grid}; "
            f"resize to a multiple of {grid} (e.g. 224 with grid 2)"
        )
    n = grid * grid
    permutation = torch.as_tensor(permutation, device=images.device).long()
    if permutation.shape == (n,):
        permutation = permutation.unsqueeze(0).expand(b, n)
    if permutation.shape != (b, n):
        raise ValueError(
            f"permutation must have shape ({n},) or ({b}, {n}), got {tuple(permutation.shape)}"
        )
    if not bool((permutation.sort(dim=1).values == torch.arange(n, device=images.device)).all()):
        raise ValueError(f"not a permutation of 0..{n - 1}: {permutation.tolist()}")
    ph, pw = h // grid, w // grid
    patches = images.reshape(b, c, grid, ph, grid, pw).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(b, n, c, ph, pw)  # (B, G*G, C, h, w)
    index = permutation.view(b, n, 1, 1, 1).expand(b, n, c, ph, pw)
    shuffled = patches.gather(1, index)  # (B, G*G, C, h, w)
    shuffled = shuffled.reshape(b, grid, grid, c, ph, pw).permute(0, 3, 1, 4, 2, 5)
    return shuffled.reshape(b, c, h, w)


def random_patch_permutations(
    batch: int, grid: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Two (B, grid*grid) permutation batches whose rows differ pairwise (needs grid >= 2)."""
    n = grid * grid
    if n < 2:
        raise ValueError(f"patch shuffle needs grid >= 2 to have two different orders, got {grid}")
    first = torch.argsort(torch.rand(batch, n, generator=generator), dim=1)
    second = torch.argsort(torch.rand(batch, n, generator=generator), dim=1)
    same = (first == second).all(dim=1)
    if bool(same.any()):
        # Rolling a permutation by one slot always gives a different permutation.
        second[same] = torch.roll(first[same], shifts=1, dims=1)
    return first, second


def patch_shuffle_triplets(
    sketches: Tensor, photos: Tensor, grid: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Patch-shuffle triplets: (shuffled sketch, photo with the same order, photo with another order).

    Each pair (sketch i, its photo i) gets its own random permutation; the negative is the same
    photo under a different permutation, so only the spatial arrangement separates them.
    """
    if sketches.shape != photos.shape:
        raise ValueError(
            f"sketches {tuple(sketches.shape)} and photos {tuple(photos.shape)} must match"
        )
    first, second = random_patch_permutations(sketches.shape[0], grid, generator)
    first, second = first.to(sketches.device), second.to(sketches.device)
    return (
        patch_shuffle(sketches, grid, first),
        patch_shuffle(photos, grid, first),
        patch_shuffle(photos, grid, second),
    )


# --------------------------------------------------------------------------- combined objectives


def _photo_ce(
    positive: Tensor,
    labels: Tensor,
    classifier: TextClassifier,
    negative: Tensor | None,
    negative_labels: Tensor | None,
) -> Tensor:
    if negative is None or negative_labels is None:
        return classifier.loss(positive, labels)
    photos = torch.cat([positive, negative], dim=0)
    photo_labels = torch.cat([labels.reshape(-1), negative_labels.reshape(-1).to(labels.device)])
    return classifier.loss(photos, photo_labels)


def category_loss(
    sketch: Tensor,
    positive: Tensor,
    negative: Tensor,
    labels: Tensor,
    classifier: TextClassifier,
    config: LossConfig | None = None,
    negative_labels: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """L = triplet(s, p+, p-) + w_cls * (CE_sketch + CE_photo).

    ``labels`` (B,) are the sketch classes (= the positive photos' classes). CE_photo is over the
    positive photos, as in the paper; with ``config.classify_negative_photos`` and
    ``negative_labels`` the negative photos join it too.
    """
    config = config or LossConfig()
    if not config.classify_negative_photos:
        negative_labels = None
    trip = triplet_loss(sketch, positive, negative, config.margin)
    total = trip
    parts = {"triplet": float(trip.detach())}
    if config.classification_weight:
        ce_s = classifier.loss(sketch, labels)
        ce_p = _photo_ce(positive, labels, classifier, negative, negative_labels)
        total = total + config.classification_weight * (ce_s + ce_p)
        parts.update(ce_sketch=float(ce_s.detach()), ce_photo=float(ce_p.detach()))
    parts["total"] = float(total.detach())
    return total, parts


def fine_grained_loss(
    sketch: Tensor,
    positive: Tensor,
    negative: Tensor,
    labels: Tensor,
    classifier: TextClassifier,
    config: LossConfig | None = None,
    patch: tuple[Tensor, Tensor, Tensor] | Callable[[], tuple[Tensor, Tensor, Tensor]] | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """L = hard triplet + w_cls (CE_s + CE_p) + w_sep L_delta + w_patch L_patch.

    The negative is another photo of the sketch's class (hard), so every photo in the triplet has
    the label ``labels`` (the negatives join CE_photo only with ``config.classify_negative_photos``). ``labels`` also groups triplets for L_delta (a
    P x K batch). ``patch`` is the embeddings (shuffled sketch, same-order photo, other-order photo)
    of :func:`patch_shuffle_triplets`, or a zero-argument callable returning them (called only when
    the weight is non-zero); None leaves the patch term out.
    """
    config = config or LossConfig()
    # hard triplet + classification: the category objective with the (same-class) negatives labelled
    total, parts = category_loss(sketch, positive, negative, labels, classifier, config, negative_labels=labels)
    if config.separation_weight:
        sep = separation_regulariser(sketch, positive, negative, labels)
        total = total + config.separation_weight * sep
        parts["separation"] = float(sep.detach())
    if config.patch_shuffle_weight and patch is not None:
        patch_s, patch_p, patch_n = patch() if callable(patch) else patch
        patch_term = triplet_loss(patch_s, patch_p, patch_n, config.margin)
        total = total + config.patch_shuffle_weight * patch_term
        parts["patch"] = float(patch_term.detach())
    parts["total"] = float(total.detach())
    return total, parts
