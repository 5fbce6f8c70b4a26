"""Seeded samplers: determinism, class constraints, P x K structure."""

from __future__ import annotations

import numpy as np
import pytest

from sketchlvm.training.sampler import CategoryTripletSampler, FineGrainedBatchSampler, TripletBatch

# 4 classes; sketches and photos interleaved so that class blocks are not contiguous.
SKETCH_LABELS = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 3, 3]
PHOTO_LABELS = [3, 2, 1, 0, 3, 2, 1, 0, 3, 3]


def test_category_triplets_respect_classes():
    sampler = CategoryTripletSampler(SKETCH_LABELS, PHOTO_LABELS, seed=1)
    s_lab, p_lab = np.array(SKETCH_LABELS), np.array(PHOTO_LABELS)
    for epoch in range(20):
        triplets = sampler.triplets(epoch)
        assert sorted(triplets[:, 0].tolist()) == list(range(len(SKETCH_LABELS)))  # each sketch once
        assert (p_lab[triplets[:, 1]] == s_lab[triplets[:, 0]]).all()
        assert (p_lab[triplets[:, 2]] != s_lab[triplets[:, 0]]).all()
    assert len(sampler) == len(SKETCH_LABELS)


def test_category_sampler_is_seeded_shuffled_and_covers_photos():
    a = list(CategoryTripletSampler(SKETCH_LABELS, PHOTO_LABELS, seed=7))
    b = list(CategoryTripletSampler(SKETCH_LABELS, PHOTO_LABELS, seed=7))
    c = list(CategoryTripletSampler(SKETCH_LABELS, PHOTO_LABELS, seed=8))
    assert a == b and a != c
    sampler = CategoryTripletSampler(SKETCH_LABELS, PHOTO_LABELS, seed=7)
    first, second = list(sampler), list(sampler)  # iterating advances the epoch
    assert first == a and second != first
    sampler.set_epoch(0)
    assert list(sampler) == a
    # Shuffled: not the dataset order in every epoch.
    orders = {tuple(sampler.triplets(e)[:, 0]) for e in range(5)}
    assert len(orders) > 1 and tuple(range(len(SKETCH_LABELS))) not in orders
    # Over many epochs every photo of the class is used as a positive, every other as negative.
    many = np.concatenate([sampler.triplets(e) for e in range(200)])
    sketch0 = many[many[:, 0] == 0]
    assert set(sketch0[:, 1]) == {3, 7}
    assert set(sketch0[:, 2]) == {0, 1, 2, 4, 5, 6, 8, 9}


def test_category_batches():
    sampler = CategoryTripletSampler(SKETCH_LABELS, PHOTO_LABELS, seed=0)
    batches = list(sampler.batches(4))
    assert [len(b.triplets) for b in batches] == [4, 4, 4, 2]
    assert isinstance(batches[0], TripletBatch)
    for b in batches:
        assert (b.class_ids == np.array(SKETCH_LABELS)[b.triplets[:, 0]]).all()
    assert len(list(sampler.batches(4, drop_last=True))) == 3


def test_category_sampler_errors():
    with pytest.raises(ValueError, match=r"\[5\] have no photos"):
        CategoryTripletSampler([0, 5], [0, 1], seed=0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        CategoryTripletSampler([0, 0], [0, 0], seed=0)


def _fg_pairs(n_classes=6, photos_per_class=3, sketches_per_photo=2):
    """(sketch_path, photo_index, class) like FineGrainedPairs.pairs; photos grouped by class."""
    pairs, photo_labels = [], []
    for c in range(n_classes):
        for _ in range(photos_per_class):
            photo = len(photo_labels)
            photo_labels.append(c)
            pairs += [(f"s{photo}_{k}.png", photo, c) for k in range(sketches_per_photo)]
    return pairs, photo_labels


def test_fine_grained_pk_structure():
    pairs, photo_labels = _fg_pairs()
    sampler = FineGrainedBatchSampler(pairs, classes_per_batch=3, samples_per_class=4, seed=3)
    batches = list(sampler)
    assert batches, "expected at least one batch"
    labels = np.array(photo_labels)
    for batch in batches:
        assert batch.triplets.shape == (12, 3)
        classes, counts = np.unique(batch.class_ids, return_counts=True)
        assert len(classes) == 3 and (counts == 4).all()
        s, p, n = batch.triplets.T
        assert (p == np.array([pairs[i][1] for i in s])).all()  # positive = the sketch's own photo
        assert (labels[n] == batch.class_ids).all() and (labels[p] == batch.class_ids).all()
        assert (n != p).all()  # hard negative: another photo of the same class
    # Each class has 6 sketches -> 2 chunks of 4; 12 chunks / 3 per batch -> at most 4 batches.
    assert 1 <= len(batches) <= 4 and len(sampler) == len(list(sampler))


def test_fine_grained_determinism_and_epochs():
    pairs, _ = _fg_pairs()

    def run(seed, epoch):
        return [b.triplets.tolist() for b in FineGrainedBatchSampler(pairs, 2, 3, seed).batches(epoch)]

    assert run(5, 0) == run(5, 0)
    assert run(5, 0) != run(6, 0)
    assert run(5, 0) != run(5, 1)


def test_fine_grained_uses_distractor_photos_and_small_classes():
    # Only photo 0 of class 0 and photo 3 of class 1 have sketches; the others are distractors.
    pairs = [("a-1.png", 0, 0), ("a-2.png", 0, 0), ("b-1.png", 3, 1)]
    photo_labels = [0, 0, 0, 1, 1]
    sampler = FineGrainedBatchSampler(pairs, 2, 4, seed=0, photo_labels=photo_labels)
    negatives = set()
    for epoch in range(30):
        for batch in sampler.batches(epoch):
            assert batch.triplets.shape == (8, 3)  # classes with < K sketches repeat sketches
            negatives |= {(int(c), int(n)) for c, n in zip(batch.class_ids, batch.triplets[:, 2])}
    assert negatives == {(0, 1), (0, 2), (1, 4)}


def test_fine_grained_single_class_qmul_style():
    pairs = [(i // 3, 0) for i in range(30)]  # 10 photos, 3 sketches each, one class
    sampler = FineGrainedBatchSampler(pairs, classes_per_batch=1, samples_per_class=8, seed=0)
    batches = sampler.batches(0)
    assert len(batches) == 4  # 30 sketches -> 4 chunks of 8
    seen = np.concatenate([b.triplets[:, 0] for b in batches])
    assert set(seen.tolist()) == set(range(30))


def test_fine_grained_errors():
    pairs = [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2)]  # class 1 has a single photo
    with pytest.raises(ValueError, match="2 classes have >= 2 photos.*classes_per_batch is 3"):
        FineGrainedBatchSampler(pairs, classes_per_batch=3, samples_per_class=2)
    FineGrainedBatchSampler(pairs, classes_per_batch=2, samples_per_class=2)  # class 1 left out
    with pytest.raises(ValueError, match="its photo 1 has class 1"):
        FineGrainedBatchSampler(pairs, 2, 2, photo_labels=[0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match=">= 1"):
        FineGrainedBatchSampler(pairs, 0, 2)
