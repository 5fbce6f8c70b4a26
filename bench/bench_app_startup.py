"""App startup benchmark, the app half (a script, not a test): from ``python app.py`` to a page that
answers, and to a first search result, against the time to embed the whole gallery, in the same run.

Spawns ``python app.py --gallery G --model ARCH --pretrained none --port FREE`` on N real Sketchy photos
(symlinked into a temp folder, read in place) with an empty index folder ($SKETCHLVM_GALLERIES_DIR), then
times from the spawn:

    page        GET / answers 200 (the page is up; indexing runs in the background)
    first hit   /search (a drawn triangle, through gradio_client) returns photos
    all         /status says every photo is indexed (the baseline: what a synchronous start waited for)

and prints page / all and first hit / all. Random weights time the same as real ones.

    python bench/bench_app_startup.py                                        # ViT-B/32, 2,000 photos
    python bench/bench_app_startup.py --photos 200 --arch SketchLVM-Tiny     # a quick check
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.photos import place_photos  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "sketchy" / "photo"
TRIANGLE = "[[[10,60,110],[10,60,10]],[[10,110],[110,110]]]"  # stroke JSON, as the canvas sends it
DONE = re.compile(r"\*\*Index:\*\* ([\d,]+) photos indexed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(what: str, check, proc: subprocess.Popen, log: Path, timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"app.py exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        value = check()
        if value:
            return value
        time.sleep(every)
    sys.exit(f"timed out after {timeout:.0f} s waiting for {what}; log: {log}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=2000)
    p.add_argument("--arch", default="ViT-B-32-quickgelu")
    p.add_argument("--runtime", default="auto", help="app.py --runtime (auto: ONNX Runtime on CPU when installed)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the whole gallery")
    args = p.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"needs the Sketchy photos in {SHARED}")
    from gradio_client import Client

    with tempfile.TemporaryDirectory(prefix="bench-app-startup-") as tmp:
        work = Path(tmp)
        n = place_photos(SHARED, work / "gallery", args.photos, link=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "SKETCHLVM_GALLERIES_DIR": str(work / "galleries"), "HF_HUB_OFFLINE": "1"}
        log = work / "app.log"
        command = [sys.executable, "app.py", "--gallery", str(work / "gallery"), "--model", args.arch,
                   "--pretrained", "none", "--runtime", args.runtime, "--port", str(port)]
        with open(log, "w") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                def page_answers():
                    try:
                        return httpx.get(url + "/", timeout=2).status_code == 200
                    except httpx.HTTPError:
                        return False

                until("the page", page_answers, proc, log, args.timeout)
                t_page = time.perf_counter() - t0
                client = Client(url, verbose=False, analytics_enabled=False)
                until("a first result", lambda: client.predict(TRIANGLE, "category", 12, api_name="/search")[0],
                      proc, log, args.timeout, every=0.5)
                t_first = time.perf_counter() - t0
                status = until("the whole gallery", lambda: DONE.search(client.predict(api_name="/status")),
                               proc, log, args.timeout, every=1.0)
                t_all = time.perf_counter() - t0
                indexed = int(status[1].replace(",", ""))
            finally:
                proc.terminate()
                proc.wait(30)
    print(f"{n} photos (Sketchy, symlinked), {args.arch} random weights, --runtime {args.runtime}, "
          f"{os.cpu_count()} CPUs; times from spawning `python app.py`:")
    print(f"  page answers (GET / 200)   {t_page:8.1f} s   (ratio to all: {t_page / t_all:.3f})")
    print(f"  first search result        {t_first:8.1f} s   (ratio to all: {t_first / t_all:.3f})")
    print(f"  all {indexed} photos indexed  {t_all:8.1f} s   (embedding after the page: {t_all - t_page:.1f} s, "
          f"{indexed / max(1e-9, t_all - t_page):.1f} photos/s)")


if __name__ == "__main__":
    main()
