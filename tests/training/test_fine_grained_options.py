"""Fine-grained training negatives and the evaluation gallery are two named options (issue 29, item 6): training
with the unsketched photos as hard negatives (as the first released code did) leaves the evaluated gallery the
paper's, and both are recorded in the checkpoint and the report. Real Sketchy subset, tiny tower."""

from __future__ import annotations

import json

from sketchlvm.config import DataConfig, load_experiment, merge_into
from sketchlvm.model.checkpoint import load_checkpoint
from sketchlvm.training import trainer


def test_negatives_and_gallery_are_chosen_apart_and_recorded(sketchy_root, tmp_path, monkeypatch):
    assert (DataConfig().fine_grained_negatives, DataConfig().fine_grained_gallery) == ("sketched", "sketched")
    config = load_experiment("tiny_sketchy_fine_grained")
    merge_into(config, {"data": {"root": str(sketchy_root), "max_classes": 3, "max_per_class": 8,
                                 "fine_grained_negatives": "with-distractors"},
                        "train": {"epochs": 1, "classes_per_batch": 3, "samples_per_class": 2,
                                  "out_dir": str(tmp_path / "run"), "select_on": "test"}})
    seen = {}
    real_images, real_evaluate = trainer.TripletImages, trainer.evaluate_fine_grained

    def images(sketch_paths, photo_paths, *args):
        seen["training_photos"] = list(photo_paths)
        seen["sketched"] = {p.name.rsplit("-", 1)[0] for p in sketch_paths}
        return real_images(sketch_paths, photo_paths, *args)

    def evaluate(encoder, sketch_tf, photo_tf, pairs, *args, **kwargs):
        seen.setdefault("galleries", []).append(pairs.gallery_description())
        return real_evaluate(encoder, sketch_tf, photo_tf, pairs, *args, **kwargs)

    monkeypatch.setattr(trainer, "TripletImages", images)
    monkeypatch.setattr(trainer, "evaluate_fine_grained", evaluate)
    result = trainer.train(config, show_progress=False)

    unsketched = [p for p in seen["training_photos"] if p.stem not in seen["sketched"]]
    assert unsketched, "the hard negatives were drawn among the sketched photos only"
    for gallery in seen["galleries"]:  # every evaluated gallery: the sketched photos only
        assert gallery["photos"] == gallery["photos_with_sketches"]
    record = load_checkpoint(result.best_checkpoint).metadata["training"]
    assert record["fine_grained_negatives"] == "with-distractors" and record["fine_grained_gallery"] == "sketched"

    from sketchlvm.evaluation.cli import main

    out = tmp_path / "eval"
    assert main(["--dataset", "sketchy_fg", "--root", str(sketchy_root), "--checkpoint", str(result.best_checkpoint),
                 "--pretrained", "none", "--workers", "0", "--max-classes", "2", "--out", str(out)]) == 0
    extra = json.loads((out / "metrics.json").read_text())["extra"]
    assert extra["fg_training_negatives"] == "with-distractors" and extra["fg_gallery"] == "sketched"
    assert "| training negatives | with-distractors" in (out / "summary.md").read_text()
