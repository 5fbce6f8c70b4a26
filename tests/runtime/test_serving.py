"""The serving install: the whole app on an export folder with ONNX Runtime only, torch never imported.

Runs in both environments. In CI's serving environment (requirements-serve.txt, ``$SKETCHLVM_SERVE_ENV``)
``import torch`` fails, and the export comes from the full install (``$SKETCHLVM_TEST_EXPORT``); in the
full install the same code runs in a subprocess that refuses to import torch, torchvision or open_clip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import run_at_once
from serving_export import export_folder_fixture

from sketchlvm.model.folder_model import MANIFEST, load_export
from sketchlvm.runtime.folder_runtime import ExportUnavailableError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Imported first in the subprocesses: torch, torchvision and open_clip cannot be imported after it.
BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc, sys
    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "open_clip"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, _NoTorch())
""")


@pytest.fixture(scope="module")
def export_folder(tmp_path_factory) -> Path:
    return export_folder_fixture(tmp_path_factory)


@pytest.fixture
def gallery(sketchy_root, tmp_path) -> Path:
    from conftest import copy_class_photos

    return copy_class_photos(sketchy_root, tmp_path / "gallery", ("airplane", "cat", "cow"), 3)


def _run_without_torch(code: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python where torch cannot be imported (as in the serving install)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, cwd=PROJECT_ROOT, timeout=timeout)


@pytest.mark.skipif(not os.environ.get("SKETCHLVM_SERVE_ENV"), reason="only in the serving environment (.ci/run)")
def test_the_serving_environment_has_no_torch():
    for name in ("torch", "torchvision", "open_clip"):
        with pytest.raises(ImportError):
            __import__(name)


def test_the_app_serves_an_export_without_torch(export_folder, gallery, tmp_path):
    """Sketch and photo queries, words, more like this and incremental background indexing, torch never imported."""
    code = f"""
        import json, shutil, sys
        from pathlib import Path
        from PIL import Image, ImageDraw
        from sketchlvm.webapp.cli import build_parser, prepare

        gallery = Path({str(gallery)!r})
        args = build_parser().parse_args(["--model", {str(export_folder)!r}, "--gallery", str(gallery)])
        state = prepare(args)
        first = state.indexer.wait()
        searcher = state.searcher
        out = {{"first": first.state, "photos": len(searcher), "runtime": searcher.model.describe()["runtime"]}}
        sketch = Image.new("RGB", (256, 256), "white")
        ImageDraw.Draw(sketch).line((30, 200, 128, 40, 226, 200, 30, 200), fill="black", width=6)
        for mode in ("category", "fine_grained"):
            out[mode] = [r.relpath for r in searcher.search(sketch, mode, 4)]
            out[mode + " words"] = [r.relpath for r in searcher.search(sketch, mode, 4, text="a cow in a field")]
            out[mode + " words only"] = [r.relpath for r in searcher.search(None, mode, 4, text="airplane")]
            out[mode + " like"] = [r.relpath for r in searcher.search_like(out[mode][0], mode, 4)]
            photo = gallery / out[mode][0]
            out[mode + " photo"] = [(r.relpath, r.score) for r in searcher.search_photo(str(photo), mode, 1)]
        # A new photo while serving: the background indexer adds it; nothing else is re-embedded.
        new = gallery / "cat" / "new.jpg"
        shutil.copy2(next(p for p in sorted((gallery / "airplane").glob("*.jpg"))), new)
        state.indexer.rebuild()
        second = state.indexer.wait()
        out["second"] = second.state
        out["photos after"] = len(searcher)
        out["like new"] = [r.relpath for r in searcher.search_like("cat/new.jpg", "category", 2)]
        out["torch"] = [m for m in ("torch", "torchvision", "open_clip") if m in sys.modules]
        state.indexer.stop(timeout=5)
        print("RESULT" + json.dumps(out))
    """
    done = _run_without_torch(code, {"SKETCHLVM_GALLERIES_DIR": str(tmp_path / "galleries")})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.split("RESULT", 1)[1])
    assert out["torch"] == []
    assert out["first"] == "done" and out["photos"] == 9
    assert "exported graphs (no torch)" in out["runtime"] and "text tower on ONNX Runtime fp32" in out["runtime"]
    for mode in ("category", "fine_grained"):
        assert len(out[mode]) == 4 and len(out[mode + " words"]) == 4 and len(out[mode + " words only"]) == 4
        assert out[mode + " like"][0] == out[mode][0]  # more like this: the photo itself first
        (relpath, score), = out[mode + " photo"]
        assert relpath == out[mode][0] and score > 0.9999  # a gallery photo uploaded again finds itself
    assert out["category words"] != out["category"] or out["fine_grained words"] != out["fine_grained"]
    assert out["second"] == "done" and out["photos after"] == 10
    assert out["like new"][0] == "cat/new.jpg"


def test_serving_install_errors_name_the_fix(export_folder, tmp_path):
    """Without torch: an open_clip architecture, --runtime torch, or a checkpoint on an export say what to do."""
    cases = {
        ("--gallery", str(tmp_path)): "serves export folders only",
        ("--model", str(export_folder), "--runtime", "torch"): "--runtime torch needs torch",
        ("--model", str(export_folder), "--runtime", "onnx-int8"): "needs the full install",
        ("--model", str(export_folder), "--checkpoint", "x.safetensors"): "prompts are baked",
        ("--model", str(tmp_path)): "serves export folders only",  # not an export: taken as an architecture
        ("--model", str(export_folder), "--device", "cuda"): "needs torch",
    }
    code = f"""
        import contextlib, io, json, sys
        from sketchlvm.webapp.cli import main
        found = []
        for argv in {[list(argv) for argv in cases]!r}:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    status = main(argv)
                except SystemExit as exit:  # argparse refusing a flag
                    status = exit.code
            found.append((status, err.getvalue()))
        print("RESULT" + json.dumps(found))
    """
    done = _run_without_torch(code, {"SKETCHLVM_GALLERIES_DIR": str(tmp_path / "galleries")})
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.split("RESULT", 1)[1])
    for (argv, message), (status, stderr) in zip(cases.items(), found):  # noqa: B905
        assert status == 2, (argv, stderr[-2000:])
        assert "Traceback" not in stderr and message in stderr, (argv, stderr[-1000:])


def test_word_queries_use_the_exported_tokenizer(export_folder):
    model = load_export(export_folder)
    tower = model.text_tower
    assert type(tower.tokenizer).__name__ == "ClipTokenizer" and tower.clip_model is None
    short = tower.query("red")
    assert not short.truncated and short.tokens == len(tower.tokenizer.encode("a photo of red.")) + 2
    long = tower.query("ox " * 90)  # 270 characters, 90 words: over CLIP's 77 tokens
    assert long.truncated and long.note() and 60 < len(tower.tokenizer.encode(long.used)) <= tower.context_length - 2
    vector = model.encode_text("a red cat")
    assert vector.shape == (model.runtime.encode_text(tower.tokenizer(["a photo of x."])).shape[1],)
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5


def test_an_incomplete_or_foreign_folder_is_refused_with_the_fix(export_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(export_folder, broken)
    (broken / "textual" / "model.onnx").unlink()
    with pytest.raises(ExportUnavailableError, match=r"textual/model.onnx is missing.*sketchlvm export"):
        load_export(broken)
    future = tmp_path / "future"
    shutil.copytree(export_folder, future)
    manifest = json.loads((future / MANIFEST).read_text())
    (future / MANIFEST).write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(ExportUnavailableError, match="export it again"):
        load_export(future)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportUnavailableError, match="not an export folder"):
        load_export(tmp_path / "empty")


def test_an_export_loads_back_from_the_hub_cache(export_folder, tmp_path, monkeypatch):
    """``--model hf://USER/REPO``: the folder as `hf upload` puts it in a model repository, read from the
    Hugging Face cache offline (the layout huggingface_hub's snapshot_download reads)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--sketchlvm-tiny"
    shutil.copytree(export_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = load_export("hf://someone/sketchlvm-tiny")
    local = load_export(export_folder)
    assert model.folder == (repo / "snapshots" / commit).resolve()
    assert model.identity("category") == local.identity("category")
    sketch = np.full((1, 3, model.image_size, model.image_size), 0.5, np.float32)
    np.testing.assert_allclose(model.encode_tensors(sketch, "sketch", "category"),
                               local.encode_tensors(sketch, "sketch", "category"), atol=1e-6)


def test_one_session_per_graph_words_when_first_used_and_concurrent_answers(export_folder, sketchy_root):
    """Issue 30 on the serving install: queries and index slices share each graph's session (a config that
    gives the roles different threads gets one per role: the same vectors, to 1e-6), the text graph opens
    on the first words, and the app's threads running at once on the shared sessions answer correctly."""

    from PIL import Image

    from sketchlvm.config import RuntimeConfig

    sketches = [Image.open(p).convert("RGB") for p in sorted((sketchy_root / "sketch" / "cat").glob("*.png"))[:3]]
    photos = [Image.open(p).convert("RGB") for p in sorted((sketchy_root / "photo" / "cow").glob("*.jpg"))[:5]]
    model = load_export(export_folder)
    separate = load_export(export_folder, runtime_config=RuntimeConfig(index_threads=1))
    image_graphs = len(set(model.runtime.graphs.values()))
    jobs = {"sketch": lambda m: m.encode_sketches(sketches, "category"),
            "photo": lambda m: m.encode_photos(photos, "category"),
            "shared": lambda m: m.encode_photos(photos, "fine_grained"),
            "shared sketch": lambda m: m.encode_sketches(sketches, "fine_grained"),  # one graph, both roles
            "words": lambda m: m.runtime.encode_text(m.text_tower.tokenizer(["a cat", "a cow in a field"]))}
    expected = {kind: job(model) for kind, job in jobs.items() if kind != "words"}
    assert model.runtime._onnx.open_sessions() == image_graphs  # no text graph yet
    expected["words"] = jobs["words"](model)
    assert model.runtime._onnx.open_sessions() == image_graphs + 1
    for kind, job in jobs.items():
        np.testing.assert_allclose(job(separate), expected[kind], atol=1e-6, rtol=0, err_msg=kind)
    assert separate.runtime._onnx.open_sessions() == image_graphs + 2  # fine_grained's graph once per role

    kinds = ("sketch", "photo", "words", "shared", "shared sketch")
    found = run_at_once([(kind, lambda kind=kind: jobs[kind](model)) for kind in kinds], repeat=3)
    for kind, out in found:
        np.testing.assert_allclose(out, expected[kind], atol=1e-6, rtol=0, err_msg=kind)
    assert model.runtime._onnx.open_sessions() == image_graphs + 1
