"""Background indexing on real Sketchy photos with the tiny random-weight model: search covers what is
indexed so far while the build runs, progress advances, a stopped or killed (-9) build resumes, a failed
one keeps the last index, and "Rebuild index" picks up new photos."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_index import _assert_same_index, _class_photos, _kill_at_generation, _make_gallery

from sketchlvm import create_sketchlvm
from sketchlvm.config import TINY_ARCH, IndexConfig
from sketchlvm.gallery import build_gallery_index, open_gallery_index
from sketchlvm.gallery.background import BackgroundIndexer, IndexProgress, format_duration
from sketchlvm.search import Searcher

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# commit_every is never reached: every commit here comes from commit_seconds (any time at all).
CONFIG = IndexConfig(batch_size=2, decode_workers=1, commit_every=1000, commit_seconds=1e-9)
TIMEOUT = 60
pytestmark = pytest.mark.usefixtures("galleries_in_tmp")


@pytest.fixture(scope="module")
def model():
    return create_sketchlvm(arch=TINY_ARCH, pretrained="none", device="cpu")


class GatedEncoder:
    """model.encode_photos that waits for the test's permission before each batch: the test steps the build."""

    def __init__(self, model, monkeypatch, fail_after: int | None = None):
        self.original, self.fail_after = model.encode_photos, fail_after
        self.permits = threading.Semaphore(0)
        self.waiting = threading.Event()  # set while a batch waits for its permit
        self.batches, self.photos = 0, 0
        monkeypatch.setattr(model, "encode_photos", self)

    def __call__(self, photos, mode):
        self.waiting.set()
        assert self.permits.acquire(timeout=TIMEOUT), "the test never let this batch through"
        self.waiting.clear()
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise RuntimeError("encoder crashed (test)")
        self.batches += 1
        self.photos += len(photos)
        return self.original(photos, mode)

    def allow(self, batches: int = 1) -> None:
        self.permits.release(batches)

    def open(self) -> None:
        self.permits.release(10_000)


def _until(condition, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def _step(indexer: BackgroundIndexer, gate: GatedEncoder, searchable: int) -> IndexProgress:
    """Let one batch through and wait until its commit is searchable and its progress reported."""
    gate.allow()
    return _until(lambda: (s := indexer.snapshot()).searchable >= searchable and s.done >= searchable and s,
                  f"{searchable} searchable")


def _folder_order(gallery: Path) -> list[str]:
    return sorted(p.relative_to(gallery).as_posix() for p in gallery.rglob("*.jpg"))


def test_search_covers_what_is_indexed_while_progress_advances(model, sketchy_root, tmp_path, monkeypatch):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery")  # 3 classes x 5 photos
    fresh = build_gallery_index(gallery, model, tmp_path / "fresh", CONFIG, show_progress_bar=False)
    gate = GatedEncoder(model, monkeypatch)
    searcher = Searcher(model, None)
    indexer = BackgroundIndexer(gallery, model, tmp_path / "cache", CONFIG, on_index=searcher.set_index)
    assert indexer.start() is indexer and indexer.index is None  # nothing on disk yet: returns at once
    assert indexer.snapshot().running and indexer.snapshot().searchable == 0

    sketch = Image.open(sorted((sketchy_root / "sketch" / "airplane").glob("*.png"))[0])
    query = model.encode_sketches([sketch], "category")[0]
    order = _folder_order(gallery)
    seen = []
    for step in (1, 2, 3):
        progress = _step(indexer, gate, 2 * step)
        seen.append(progress)
        assert progress.searchable == 2 * step and progress.state == "embedding"
        assert (progress.photos, progress.to_embed, progress.done) == (15, 15, 2 * step)
        assert not progress.complete and not indexer.index.complete
        assert f"{2 * step} of 15 photos searchable" in progress.summary()
        assert progress.coverage_note() == \
            f"Results from the {2 * step} of 15 photos indexed so far; indexing continues."
        # Search sees exactly the photos committed so far (folder order), ranked as a brute-force oracle.
        indexed = order[: 2 * step]
        results = searcher.search(sketch, "category", k=15)
        assert sorted(r.relpath for r in results) == indexed
        truth = dict(zip([p.relpath for p in fresh.photos], np.asarray(fresh.vectors("category")), strict=True))
        oracle = sorted(indexed, key=lambda r: -float(truth[r] @ query))
        assert [r.relpath for r in results] == oracle
        np.testing.assert_allclose([r.score for r in results], [truth[r] @ query for r in oracle], atol=1e-5)
    assert seen[-1].rate is not None and seen[-1].rate > 0 and seen[-1].eta_s > 0
    assert seen[-1].eta_s == pytest.approx((15 - 6) / seen[-1].rate)
    assert seen[0].elapsed_s < seen[-1].elapsed_s

    gate.open()
    final = indexer.wait(TIMEOUT)
    assert final.state == "done" and final.complete and final.searchable == 15 and final.coverage_note() is None
    assert final.summary() == "15 photos indexed."
    assert searcher.index is indexer.index and indexer.index.complete and gate.photos == 15
    _assert_same_index(indexer.index, fresh)
    assert len(searcher.search(sketch, "category", k=20)) == 15


def test_stopped_build_resumes_and_a_restart_searches_at_once(model, sketchy_root, tmp_path, monkeypatch):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery")
    cache = tmp_path / "cache"
    gate = GatedEncoder(model, monkeypatch)
    indexer = BackgroundIndexer(gallery, model, cache, CONFIG).start()
    _step(indexer, gate, 2)
    _step(indexer, gate, 4)
    _until(gate.waiting.is_set, "the build to wait in the encoder")
    indexer.stop(timeout=0)  # asks; the build is waiting in the encoder
    gate.allow()  # its current batch finishes, is committed, then it stops
    stopped = indexer.wait(TIMEOUT)
    assert stopped.state == "stopped" and stopped.searchable == 6 and "Indexing stopped" in stopped.summary()
    assert not open_gallery_index(cache, model).complete

    # As after a restart of the app: a new indexer searches the 6 photos before embedding anything.
    before = gate.photos
    restarted = BackgroundIndexer(gallery, model, cache, CONFIG).start()
    assert len(restarted.index) == 6 and restarted.snapshot().searchable == 6
    assert [p.relpath for p in restarted.index.photos] == _folder_order(gallery)[:6]
    gate.open()
    done = restarted.wait(TIMEOUT)
    assert done.state == "done" and done.searchable == 15 and gate.photos - before == 9  # only the rest
    assert (restarted.report.added, restarted.report.unchanged) == (9, 6)
    _assert_same_index(restarted.index, build_gallery_index(gallery, model, tmp_path / "fresh", CONFIG,
                                                            show_progress_bar=False))


def test_failed_build_keeps_the_last_index_and_rebuild_finishes_it(model, sketchy_root, tmp_path, monkeypatch):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery")
    gate = GatedEncoder(model, monkeypatch, fail_after=2)
    indexer = BackgroundIndexer(gallery, model, tmp_path / "cache", CONFIG)
    indexer.start()
    gate.open()
    failed = indexer.wait(TIMEOUT)
    assert failed.state == "failed" and failed.error == "encoder crashed (test)" and not failed.running
    assert failed.searchable == 4 and len(indexer.index) == 4
    assert failed.summary() == "Indexing failed: encoder crashed (test). Search covers the 4 photos indexed before."

    gate.fail_after = None
    extra = _class_photos(sketchy_root, 6, 2)
    for src in extra:  # new photos since: "Rebuild index" picks them up
        (gallery / src.parent.name).mkdir(exist_ok=True)
        shutil.copy2(src, gallery / src.parent.name / src.name)
    done = indexer.rebuild().wait(TIMEOUT)
    assert done.state == "done" and done.complete and done.searchable == 17 and done.error is None
    assert indexer.report.added == 13 and indexer.report.unchanged == 4

    again = indexer.rebuild().wait(TIMEOUT)  # nothing changed: nothing embedded, same photos
    assert again.state == "done" and again.to_embed == 0 and again.searchable == 17 and gate.photos == 17

    with pytest.raises(FileNotFoundError, match="does not exist"):
        BackgroundIndexer(tmp_path / "missing", model).start()


def test_kill_9_during_a_background_build_then_restart_resumes(model, sketchy_root, tmp_path, monkeypatch):
    gallery = _make_gallery(sketchy_root, tmp_path / "gallery", n_classes=6, per_class=8)
    cache = tmp_path / "cache"
    seed = int(time.time() * 1000) % 100_000
    rng = random.Random(seed)
    target_generation = rng.randint(1, 18)  # 48 photos, a commit after every photo, then the final one
    script = (
        "import sys\n"
        "from sketchlvm import create_sketchlvm\n"
        "from sketchlvm.config import TINY_ARCH, IndexConfig\n"
        "from sketchlvm.gallery.background import BackgroundIndexer\n"
        "model = create_sketchlvm(TINY_ARCH, 'none', device='cpu')\n"
        "config = IndexConfig(batch_size=1, decode_workers=1, commit_every=1, exact_max=20)\n"
        "BackgroundIndexer(sys.argv[1], model, sys.argv[2], config).start().wait()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(gallery), str(cache)], cwd=PROJECT_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr, generation = _kill_at_generation(proc, cache, target_generation, rng)
    assert proc.returncode == -signal.SIGKILL, f"seed {seed}: build ended before the kill: {stderr[-2000:]}"

    counted = []
    original = model.encode_photos
    monkeypatch.setattr(model, "encode_photos",
                        lambda photos, mode: counted.append(len(photos)) or original(photos, mode))
    indexer = BackgroundIndexer(gallery, model, cache, replace(CONFIG, exact_max=20)).start()
    survived = len(indexer.index) if indexer.index is not None else 0
    assert survived <= 48
    done = indexer.wait(TIMEOUT)
    assert done.state == "done" and done.complete, f"seed {seed}: {done}"
    assert sum(counted) == 48 - survived, f"seed {seed}, killed after generation {generation}"
    assert [p.relpath for p in indexer.index.photos] == _folder_order(gallery)
    fresh = build_gallery_index(gallery, model, tmp_path / "fresh", replace(CONFIG, exact_max=20),
                                show_progress_bar=False)
    _assert_same_index(open_gallery_index(cache, model), fresh)
    manifest = indexer.index.manifest
    referenced = {f for e in manifest["embeddings"].values() for f in e["files"]}
    referenced |= {m["index"]["file"] for m in manifest["modes"].values() if m["index"]["file"]}
    expected = referenced | {"manifest.json", "skipped.json", "build.lock", "thumbnails"}  # sketchlvm/gallery/thumbnails.py
    assert {p.name for p in cache.iterdir()} == expected


def test_progress_words():
    base = IndexProgress(state="embedding", gallery="/g", photos=2000, searchable=640, to_embed=2000, done=640,
                         skipped=0, rate=12.5, eta_s=108.8, elapsed_s=51.2, complete=False)
    assert base.summary() == ("Indexing: 640 of 2,000 photos searchable · 640/2,000 embedded · 12.5 photos/s · "
                              "about 1 min 49 s left.")
    assert base.fraction == pytest.approx(0.32) and base.running
    assert replace(base, rate=None, eta_s=None).summary() == \
        "Indexing: 640 of 2,000 photos searchable · 640/2,000 embedded."
    assert replace(base, photos=None, state="scanning").fraction is None
    assert "looking for photos" in replace(base, photos=None, state="scanning").summary()
    assert replace(base, state="finishing", done=2000).summary().endswith("building the search index.")
    assert replace(base, state="done", searchable=1990, skipped=10, complete=True).summary() == \
        "1,990 photos indexed, 10 skipped."
    assert [format_duration(s) for s in (0, 59.4, 61, 3600 * 2 + 60 * 5)] == ["0 s", "59 s", "1 min 1 s", "2 h 5 min"]
