"""Command line for embedding on a Ray cluster (run as ``python -m sketchlvm cluster``).

    python -m sketchlvm cluster embed DIR_OR_URI --out SHARDS [--address RAY_ADDRESS] [--model ARCH]
                                      [--pretrained TAG|FILE|FOLDER|none] [--checkpoint FILE]
                                      [--batch-size N] [--concurrency N] [--gpus-per-worker G] [--quiet]
    python -m sketchlvm cluster merge DIR SHARDS [--cache DIR] [--model ARCH] [--pretrained ...]
                                      [--checkpoint FILE] [--device auto|cpu|cuda] [--exact-max N] [--quiet]

Only this module prints; errors become one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from sketchlvm.config import IndexConfig, env_var
from sketchlvm.gallery import default_cache_dir
from sketchlvm.arguments import add_model_arguments
from sketchlvm.arguments import non_negative_float as _non_negative_float
from sketchlvm.arguments import non_negative_int as _non_negative_int
from sketchlvm.arguments import positive_int as _positive_int
from sketchlvm.gallery.cli import print_skipped, run_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sketchlvm cluster",
                                     description="Embed a gallery on a Ray cluster, then merge it into its index.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    common.add_argument("--quiet", action="store_true", help="no progress output")
    sub = parser.add_subparsers(dest="command", required=True)

    embed = sub.add_parser("embed", parents=[common], help="embed every photo under DIR_OR_URI into shards")
    embed.add_argument("gallery", metavar="DIR_OR_URI",
                       help="folder (at the same path on every node) or URI: s3://bucket/photos, gs://..., file://...")
    embed.add_argument("--out", type=Path, required=True, metavar="SHARDS",
                       help="folder for the shards (on this machine)")
    embed.add_argument("--address", help="Ray cluster to join, e.g. auto or ray://head:10001 "
                                         "(default: a private Ray instance on this machine)")
    add_model_arguments(embed, with_device=False)
    embed.add_argument("--batch-size", type=_positive_int, default=64, help="photos per encoder call (default: 64)")
    embed.add_argument("--concurrency", type=_positive_int,
                       help="encoder actors (default: one per GPU; on CPUs, half the cores)")
    embed.add_argument("--gpus-per-worker", type=_non_negative_float,
                       help="GPUs per encoder actor (default: 1 when the cluster has GPUs, else 0 = CPU)")
    embed.set_defaults(func=_embed)

    merge = sub.add_parser("merge", parents=[common], help="build DIR's gallery index from SHARDS")
    merge.add_argument("gallery", type=Path, metavar="DIR", help="the gallery folder on this machine")
    merge.add_argument("shards", type=Path, metavar="SHARDS", help="folder written by `embed`")
    merge.add_argument("--cache", type=Path, help="index folder (default: galleries/<name>-<hash>/ in the project, "
                                                  f"or under ${env_var('galleries_dir')})")
    add_model_arguments(merge)  # --device: for photos that still need embedding here
    defaults = IndexConfig()
    merge.add_argument("--exact-max", type=_non_negative_int, default=defaults.exact_max,
                       help=f"above this many photos build an approximate HNSW index (default: {defaults.exact_max})")
    merge.set_defaults(func=_merge)
    return parser


def _embed(args: argparse.Namespace) -> int:
    from sketchlvm.cluster.embed import embed_gallery_with_ray, load_shards

    if args.quiet:  # read when Ray Data is imported; importing Ray here would fix its node address too early
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    out = embed_gallery_with_ray(args.gallery, args.out, args.model, args.pretrained, args.checkpoint,
                                 batch_size=args.batch_size, concurrency=args.concurrency,
                                 num_gpus_per_worker=args.gpus_per_worker, address=args.address)
    m = load_shards(out)
    ray = m["ray"]
    print(f"embedded {m['count']} photos of {m['source']} in {m['seconds']:.1f} s into {len(m['shards'])} shard(s) "
          f"in {out} ({ray['workers']} worker(s), {ray['gpus_per_worker']:g} GPU each), {len(m['skipped'])} skipped")
    print_skipped([(s["relpath"], s["reason"]) for s in m["skipped"]], out / "shards.json")
    print(f"next, where the gallery is served: python -m sketchlvm cluster merge DIR {out} [same model flags]")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from sketchlvm.cluster.embed import import_ray_shards, load_shards
    from sketchlvm.model.loader import model_from_args

    gallery = args.gallery.expanduser()
    if not gallery.is_dir():
        raise FileNotFoundError(f"gallery folder {str(gallery)!r} does not exist or is not a folder")
    load_shards(args.shards)  # a missing shard set fails before the model loads
    model = model_from_args(args, exports=False)
    cache = args.cache or default_cache_dir(gallery)
    print(f"{'index':>18}: {cache}")
    t0 = time.perf_counter()
    config = replace(IndexConfig(), exact_max=args.exact_max)
    index = import_ray_shards(gallery, args.shards, model, cache, config, show_progress_bar=not args.quiet)
    r = index.report
    print(f"indexed {len(index)} photos in {time.perf_counter() - t0:.1f} s: {r.added} added, {r.updated} updated, "
          f"{r.removed} removed, {r.unchanged} unchanged, {len(r.skipped)} skipped")
    print_skipped(r.skipped, index.cache_dir)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("sketchlvm.cluster.embed").setLevel(logging.WARNING if args.quiet else logging.INFO)
    run_command(args, "run the same command again (merge resumes; embed starts over)")

