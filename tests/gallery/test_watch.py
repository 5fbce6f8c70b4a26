"""The index stays current while the app runs: a photo added, replaced and deleted in the gallery folder
is found or dropped within the limit (60 s), with change events and with the rescan; a photo copied in
slowly is indexed only once it is complete. Real Sketchy photos, the tiny random-weight model."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from test_index import _class_photos, _make_gallery

from sketchlvm.config import TINY_ARCH
from sketchlvm.gallery import build_gallery_index
from sketchlvm.gallery.watch import FolderWatcher, folder_signature, watch_mode
from sketchlvm.webapp import cli as app_main

pytestmark = pytest.mark.usefixtures("galleries_in_tmp")
LIMIT_S = 60  # what the issue asks: found or dropped within a minute
TINY = ["--model", TINY_ARCH, "--pretrained", "none", "--device", "cpu", "--runtime", "torch"]


def _until(condition, what: str, limit: float = LIMIT_S) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < limit, f"not within {limit} s: {what}"
        time.sleep(0.2)
    return time.monotonic() - start


def _relpaths(state) -> set[str]:
    index = state.searcher.index
    return set() if index is None else {p.relpath for p in index.photos}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["events", "poll"])
def test_a_photo_added_replaced_and_deleted_while_the_app_runs(tmp_path, sketchy_root, monkeypatch, mode):
    """With the app's defaults (a rescan every 20 s, 3 s of quiet): each change within the minute."""
    gallery = _make_gallery(sketchy_root, tmp_path / "photos", n_classes=2, per_class=2)
    monkeypatch.delenv("SPACE_ID", raising=False)
    state = app_main.prepare(app_main.build_parser().parse_args(["--gallery", str(gallery), "--watch", mode, *TINY]))
    try:
        assert state.watcher is not None and state.watcher.mode == mode
        assert state.indexer.wait(LIMIT_S).state == "done" and len(_relpaths(state)) == 4
        cls = min(p.name for p in gallery.iterdir())
        new = _class_photos(sketchy_root, 2, 1)[0]
        target = gallery / cls / "added.jpg"
        shutil.copy(new, target)  # added
        _until(lambda: "added.jpg" in {Path(r).name for r in _relpaths(state)}, "the added photo indexed")
        before = state.searcher.index.vectors("category")[[p.relpath for p in state.searcher.index.photos]
                                                          .index(f"{cls}/added.jpg")].copy()
        shutil.copy(_class_photos(sketchy_root, 2, 1, start=1)[0], target)  # replaced by another photo

        def replaced() -> bool:
            index = state.searcher.index
            names = [p.relpath for p in index.photos]
            return f"{cls}/added.jpg" in names and \
                (index.vectors("category")[names.index(f"{cls}/added.jpg")] != before).any()

        _until(replaced, "the replaced photo re-embedded")
        target.unlink()  # deleted
        _until(lambda: f"{cls}/added.jpg" not in _relpaths(state), "the deleted photo dropped")
        assert len(_relpaths(state)) == 4 and state.indexer.snapshot().skipped == 0
    finally:
        state.watcher.stop()
        state.indexer.stop(10)


def test_a_build_leaves_a_file_still_being_written_for_later(tmp_path, sketchy_root):
    from sketchlvm import create_sketchlvm

    gallery = _make_gallery(sketchy_root, tmp_path / "photos", n_classes=1, per_class=2)
    model = create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu")
    data = _class_photos(sketchy_root, 1, 1)[0].read_bytes()
    half = gallery / "copying.jpg"
    half.write_bytes(data[: len(data) // 2])  # a copy in progress: just written
    index = build_gallery_index(gallery, model, min_age_s=30, show_progress_bar=False)
    assert len(index) == 2 and index.report.postponed == 1 and index.report.skipped == []
    assert index.report.recheck_at == pytest.approx(half.stat().st_mtime_ns / 1e9 + 30, abs=0.01)
    index = build_gallery_index(gallery, model, show_progress_bar=False)  # without the guard: tried, unusable
    assert [r for r, _ in index.report.skipped] == ["copying.jpg"]


@pytest.mark.slow
def test_a_photo_copied_in_slowly_is_indexed_only_once_it_is_complete(tmp_path, sketchy_root):
    from sketchlvm import create_sketchlvm
    from sketchlvm.gallery.background import BackgroundIndexer

    gallery = _make_gallery(sketchy_root, tmp_path / "photos", n_classes=1, per_class=2)
    model = create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu")
    seen: list[tuple[set[str], set[str]]] = []  # (photos, skipped) of every index search was given
    indexer = BackgroundIndexer(gallery, model, on_index=lambda index: seen.append(
        ({p.relpath for p in index.photos}, {r for r, _ in index.report.skipped})))
    indexer.start().wait(LIMIT_S)
    watcher = FolderWatcher(indexer, "events", settle_s=1.5).start()
    try:
        data = _class_photos(sketchy_root, 1, 1)[0].read_bytes()
        target = gallery / "slow.jpg"
        with open(target, "wb") as f:  # written in 6 parts over ~4.5 s, with pauses shorter than settle_s
            for i in range(6):
                f.write(data[i * len(data) // 6:(i + 1) * len(data) // 6])
                f.flush()
                time.sleep(0.75)
        _until(lambda: any("slow.jpg" in photos for photos, _ in seen), "the complete photo indexed")
        assert not any("slow.jpg" in skipped for _, skipped in seen)  # never tried half-written
        assert indexer.wait(LIMIT_S).skipped == 0
    finally:
        watcher.stop()
        indexer.stop(10)


def test_the_rescan_sees_changes_and_nothing_else(tmp_path, sketchy_root):
    gallery = _make_gallery(sketchy_root, tmp_path / "photos", n_classes=1, per_class=2)
    exts = (".jpg",)
    first = folder_signature(gallery, exts)
    assert folder_signature(gallery, exts) == first
    (gallery / ".hidden.jpg").write_bytes(b"x")
    (gallery / "notes.txt").write_text("not a photo")
    assert folder_signature(gallery, exts) == first
    photo = next(p for p in gallery.rglob("*.jpg") if not p.name.startswith("."))
    photo.touch()
    assert folder_signature(gallery, exts) != first
    with pytest.raises(ValueError, match="one of"):
        watch_mode("sometimes")
