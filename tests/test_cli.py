"""The ``sketchlvm`` command and its subcommands: every command
the README and docs/ show answers ``--help``, so the documentation cannot drift from the code unnoticed."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sketchlvm import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NESTED = {"index", "cluster", "checkpoint"}  # subcommands with sub-subcommands of their own


def _code_lines() -> list[str]:
    lines = []
    for doc in DOCS:
        inside = False
        for line in doc.read_text().splitlines():
            if line.lstrip().startswith("```"):
                inside = not inside
            elif inside or (line.startswith("    ") and line.strip().startswith(("sketchlvm ", "python "))):
                lines.append(line.strip())  # fenced, or a Markdown indented code block
    return lines


def _documented_prefixes() -> set[tuple[str, ...]]:
    """('sketchlvm', 'index', 'build') for every `sketchlvm index build ...` line in the docs' code blocks, and
    the same for `python -m sketchlvm ...` and `python app.py ...`."""
    found = set()
    for line in _code_lines():
        line = re.sub(r"^\$ ", "", line).split("#")[0].rstrip(" \\")
        if line.startswith("python -m sketchlvm "):
            line = "sketchlvm " + line[len("python -m sketchlvm "):]
        words = line.split()
        if words[:2] == ["python", "app.py"]:
            found.add(("python", "app.py"))
        elif words[:1] == ["sketchlvm"] and len(words) > 1:
            depth = 3 if words[1] in NESTED and len(words) > 2 and not words[2].startswith("-") else 2
            found.add(tuple(words[:depth]))
    return found


def test_the_docs_show_every_subcommand():
    shown = {p[1] for p in _documented_prefixes() if p[0] == "sketchlvm"}
    assert set(cli.SUBCOMMANDS) - {"export"} <= shown, sorted(set(cli.SUBCOMMANDS) - shown)


@pytest.mark.parametrize("prefix", sorted(p for p in _documented_prefixes() if p[0] == "sketchlvm"), ids=" ".join)
def test_every_documented_command_answers_help(prefix, capsys):
    assert prefix[1] in cli.SUBCOMMANDS, f"the docs show `{' '.join(prefix)}`, which is no subcommand"
    with pytest.raises(SystemExit) as stopped:
        cli.main([*prefix[1:], "--help"])
    assert stopped.value.code in (0, None)
    out = capsys.readouterr().out
    assert "usage:" in out and "--help" in out, out


def test_python_app_py_help_runs_as_written():
    done = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "--gallery" in done.stdout


def test_python_m_sketchlvm_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "sketchlvm", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    for name in cli.SUBCOMMANDS:
        assert name in done.stdout


def test_the_old_module_commands_are_gone():
    done = subprocess.run([sys.executable, "-m", "sketchlvm.index", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "No module named sketchlvm.index" in done.stderr


def test_every_entry_point_lives_in_a_cli_module():
    for name, (target, _) in cli.SUBCOMMANDS.items():
        module, function = target.split(":")
        assert module.endswith(".cli"), f"sketchlvm {name} starts in {module}, not a cli.py"
        assert callable(getattr(__import__(module, fromlist=[function]), function))
    defined = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "sketchlvm").rglob("*.py")
                     if p.name not in ("cli.py", "__main__.py") and re.search(r"^def main\(", p.read_text(), re.M))
    assert not defined, f"main() outside a cli.py: {defined}"


def test_unknown_subcommand_is_one_line_and_exit_2(capsys):
    assert cli.main(["nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "index" in err


def test_console_script_points_at_the_command():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["sketchlvm"] == "sketchlvm.cli:main"
    names = {re.split(r"[<>=\[ ]", dep)[0].lower() for dep in project["dependencies"]}
    pinned = {re.split(r"[<>=\[ ]", line)[0].lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line and not line.startswith(("#", "-"))}
    assert pinned <= names, f"pinned in requirements.txt but not declared in pyproject.toml: {sorted(pinned - names)}"
