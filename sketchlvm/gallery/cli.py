"""Command line for gallery indexes (run as ``python -m sketchlvm index``).

    python -m sketchlvm index build DIR [--cache DIR] [--model ARCH] [--pretrained TAG|FILE|FOLDER|none]
                                        [--checkpoint FILE] [--device auto|cpu|cuda]
                                        [--runtime auto|torch|onnx|onnx-int8] [--exact-max N]
                                        [--batch-size N] [--workers N] [--commit-every N] [--quiet]
    python -m sketchlvm index info CACHE_OR_DIR

Only this module prints; errors become one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from sketchlvm.arguments import add_model_arguments
from sketchlvm.arguments import non_negative_int as _non_negative_int
from sketchlvm.arguments import positive_int as _positive_int
from sketchlvm.config import IndexConfig, env_var
from sketchlvm.gallery import MANIFEST, build_gallery_index, default_cache_dir, load_manifest

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sketchlvm index", description="Build or inspect a gallery index.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", parents=[common], help="index (or update the index of) every photo under DIR")
    build.add_argument("gallery", metavar="DIR", help="folder of photos, or of parquet files (an image dataset as the "
                                                      "Hub stores it), or hf://datasets/USER/REPO[@REV][/SUBDIR]; "
                                                      "first-level subfolders (or class labels) are labels")
    build.add_argument("--split", help="of a parquet dataset, only this split's files (train, test, ...)")
    build.add_argument("--classes", metavar="NAME[,...]", help="of a parquet dataset, only rows of these classes")
    build.add_argument("--cache", type=Path, help="index folder (default: galleries/<name>-<hash>/ in the project, "
                                                  f"or under ${env_var('galleries_dir')})")
    add_model_arguments(build, exports=True, with_runtime=True)
    defaults = IndexConfig()
    build.add_argument("--exact-max", type=_non_negative_int, default=defaults.exact_max,
                       help=f"above this many photos build an approximate HNSW index (default: {defaults.exact_max})")
    build.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size)
    build.add_argument("--workers", type=_non_negative_int, default=defaults.decode_workers,
                       help="image decoding threads (0: decode on the main thread)")
    build.add_argument("--commit-every", type=_positive_int, default=defaults.commit_every,
                       help="save progress every N photos, so an interrupted build resumes")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=_build)

    info = sub.add_parser("info", parents=[common], help="describe the index of a gallery folder or an index folder")
    info.add_argument("target", type=Path, metavar="CACHE_OR_DIR")
    info.set_defaults(func=_info)
    return parser


def _build(args: argparse.Namespace) -> int:
    from sketchlvm.gallery.parquet import parse_classes, photo_folder
    from sketchlvm.hub import resolve_folder
    from sketchlvm.model.loader import model_from_args  # torch and open_clip load here, not for `info`

    gallery = resolve_folder(args.gallery)  # a local folder as it is; hf:// -> the Hugging Face cache
    if not gallery.is_dir():
        raise FileNotFoundError(f"gallery folder {str(gallery)!r} does not exist or is not a folder")
    # Parquet files -> the folder their rows are written to, as the app makes it (the app then reuses the index).
    gallery = photo_folder(gallery, args.split, parse_classes(args.classes))
    config = replace(IndexConfig(), exact_max=args.exact_max, batch_size=args.batch_size,
                     decode_workers=args.workers, commit_every=args.commit_every)
    model = model_from_args(args)
    for key, value in model.describe().items():
        print(f"{key:>18}: {value}")
    cache = args.cache or default_cache_dir(gallery)
    print(f"{'index':>18}: {cache}")
    t0 = time.perf_counter()
    index = build_gallery_index(gallery, model, cache, config, show_progress_bar=not args.quiet)
    r = index.report
    print(f"indexed {len(index)} photos in {time.perf_counter() - t0:.1f} s: {r.added} added, {r.updated} updated, "
          f"{r.removed} removed, {r.unchanged} unchanged, {len(r.skipped)} skipped")
    print_skipped(r.skipped, index.cache_dir)
    if not len(index):  # nothing to search: say why and what to do, as the app does
        found = "every file found was skipped (above)" if r.skipped else "no photos found"
        print(f"error: {gallery} has no usable photos ({found}): add .jpg, .png, .webp, .heic or .avif photos to it (one "
              "subfolder per category gives each photo its category), then run this again", file=sys.stderr)
        return 2
    if model.runtime.name == "onnx-int8" and len(index):
        from sketchlvm.runtime.int8 import check_int8

        print(check_int8(model, index))  # raises Int8RefusedError below the threshold
    return 0


def print_skipped(skipped: list, cache: Path, limit: int = 20) -> None:
    for relpath, reason in skipped[:limit]:
        print(f"  skipped {relpath}: {reason}")
    if len(skipped) > limit:
        print(f"  ... and {len(skipped) - limit} more, see {cache / 'skipped.json'}")


def _info(args: argparse.Namespace) -> int:
    target = args.target.expanduser()
    cache = target if (target / MANIFEST).is_file() else default_cache_dir(target)
    if not (cache / MANIFEST).is_file():
        raise FileNotFoundError(f"no gallery index for {str(target)!r} (looked in {cache}); "
                                f"build one with: python -m sketchlvm index build {target}")
    m = load_manifest(cache)
    bpp = m.get("bytes_per_photo", {})
    print(f"gallery: {m['root']}")
    print(f"index:   {cache} (format {m['format']} v{m['version']}, generation {m['generation']}, "
          f"built {m['built_at']})")
    status = "complete" if m["complete"] else "UNFINISHED build: run `build` again to finish it"
    print(f"photos:  {m['count']} ({status}), {len(set(m['photos']['label']))} labels, dim {m['dim']}")
    print(f"size:    {bpp.get('total', 0):.0f} bytes/photo (vectors {bpp.get('vectors', 0):.0f}, "
          f"faiss {bpp.get('faiss', 0):.0f})")
    for mode, info in m["modes"].items():
        ident, index = info["identity"], info["index"]
        weights = ident.get("weights", {})
        params = ", ".join(f"{k}={v}" for k, v in index.get("params", {}).items())
        measured = "" if index["exact"] else f" measured on {index.get('recall_queries')} stored vectors"
        print(f"mode {mode}: {ident.get('arch')} weights {weights.get('kind')}:{weights.get('value')}, "
              f"checkpoint {ident.get('checkpoint_sha256') or 'none (zero-shot)'}, embedding {info['embedding']}")
        print(f"  index {index['kind']}{f' ({params})' if params else ''}, recall@10 {index['recall_at_10']:.4f}"
              f"{measured}")
    skipped = [(s["relpath"], s["reason"]) for s in m.get("skipped", [])]
    print(f"skipped: {len(skipped)}")
    print_skipped(skipped, cache)
    return 0


KNOWN_ERRORS = ("WeightsUnavailableError", "StaleIndexError", "ShardIdentityError", "CheckpointMismatchError",
                "HubUnavailableError", "Int8RefusedError")


def run_command(args: argparse.Namespace, interrupted_hint: str) -> None:
    """Run ``args.func`` and exit: every failure becomes one ``error: ...`` line (tracebacks only with --debug)."""
    if args.debug:
        logging.getLogger("sketchlvm").setLevel(logging.DEBUG)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted_hint}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - the CLI turns every failure into one line
        if args.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        known = type(error).__name__ in KNOWN_ERRORS
        prefix = "error" if known or isinstance(error, (OSError, ValueError)) else f"error ({type(error).__name__})"
        print(f"{prefix}: {message}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_command(args, "the progress so far is saved; run the same command again to finish")

