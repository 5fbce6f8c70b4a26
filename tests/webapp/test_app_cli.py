"""The app's command line answers fast and truthfully: nothing heavy is imported before the arguments
are parsed and the port is checked; a port in use, a file given as the gallery and an oversized sketch
each get one true message.

Speed is checked as import work, not wall time: after ``--help``, a wrong flag or a busy port, none of
the heavy libraries (gradio, torch, numpy, PIL, open_clip, faiss, onnxruntime) may be in ``sys.modules``.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("gradio", "torch", "numpy", "PIL", "open_clip", "faiss", "onnxruntime", "fastapi", "huggingface_hub")

DRIVER = """
import json, sys
sys.path.insert(0, {root!r})
import app
try:
    code = app.main({argv!r})
except SystemExit as exit:
    code = exit.code
print(json.dumps({{"code": code, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def run_main(argv: list[str]) -> tuple[dict, str]:
    """app.main(argv) in a fresh interpreter -> ({code, heavy modules imported}, stderr)."""
    code = DRIVER.format(root=str(ROOT), argv=argv, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    last = done.stdout.strip().splitlines()[-1]
    return json.loads(last), done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["--top-k", "0"], ["--port", "99999"], ["--share", "--nonsense"]])
def test_help_and_wrong_flags_import_nothing_heavy(argv):
    result, stderr = run_main(argv)
    assert result["code"] == (0 if argv == ["--help"] else 2), (result, stderr)
    assert result["heavy"] == [], f"{argv}: imported {result['heavy']} before answering"


def test_a_port_in_use_is_one_line_naming_port_before_anything_loads():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result, stderr = run_main(["--port", str(port), "--pretrained", "none"])
    assert result["code"] == 2
    assert result["heavy"] == [], f"imported {result['heavy']} before checking the port"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "--port" in lines[0] and str(port) in lines[0] and "in use" in lines[0], stderr
    assert "Traceback" not in stderr


def test_python_app_py_help_runs_as_a_script():
    done = subprocess.run([sys.executable, "app.py", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          check=False)
    assert done.returncode == 0 and "--port" in done.stdout and "--gallery" in done.stdout, done.stderr


def test_a_file_given_as_the_gallery_is_called_a_file(tmp_path, capsys):
    import app as app_module

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"not a folder")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = app_module.main(["--gallery", str(photo), "--model", "SketchLVM-Tiny", "--pretrained", "none",
                            "--device", "cpu", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and "is a file, not a folder" in err and "does not exist" not in err, err


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def test_an_oversized_sketch_is_refused_for_its_size_only(tmp_path, monkeypatch):
    """12000 x 12000: the pop-up and the message both give the size as the reason, and nothing else."""
    from sketchlvm.webapp import handlers

    header = struct.pack(">IIBBBBB", 12000, 12000, 8, 0, 0, 0, 0)
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\x00"))
                    + _chunk(b"IEND", b""))
    popups = []
    monkeypatch.setattr(handlers.gr, "Warning", lambda text, *a, **k: popups.append(text))
    fitted, message = handlers.read_sketch_upload(str(big))
    assert fitted is None
    assert "over the limit" in message and "over the limit" in popups[0], (message, popups)
    for text in (message, *popups):
        assert "not an image we can read" not in text and str(tmp_path) not in text, text


def test_the_no_gallery_help_names_the_folder_where_indexes_are_kept(tmp_path, monkeypatch):
    from sketchlvm.webapp.app_state import no_gallery_help

    monkeypatch.setenv("SKETCHLVM_GALLERIES_DIR", str(tmp_path / "indexes"))
    text = no_gallery_help()
    assert str(tmp_path / "indexes") in text and "`galleries/`" not in text, text


def test_index_build_of_an_empty_folder_says_so_and_fails(tmp_path, monkeypatch, capsys):
    from sketchlvm.gallery.cli import main as index_main

    monkeypatch.setenv("SKETCHLVM_GALLERIES_DIR", str(tmp_path / "galleries"))
    empty = tmp_path / "photos"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        index_main(["build", str(empty), "--model", "SketchLVM-Tiny", "--pretrained", "none", "--device", "cpu",
                    "--quiet"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "has no usable photos" in err and ".jpg" in err and "Traceback" not in err, err


def test_the_report_module_says_it_is_not_a_command():
    done = subprocess.run([sys.executable, "-m", "sketchlvm.evaluation.report", "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 2 and "sketchlvm evaluate" in done.stderr, (done.returncode, done.stderr)
