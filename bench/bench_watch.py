"""Folder watcher benchmark (a script, not a test): what keeping a large gallery's index current costs at
rest, with nothing changed, against a baseline measured in the same run.

On a folder of N empty ``.jpg`` files (default 100,000, in folders of 1,000; the watcher never decodes a
photo that did not change, so empty files cost it what photos do), it measures the process's CPU time
over ``--seconds`` seconds of rest:

    idle      no watcher (the baseline: this process doing nothing)
    events    FolderWatcher in "events" mode (watchfiles: inotify here)
    poll      FolderWatcher in "poll" mode (the rescan every POLL_S s, as on a network mount)

and prints each as a percentage of one core, plus the CPU of one full gallery scan (``scan_gallery``, what a
build with nothing changed starts with) and the ratio of a minute at rest to that one scan. No rebuild is
asked for during the run (the script checks), so the figure is the watcher's own.

    python bench/bench_watch.py                          # 100,000 files, 60 s per mode
    python bench/bench_watch.py --files 20000 --seconds 20
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketchlvm.config import IndexConfig
from sketchlvm.gallery.scan import scan_gallery
from sketchlvm.gallery.watch import POLL_S, FolderWatcher


class _Progress:
    running = False


class _Indexer:
    """What the watcher needs of a BackgroundIndexer; counts the rebuilds it is asked for."""

    def __init__(self, folder: Path, cache: Path):
        self.gallery_dir, self.cache_dir, self.config = folder, cache, IndexConfig()
        self.report, self.min_age_s, self.rebuilds = None, 0.0, 0

    def snapshot(self):
        return _Progress()

    def rebuild(self):
        self.rebuilds += 1


def _cpu_over(seconds: float) -> float:
    start = time.process_time()
    time.sleep(seconds)
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--per-folder", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=60.0, help="rest measured per mode")
    parser.add_argument("--warmup", type=float, default=5.0, help="after the watcher starts, before measuring")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    try:
        folder, cache = work / "photos", work / "cache"
        t0 = time.perf_counter()
        for i in range(args.files):
            sub = folder / f"album-{i // args.per_folder:04d}"
            if i % args.per_folder == 0:
                sub.mkdir(parents=True)
            (sub / f"IMG_{i:06d}.jpg").touch()
        print(f"{args.files:,} files in {args.files // args.per_folder} folders made in "
              f"{time.perf_counter() - t0:.1f} s")
        start = time.process_time()
        entries, _ = scan_gallery(folder)
        scan_cpu = time.process_time() - start
        assert len(entries) == args.files
        print(f"one scan_gallery: {scan_cpu:.3f} s CPU")

        idle = _cpu_over(args.seconds)
        results = {"idle": idle}
        for mode in ("events", "poll"):
            indexer = _Indexer(folder, cache)
            watcher = FolderWatcher(indexer, mode).start()
            time.sleep(args.warmup)
            results[mode] = _cpu_over(args.seconds)
            watcher.stop()
            assert indexer.rebuilds == 0, f"{mode}: {indexer.rebuilds} rebuild(s) with nothing changed"
        print(f"\nCPU at rest over {args.seconds:.0f} s, {args.files:,} files (poll: a rescan every {POLL_S:.0f} s):")
        for mode, cpu in results.items():
            share = 100 * cpu / args.seconds
            per_minute = cpu * 60 / args.seconds
            print(f"  {mode:>6}: {cpu:.3f} s CPU = {share:.2f}% of one core; a minute at rest = "
                  f"{per_minute / scan_cpu:.2f} x one scan_gallery")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
