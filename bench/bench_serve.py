"""The two installs side by side: install size, time to page, memory as a user meets it, and query latency.

    python bench/bench_serve.py --export EXPORT_FOLDER [--serve-python VENV/bin/python] [--photos 96]
                                [--baseline-tree OTHER_CHECKOUT]

The full install runs ``python app.py --model ARCH --pretrained ...`` (torch, ONNX Runtime picked by
``--runtime auto`` on the CPU, graphs exported once into the ONNX cache, warmed before timing); the
serving install runs ``python app.py --model EXPORT_FOLDER`` with ``--serve-python`` (a venv made from
requirements-serve.txt), else with this Python and torch blocked. Both serve the same gallery (Sketchy
photos from ../shared/data), and the export must come from the same ``--arch`` / ``--pretrained``.

- install size: the distributions that requirements.txt / requirements-serve.txt resolve to (with their
  dependencies), summed from their installed files in this environment; and ``du`` of the serving venv;
- time to page: spawn -> the page answers HTTP 200 (imports, model load, graphs; indexing runs behind);
- memory (the app's RSS): once the app has indexed the gallery itself (``app_index_s``: how long that took)
  and been idle 3 s, then after 3 sketch
  queries (the shipped example drawings, through the page's public ``search`` API), then after one query
  with words (the text graph's first use);
- query latency: one sketch through ``Searcher.search`` (encode + rank), p50 of 15 different drawings,
  in a separate process per install (same code the page calls).

``--baseline-tree`` runs the same rows with the code of another checkout (say ``git archive main``), in
the same run, and prints this tree's figures as ratios of that one's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.photos import place_photos  # noqa: E402

BLOCK = ("import importlib.abc, sys\nclass _B(importlib.abc.MetaPathFinder):\n def find_spec(self, n, p=None, t=None):\n"
         "  if n.split('.')[0] in ('torch','torchvision','open_clip'): raise ModuleNotFoundError(n, name=n)\n"
         "sys.meta_path.insert(0, _B())\n")


def closure_bytes(requirements: Path) -> tuple[int, int]:
    """(bytes, distributions) of what ``requirements`` resolves to, as installed here."""
    names = []
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r"):
            continue
        if line:
            names.append(re.split(r"[<>=\[ ;]", line)[0])
    seen, total = set(), 0
    while names:
        name = names.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for f in dist.files or []:
            path = Path(dist.locate_file(f))
            if path.is_file():
                total += path.stat().st_size
        for req in dist.requires or []:
            if "extra ==" not in req:
                names.append(re.split(r"[<>=\[ ;(!~]", req)[0])
    return total, len(seen)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def app_queries(port: int, pid: int) -> dict:
    """RSS after 3 sketch queries, then after one with words, through the page's public ``search`` API."""
    from bench.load.client import HttpUser
    from sketchlvm.search import DEFAULT_TEXT_WEIGHT

    user = HttpUser(f"http://127.0.0.1:{port}/", timeout_s=300)
    try:
        drawings = sorted((ROOT / "sketchlvm" / "examples").glob("*.json"))[:3]
        for drawing in drawings:
            gallery = user.call("search", [drawing.read_text(), "category", 12, "", DEFAULT_TEXT_WEIGHT])[0]
            if not gallery:
                raise RuntimeError(f"no results for {drawing.name}")
        time.sleep(1)
        sketches = rss_mb(pid)
        user.call("search", [drawings[0].read_text(), "category", 12, "a cup on a table", DEFAULT_TEXT_WEIGHT])
        time.sleep(1)
        return {"rss_after_3_sketches_mb": round(sketches), "rss_after_words_mb": round(rss_mb(pid))}
    finally:
        user.close()


def app_run(python: str, args: list[str], env: dict, block: bool, port: int, log: Path, root: Path = ROOT) -> dict:
    """Start app.py: seconds until the page answers, RSS once the gallery is indexed and idle, then after queries."""
    cmd = [python, "-c", BLOCK + "import runpy, sys; sys.argv = ['app.py'] + sys.argv[1:]; "
           "runpy.run_path('app.py', run_name='__main__')", *args] if block else [python, "app.py", *args]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd + ["--port", str(port)], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app exited: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        page = time.perf_counter() - t0
        deadline = time.monotonic() + 900
        while not (indexed := re.search(r"indexed .* in ([0-9.]+) s", log.read_text())) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)
        found = {"time_to_page_s": round(page, 2), "app_index_s": float(indexed.group(1)) if indexed else None,
                 "rss_indexed_mb": round(rss_mb(proc.pid))}
        return {**found, **app_queries(port, proc.pid)}
    finally:
        proc.terminate()
        try:
            proc.wait(120)  # a loaded machine can take a while to stop the indexer and Gradio
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


QUERY = """
import json, statistics, sys, time
from PIL import Image, ImageDraw
from sketchlvm.search import Searcher
from sketchlvm.gallery import build_gallery_index
spec = json.loads(sys.argv[1])
if spec["export"]:
    from sketchlvm.model.folder_model import load_export
    model = load_export(spec["export"])
else:
    from sketchlvm.model.factory import create_sketchlvm
    model = create_sketchlvm(arch=spec["arch"], pretrained=spec["pretrained"], device="cpu", text=True)
index = build_gallery_index(spec["gallery"], model, show_progress_bar=False)
searcher = Searcher(model, index)
times = []
for i in range(16):
    im = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(im).line((10 + i * 7, 20, 240 - i * 5, 230, 30, 200 - i * 3), fill="black", width=5)
    t = time.perf_counter()
    searcher.search(im, "category", 12)
    times.append(time.perf_counter() - t)
print("RESULT" + json.dumps({"query_p50_ms": round(1000 * statistics.median(times[1:]), 1),
                             "runtime": model.describe()["runtime"], "torch_loaded": "torch" in sys.modules}))
"""


def query_run(python: str, spec: dict, env: dict, block: bool, root: Path = ROOT) -> dict:
    code = (BLOCK if block else "") + QUERY
    done = subprocess.run([python, "-c", code, json.dumps(spec)], cwd=root, env=env, capture_output=True, text=True,
                          timeout=1200)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.split("RESULT", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True, type=Path)
    parser.add_argument("--arch", default="ViT-B-32-quickgelu")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--serve-python", default=None, help="the serving venv's python (default: this one, torch blocked)")
    parser.add_argument("--photos", type=int, default=96)
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="another checkout of the project: the same rows with its code, and ratios against it")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    data = Path(os.environ.get("SKETCHLVM_SHARED_DATA", ROOT.parent / "shared" / "data")) / "sketchy" / "photo"
    tmp = Path(tempfile.mkdtemp(prefix="bench_serve-"))
    try:
        gallery = tmp / "gallery"
        place_photos(data, gallery, args.photos)
        results = {}
        full_bytes, full_n = closure_bytes(ROOT / "requirements.txt")
        serve_bytes, serve_n = closure_bytes(ROOT / "requirements-serve.txt")
        results["install"] = {"full_mb": round(full_bytes / 1e6), "full_distributions": full_n,
                              "serve_mb": round(serve_bytes / 1e6), "serve_distributions": serve_n}
        if args.serve_python:
            venv = Path(args.serve_python).absolute().parents[1]  # not resolve(): bin/python links out of the venv
            du = subprocess.run(["du", "-sb", str(venv)], capture_output=True, text=True).stdout.split()[0]
            results["install"]["serve_venv_mb"] = round(int(du) / 1e6)
        installs = {
            "full": (sys.executable, ["--model", args.arch, "--pretrained", args.pretrained], False,
                     {"export": None, "arch": args.arch, "pretrained": args.pretrained}),
            "serve": (args.serve_python or sys.executable, ["--model", str(args.export)], not args.serve_python,
                      {"export": str(args.export)}),
        }
        trees = {"": ROOT}
        if args.baseline_tree:
            trees = {"baseline ": args.baseline_tree.resolve(), "": ROOT}
        port = 7890
        for label, root in trees.items():
            for name, (python, flags, block, spec) in installs.items():
                env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root),
                       "SKETCHLVM_GALLERIES_DIR": str(tmp / f"galleries-{label.strip() or 'tree'}-{name}")}
                spec = {**spec, "gallery": str(gallery)}
                query = query_run(python, spec, env, block, root)  # also warms the ONNX export cache (full install)
                port += 1
                # The app indexes the gallery itself (its own index folder), as a new user's does.
                env["SKETCHLVM_GALLERIES_DIR"] += "-app"
                app = app_run(python, [*flags, "--gallery", str(gallery)], env, block, port,
                              tmp / f"{label.strip()}{name}.log", root)
                results[label + name] = {**app, **query}
                print(label + name, results[label + name], flush=True)
        if args.baseline_tree:
            for name in installs:
                now, before = results[name], results["baseline " + name]
                ratios = {key: round(now[key] / before[key], 2) for key in now
                          if isinstance(now[key], (int, float)) and not isinstance(now[key], bool) and before.get(key)}
                print(f"{name}: this tree / baseline: {ratios}")
        print(json.dumps(results, indent=1))
        if args.out:
            args.out.write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
