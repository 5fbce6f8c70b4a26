"""The ``sketchlvm`` command: one entry point, one subcommand per tool (``sketchlvm index build DIR``).

Each subcommand's own module parses its flags, so ``sketchlvm SUB --help`` is that tool's help. Nothing heavy
is imported before a subcommand is chosen: ``sketchlvm --help`` answers at once.
"""

from __future__ import annotations

import sys
from importlib import import_module

# name -> ("package.cli:function" taking argv, one line of help). Every entry point is in a cli.py module.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "app": ("sketchlvm.webapp.cli:main", "serve the drawing app for a gallery (the same as python app.py)"),
    "index": ("sketchlvm.gallery.cli:main", "build or inspect a gallery's index"),
    "train": ("sketchlvm.training.cli:main", "train the prompts on a sketch-photo dataset"),
    "evaluate": ("sketchlvm.evaluation.cli:main", "score a model on a ZS-SBIR benchmark"),
    "partial": ("sketchlvm.evaluation.partial.cli:main", "score retrieval from partial (unfinished) sketches"),
    "cluster": ("sketchlvm.cluster.cli:main", "embed a very large gallery on a Ray cluster, then merge it"),
    "checkpoint": ("sketchlvm.model.cli:checkpoint_main", "inspect or merge checkpoints"),
    "export": ("sketchlvm.model.cli:export_main", "write a folder that serves the app without torch (ONNX Runtime only)"),
}


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    return ("usage: sketchlvm SUBCOMMAND [ARGS...]   (or: python -m sketchlvm SUBCOMMAND ...)\n\n"
            "Zero-shot sketch-based image retrieval: draw something, get the matching photos back.\n\n"
            "subcommands:\n" + "\n".join(lines) + "\n\n'sketchlvm SUBCOMMAND --help' shows a subcommand's options.")


def run(name: str, argv: list[str]) -> int:
    """Run one subcommand with its own arguments; its exit status (0 when it returns None)."""
    module_name, function_name = SUBCOMMANDS[name][0].split(":")
    entry = getattr(import_module(module_name), function_name)
    if name == "app":
        return entry(argv, prog="sketchlvm app") or 0
    return entry(argv) or 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from sketchlvm import __version__

        print(f"sketchlvm {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"sketchlvm: unknown subcommand {name!r}; choose one of: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    return run(name, rest)
