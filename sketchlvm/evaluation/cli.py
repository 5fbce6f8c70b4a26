"""``sketchlvm evaluate``: the command line of ``evaluation/evaluate.py`` (flags -> model -> metrics -> report).

Run ``python -m sketchlvm evaluate --help``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sketchlvm.arguments import add_model_arguments
from sketchlvm.config import SKETCH_FRAMINGS, configure_cli_logging
from sketchlvm.datasets import FineGrainedPairs
from sketchlvm.datasets.fine_grained import DEFAULT_FINE_GRAINED_GALLERY, FINE_GRAINED_GALLERIES
from sketchlvm.evaluation.evaluate import (
    CATEGORY_DATASETS,
    DEFAULT_SPLITS,
    FINE_GRAINED_DATASETS,
    describe_protocol,
    evaluate_category,
    evaluate_features_file,
    evaluate_fine_grained,
    load_test_data,
)
from sketchlvm.evaluation.protocol import (
    apply_framing,
    caps_note,
    check_trained_mode,
    check_unseen,
    checkpoint_training,
    resolve_framing,
    resolve_split,
    seen_test_classes,
    training_negatives,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sketchlvm evaluate",
        description="Evaluate a checkpoint, plain zero-shot CLIP (no --checkpoint), or precomputed features "
        "(--features) on the whole deterministic gallery. Writes metrics.json, summary.md, pr_curve.png "
        "and examples.png into --out.",
    )
    p.add_argument("--dataset", choices=CATEGORY_DATASETS + FINE_GRAINED_DATASETS, help="benchmark layout (see README)")
    p.add_argument("--root", help="dataset folder (ROOT/sketch/<class>, ROOT/photo/<class>; QMUL: trainA/testA/...)")
    p.add_argument("--split", help="zero-shot split, e.g. sketchy_21, sketchy_25 (default: the checkpoint's training split "
                   "when it splits this dataset, else the paper's)")
    p.add_argument("--allow-seen-classes", action="store_true",
                   help="measure test classes the checkpoint was trained on (refused by default: not zero-shot); the "
                   "report counts them and makes no comparison with the paper")
    p.add_argument("--mode", choices=("category", "fine_grained"), help="encoder mode (default: from the dataset)")
    add_model_arguments(p)
    p.add_argument("--allow-zero-shot", action="store_true",
                   help="score zero-shot CLIP in a mode the checkpoint has no prompts for (refused by default); the "
                   "summary's first line says so")
    p.add_argument("--features", help=".npz with query_features, query_labels, gallery_features, gallery_labels "
                   "(+ optional query_ids, gallery_ids): score these instead of encoding")
    p.add_argument("--framing", choices=SKETCH_FRAMINGS,
                   help="how sketches are framed before resizing (default: the checkpoint's; with no checkpoint the "
                   "dataset protocol's, pad-square); see docs/evaluation.md")
    p.add_argument("--fg-gallery", choices=tuple(FINE_GRAINED_GALLERIES), default=DEFAULT_FINE_GRAINED_GALLERY,
                   help="sketchy_fg: rank among the sketched photos only (default, the paper's protocol) or also "
                   "among the folder's unsketched photos (with-distractors)")
    p.add_argument("--generalised", action="store_true", help="add the seen classes' photos to the gallery (GZS-SBIR)")
    p.add_argument("--max-classes", type=int, default=0, help="evaluate on this many classes only (0: all)")
    p.add_argument("--max-per-class", type=int, default=0, help="cap sketches and photos per class (0: all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="image decoding workers")
    p.add_argument("--precision", choices=("fp32", "amp"), default="fp32",
                   help="fp32 (default, as in the paper) or amp (fp16 autocast on CUDA: faster, slightly different numbers)")
    p.add_argument("--save-features", action="store_true", help="also write features.npz (the --features format)")
    p.add_argument("--out", required=True, help="output folder")
    return p


def run(args: argparse.Namespace) -> dict[str, float]:
    from sketchlvm.evaluation import report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info: dict = {"features": args.features} if args.features else {}
    if args.features:
        evaluation = evaluate_features_file(args.features)
        dataset_key = args.dataset
    else:
        if not (args.dataset and args.root):
            raise ValueError("give --dataset and --root (or --features FILE)")
        from sketchlvm.model.loader import model_from_args

        mode = args.mode or ("category" if args.dataset in CATEGORY_DATASETS else "fine_grained")
        # Evaluation embeds with the torch encoders directly: no ONNX graph is built or checked.
        model = model_from_args(args, runtime="torch", exports=False)
        check_trained_mode(model, mode, args.allow_zero_shot)
        framing, framing_source = resolve_framing(model, args.dataset, args.framing)
        apply_framing(model, framing)
        training = checkpoint_training(model, mode)
        split, split_source = resolve_split(args.dataset, args.split, training, DEFAULT_SPLITS.get(args.dataset))
        seen, unseen = load_test_data(args.dataset, args.root, split, args.max_classes, args.max_per_class,
                                      args.fg_gallery)
        seen_in_training = seen_test_classes(unseen.class_names, training) if args.dataset in DEFAULT_SPLITS else []
        check_unseen(seen_in_training, len(unseen.class_names), split, args.allow_seen_classes)
        encoder = model.encoders[mode]
        common = dict(device=model.device, batch_size=args.batch_size, num_workers=args.workers, precision=args.precision)
        if args.dataset in CATEGORY_DATASETS:
            evaluation = evaluate_category(
                encoder, model.sketch_transform, model.photo_transform, unseen,
                extra_gallery=seen if args.generalised else None, **common,
            )
        else:
            evaluation = evaluate_fine_grained(encoder, model.sketch_transform, model.photo_transform, unseen, **common)
        dataset_key = args.dataset
        info = {
            "dataset": args.dataset, "root": str(args.root), "split": split, "split_source": split_source,
            "seen_in_training": seen_in_training, "encoder": model.mode_label(mode),
            "mode": mode, "generalised": args.generalised, "model": model.describe(), "precision": args.precision,
            "protocol": describe_protocol(args.dataset, args.generalised, args.fg_gallery),
            "framing": framing, "framing_source": framing_source,
            "checkpoint": {"path": str(model.checkpoint.path), "sha256": model.checkpoint.sha256} if model.checkpoint else None,
            "queries": len(evaluation.query_labels), "gallery": len(evaluation.gallery_labels),
            "classes": list(unseen.class_names), "max_classes": args.max_classes, "max_per_class": args.max_per_class,
            "subset": caps_note(args.max_classes, args.max_per_class, unseen.class_names,
                                split if args.dataset in DEFAULT_SPLITS else None),
        }
        if isinstance(unseen, FineGrainedPairs):
            info["fg_gallery"] = args.fg_gallery if args.dataset == "sketchy_fg" else "the test photos (testB)"
            info["gallery_photos"] = unseen.gallery_description()
            if args.dataset == "sketchy_fg" and training:
                info["fg_training_negatives"] = training_negatives(training) or "not recorded"
    if args.save_features:
        arrays = dict(
            query_features=evaluation.query_features, query_labels=evaluation.query_labels,
            gallery_features=evaluation.gallery_features, gallery_labels=evaluation.gallery_labels,
        )
        if evaluation.query_ids is not None:
            arrays.update(query_ids=evaluation.query_ids, gallery_ids=evaluation.gallery_ids)
        np.savez(out / "features.npz", **arrays)
    report.write_report(out, evaluation, dataset_key, info)
    return evaluation.metrics


def main(argv: list[str] | None = None) -> int:
    configure_cli_logging()
    args = _parser().parse_args(argv)
    try:
        metrics = run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    print(f"report written to {args.out}")
    return 0
