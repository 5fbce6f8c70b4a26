"""``sketchlvm partial``: the command line of partial-sketch evaluation (``run.py``).

Run ``python -m sketchlvm partial --help``.
"""

from __future__ import annotations

import argparse
import json
import sys

from sketchlvm.arguments import add_model_arguments
from sketchlvm.config import SKETCH_FRAMINGS
from sketchlvm.evaluation.partial.framing import SCHEDULES, UNITS, load_stroke_sketches
from sketchlvm.evaluation.partial.run import PROTOCOLS, PartialResult, evaluate_partial
from sketchlvm.evaluation.protocol import apply_framing, checkpoint_training, resolve_framing


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sketchlvm partial",
        description="Partial-sketch (on-the-fly) evaluation: replay stroke-ordered sketches step by step "
        "and rank the whole photo gallery after each step. Writes partial_metrics.json, partial_summary.md "
        "and partial_curve.png into --out.",
    )
    p.add_argument("--strokes", required=True, help="Quick, Draw! .ndjson and/or app stroke .json files: a folder or one file")
    p.add_argument("--photos", required=True, help="photo gallery folder: PHOTOS/<class>/<image>")
    p.add_argument("--steps", "--partial", type=int, default=10, help="evaluate after 1/S, 2/S, ..., S/S of each sketch (default 10)")
    p.add_argument("--unit", choices=UNITS, default="strokes", help="what a step counts: whole strokes or points")
    p.add_argument("--schedule", choices=tuple(SCHEDULES), default="even",
                   help="even: --steps even steps of --unit (default); bhunia2020: Bhunia et al.'s 17 point-based "
                   "snapshots, so m@A / m@B compare with their tables")
    p.add_argument("--split", help="score only this split's unseen classes (default: the checkpoint's training split; "
                   "none: every shared class)")
    p.add_argument("--framing", choices=SKETCH_FRAMINGS,
                   help="sketch framing (default: the checkpoint's, else pad-square: the drawing as it stands on the canvas)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="category",
                   help="target photo: the best-ranked photo of the sketch's class, or its own photo ('photo' in the stroke JSON)")
    p.add_argument("--mode", choices=("category", "fine_grained"), help="encoder mode (default: the protocol)")
    add_model_arguments(p)
    p.add_argument("--limit-per-class", type=int, default=0, help="sketches per class (0: all)")
    p.add_argument("--max-classes", type=int, default=0, help="use the first N shared classes (0: all)")
    p.add_argument("--max-photos-per-class", type=int, default=0, help="photos per class (0: all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="image decoding workers")
    p.add_argument("--out", required=True, help="output folder")
    return p


def run(args: argparse.Namespace) -> PartialResult:
    from sketchlvm.evaluation.partial.partial_report import write_partial_report
    from sketchlvm.model.loader import model_from_args

    sketches = load_stroke_sketches(args.strokes, args.limit_per_class)
    # Embedding runs on the torch encoders: no ONNX graph is built or checked for nothing.
    model = model_from_args(args, runtime="torch", exports=False)
    framing, framing_source = resolve_framing(model, "partial", args.framing)
    apply_framing(model, framing)
    mode = args.mode or args.protocol
    training = checkpoint_training(model, mode)
    split = args.split if args.split is not None else training.get("split") or "none"
    result, info = evaluate_partial(
        model, sketches, args.photos, args.steps, args.unit, args.protocol, mode,
        args.max_classes, args.max_photos_per_class, args.batch_size, args.workers,
        split=split, schedule=args.schedule,
        seen_classes=training.get("classes") if mode in model.trained_modes() else [],  # zero-shot: trained on none
    )
    info.update(strokes=str(args.strokes), photos=str(args.photos), framing_source=framing_source,
                split_source="--split" if args.split is not None else
                ("the checkpoint's training split" if training.get("split") else "none (no checkpoint split)"),
                max_classes=args.max_classes, max_photos_per_class=args.max_photos_per_class,
                limit_per_class=args.limit_per_class)
    write_partial_report(args.out, result, info)
    return result


def main(argv: list[str] | None = None) -> int:
    from sketchlvm.config import configure_cli_logging

    configure_cli_logging()
    args = _parser().parse_args(argv)
    try:
        result = run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"unit": result.unit, "protocol": result.protocol, **result.summary}, indent=2))
    print(f"report written to {args.out}")
    return 0
