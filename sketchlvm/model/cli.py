"""``sketchlvm checkpoint`` and ``sketchlvm export``: the model package's two command lines.

``checkpoint`` inspects or merges checkpoints (``checkpoint.py``); ``export`` writes a folder that serves
the app without torch (``folder_export.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sketchlvm.arguments import add_model_arguments
from sketchlvm.config import ModelConfig


def checkpoint_main(argv: list[str] | None = None) -> int:
    from sketchlvm.model.checkpoint import CheckpointMismatchError, load_checkpoint, merge_checkpoints

    parser = argparse.ArgumentParser(prog="python -m sketchlvm checkpoint", description="Inspect or merge checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print a checkpoint's metadata and tensor sizes")
    info.add_argument("path")
    merge = sub.add_parser("merge", help="combine the modes of several checkpoints into one file for the app")
    merge.add_argument("out")
    merge.add_argument("inputs", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            ckpt = load_checkpoint(args.path)
            print(json.dumps({k: v for k, v in ckpt.metadata.items() if k != "training"}, indent=2))
            for mode, state in ckpt.states.items():
                print(f"{mode}: {len(state)} tensors, {sum(t.numel() for t in state.values()):,} parameters")
        else:
            print(f"wrote {merge_checkpoints(args.out, args.inputs)}")
    except (FileNotFoundError, CheckpointMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def export_parser() -> argparse.ArgumentParser:
    defaults = ModelConfig()
    parser = argparse.ArgumentParser(
        prog="sketchlvm export",
        description="Write one folder that serves the app without torch: the sketch and photo graphs of each mode "
        "(trained prompts baked in), the text graph, the tokenizer, the preprocessing and the identity gallery "
        "indexes are keyed by. Serve it with `python app.py --model FOLDER --gallery DIR` on either install; upload "
        "it with `hf upload USER/REPO FOLDER .` and serve it as --model hf://USER/REPO.",
    )
    parser.add_argument("--out", required=True, metavar="FOLDER", help="the export folder (replaced when it is one)")
    # No --device or --runtime: graphs are exported from the CPU model and checked on ONNX Runtime.
    add_model_arguments(parser, with_device=False, defaults={"pretrained": defaults.pretrained},
                        checkpoint_help="trained prompts to bake in (a SketchLVM checkpoint: .safetensors, or "
                        "hf://USER/REPO/FILE)")
    return parser


def export_main(argv: list[str] | None = None) -> int:
    args = export_parser().parse_args(argv)
    from sketchlvm.config import configure_cli_logging
    from sketchlvm.hub import HubUnavailableError
    from sketchlvm.model.folder_export import ExportError, write_export
    from sketchlvm.model.loader import model_from_args
    from sketchlvm.model.weights import WeightsUnavailableError

    configure_cli_logging()
    try:
        model = model_from_args(args, device="cpu", text=True, runtime="onnx", exports=False)
        manifest = write_export(model, args.out)
    except (ExportError, WeightsUnavailableError, HubUnavailableError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out).expanduser().resolve()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"exported {manifest['arch']} ({manifest['weights']['label']}) to {out}: {size / 1e6:.1f} MB")
    for relpath, graph in sorted(manifest["graphs"].items()):
        print(f"  {relpath}: {graph['checked']}")
    print(f"serve it:  python app.py --model {out} --gallery DIR   (pip install -r requirements-serve.txt is enough)")
    print(f"share it:  hf upload USER/REPO {out} .   then --model hf://USER/REPO")
    return 0
