"""How many ONNX Runtime sessions one image graph should have: memory and speed of each layout, side by side.

    python bench/bench_sessions.py EXPORT_FOLDER/visual/model.onnx [--repeats 15]

Layouts, each in a fresh process (RSS is per process):

The heap is trimmed once the sessions are built, as the app does (``onnx_sessions.trim_heap``).

- ``two``: a query session and an index session, both pre-packing (what the app did before issue 30);
- ``unpacked``: the query session pre-packs, the index session has pre-packing off;
- ``one``: one pre-packing session runs both queries and index slices.

Each prints RSS once both roles have run, batch-1 query p50, batch-8 index ms per photo, and query p50
while another thread runs index slices (the app answering during indexing), then ratios against ``two``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

LAYOUTS = ("two", "unpacked", "one")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sketchlvm.runtime.onnx_sessions import trim_heap


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def options(ort, prepack: bool):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 0
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not prepack:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    return opts


def measure(layout: str, graph: str, repeats: int) -> dict:
    import numpy as np
    import onnxruntime as ort

    base = rss_mb()
    query = ort.InferenceSession(graph, options(ort, True), providers=["CPUExecutionProvider"])
    index = query if layout == "one" else ort.InferenceSession(graph, options(ort, layout == "two"),
                                                               providers=["CPUExecutionProvider"])
    name = query.get_inputs()[0].name
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, 3, 224, 224), dtype=np.float32)
    eight = rng.standard_normal((8, 3, 224, 224), dtype=np.float32)
    trim_heap()  # as OnnxSessions does once a session is built
    query.run(None, {name: one})
    index.run(None, {name: eight})
    rss = rss_mb() - base

    def p50_query() -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            query.run(None, {name: one})
            times.append(time.perf_counter() - t)
        return 1000 * statistics.median(times)

    alone = p50_query()
    times = []
    for _ in range(max(3, repeats // 3)):
        t = time.perf_counter()
        index.run(None, {name: eight})
        times.append(time.perf_counter() - t)
    per_photo = 1000 * statistics.median(times) / 8
    stop = threading.Event()

    def indexing() -> None:
        while not stop.is_set():
            index.run(None, {name: eight})

    worker = threading.Thread(target=indexing)
    worker.start()
    try:
        during = p50_query()
    finally:
        stop.set()
        worker.join()
    return {"rss_mb": round(rss), "query_p50_ms": round(alone, 1), "index_ms_per_photo": round(per_photo, 1),
            "query_p50_during_index_ms": round(during, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graph")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--layout", choices=LAYOUTS, help=argparse.SUPPRESS)  # one layout, in a child process
    args = parser.parse_args()
    if args.layout:
        print("RESULT" + json.dumps(measure(args.layout, args.graph, args.repeats)))
        return
    results = {}
    for layout in LAYOUTS:
        command = [sys.executable, __file__, args.graph, "--repeats", str(args.repeats), "--layout", layout]
        done = subprocess.run(command,
                              capture_output=True, text=True, check=True)
        results[layout] = json.loads(done.stdout.split("RESULT", 1)[1])
        print(layout, results[layout], flush=True)
    base = results["two"]
    for layout in LAYOUTS[1:]:
        ratios = {key: round(results[layout][key] / base[key], 2) for key in base}
        print(f"{layout} / two: {ratios}")


if __name__ == "__main__":
    main()
