"""Datasets, zero-shot splits and fine-grained pairs; real data from ../shared/data where present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sketchlvm.datasets import (
    SPLITS,
    CategoryDataset,
    FineGrainedPairs,
    ImageListDataset,
    QuickDrawDrawing,
    QuickDrawSketches,
    list_class_folders,
    list_images,
    load_category_split,
    normalise_class_name,
    split_classes,
)
from sketchlvm.training.sampler import FineGrainedBatchSampler

SKETCHY_21 = {
    "bat", "cabin", "cow", "dolphin", "door", "giraffe", "helicopter", "mouse", "pear", "raccoon",
    "rhinoceros", "saw", "scissors", "seagull", "skyscraper", "songbird", "sword", "tree",
    "wheelchair", "windmill", "window",
}  # fmt: skip


# ------------------------------------------------------------------ names and splits (no data)


def test_normalise_class_name():
    forms = ["hot-air_balloon", "hot_air_balloon", "hot air balloon", " Hot-Air  Balloon "]
    assert {normalise_class_name(f) for f in forms} == {"hot_air_balloon"}
    assert normalise_class_name("jack-o-lantern") == normalise_class_name("jack o lantern")
    assert normalise_class_name("car_(sedan)") == normalise_class_name("car (sedan)") == "car_(sedan)"
    assert normalise_class_name("T-shirt") == "t_shirt"


def test_split_lists_match_method():
    assert {k: len(v) for k, v in SPLITS.items()} == {
        "sketchy_21": 21, "sketchy_25": 25, "tuberlin_30": 30, "quickdraw_30": 30,
    }  # fmt: skip
    assert set(SPLITS["sketchy_21"]) == SKETCHY_21
    for names in SPLITS.values():
        assert len({normalise_class_name(n) for n in names}) == len(names)


def test_split_classes_matches_other_spellings():
    data = ["airplane", "hot-air_balloon", "t_shirt", "Frying Pan", "zebra"]
    seen, unseen = split_classes(data, ["hot air balloon", "t-shirt", "frying-pan"])
    assert unseen == ["hot-air_balloon", "t_shirt", "Frying Pan"] and seen == ["airplane", "zebra"]
    assert split_classes(data, "none") == (data, [])
    with pytest.raises(ValueError, match="unknown split 'sketchy_99'"):
        split_classes(data, "sketchy_99")
    with pytest.raises(ValueError, match="unicorn"):
        split_classes(data, ["zebra", "unicorn"])
    with pytest.raises(ValueError, match="same after normalisation"):
        split_classes(["hot-air_balloon", "hot_air_balloon"], ["zebra"])


def test_tuberlin_split_on_synthetic_names():
    # TU-Berlin folder names use spaces and hyphens; the SAKE list must resolve against them.
    names = [n.replace("_", " ") for n in SPLITS["tuberlin_30"]] + [f"class {i}" for i in range(220)]
    seen, unseen = split_classes(sorted(names), "tuberlin_30")
    assert len(seen) == 220 and len(unseen) == 30


# ------------------------------------------------------------------ Sketchy (real data)


def test_sketchy_classes_and_split(sketchy_root):
    classes = list_class_folders(sketchy_root)
    assert len(classes) == 125
    seen, unseen = split_classes(classes, "sketchy_21")
    assert len(seen) == 104 and set(unseen) == SKETCHY_21
    assert not set(seen) & SKETCHY_21
    seen25, unseen25 = split_classes(classes, "sketchy_25")
    assert len(seen25) == 100 and len(unseen25) == 25
    assert "hot-air_balloon" in classes and "jack-o-lantern" in classes


def test_sketchy_bogus_split_class_is_named(sketchy_root):
    classes = list_class_folders(sketchy_root)
    with pytest.raises(ValueError, match="'unicorn'"):
        split_classes(classes, ["bat", "unicorn"])
    with pytest.raises(ValueError, match="'griffin'"):
        CategoryDataset(sketchy_root, classes=["griffin"])


def test_category_dataset(sketchy_root):
    train, test = load_category_split(sketchy_root, "sketchy_21")
    assert train.num_classes == 104 and set(test.class_names) == SKETCHY_21
    assert len(test.sketch_paths) == 21 * 25 and len(test.photo_paths) == 21 * 25
    assert len(train.sketch_paths) == len(train.sketch_labels) == 104 * 25
    for ds in (train, test):
        for paths, labels in ((ds.sketch_paths, ds.sketch_labels), (ds.photo_paths, ds.photo_labels)):
            assert labels.dtype == np.int64
            assert all(p.parent.name == ds.class_names[lab] for p, lab in zip(paths, labels))
    assert test.sketch_paths == sorted(test.sketch_paths)  # classes and files in sorted order
    # Hyphenated folder resolves from any spelling.
    ds = CategoryDataset(sketchy_root, classes=["hot air balloon"])
    assert ds.class_names == ["hot-air_balloon"]


def test_category_caps_are_deterministic(sketchy_root):
    a = CategoryDataset(sketchy_root, max_classes=7, max_per_class=3)
    b = CategoryDataset(sketchy_root, max_classes=7, max_per_class=3)
    assert a.class_names == b.class_names and a.sketch_paths == b.sketch_paths
    assert a.photo_paths == b.photo_paths
    assert len(a.class_names) == 7 and len(a.sketch_paths) == len(a.photo_paths) == 21
    # Spread over the alphabet, not the first seven.
    assert a.class_names != sorted(list_class_folders(sketchy_root))[:7]
    full = CategoryDataset(sketchy_root, classes=a.class_names[:1])
    assert a.photo_paths[:3] == full.photo_paths[:3]


def test_sketchy_fine_grained_pairs(sketchy_root):
    pairs = FineGrainedPairs.sketchy(sketchy_root, classes=sorted(SKETCHY_21), gallery="with-distractors")
    assert pairs.class_names == sorted(SKETCHY_21)
    assert len(pairs.photo_paths) == 21 * 25 and len(pairs) == 21 * 25
    for sketch, photo_index, label in pairs.pairs:
        photo = pairs.photo_paths[photo_index]
        assert sketch.name.rsplit("-", 1)[0] == photo.stem == pairs.photo_ids[photo_index]
        assert sketch.parent.name == photo.parent.name == pairs.class_names[label]
        assert pairs.photo_labels[photo_index] == label
    # The gallery keeps same-class distractors (photos without sketches).
    assert len(set(pairs.sketch_photo.tolist())) < len(pairs.photo_paths)
    # The fine-grained sampler takes these pairs directly.
    sampler = FineGrainedBatchSampler(pairs.pairs, 4, 4, seed=0, photo_labels=pairs.photo_labels)
    batch = next(iter(sampler))
    assert batch.triplets.shape == (16, 3)
    assert (pairs.sketch_photo[batch.triplets[:, 0]] == batch.triplets[:, 1]).all()


def test_sketchy_fine_grained_caps(sketchy_root):
    a = FineGrainedPairs.sketchy(sketchy_root, max_classes=5, max_per_class=6, gallery="with-distractors")
    b = FineGrainedPairs.sketchy(sketchy_root, max_classes=5, max_per_class=6, gallery="with-distractors")
    assert a.photo_paths == b.photo_paths and a.sketch_paths == b.sketch_paths
    assert len(a.photo_paths) == 30
    # Photos with sketches come first, so every capped class still has its sketched photos.
    assert set(a.sketch_labels.tolist()) == set(range(5))
    assert all(pid == p.stem for pid, p in zip(a.photo_ids, a.photo_paths))


# ------------------------------------------------------------------ QMUL layout (synthetic files)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_qmul_layout(tmp_path):
    root = tmp_path / "ShoeV2"
    for pid in ("1001", "1002", "a_b"):
        _touch(root / "testB" / f"{pid}.png")
    for name in ("1001_1.png", "1001_2.PNG", "1002_1.png", "a_b_3.png", ".hidden.png", "notes.txt"):
        _touch(root / "testA" / name)
    pairs = FineGrainedPairs.qmul(root, "test")
    assert pairs.class_names == ["shoe"] and pairs.photo_ids == ["1001", "1002", "a_b"]
    assert [p.name for p in pairs.sketch_paths] == ["1001_1.png", "1001_2.PNG", "1002_1.png", "a_b_3.png"]
    assert pairs.sketch_photo_ids == ["1001", "1001", "1002", "a_b"]
    _touch(root / "testA" / "9999_1.png")
    with pytest.raises(ValueError, match="9999_1.png"):
        FineGrainedPairs.qmul(root, "test")
    with pytest.raises(FileNotFoundError, match="trainB"):
        FineGrainedPairs.qmul(root, "train")


# ------------------------------------------------------------------ Quick, Draw! (real data)


def test_quickdraw_sketches(quickdraw_root):
    source = QuickDrawSketches(quickdraw_root, classes=SPLITS["quickdraw_30"], limit_per_class=2)
    assert len(source.class_names) == 30
    assert "palm tree" in source.class_names and "fire hydrant" in source.class_names
    drawings = source.load()
    assert len(drawings) == 60 and drawings == list(source)
    first = drawings[0]
    assert isinstance(first, QuickDrawDrawing) and first.word == source.class_names[first.label]
    assert all(len(stroke) in (2, 3) for stroke in first.strokes)
    with pytest.raises(ValueError, match="'unicorn'"):
        QuickDrawSketches(quickdraw_root, classes=["unicorn"])
    image = QuickDrawSketches.render(first, size=64)
    assert image.mode == "RGB" and image.size == (64, 64)
    # drawings reach the transform as strokes, rendered once at its own size and framing
    from sketchlvm.preprocess.transforms import SketchTransform

    transform = SketchTransform(32)
    ds = ImageListDataset(drawings[:3], transform=lambda d: np.asarray(transform.to_image(d)))
    array, index = ds[2]
    assert index == 2 and array.shape == (32, 32, 3) and array.min() < 128  # some ink


# ------------------------------------------------------------------ ImageListDataset


def test_image_list_dataset_with_custom_loader():
    items = ["a", "bb", "ccc"]
    ds = ImageListDataset(items, transform=lambda n: torch.full((2,), float(n)), loader=len)
    assert len(ds) == 3
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    batches = list(loader)
    assert batches[0][0].tolist() == [[1.0, 1.0], [2.0, 2.0]] and batches[0][1].tolist() == [0, 1]


def test_image_list_dataset_default_loader(sketchy_root):
    pytest.importorskip("sketchlvm.preprocess.transforms")
    paths = list_images(sketchy_root / "sketch" / "bat")[:2]
    ds = ImageListDataset(paths)
    image, index = ds[1]
    assert index == 1 and image.mode == "RGB"
    pairs = FineGrainedPairs.sketchy(sketchy_root, classes=["bat"])
    image, _ = ImageListDataset(pairs.pairs)[0]  # tuples: the path comes first
    assert image.mode == "RGB"


# --------------------------------------------------------------------------- validation split


def _names(paths):
    return {f"{Path(p).parent.name}/{Path(p).name}" for p in paths}


def test_validation_split_holds_out_seen_class_sketches_and_photos(sketchy_root):
    from sketchlvm.datasets import hold_out_validation, load_category_split

    seen, unseen = load_category_split(sketchy_root, "sketchy_21", max_classes=6, max_per_class=10)
    train, validation, record = hold_out_validation(seen, 0.2, seed=3)
    assert train.class_names == validation.class_names == seen.class_names  # seen classes only
    assert not set(validation.class_names) & set(unseen.class_names)
    for kind in ("sketch_paths", "photo_paths"):
        a, b = _names(getattr(train, kind)), _names(getattr(validation, kind))
        assert not a & b and a | b == _names(getattr(seen, kind))
    assert np.bincount(validation.sketch_labels).tolist() == [2] * 6  # 20% of 10 per class
    assert np.bincount(validation.photo_labels).tolist() == [2] * 6
    assert [seen.class_names[i] for i in validation.photo_labels] == [Path(p).parent.name for p in validation.photo_paths]
    assert record["sketches"] == 12 and record["photos"] == 12 and record["seed"] == 3

    again = hold_out_validation(seen, 0.2, seed=3)[2]
    other = hold_out_validation(seen, 0.2, seed=4)[2]
    assert again["sha256"] == record["sha256"] and other["sha256"] != record["sha256"]


def test_fine_grained_validation_split_keeps_sketches_with_their_photos(sketchy_root):
    from sketchlvm.datasets import hold_out_validation

    seen = FineGrainedPairs.sketchy(sketchy_root, ["cow", "bat", "cabin"], max_per_class=10)
    train, validation, record = hold_out_validation(seen, 0.2, seed=0)
    assert not _names(train.photo_paths) & _names(validation.photo_paths)
    assert _names(train.sketch_paths) | _names(validation.sketch_paths) == _names(seen.sketch_paths)
    for part in (train, validation):
        for sketch, photo in zip(part.sketch_paths, part.sketch_photo):
            assert Path(sketch).stem.rsplit("-", 1)[0] == part.photo_ids[photo]  # still its own photo
    assert record["photos"] == len(validation.photo_paths) > 0 and record["sketches"] == len(validation)
    with pytest.raises(ValueError, match="between 0 and 1"):
        hold_out_validation(seen, 0.0, seed=0)
