"""Background indexing benchmark, library half (a script, not a test): how soon can a fresh start answer
a search, against the time to embed the whole gallery, measured in the same run.

From the script's start (imports included), on a copy of N real Sketchy photos and an empty index:

    model       create_sketchlvm (weights + towers)
    answers     BackgroundIndexer.start() returned: a search answers now (empty, "indexing...")
    first hits  the first search that returns photos (the first commit, IndexConfig.commit_seconds)
    all         the background build finished: every photo searchable

and the ratios first-hits / all and answers / all (the page waits for "answers" instead of "all").
It also times a sketch query while the build runs against the same query after it (p50 of a few),
since both share the CPU. ``--sync-baseline`` also times a plain ``build_gallery_index`` of the same
photos into another cache, to show the background build costs the same.

    python bench/bench_background.py                                          # tiny model, 300 photos
    python bench/bench_background.py --arch ViT-B-32-quickgelu --pretrained none --photos 2000

The app half (``python app.py`` to a page that answers, through HTTP) belongs with the app wiring.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from bench.photos import place_photos  # noqa: E402
from sketchlvm import create_sketchlvm  # noqa: E402
from sketchlvm.config import TINY_ARCH, IndexConfig  # noqa: E402
from sketchlvm.gallery import build_gallery_index  # noqa: E402
from sketchlvm.gallery.background import BackgroundIndexer  # noqa: E402
from sketchlvm.search import EmptyGalleryError, Searcher  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sketchy"


def _since_start() -> float:
    return time.perf_counter() - T_START


def _p50_query(searcher: Searcher, sketches: list[Image.Image], mode: str) -> float:
    times = []
    for image in sketches:
        searcher.clear_cache()  # time the encoder too, as a new drawing would
        t0 = time.perf_counter()
        try:
            searcher.search(image, mode, 12)
        except EmptyGalleryError:
            pass
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=300)
    p.add_argument("--arch", default=TINY_ARCH)
    p.add_argument("--pretrained", default="none", help="random weights time the same as real ones")
    p.add_argument("--device", default="cpu")
    p.add_argument("--commit-seconds", type=float, default=IndexConfig().commit_seconds)
    p.add_argument("--sync-baseline", action="store_true", help="also time a plain synchronous build")
    args = p.parse_args()
    if not (SHARED / "photo").is_dir():
        sys.exit(f"needs the Sketchy photos in {SHARED / 'photo'}")

    work = Path(tempfile.mkdtemp(prefix="bench-background-"))
    try:
        t_copy = time.perf_counter()
        n = place_photos(SHARED / "photo", work / "gallery", args.photos)
        copy_s = time.perf_counter() - t_copy
        sketches = [Image.open(p).convert("RGB") for p in sorted((SHARED / "sketch").glob("*/*.png"))[:5]]

        t0 = _since_start() - copy_s
        model = create_sketchlvm(args.arch, args.pretrained, device=args.device)
        t_model = _since_start() - copy_s
        searcher = Searcher(model, None)
        config = IndexConfig(commit_seconds=args.commit_seconds)
        indexer = BackgroundIndexer(work / "gallery", model, work / "index", config, on_index=searcher.set_index)
        indexer.start()
        t_answers = _since_start() - copy_s
        while not searcher.index or len(searcher.index) == 0:
            time.sleep(0.01)
        t_first = _since_start() - copy_s
        during = _p50_query(searcher, sketches, "category")
        mid = indexer.snapshot()
        final = indexer.wait()
        t_all = _since_start() - copy_s
        after = _p50_query(searcher, sketches, "category")
        if final.state != "done":
            sys.exit(f"the build did not finish: {final.summary()}")

        print(f"{n} photos, {args.arch} (pretrained={args.pretrained}), {args.device}, "
              f"commit every {args.commit_seconds:g} s; imports before the model: {t0:.1f} s")
        print(f"  model loaded        {t_model:8.1f} s after start")
        print(f"  search answers      {t_answers:8.1f} s   (ratio to all: {t_answers / t_all:.3f})")
        print(f"  first photos found  {t_first:8.1f} s   (ratio to all: {t_first / t_all:.3f})")
        print(f"  all {n} searchable {t_all:8.1f} s   (embedding: {t_all - t_answers:.1f} s, "
              f"{n / (t_all - t_answers):.1f} photos/s)")
        print(f"  mid-build snapshot: {mid.summary()}")
        print(f"  query p50 during the build {during * 1000:.0f} ms, after {after * 1000:.0f} ms "
              f"(ratio {during / after:.2f})")
        if args.sync_baseline:
            t1 = time.perf_counter()
            build_gallery_index(work / "gallery", model, work / "sync-index", config, show_progress_bar=False)
            sync_s = time.perf_counter() - t1
            print(f"  synchronous build of the same photos: {sync_s:.1f} s "
                  f"(background / synchronous: {(t_all - t_answers) / sync_s:.2f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
