"""hf:// checkpoints and galleries, offline, from a Hugging Face cache laid out as huggingface_hub lays it
out (<type>s--USER--REPO/{refs/main, snapshots/<commit>/..., blobs/<sha256>}), and the errors when a file
is neither cached nor downloadable."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from sketchlvm import create_sketchlvm
from sketchlvm.model.checkpoint import file_sha256
from sketchlvm.config import TINY_ARCH, IndexConfig
from sketchlvm.hub import HubUnavailableError, is_hub_path, resolve_file, resolve_folder, serving_root
from sketchlvm.gallery import build_gallery_index
from sketchlvm.gallery.cli import main as cli_main

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CHECKPOINT_URI = "hf://alice/sketchlvm-prompts/ckpt/sketchy.safetensors"
GALLERY_URI = "hf://datasets/alice/sketch-photos/gallery"


def _cache_repo(cache: Path, repo_type: str, repo_id: str, files: dict[str, Path], commit: str = COMMIT) -> Path:
    """Lay ``files`` (path in repo -> source file) out the way hf_hub_download leaves them; the snapshot."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for name, source in files.items():
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline (huggingface_hub reads both at import: patch its constants)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SKETCHLVM_GALLERIES_DIR", str(tmp_path / "galleries"))
    return cache


@pytest.fixture
def checkpoint_file(tmp_path):
    from tiny_checkpoint import _metadata, _trained_states

    from sketchlvm.model.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path / "trained" / "sketchy.safetensors", _trained_states(), _metadata())


def _photos(sketchy_root: Path, n_classes: int = 2, per_class: int = 3) -> dict[str, Path]:
    classes = sorted(p.name for p in (sketchy_root / "photo").iterdir() if p.is_dir())[:n_classes]
    return {f"gallery/{c}/{p.name}": p
            for c in classes for p in sorted((sketchy_root / "photo" / c).glob("*.jpg"))[:per_class]}


def test_checkpoint_from_the_cache_loads_into_the_model(hf_cache, checkpoint_file):
    snapshot = _cache_repo(hf_cache, "model", "alice/sketchlvm-prompts", {"ckpt/sketchy.safetensors": checkpoint_file})
    path = resolve_file(CHECKPOINT_URI)
    assert path == snapshot / "ckpt/sketchy.safetensors" and file_sha256(path) == file_sha256(checkpoint_file)
    assert resolve_file(f"hf://alice/sketchlvm-prompts@{COMMIT}/ckpt/sketchy.safetensors") == path  # pinned
    assert resolve_file("hf://models/alice/sketchlvm-prompts/ckpt/sketchy.safetensors") == path  # explicit type

    model = create_sketchlvm(TINY_ARCH, "none", CHECKPOINT_URI, device="cpu")  # the factory resolves it
    local = create_sketchlvm(TINY_ARCH, "none", checkpoint_file, device="cpu")
    assert model.trained_modes() == ["category", "fine_grained"]
    assert model.identity("category") == local.identity("category")  # same file, same index identity
    assert resolve_file(checkpoint_file) == checkpoint_file and not is_hub_path(str(checkpoint_file))


def test_gallery_from_a_dataset_snapshot_is_indexed(hf_cache, sketchy_root, tmp_path):
    files = _photos(sketchy_root)
    snapshot = _cache_repo(hf_cache, "dataset", "alice/sketch-photos", {**files, "README.md": files[next(iter(files))]})
    folder = resolve_folder(GALLERY_URI)
    assert folder == snapshot / "gallery"
    assert resolve_folder("hf://datasets/alice/sketch-photos") == snapshot  # the whole repository
    model = create_sketchlvm(TINY_ARCH, "none", device="cpu")
    index = build_gallery_index(folder, model, tmp_path / "index", IndexConfig(batch_size=4), show_progress_bar=False)
    assert sorted(p.relpath for p in index.photos) == sorted(name.removeprefix("gallery/") for name in files)
    assert {p.label for p in index.photos} == {name.split("/")[1] for name in files}
    assert all(index.path_of(i).is_file() for i in range(len(index)))  # symlinks into blobs/ are followed
    # A server that resolves symlinks must allow the repository's cache folder, not only the snapshot.
    root = serving_root(folder)
    assert root == snapshot.parent.parent and not index.path_of(0).resolve().is_relative_to(folder)
    assert all(index.path_of(i).resolve().is_relative_to(root) for i in range(len(index)))
    assert serving_root(tmp_path) == tmp_path


def test_missing_files_name_the_repository_and_the_fix(hf_cache, checkpoint_file):
    with pytest.raises(HubUnavailableError) as info:
        resolve_file(CHECKPOINT_URI)
    message = str(info.value)
    for needed in (CHECKPOINT_URI, "model repository alice/sketchlvm-prompts", "'ckpt/sketchy.safetensors'",
                   "not in the Hugging Face cache", str(hf_cache), "HF_HUB_OFFLINE is set",
                   "`hf download alice/sketchlvm-prompts ckpt/sketchy.safetensors`", "local path"):
        assert needed in message, message
    with pytest.raises(HubUnavailableError, match="not in the Hugging Face cache"):
        create_sketchlvm(TINY_ARCH, "none", CHECKPOINT_URI, device="cpu")

    with pytest.raises(HubUnavailableError) as info:
        resolve_folder(GALLERY_URI)
    assert "dataset repository alice/sketch-photos" in str(info.value)
    assert "folder 'gallery' of the dataset repository alice/sketch-photos" in str(info.value)
    assert "`hf download alice/sketch-photos --include 'gallery/**' --repo-type dataset`" in str(info.value)

    # The repository is cached but not that file / folder, or not that revision.
    _cache_repo(hf_cache, "model", "alice/sketchlvm-prompts", {"other.safetensors": checkpoint_file})
    with pytest.raises(HubUnavailableError, match="'ckpt/sketchy.safetensors' of the model repository"):
        resolve_file(CHECKPOINT_URI)
    with pytest.raises(HubUnavailableError, match="revision 'v2'"):
        resolve_file("hf://alice/sketchlvm-prompts@v2/other.safetensors")
    _cache_repo(hf_cache, "dataset", "alice/sketch-photos", {"elsewhere/a.jpg": checkpoint_file})
    with pytest.raises(HubUnavailableError, match="has no folder 'gallery'"):
        resolve_folder(GALLERY_URI)

    for bad, needle in [("hf://alice", "not a valid Hugging Face path"),
                        ("hf://alice/sketchlvm-prompts", "names a repository, not a file")]:
        with pytest.raises(ValueError, match=needle):
            resolve_file(bad)


def test_index_cli_builds_an_hf_gallery_and_fails_in_one_line(hf_cache, sketchy_root, capsys):
    tiny = ["--model", TINY_ARCH, "--pretrained", "none", "--device", "cpu", "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["build", GALLERY_URI, *tiny])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "alice/sketch-photos" in err and "hf download" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err

    _cache_repo(hf_cache, "dataset", "alice/sketch-photos", _photos(sketchy_root))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["build", GALLERY_URI, *tiny])
    assert exit_info.value.code == 0 and "indexed 6 photos" in capsys.readouterr().out
    shutil.rmtree(hf_cache)
