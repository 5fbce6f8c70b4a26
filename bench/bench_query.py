"""Query latency: a sketch in, the top-k photos out, through the library and through HTTP.

Each path is reported as p50 / p95 in ms and as a ratio to the floor measured in the same run: open_clip's
bare ``encode_image`` of one preprocessed image plus a faiss ``IndexFlatIP`` search over the same gallery
vectors (no decoding, no framing, no cache, no HTTP). Rows:

    floor          open_clip encode_image (1 image) + faiss search (bare torch fp32)
    library cold   Searcher.search on a new drawing: canvas -> framing -> encoder -> index -> results,
                   one row per runtime (--runtimes: torch, onnx = ONNX Runtime fp32, onnx-int8)
    library warm   the same drawing again in the same mode (mode switch / top-k change): cache hit
    library words  Searcher.search with words only (no drawing), new words each time (no text cache hit),
                   one row per runtime: the text tower runs on ONNX Runtime fp32 under onnx / onnx-int8

For onnx-int8 the int8-vs-fp32 top-10 agreement on the gallery is printed, measured on the query
sketches (the same check the app runs at start).
The HTTP rows drive ``python app.py`` started in its own process (the real CLI, indexing the same gallery).

    http no-op     gradio_client round trip to a trivial endpoint (/status): the protocol's own cost
    http cold      gradio_client -> the running app's /search endpoint, a new drawing each time: real
                   Quick, Draw! strokes as JSON (../shared/data/quickdraw), as the canvas sends on pen-up
    http warm      the same strokes again (rendering + re-rank from the cached embedding, no encoder)
    http + files   http cold, then the client also downloads the k result thumbnails

The http rows stop when the ranked list (captions + photo URLs) arrives, as a browser would see it; a
browser then fetches the thumbnails in parallel, which the last row adds serially.

Real Sketchy sketches and photos from ../shared/data (read in place, photos copied into a temp gallery);
every HTTP /search answer must hold k results, else the run stops with the app's message.
Tiny random-weight model by default; ``--model ViT-B-32-quickgelu --pretrained none`` for the real tower's
cost with random weights (no download).

    python bench/bench_query.py                                   # tiny model, ~1 min on 2 cores
    python bench/bench_query.py --model ViT-B-32-quickgelu --queries 40 --classes 20
    python bench/bench_query.py --model ViT-B-32-quickgelu --no-http --runtimes torch,onnx,onnx-int8
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = Path(os.environ.get("SKETCHLVM_SHARED_DATA", ROOT.parent / "shared" / "data")) / "sketchy"
DEFAULT_QUICKDRAW = DEFAULT_DATA.parent / "quickdraw"


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def timed(fn: Callable[[int], object], n: int, warmup: int) -> list[float]:
    """Run fn(i) for warm-up then n timed calls; i indexes the query so each call can use a new sketch."""
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(warmup + i)
        out.append(time.perf_counter() - t0)
    return out


def timed_together(fns: dict[str, Callable[[int], object]], n: int, warmup: int) -> dict[str, list[float]]:
    """Like ``timed`` for several paths, taking turns query by query, so that a shared machine's drifting
    load hits every path alike and their ratios stay meaningful."""
    for i in range(warmup):
        for fn in fns.values():
            fn(i)
    out: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(n):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(warmup + i)
            out[name].append(time.perf_counter() - t0)
    return out


def wait_for_complete_index(indexes: Path, server: subprocess.Popen, deadline: float) -> Path:
    """The complete build's vectors file, once the app's background build has written it."""
    while time.perf_counter() < deadline:
        found = next(indexes.rglob("vectors-*.npy"), None)
        if found is not None:
            return found
        if server.poll() is not None:
            raise SystemExit(f"app.py exited ({server.returncode}) before the gallery was indexed")
        time.sleep(0.5)
    raise SystemExit("the gallery was not indexed in time (--server-timeout)")


def wait_for_server(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"app.py exited with {server.returncode}: {server.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "config", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"app.py did not answer at {url} within {timeout_s} s")


def make_gallery(data: Path, classes: int, per_class: int, dest: Path) -> list[Path]:
    """Copy per_class photos of the first ``classes`` Sketchy classes into dest; return query sketches."""
    names = sorted(p.name for p in (data / "photo").iterdir() if p.is_dir())[:classes]
    sketches = []
    for name in names:
        (dest / name).mkdir(parents=True)
        for photo in sorted((data / "photo" / name).glob("*.jpg"))[:per_class]:
            shutil.copy(photo, dest / name / photo.name)
        sketches += sorted((data / "sketch" / name).glob("*.png"))
    return sketches


def quickdraw_strokes(folder: Path, n: int) -> list[str]:
    """n real Quick, Draw! drawings (raw format, with timestamps) as the stroke JSON /search takes, taken
    word by word across the folder so that consecutive queries differ."""
    from sketchlvm.preprocess.strokes import load_ndjson

    words = sorted(folder.glob("*.ndjson"))
    if not words:
        raise FileNotFoundError(f"no Quick, Draw! .ndjson files in {folder} (--quickdraw)")
    per_word = -(-n // len(words))
    records = [load_ndjson(path, limit=per_word) for path in words]
    drawings = [json.dumps(r[j]["drawing"], separators=(",", ":")) for j in range(per_word) for r in records
                if j < len(r)]
    if len(drawings) < n:
        raise ValueError(f"{len(drawings)} Quick, Draw! drawings in {folder}, need {n}")
    return drawings[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="SketchLVM-Tiny", help="open_clip architecture (default: SketchLVM-Tiny)")
    parser.add_argument("--pretrained", default="none", help="weights; 'none' = random (default), no download")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Sketchy subset (photo/, sketch/)")
    parser.add_argument("--classes", type=int, default=10, help="gallery classes (default: 10)")
    parser.add_argument("--per-class", type=int, default=10, help="gallery photos per class (default: 10)")
    parser.add_argument("--queries", type=int, default=30, help="timed queries per row (default: 30)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("-k", "--top-k", type=int, default=12)
    parser.add_argument("--mode", default="category")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP rows (no server launched)")
    parser.add_argument("--runtimes", default="torch,onnx,onnx-int8",
                        help="library rows to measure, comma-separated (default: torch,onnx,onnx-int8)")
    parser.add_argument("--http-runtime", default="auto", help="--runtime of the app.py server (default: auto)")
    parser.add_argument("--server-timeout", type=float, default=180, help="seconds to wait for app.py to start")
    parser.add_argument("--quickdraw", type=Path, default=DEFAULT_QUICKDRAW,
                        help="Quick, Draw! .ndjson folder: the drawings the HTTP rows send as stroke JSON")
    args = parser.parse_args(argv)
    if not (args.data / "photo").is_dir():
        print(f"error: no Sketchy data at {args.data} (--data or SKETCHLVM_SHARED_DATA)", file=sys.stderr)
        return 2

    import faiss
    import open_clip
    import torch
    from PIL import Image

    from sketchlvm.gallery import build_gallery_index
    from sketchlvm.model.factory import create_sketchlvm
    from sketchlvm.model.weights import register_model_configs
    from sketchlvm.search import Searcher

    work = Path(tempfile.mkdtemp(prefix="sketchlvm-bench-"))
    try:
        sketches = make_gallery(args.data, args.classes, args.per_class, work / "gallery")
        needed = 3 * (args.queries + args.warmup)
        if len(sketches) < needed:
            print(f"error: {len(sketches)} sketches, need {needed}; use more --classes", file=sys.stderr)
            return 2
        rng = np.random.default_rng(0)
        sketches = [sketches[i] for i in rng.permutation(len(sketches))]
        images = [Image.open(p).convert("RGB") for p in sketches]  # decoded up front: every row starts from pixels

        runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
        models = {}
        for runtime in runtimes:  # exports (first time only) and checks happen here, untimed
            models[runtime] = create_sketchlvm(arch=args.model, pretrained=args.pretrained, device=args.device,
                                               runtime=runtime, check_images=images[:4], text=True)
        model = models[runtimes[0]]
        t0 = time.perf_counter()
        index = build_gallery_index(work / "gallery", model, cache_dir=work / "cache", show_progress_bar=False)
        build_s = time.perf_counter() - t0
        searchers = {r: Searcher(m, index, default_k=args.top_k) for r, m in models.items()}
        searcher = searchers[runtimes[0]]
        print(f"model {args.model} ({model.weights.label}) on {model.device}, torch threads {torch.get_num_threads()}; "
              f"gallery {len(index)} photos indexed in {build_s:.1f} s; k={args.top_k}, mode {args.mode}, "
              f"{args.queries} timed queries per row")
        for runtime, m in models.items():
            print(f"  runtime {runtime}: {m.describe()['runtime']}")
        if "onnx-int8" in models and models["onnx-int8"].runtime.name == "onnx-int8":
            from sketchlvm.runtime.int8 import check_int8

            try:
                print("  " + check_int8(models["onnx-int8"], index, images[: 2 * (args.queries + args.warmup)]))
            except Exception as error:  # a refusal is a result here, not a crash
                print(f"  {error}")

        # Floor: open_clip's own tower on one preprocessed image + a flat inner-product search.
        register_model_configs()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            bare = open_clip.create_model(args.model, pretrained=None, device=model.device).eval()
        flat = faiss.IndexFlatIP(index.vectors(args.mode).shape[1])
        flat.add(np.ascontiguousarray(index.vectors(args.mode)))
        tensors = [model.sketch_transform(im)[None].to(model.device) for im in images]

        @torch.no_grad()
        def floor(i: int) -> None:
            q = bare.encode_image(tensors[i % len(tensors)])
            q = torch.nn.functional.normalize(q, dim=-1).float().cpu().numpy()
            flat.search(q, args.top_k)

        def lib_cold(runtime: str) -> Callable[[int], None]:
            def run(i: int) -> None:
                searchers[runtime].search(images[i % len(images)], args.mode, args.top_k)
            return run

        # Words as people type them, all different: every words query runs the text tower.
        classes = sorted(p.name.replace("_", " ") for p in (args.data / "photo").iterdir() if p.is_dir())
        words = [f"{adjective} {c}" for adjective in ("red", "small", "old", "wooden", "shiny", "dark", "striped")
                 for c in classes]

        def lib_words(runtime: str) -> Callable[[int], None]:
            def run(i: int) -> None:
                searchers[runtime].search(None, args.mode, args.top_k, text=words[i % len(words)])
            return run

        warm_image = images[0]
        searcher.search(warm_image, args.mode, args.top_k)

        def lib_warm(i: int) -> None:
            searcher.search(warm_image, args.mode, args.top_k)

        rows: dict[str, list[float]] = {}
        # The floor and the cold library rows take turns (see timed_together); the rest run back to back.
        rows.update(timed_together({"floor (open_clip + faiss)": floor,
                                    **{f"library cold, {models[r].runtime.name}": lib_cold(r) for r in runtimes}},
                                   args.queries, args.warmup))
        rows["library warm (cached embedding)"] = timed(lib_warm, args.queries, args.warmup)
        for r in runtimes:  # text tower: torch, or ONNX Runtime where the runtime put it there
            engine = "onnx" if models[r].runtime.text_runtime().startswith("ONNX") else "torch"
            rows[f"library words, {models[r].runtime.name} (text {engine})"] = timed(lib_words(r), args.queries,
                                                                                        args.warmup)

        if not args.no_http:
            from gradio_client import Client

            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            # The real CLI in its own process, as deployed (no GIL shared with this client). It indexes the
            # gallery again into its own cache under the temp folder (default cache location, redirected).
            env = {**os.environ, "SKETCHLVM_GALLERIES_DIR": str(work / "galleries")}
            cmd = [sys.executable, str(ROOT / "app.py"), "--gallery", str(work / "gallery"), "--model", args.model,
                   "--pretrained", args.pretrained, "--device", args.device, "--port", str(port),
                   "--top-k", str(args.top_k), "--runtime", args.http_runtime]
            server = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
            try:
                url = f"http://127.0.0.1:{port}/"
                wait_for_server(url, server, timeout_s=args.server_timeout)
                # The page answers before the gallery is indexed: time queries on the whole gallery only.
                wait_for_complete_index(work / "galleries", server, time.perf_counter() + args.server_timeout)
                client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
                downloading = Client(url, verbose=False, analytics_enabled=False,
                                     download_files=str(work / "downloads"))
                # What the canvas sends on pen-up: real Quick, Draw! drawings as stroke JSON.
                drawings = quickdraw_strokes(args.quickdraw, 2 * (args.queries + args.warmup) + 1)
                expected = min(args.top_k, len(index))

                def search(c, i: int) -> None:
                    gallery, message = c.predict(drawings[i], args.mode, args.top_k, api_name="/search")
                    if len(gallery) != expected:  # an error message instead of results: fail loudly
                        raise RuntimeError(f"/search answered {len(gallery)} results, not {expected}: {message}")

                offset = 1  # drawings[0] is the warm row's

                def http_cold(i: int) -> None:
                    search(client, offset + i)

                def http_warm(i: int) -> None:
                    search(client, 0)

                def http_files(i: int) -> None:
                    search(downloading, offset + i)

                rows["http no-op (/status round trip)"] = timed(lambda i: client.predict(api_name="/status"),
                                                                args.queries, args.warmup)
                rows["http cold (gradio_client /search)"] = timed(http_cold, args.queries, args.warmup)
                rows["http warm (cached embedding)"] = timed(http_warm, args.queries, args.warmup)
                offset += args.queries + args.warmup
                rows["http + files (k thumbnails fetched)"] = timed(http_files, args.queries, args.warmup)
            finally:
                server.terminate()
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    server.kill()

        base50, base95 = percentiles(rows["floor (open_clip + faiss)"])
        print(f"\n{'path':36s} {'p50 ms':>9s} {'p95 ms':>9s} {'x floor p50':>12s} {'x floor p95':>12s}")
        for name, samples in rows.items():
            p50, p95 = percentiles(samples)
            print(f"{name:36s} {p50:9.1f} {p95:9.1f} {p50 / base50:12.3g} {p95 / base95:12.3g}")
        print(f"\nlibrary encoder calls: {sum(s.encode_calls for s in searchers.values())}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
