"""Storage as Spaces have it now: the container's disk is wiped at every restart, a Storage Bucket mounted
read-write keeps files, and a dataset repository is mounted read-only.

The app must index a gallery it cannot write into (everything it writes goes under
``SKETCHLVM_GALLERIES_DIR``), and a restart with that folder on the bucket must search the whole gallery
at once and embed nothing again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sketchlvm.config import TINY_ARCH
from sketchlvm.webapp import cli as app_main

TINY = ["--model", TINY_ARCH, "--pretrained", "none", "--device", "cpu", "--runtime", "torch"]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (files and folders) with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_a_read_only_gallery_is_indexed_on_the_bucket_and_a_restart_embeds_nothing(tmp_path, sketchy_root,
                                                                                     monkeypatch):
    mount = tmp_path / "photos"  # a dataset repository mounted read-only
    for name in ("cat", "fish"):
        (mount / "gallery" / name).mkdir(parents=True)
        for photo in sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:3]:
            shutil.copy2(photo, mount / "gallery" / name / photo.name)
    bucket = tmp_path / "data"  # a Storage Bucket mounted read-write
    monkeypatch.setenv("SKETCHLVM_GALLERY", str(mount / "gallery"))
    monkeypatch.setenv("SKETCHLVM_GALLERIES_DIR", str(bucket / "galleries"))
    for variable in ("SPACE_ID", "SPACES_ZERO_GPU", "SKETCHLVM_DEMO"):
        monkeypatch.delenv(variable, raising=False)
    before = _tree(mount)

    state = app_main.prepare(app_main.build_parser().parse_args(TINY))
    first = state.indexer.wait(60)
    state.indexer.stop(10)
    assert first.state == "done" and first.to_embed == 6 and len(state.searcher) == 6
    assert _tree(mount) == before  # nothing written into the mounted repository
    assert Path(state.cache_dir).is_relative_to(bucket / "galleries")
    assert any(p.name == "manifest.json" for p in Path(state.cache_dir).rglob("*"))

    os.sync()  # a restart: a new process, the bucket and the mount as they were
    state = app_main.prepare(app_main.build_parser().parse_args(TINY))
    assert len(state.searcher) == 6  # the committed index is searchable before the build has looked at anything
    again = state.indexer.wait(60)
    state.indexer.stop(10)
    assert again.state == "done" and again.to_embed == 0  # nothing embedded again
    assert _tree(mount) == before
