"""One way to configure: every ``SKETCHLVM_*`` variable is read by ``sketchlvm.config.settings`` only, docs/app.md
has the one table of them, and the package cites only files that ship with the repository."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import app as app_module
from sketchlvm.config import ENV_PREFIX, Settings, env_var, settings, settings_table

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sketchlvm"
CONFIG = PACKAGE / "config.py"
APP_DOC = ROOT / "docs" / "app.md"
TABLE_HEADER = settings_table().splitlines()[0]
FIELDS = dataclasses.fields(Settings)


def _package_files() -> list[Path]:
    """The package's source files (not what runs make: bytecode, or the .pyi stub Gradio writes beside a component)."""
    return sorted(path for path in PACKAGE.rglob("*") if path.is_file() and "__pycache__" not in path.parts
                  and path.suffix != ".pyi")


def _docs_table() -> str:
    lines = APP_DOC.read_text(encoding="utf-8").splitlines()
    assert TABLE_HEADER in lines, f"docs/app.md has no table of the variables (header {TABLE_HEADER!r})"
    start = lines.index(TABLE_HEADER)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[start:end]) + "\n"


def test_variables_are_named_only_in_the_settings():
    """A variable named elsewhere is a variable read elsewhere (or a name that a rename would miss): messages
    and help name it through ``env_var``."""
    offenders = []
    for path in [*_package_files(), ROOT / "app.py"]:
        if path == CONFIG:
            continue
        for number, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1):
            if ENV_PREFIX in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "read the variable through sketchlvm.config.settings():\n" + "\n".join(offenders)


def test_the_docs_table_is_the_settings():
    table = _docs_table()
    documented = set(re.findall(rf"^\| `({ENV_PREFIX}[A-Z0-9_]+)", table, flags=re.MULTILINE))
    fields = {env_var(spec.name) for spec in FIELDS}
    assert documented == fields, (f"in docs/app.md, not in Settings: {sorted(documented - fields)}; "
                                  f"in Settings, not in docs/app.md: {sorted(fields - documented)}")
    assert table == settings_table(), ("docs/app.md's table differs from the Settings: paste the output of python -c "
                                       "'from sketchlvm.config import settings_table; print(settings_table())'")


def test_no_other_doc_lists_the_variables():
    """Other pages mention a variable in passing and link to docs/app.md; none keeps a table of them."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if path == APP_DOC:
            continue
        rows = [line for line in path.read_text(encoding="utf-8").splitlines()
                if re.match(rf"\s*\| `{ENV_PREFIX}", line)]
        assert not rows, f"{path.relative_to(ROOT)} has its own table of variables: link to docs/app.md instead\n{rows}"


def test_every_setting_has_a_meaning_and_its_flag_exists():
    options = {option: action for action in app_module.build_parser()._actions for option in action.option_strings}
    for spec in FIELDS:
        assert spec.metadata["meaning"] and "\n" not in spec.metadata["meaning"], spec.name
        flag = spec.metadata["flag"]
        if flag is not None:
            assert flag in options, f"Settings.{spec.name} names the flag {flag}, which the app does not have"
            assert env_var(spec.name) in (options[flag].help or ""), f"{flag}'s help does not name its variable"


def test_unset_or_empty_variables_leave_the_defaults():
    assert settings({}) == Settings()
    assert settings({env_var(spec.name): "" for spec in FIELDS}) == Settings()
    assert settings({}).top_k == "12" and settings({}).pretrained == "openai" and settings({}).runtime == "auto"


def test_values_are_read_as_the_app_always_read_them():
    environ = {env_var("gallery"): "/photos", env_var("top_k"): "zero", env_var("galleries_dir"): "~/indexes",
               env_var("demo"): " Yes ", env_var("share"): "0", env_var("hf_sign_in"): "on",
               "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "8080"}
    read = settings(environ)
    assert read.gallery == "/photos"
    assert read.top_k == "zero"  # text: the flag's parser refuses it, as it refuses the flag
    assert read.galleries_dir == Path("~/indexes").expanduser()
    assert (read.demo, read.share, read.hf_sign_in) == (True, False, True)
    assert (read.host, read.port) == ("0.0.0.0", "8080")  # Gradio's own variables when ours are unset
    environ.update({env_var("host"): "127.0.0.2", env_var("port"): "9000"})
    assert (settings(environ).host, settings(environ).port) == ("127.0.0.2", "9000")


def test_settings_are_read_when_asked_not_at_import(monkeypatch):
    from sketchlvm.runtime.onnx_sessions import requested_runtime

    monkeypatch.setenv(env_var("runtime"), "torch")
    assert settings().runtime == "torch" and requested_runtime() == "torch"
    monkeypatch.setenv(env_var("runtime"), "onnx")
    assert requested_runtime() == "onnx"
    assert requested_runtime("auto") == "auto"  # the argument (a flag) wins
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings().runtime = "torch"  # type: ignore[misc]


def test_env_var_refuses_an_unknown_setting():
    with pytest.raises(KeyError, match="no setting 'runtimes'"):
        env_var("runtimes")


def test_the_package_cites_only_files_in_the_repository():
    """Notes outside the repository (../shared) are not shipped: state the fact, or point to docs/."""
    offenders = []
    for path in [*_package_files(), ROOT / "app.py"]:
        text = path.read_bytes().decode("utf-8", "replace")
        for number, line in enumerate(text.splitlines(), 1):
            if "shared/" in line or "NOTES.md" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
