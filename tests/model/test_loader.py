"""One model loader and one set of model flags (issue 25, item 1): every command that loads a model defines
--model/--pretrained/--checkpoint (and --device/--runtime where it has them) through
``arguments.add_model_arguments``, and loads through ``model/loader.py``: an export folder or an
architecture, each refused with the fix where the command cannot run it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from sketchlvm.arguments import add_model_arguments
from sketchlvm.config import TINY_ARCH
from sketchlvm.model.loader import load_model, model_from_args
from sketchlvm.runtime.folder_runtime import ExportUnavailableError

ROOT = Path(__file__).resolve().parents[2]
FLAG = re.compile(r"""add_argument\(\s*["']--(model|pretrained|checkpoint|device|runtime)["']""")
pytestmark = pytest.mark.usefixtures("isolated_runtime")


def test_no_command_defines_the_model_flags_itself():
    """The flags have one definition, in arguments.py (training/ keeps its own: a run's config, not a model to load)."""
    found = []
    for path in sorted((ROOT / "sketchlvm").rglob("*.py")):
        if path.name == "arguments.py" or "training" in path.parts:
            continue
        found += [f"{path.relative_to(ROOT)}: --{m}" for m in FLAG.findall(path.read_text())]
    assert found == []


def _help(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_help().split())


def test_each_command_keeps_its_model_flags_and_their_meaning():
    from sketchlvm.cluster.cli import _parser as cluster_parser
    from sketchlvm.evaluation.cli import _parser as evaluate_parser
    from sketchlvm.evaluation.partial.cli import _parser as partial_parser
    from sketchlvm.gallery.cli import _parser as index_parser
    from sketchlvm.model.cli import export_parser
    from sketchlvm.webapp.cli import build_parser

    def sub(parser, name):
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return action.choices[name]

    parsers = {"app": build_parser(), "index build": sub(index_parser(), "build"), "export": export_parser(),
               "cluster embed": sub(cluster_parser(), "embed"), "cluster merge": sub(cluster_parser(), "merge"),
               "evaluate": evaluate_parser(), "partial": partial_parser()}
    for name, parser in parsers.items():
        text = _help(parser)
        for flag in ("--model", "--pretrained", "--checkpoint"):
            assert flag in text, (name, flag)
        assert "zero-shot CLIP" in text and "open_clip architecture" in text, name
        assert ("--device" in text) == (name not in ("export", "cluster embed")), name
        assert ("--runtime" in text) == (name in ("app", "index build")), name
        assert ("EXPORT_FOLDER" in text) == (name in ("app", "index build")), name  # export folders as --model
    assert "[SKETCHLVM_MODEL]" in _help(parsers["app"]) and "[SKETCHLVM_MODEL]" not in _help(parsers["index build"])
    assert "bake in" in _help(parsers["export"])
    # Defaults kept: the app and export load openai unless told; elsewhere the checkpoint's recorded tag decides.
    assert parsers["app"].parse_args([]).pretrained == parsers["export"].parse_args(["--out", "x"]).pretrained == "openai"
    assert parsers["index build"].parse_args(["DIR"]).pretrained is None
    assert parsers["index build"].parse_args(["DIR"]).runtime is None  # then $SKETCHLVM_RUNTIME, else auto


def test_the_loader_takes_an_architecture_or_an_export_folder(tmp_path):
    from serving_export import make_export

    from sketchlvm.model.factory import SketchLVM
    from sketchlvm.model.folder_model import ExportedSketchLVM

    parser = argparse.ArgumentParser()
    add_model_arguments(parser, exports=True, with_runtime=True)
    torch_model = model_from_args(parser.parse_args(["--model", TINY_ARCH, "--pretrained", "none", "--device", "cpu",
                                                     "--runtime", "torch"]), text=True)
    assert isinstance(torch_model, SketchLVM) and torch_model.runtime.name == "torch"
    assert torch_model.text_tower is not None
    folder = make_export(tmp_path / "export")
    served = model_from_args(parser.parse_args(["--model", str(folder)]))
    assert isinstance(served, ExportedSketchLVM) and served.runtime.name == "onnx"
    with pytest.raises(ExportUnavailableError, match="prompts are baked"):
        load_model(folder, checkpoint="x.safetensors")
    with pytest.raises(ExportUnavailableError, match="runs the torch model.*architecture and --checkpoint"):
        load_model(folder, exports=False)
