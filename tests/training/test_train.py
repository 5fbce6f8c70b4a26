"""Training on real Sketchy data with the tiny random tower: it fits, and it does not collapse.

A random backbone has no CLIP knowledge to transfer, so only fitting can be shown (shared/NOTES.md):
the loss falls and retrieval on the data it trains on rises clearly above the untrained model's.
Held-out and unseen-class figures are printed, not asserted.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sketchlvm.model.checkpoint import load_checkpoint
from sketchlvm.config import load_experiment, merge_into
from sketchlvm.model.encoder import freeze_except
from sketchlvm.evaluation.evaluate import evaluate_category, evaluate_fine_grained, load_test_data
from sketchlvm.model.factory import build_prompted_encoder, create_sketchlvm
from sketchlvm.training.trainer import train
from sketchlvm.preprocess.transforms import PhotoTransform, SketchTransform
from sketchlvm.model.weights import load_clip


def _config(preset, root, out, **overrides):
    config = load_experiment(preset)
    merge_into(config, {"data": {"root": str(root)}, "train": {"out_dir": str(out)}})
    merge_into(config, overrides)
    return config


def _untrained_encoder(config):
    torch.manual_seed(config.train.seed)
    clip, _ = load_clip(config.model.arch, config.model.pretrained)
    encoder = build_prompted_encoder(clip.visual, config.train.mode, config.model.n_prompts, config.model.prompt_init_std)
    freeze_except(encoder, config.model.trainable)
    return encoder


def _mean_pairwise_cosine(features: np.ndarray) -> float:
    sims = features @ features.T
    n = len(features)
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def test_category_training_fits_without_collapse(sketchy_root, tmp_path):
    config = _config(
        "tiny_sketchy_category", sketchy_root, tmp_path / "run",
        data={"max_classes": 5, "max_per_class": 12},
        train={"epochs": 16, "batch_size": 16, "eval_every": 16},
    )
    train_data, _ = load_test_data("sketchy", sketchy_root, "sketchy_21", 5, 12)
    size = 64
    sketch_tf, photo_tf = SketchTransform(size, config.preprocess), PhotoTransform(size, config.preprocess)
    device = torch.device("cpu")
    before = evaluate_category(_untrained_encoder(config), sketch_tf, photo_tf, train_data, device)

    result = train(config, show_progress=False)

    after = evaluate_category(result.encoder, sketch_tf, photo_tf, train_data, device)
    losses = [entry["mean_loss"] for entry in result.history]
    print(f"\ntraining-data mAP@all {before.metrics['mAP@all']:.3f} -> {after.metrics['mAP@all']:.3f}; "
          f"epoch losses {[round(x, 3) for x in losses]}; unseen-class metrics {result.history[-1]['metrics']}")
    assert losses[-1] < losses[0]
    assert after.metrics["mAP@all"] > before.metrics["mAP@all"] * 1.15
    assert _mean_pairwise_cosine(after.query_features) < 0.95  # sketches stay spread apart

    # the best checkpoint carries its metric and reloads into the product model
    best = load_checkpoint(result.best_checkpoint)
    assert best.metadata["metrics"]["mAP@all"] == pytest.approx(result.best_metric)
    assert best.metadata["training"]["split"] == "sketchy_21"
    model = create_sketchlvm(pretrained="none", checkpoint=result.best_checkpoint, device="cpu")
    assert model.trained_modes() == ["category"]
    assert model.preprocess == config.preprocess  # the trained statistics, not CLIP's defaults


def test_fine_grained_training_raises_acc_at_5_on_its_pairs(sketchy_root, tmp_path):
    config = _config(
        "tiny_sketchy_fine_grained", sketchy_root, tmp_path / "run",
        # with the unsketched photos as distractors: ~4 sketched photos a class would make Acc@5 trivially 1
        data={"max_classes": 4, "max_per_class": 8, "fine_grained_gallery": "with-distractors",
              "fine_grained_negatives": "with-distractors"},
        train={"epochs": 8, "classes_per_batch": 4, "samples_per_class": 4, "eval_every": 8},
    )
    train_pairs, _ = load_test_data("sketchy_fg", sketchy_root, "sketchy_21", 4, 8, "with-distractors")
    sketch_tf, photo_tf = SketchTransform(64, config.preprocess), PhotoTransform(64, config.preprocess)
    device = torch.device("cpu")
    before = evaluate_fine_grained(_untrained_encoder(config), sketch_tf, photo_tf, train_pairs, device)
    result = train(config, show_progress=False)
    after = evaluate_fine_grained(result.encoder, sketch_tf, photo_tf, train_pairs, device)
    losses = [entry["mean_loss"] for entry in result.history]
    print(f"\ntraining-pair Acc@5 {before.metrics['Acc@5_within_class']:.3f} -> {after.metrics['Acc@5_within_class']:.3f}; "
          f"epoch losses {[round(x, 3) for x in losses]}; unseen-class metrics {result.history[-1]['metrics']}")
    assert losses[-1] < losses[0]
    assert after.metrics["Acc@5_within_class"] > before.metrics["Acc@5_within_class"]
    assert _mean_pairwise_cosine(after.query_features) < 0.95


def test_interrupted_training_resumes_where_it_stopped(sketchy_root, tmp_path):
    common = dict(data={"max_classes": 3, "max_per_class": 6}, train={"epochs": 2, "batch_size": 6, "eval_every": 99})
    straight = train(_config("tiny_sketchy_category", sketchy_root, tmp_path / "a", **common), show_progress=False)

    interrupted = _config("tiny_sketchy_category", sketchy_root, tmp_path / "b", **common)
    interrupted.train.max_steps = 3  # stops mid-epoch 1 (3 batches an epoch)... then resume to the end
    train(interrupted, show_progress=False)
    interrupted.train.max_steps = 0
    resumed = train(interrupted, show_progress=False)

    assert resumed.history[-1]["step"] == straight.history[-1]["step"]
    a = load_checkpoint(straight.last_checkpoint).states["category"]
    b = load_checkpoint(resumed.last_checkpoint).states["category"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


class _Touch:
    """A pickle that creates a file when loaded: what a hostile train_state.pt could do (issue 19)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_resume_does_not_unpickle_objects_from_the_state_file(sketchy_root, tmp_path):
    from sketchlvm.training.trainer import STATE_FILE

    config = _config("tiny_sketchy_category", sketchy_root, tmp_path / "run",
                     data={"max_classes": 2, "max_per_class": 4}, train={"epochs": 1, "batch_size": 4, "eval_every": 99})
    config.train.max_steps = 1
    train(config, show_progress=False)
    state_path = tmp_path / "run" / STATE_FILE
    saved = torch.load(state_path, weights_only=True)  # what train() writes loads as plain data
    marker = tmp_path / "code-ran"
    saved["progress"]["history"].append(_Touch(marker))
    torch.save(saved, state_path)
    config.train.max_steps = 0
    with pytest.raises(ValueError, match="not loaded"):
        train(config, show_progress=False)
    assert not marker.exists()


def test_torchrun_ddp_runs_on_cpu_and_rank_0_writes_the_checkpoint(sketchy_root, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "sketchlvm", "train",
        "--config", "tiny_sketchy_category", "--root", str(sketchy_root), "--max-classes", "3",
        "--max-per-class", "6", "--batch-size", "4", "--epochs", "1", "--workers", "0", "--out", str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("best mAP@all") == 1
    best = load_checkpoint(out / "best.safetensors")
    # 3 classes x 6 sketches, 1 per class held out for validation: 15 triplets / batch 4 = 3 batches,
    # every 2nd per rank with equal counts: 1 step
    assert best.metadata["step"] == 1
    assert set(best.metadata["test_metrics"]) >= {"mAP@all"}  # the final test evaluation ran on both ranks


def test_the_best_checkpoint_is_chosen_on_held_out_seen_classes_not_the_test_classes(sketchy_root, tmp_path):
    common = dict(data={"max_classes": 3, "max_per_class": 10, "validation_fraction": 0.2},
                  train={"epochs": 1, "batch_size": 4})
    result = train(_config("tiny_sketchy_category", sketchy_root, tmp_path / "v", **common), show_progress=False)
    best = load_checkpoint(result.best_checkpoint).metadata
    assert best["training"]["select_on"] == "validation"
    validation = best["training"]["validation"]
    assert validation["sketches"] == 3 * 2 and validation["photos"] == 3 * 2 and validation["seed"] == 0
    assert result.history[-1]["selected_on"] == "validation" and "test_metrics" not in result.history[-1]
    # the unseen test classes are measured once at the end, on the best checkpoint, and recorded
    assert set(best["test_metrics"]) >= {"mAP@all", "mAP@200"} and best["test_metrics"] == result.test_metrics
    assert best["metrics"]["mAP@all"] == pytest.approx(result.best_metric)
    assert best["metrics"] != best["test_metrics"]

    released = _config("tiny_sketchy_category", sketchy_root, tmp_path / "t", **common)
    released.train.select_on = "test"  # the released code's behaviour
    old = train(released, show_progress=False)
    old_best = load_checkpoint(old.best_checkpoint).metadata
    assert old_best["training"]["select_on"] == "test" and "validation" not in old_best["training"]
    assert old_best["metrics"] == old_best["test_metrics"]


def test_learning_rates_have_one_source_of_defaults():
    import json

    from sketchlvm.config import PRESETS_DIR, TrainConfig, list_presets

    assert (TrainConfig().lr, TrainConfig().prompt_lr) == (1e-5, 1e-4)  # the README's and the presets' values
    for name in ("sketchy_category", "sketchy_fine_grained", "tuberlin_category", "quickdraw_category"):
        raw = json.loads((PRESETS_DIR / f"{name}.json").read_text())
        assert not {"lr", "prompt_lr"} & set(raw["train"]), f"{name} repeats a learning-rate default"
        assert (load_experiment(name).train.lr, load_experiment(name).train.prompt_lr) == (1e-5, 1e-4)
    # the released code's wider trainable set comes with the released code's 1e-6 for it
    released = load_experiment("sketchy_category_full_attention")
    assert released.model.trainable == "full-attention"
    assert (released.train.lr, released.train.prompt_lr) == (1e-6, 1e-4)
    assert "sketchy_category_full_attention" in list_presets()


def test_interrupted_fine_grained_training_resumes_exactly(sketchy_root, tmp_path):
    """Patch-shuffle permutations are random too: a resumed run must draw the ones it would have drawn."""
    common = dict(data={"max_classes": 4, "max_per_class": 3},
                  train={"epochs": 1, "classes_per_batch": 4, "samples_per_class": 2, "eval_every": 99})
    straight = train(_config("tiny_sketchy_fine_grained", sketchy_root, tmp_path / "a", **common), show_progress=False)

    interrupted = _config("tiny_sketchy_fine_grained", sketchy_root, tmp_path / "b", **common)
    interrupted.train.max_steps = 2  # stops inside the epoch (5 batches: 2 training photos x 5 sketches / K=2)
    train(interrupted, show_progress=False)
    torch.rand(1000)  # whatever the global RNG did meanwhile must not matter
    interrupted.train.max_steps = 0
    resumed = train(interrupted, show_progress=False)

    assert resumed.history[-1]["step"] == straight.history[-1]["step"] == 5
    a = load_checkpoint(straight.last_checkpoint).states["fine_grained"]
    b = load_checkpoint(resumed.last_checkpoint).states["fine_grained"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


def _qmul_layout(sketchy_root, root, cls, n_train, n_test):
    """Real Sketchy photos and sketches of one class, laid out as QMUL ShoeV2 / ChairV2 are."""
    drawn = {p.stem.rsplit("-", 1)[0] for p in (sketchy_root / "sketch" / cls).glob("*.png")}
    photos = [p for p in sorted((sketchy_root / "photo" / cls).glob("*.jpg")) if p.stem in drawn][: n_train + n_test]
    assert len(photos) == n_train + n_test
    for part, chosen in (("train", photos[:n_train]), ("test", photos[n_train:])):
        (root / f"{part}A").mkdir(parents=True)
        (root / f"{part}B").mkdir(parents=True)
        for photo in chosen:
            (root / f"{part}B" / photo.name).symlink_to(photo)
            for sketch in sorted((sketchy_root / "sketch" / cls).glob(f"{photo.stem}-*.png")):
                k = sketch.stem.rsplit("-", 1)[1]
                (root / f"{part}A" / f"{photo.stem}_{k}.png").symlink_to(sketch)
    return root


def test_within_category_fine_grained_preset_trains_on_a_qmul_layout(sketchy_root, tmp_path):
    """One category: P = 1, so the classification and separation terms would be identically 0."""
    for name in ("shoev2_fine_grained", "chairv2_fine_grained"):
        preset = load_experiment(name)
        assert preset.train.classes_per_batch == 1 and preset.train.mode == "fine_grained"
        assert preset.loss.classification_weight == 0 and preset.loss.separation_weight == 0
        assert preset.loss.patch_shuffle_weight > 0 and preset.preprocess.sketch_framing == "pad-square"
        assert preset.train.eval_metric == "Acc@1_within_class"

    root = _qmul_layout(sketchy_root, tmp_path / "ShoeV2", "shoe", n_train=3, n_test=2)
    tiny = load_experiment("tiny_sketchy_fine_grained")
    config = _config("shoev2_fine_grained", root, tmp_path / "run",
                     model=dataclasses.asdict(tiny.model), preprocess=dataclasses.asdict(tiny.preprocess),
                     data={"num_workers": 0, "validation_fraction": 0.2},
                     train={"epochs": 2, "samples_per_class": 4, "device": "cpu", "warmup_steps": 2})
    result = train(config, show_progress=False)
    losses = [entry["mean_loss"] for entry in result.history]
    assert all(np.isfinite(losses)) and len(result.history) == 2
    assert {"Acc@1_within_class", "Acc@10_within_class"} <= set(result.test_metrics)
    assert result.test_metrics["Acc@10_within_class"] == 1.0  # only 2 test photos: every sketch's is in the top 10
    assert result.test_metrics["Acc@1_within_class"] == result.test_metrics["Acc@1_whole_gallery"]  # one class
    best = load_checkpoint(result.best_checkpoint).metadata
    assert best["training"]["dataset"] == "shoev2" and best["training"]["classes"] == ["shoe"]

    from sketchlvm.evaluation.cli import main

    out = tmp_path / "eval"
    assert main(["--dataset", "shoev2", "--root", str(root), "--checkpoint", str(result.best_checkpoint),
                 "--pretrained", "none", "--workers", "0", "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert "| method | Acc@1_within_class | Acc@10_within_class |" in summary  # the numbers QMUL reports


def test_a_kill_between_the_two_writes_cannot_resume_on_mismatched_weights(sketchy_root, tmp_path):
    """last.safetensors and the training state written at different steps (a kill between two writes) must not
    matter: resuming reads one self-consistent state file."""
    import shutil

    common = {"data": {"max_classes": 3, "max_per_class": 6}, "train": {"epochs": 1, "batch_size": 4, "eval_every": 99}}
    straight = train(_config("tiny_sketchy_category", sketchy_root, tmp_path / "a", **common), show_progress=False)

    run = _config("tiny_sketchy_category", sketchy_root, tmp_path / "b", **common)
    run.train.max_steps = 1
    train(run, show_progress=False)
    shutil.copytree(tmp_path / "b", tmp_path / "at1")
    run.train.max_steps = 2
    train(run, show_progress=False)
    at2 = tmp_path / "b"
    assert load_checkpoint(at2 / "last.safetensors").metadata["step"] == 2
    for name, (state_from, last_from) in {"old-state": (tmp_path / "at1", at2), "old-last": (at2, tmp_path / "at1")}.items():
        mixed = tmp_path / name
        shutil.copytree(state_from, mixed)
        shutil.copy2(last_from / "last.safetensors", mixed / "last.safetensors")
        resumed_config = _config("tiny_sketchy_category", sketchy_root, mixed, **common)
        resumed = train(resumed_config, show_progress=False)
        a = load_checkpoint(straight.last_checkpoint).states["category"]
        b = load_checkpoint(resumed.last_checkpoint).states["category"]
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
        assert resumed.history[-1]["step"] == straight.history[-1]["step"], name


def test_stopping_by_max_steps_adds_no_evaluation(sketchy_root, tmp_path):
    common = {"data": {"max_classes": 3, "max_per_class": 6}, "train": {"epochs": 1, "batch_size": 4, "eval_every": 1}}
    straight = train(_config("tiny_sketchy_category", sketchy_root, tmp_path / "a", **common), show_progress=False)
    run = _config("tiny_sketchy_category", sketchy_root, tmp_path / "b", **common)
    run.train.max_steps = 1  # inside the epoch
    stopped = train(run, show_progress=False)
    assert stopped.history == [] and stopped.best_checkpoint is None
    assert not (tmp_path / "b" / "history.jsonl").exists()
    run.train.max_steps = 0
    resumed = train(run, show_progress=False)
    assert [e["step"] for e in resumed.history] == [e["step"] for e in straight.history]
    assert resumed.history[-1]["metrics"] == pytest.approx(straight.history[-1]["metrics"], rel=1e-4)
    assert resumed.history[-1]["mean_loss"] == pytest.approx(straight.history[-1]["mean_loss"], rel=1e-4)
    lines = (tmp_path / "b" / "history.jsonl").read_text().splitlines()
    assert len(lines) == len((tmp_path / "a" / "history.jsonl").read_text().splitlines())


def test_a_kill_before_the_state_is_saved_leaves_no_duplicate_history_line(sketchy_root, tmp_path, monkeypatch):
    """history.jsonl used to be appended before the state was committed: a kill between the two wrote epoch 1
    again on resume (issue 29, item 8)."""
    import os

    from sketchlvm.training import trainer

    common = {"data": {"max_classes": 3, "max_per_class": 6}, "train": {"epochs": 2, "batch_size": 6, "eval_every": 99}}
    straight = train(_config("tiny_sketchy_category", sketchy_root, tmp_path / "a", **common), show_progress=False)

    real_replace = os.replace
    killed = []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == trainer.STATE_FILE and not killed:
            killed.append(dst)
            raise KeyboardInterrupt("killed while committing the state")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(trainer.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        train(_config("tiny_sketchy_category", sketchy_root, tmp_path / "b", **common), show_progress=False)
    monkeypatch.setattr(trainer.os, "replace", real_replace)
    resumed = train(_config("tiny_sketchy_category", sketchy_root, tmp_path / "b", **common), show_progress=False)

    lines = [json.loads(line) for line in (tmp_path / "b" / "history.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in lines] == [e["epoch"] for e in straight.history] == [1, 2]
    assert [e["epoch"] for e in resumed.history] == [1, 2]
