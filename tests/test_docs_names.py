"""Every ``sketchlvm.…`` dotted name in README.md and docs/*.md imports (issue 29, item 9): a module that moves
cannot leave a stale reference in the documentation again."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A dotted name ending in one of these is a file name (sketchlvm.json in an export folder), not Python.
FILE_SUFFIXES = {"json", "py", "md", "onnx", "safetensors", "txt", "toml", "yaml", "yml", "npz", "pt"}
NAME = re.compile(r"(?<![\w/.-])sketchlvm(?:\.[A-Za-z_]\w*)+")


def _names() -> list[tuple[str, str]]:
    found = set()
    for doc in DOCS:
        for name in NAME.findall(doc.read_text(encoding="utf-8")):
            if name.rsplit(".", 1)[1] not in FILE_SUFFIXES:
                found.add((doc.name, name))
    return sorted(found)


def _resolve(name: str) -> object:
    """Import the longest module prefix of ``name``, then look the rest up as attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as error:
            if error.name is None or not ".".join(parts[:cut]).startswith(error.name):
                raise  # the module exists but one of its own imports is missing
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(name)


def test_the_documents_name_some_modules():
    assert len(_names()) >= 3  # the scan itself works


@pytest.mark.parametrize("doc, name", _names())
def test_every_dotted_name_in_the_docs_imports(doc, name):
    try:
        _resolve(name)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{doc} names {name}, which does not import: {error}")
