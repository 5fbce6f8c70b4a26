"""Drawing in a real browser: pen-up -> results, pointer-move cost, and the bytes of the results.

Headless Chromium (Debian ``chromium`` through Playwright) draws real Quick, Draw! strokes with the
mouse on the canvas of ``python app.py`` (its own process), running ViT-B/32 with random weights over
a gallery of ``--photos`` photos of ``--side`` x ``--side`` px, generated into a temp dir from real
Sketchy photos (upscaled, saved as JPEG quality 90, as a camera would). Per stroke it measures:

- **pen-up -> results shown**: from the canvas's ``pointerup`` until the results list has changed and
  every result image has loaded, timed in the page (``performance.now``). Reported as p50 / p95 and as
  a ratio to the **floor** measured in the same run, in this process, while the app is idle: open_clip's
  bare ``encode_image`` of one preprocessed 224 px image plus a faiss ``IndexFlatIP`` exact search of the
  gallery's vectors;
- **pointer move**: wall time of one ``page.mouse.move`` while the pen is down on the canvas (the page
  handles the event before Playwright returns), against the same move over a part of the page with no
  handler (baseline, same run);
- **bytes of the results**: the size of the k (12) result images shown after the stroke, as served;
- **mid-stroke pause -> results for the drawing so far** (issue 28): the pen stops halfway through a
  stroke and stays down; from its last move (and from the moment the canvas sent the drawing so far)
  until the marked results of that drawing are shown and loaded, p50 / p95 against the same floor;
- **requests per drawing, live against pen-up only**: real Quick, Draw! drawings replayed with their own
  timings (every point at its recorded millisecond); each request the page sends is one encode on the
  server, and a page without mid-stroke queries sends one per stroke.

The browser shares the CPU with the server here, while the floor is measured alone: on a 2-core machine
the ratio includes that contention.

    python -m bench.bench_browser                       # 100 photos of 3000 x 3000, 30 strokes
    python -m bench.bench_browser --photos 20 --strokes 8  # quick check
    python -m bench.bench_browser --photos 20 --side 1000 --strokes 8 --pauses 8 --replays 3  # short, shared machine
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_load import free_port  # noqa: E402
from bench.bench_query import DEFAULT_DATA, wait_for_complete_index, wait_for_server  # noqa: E402

CHROMIUM = Path(os.environ.get("SKETCHLVM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
TARGET_RATIO_TORCH = 3.0
TARGET_RATIO_FAST = 2.0  # with the fast CPU runtime (ONNX Runtime, the default on CPU; issue 10)
TARGET_MOVE_MS = 25.0
TARGET_RESULT_BYTES = 400_000
RESULTS_TIMEOUT_MS = 30_000

# Installed in the page: times pen-up -> "results changed and all loaded".
PAGE_PROBE = """
() => {
  const canvas = document.querySelector('#sketchlvm-canvas canvas');
  const $ = (selector) => document.querySelector(selector);  // looked up each time: Gradio re-renders
  const text = () => ($('#sketchlvm-message [data-testid=markdown]') || {}).innerText || '';  // not the status tracker
  const snapshot = () => text() + '|' +
    [...document.querySelectorAll('#sketchlvm-results img')].map(i => i.getAttribute('src')).join(',') + '|' +
    [...document.querySelectorAll('#sketchlvm-results .caption-label')].map(c => c.innerText).join(',');
  window.__bench = { up: 0, shown: 0, srcs: [], lastMove: 0, sentAt: 0, partialShown: 0 };
  canvas.addEventListener('pointermove', () => { window.__bench.lastMove = performance.now(); }, true);
  // The moment the canvas sends the drawing so far (canvas.js calls page.queryChanged just before).
  const page = window.SketchLVMPage;
  const changed = page.queryChanged;
  page.queryChanged = () => { window.__bench.sentAt = performance.now(); changed(); };
  canvas.addEventListener('pointerup', () => {
    const before = snapshot();
    const state = window.__bench;
    state.up = performance.now();
    state.shown = 0;
    const view = $('#sketchlvm-results').getBoundingClientRect();
    const visible = (i) => {  // lazily loaded tiles scrolled out of view are not waited for
      const r = i.getBoundingClientRect();
      return r.bottom > view.top && r.top < view.bottom && r.bottom > 0 && r.top < window.innerHeight;
    };
    const tick = () => {
      const imgs = [...document.querySelectorAll('#sketchlvm-results img')];
      const done = text().includes('best match');
      const loaded = imgs.every(i => (i.complete && i.naturalWidth > 0) || !visible(i));
      if (done && snapshot() !== before && imgs.length && loaded) {
        state.shown = performance.now();
        state.srcs = imgs.map(i => i.src);

      } else if (performance.now() - state.up < %d) {
        requestAnimationFrame(tick);
      }
    };
    requestAnimationFrame(tick);
  }, true);
}
""" % RESULTS_TIMEOUT_MS


def make_photos(data: Path, count: int, side: int, dest: Path) -> None:
    """``count`` photos of ``side`` x ``side`` px: real Sketchy photos upscaled, one folder per class."""
    from PIL import Image

    sources = sorted((data / "photo").glob("*/*.jpg"))
    if not sources:
        raise FileNotFoundError(f"no Sketchy photos under {data / 'photo'}")
    step = max(1, len(sources) // count)
    for i, source in enumerate(sources[::step][:count]):
        folder = dest / source.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(source) as photo:
            photo.convert("RGB").resize((side, side), Image.Resampling.BICUBIC).save(
                folder / f"{i:04d}-{source.name}", quality=90)


def drawings(quickdraw: Path, strokes_wanted: int) -> list[list]:
    """Real Quick, Draw! drawings, one per word, until they hold ``strokes_wanted`` strokes in all."""
    from sketchlvm.preprocess.strokes import load_ndjson

    out, total = [], 0
    for path in sorted(quickdraw.glob("*.ndjson")):
        record = next((r for r in load_ndjson(path, limit=50) if 2 <= len(r["drawing"]) <= 8), None)
        if record is None:
            continue
        out.append(record["drawing"])
        total += len(record["drawing"])
        if total >= strokes_wanted:
            break
    return out


def measure_floor(gallery_vectors: np.ndarray, k: int, repeats: int) -> list[float]:
    """Bare open_clip ViT-B/32 encode_image (1 image, random weights) + faiss exact search, seconds each."""
    import faiss
    import open_clip
    import torch

    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    flat = faiss.IndexFlatIP(gallery_vectors.shape[1])
    flat.add(np.ascontiguousarray(gallery_vectors, dtype="float32"))
    image = torch.rand(1, 3, 224, 224)
    times = []
    with torch.no_grad():
        for i in range(repeats + 3):
            started = time.perf_counter()
            q = torch.nn.functional.normalize(model.encode_image(image), dim=-1).numpy()
            flat.search(np.ascontiguousarray(q, dtype="float32"), k)
            if i >= 3:  # warm-up
                times.append(time.perf_counter() - started)
    return times


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def draw_stroke(page, points: list[tuple[float, float]], move_times: list[float]) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        started = time.perf_counter()
        page.mouse.move(x, y)
        move_times.append(time.perf_counter() - started)
    page.mouse.up()


# Waits (in the page) until the results of the drawing so far are shown: the answer is marked partial,
# answers the newest request, and every visible tile has loaded.
PARTIAL_SHOWN = """() => {
  const p = window.SketchLVMPage;
  const imgs = [...document.querySelectorAll('#sketchlvm-results img')];
  if (p.answer && p.answer.partial && p.answer.seq === p.seq && p.isCurrent(p.answer) && imgs.length
      && imgs.every(i => i.complete && i.naturalWidth > 0)) {
    if (!window.__bench.partialShown) window.__bench.partialShown = performance.now();
    return true;
  }
  return false;
}"""


# The same, or "skipped" when the canvas let this pause go by (the drawing grew too little since its last
# search): it has skipped since the pen's last move and sent nothing since.
PARTIAL_OR_SKIPPED = """() => {
  const b = window.__bench, p = window.SketchLVMPage;
  if ((%s)()) return "shown";
  if (p.skippedAt > b.lastMove && b.sentAt < b.lastMove && p.waitingSince == null) return "skipped";
  return false;
}""" % PARTIAL_SHOWN


def stroke_points(strokes: list, box: dict) -> list[list[tuple[float, float, float]]]:
    """Each stroke's points on screen, with their own times (ms since the drawing's first point)."""
    xs = [x for s in strokes for x in s[0]]
    ys = [y for s in strokes for y in s[1]]
    scale = 0.7 * box["width"] / max(max(xs) - min(xs), max(ys) - min(ys), 1)
    t0 = min(s[2][0] for s in strokes if len(s) > 2 and s[2]) if all(len(s) > 2 for s in strokes) else 0
    out = []
    for stroke in strokes:
        ts = stroke[2] if len(stroke) > 2 else [i * 16 for i in range(len(stroke[0]))]
        out.append([(box["x"] + 0.15 * box["width"] + (x - min(xs)) * scale,
                     box["y"] + 0.15 * box["height"] + (y - min(ys)) * scale, t - t0)
                    for x, y, t in zip(stroke[0], stroke[1], ts)])
    return out


def pause_latencies(page, drawings_: list[list], box: dict, count: int) -> tuple[list[float], list[float], int, int]:
    """Halfway through a stroke the pen stops and stays down: seconds from its last move, and from the
    canvas's send, until the results of the drawing so far are shown; and the pauses where the canvas sent
    nothing since the drawing had grown too little since its last search (its results stand), and the
    pauses that got no results in time."""
    from_pause, from_send, skipped, missed = [], [], 0, 0
    for strokes in drawings_:
        if len(from_pause) >= count:
            break
        page.get_by_role("button", name="Clear").click()
        page.wait_for_timeout(300)
        for points in stroke_points(strokes, box):
            if len(points) < 8 or len(from_pause) >= count:
                continue
            half = len(points) // 2
            page.evaluate("() => { window.__bench.partialShown = 0; window.__bench.sentAt = 0; }")
            page.mouse.move(*points[0][:2])
            page.mouse.down()
            for x, y, _ in points[1:half]:
                page.mouse.move(x, y)
            try:
                outcome = page.wait_for_function(PARTIAL_OR_SKIPPED, timeout=RESULTS_TIMEOUT_MS).json_value()
                b = page.evaluate("() => window.__bench")
                if outcome == "skipped":
                    skipped += 1
                else:
                    from_pause.append((b["partialShown"] - b["lastMove"]) / 1000)
                    from_send.append((b["partialShown"] - b["sentAt"]) / 1000)
            except Exception:  # noqa: BLE001 (Playwright's TimeoutError)
                missed += 1
            for x, y, _ in points[half:]:
                page.mouse.move(x, y)
            page.mouse.up()
            page.wait_for_function("() => { const p = window.SketchLVMPage; return p.answer && !p.answer.partial "
                                   "&& p.answer.seq === p.seq; }", timeout=RESULTS_TIMEOUT_MS)
    return from_pause, from_send, skipped, missed


def replay(page, strokes: list, box: dict) -> tuple[int, int]:
    """Draw one real drawing at its own pace -> (requests the page sent, strokes)."""
    page.get_by_role("button", name="Clear").click()
    page.wait_for_function("() => { const p = window.SketchLVMPage; return p.answer && p.answer.seq === p.seq; }",
                           timeout=RESULTS_TIMEOUT_MS)
    before = page.evaluate("() => window.SketchLVMPage.seq")
    started = time.perf_counter()
    for points in stroke_points(strokes, box):
        for i, (x, y, t) in enumerate(points):
            wait = t / 1000 - (time.perf_counter() - started)
            if wait > 0:
                time.sleep(wait)
            if i == 0:
                page.mouse.move(x, y)
                page.mouse.down()
            else:
                page.mouse.move(x, y)
        page.mouse.up()
    page.wait_for_function("() => { const p = window.SketchLVMPage; return p.answer && p.answer.seq === p.seq; }",
                           timeout=RESULTS_TIMEOUT_MS)
    return page.evaluate("() => window.SketchLVMPage.seq") - before, len(strokes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100, help="gallery photos (default: 100)")
    parser.add_argument("--side", type=int, default=3000, help="photo side in px (default: 3000)")
    parser.add_argument("--strokes", type=int, default=30, help="strokes to draw and time (default: 30)")
    parser.add_argument("--k", type=int, default=12, help="results per search (default: 12)")
    parser.add_argument("--pauses", type=int, default=10, help="mid-stroke pauses to time (default: 10)")
    parser.add_argument("--replays", type=int, default=4, help="drawings replayed at their own pace (default: 4)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Sketchy subset (photo/)")
    parser.add_argument("--server-timeout", type=float, default=600, help="seconds for app.py to index and start")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (gallery, screenshots)")
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        print(f"error: no Chromium at {CHROMIUM} (set SKETCHLVM_CHROMIUM)", file=sys.stderr)
        return 2
    import httpx
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="sketchlvm-browser-"))
    server = None
    try:
        gallery = work / "gallery"
        started = time.perf_counter()
        make_photos(args.data, args.photos, args.side, gallery)
        photo_bytes = sum(p.stat().st_size for p in gallery.rglob("*.jpg"))
        print(f"gallery: {args.photos} photos of {args.side} x {args.side} px, {photo_bytes / 1e6:.0f} MB "
              f"(made in {time.perf_counter() - started:.0f} s)")
        port = free_port()
        env = dict(os.environ, SKETCHLVM_GALLERIES_DIR=str(work / "indexes"))
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--gallery", str(gallery), "--model", "ViT-B-32",
             "--pretrained", "none", "--device", "cpu", "--top-k", str(args.k), "--port", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        url = f"http://127.0.0.1:{port}/"
        started = time.perf_counter()
        wait_for_server(url, server, timeout_s=args.server_timeout)
        print(f"app.py (ViT-B-32, random weights) answering after {time.perf_counter() - started:.0f} s")
        # The page comes up before the gallery is indexed; time strokes only once every photo is searchable
        # (the complete build's vectors file appears), so no stroke races the background build for the CPU.
        vectors_file = wait_for_complete_index(work / "indexes", server, started + args.server_timeout)
        print(f"gallery indexed after {time.perf_counter() - started:.0f} s")

        vectors = np.load(vectors_file)
        floor = measure_floor(vectors, args.k, repeats=30)
        print(f"floor (bare encode_image + faiss exact, this process, app idle): p50 {pct(floor, 50) * 1e3:.0f} ms, "
              f"p95 {pct(floor, 95) * 1e3:.0f} ms")

        sizes: dict[str, int] = {}
        latencies, moves, baseline_moves, result_bytes, missed = [], [], [], [], 0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})

            def record(response):
                if "/gradio_api/file=" in response.url:
                    try:
                        sizes[response.url] = len(response.body())
                    except Exception:  # noqa: BLE001 (a redirect or aborted fetch has no body)
                        pass

            page.on("response", record)

            def size_of(src: str) -> int:  # a tile the browser has not fetched yet (lazy): ask the server
                if src not in sizes:
                    sizes[src] = len(httpx.get(src, timeout=30).content)
                return sizes[src]

            page.goto(url)
            canvas = page.locator("#sketchlvm-canvas canvas").first
            canvas.wait_for(state="visible")
            page.evaluate(PAGE_PROBE)
            box = canvas.bounding_box()
            header = page.locator("h1").first.bounding_box()
            for i in range(60):  # the same kind of move where nothing listens: the browser's own cost
                started = time.perf_counter()
                page.mouse.move(header["x"] + 5 + i % 40, header["y"] + 5)
                baseline_moves.append(time.perf_counter() - started)

            drawn = 0
            for number, strokes in enumerate(drawings(args.data.parent / "quickdraw", args.strokes + 1)):
                if number:
                    page.get_by_role("button", name="Clear").click()
                    page.wait_for_timeout(300)
                xs = [x for s in strokes for x in s[0]]
                ys = [y for s in strokes for y in s[1]]
                scale = 0.7 * box["width"] / max(max(xs) - min(xs), max(ys) - min(ys), 1)
                for stroke in strokes:
                    points = [(box["x"] + 0.15 * box["width"] + (x - min(xs)) * scale,
                               box["y"] + 0.15 * box["height"] + (y - min(ys)) * scale)
                              for x, y in zip(stroke[0], stroke[1])]
                    draw_stroke(page, points, moves)
                    try:
                        page.wait_for_function("() => window.__bench.shown > 0", timeout=RESULTS_TIMEOUT_MS)
                    except Exception:  # noqa: BLE001 (Playwright's TimeoutError)
                        missed += 1
                        continue
                    state = page.evaluate("() => window.__bench")
                    if drawn:  # the very first search warms the server up
                        latencies.append((state["shown"] - state["up"]) / 1000)
                        result_bytes.append(sum(size_of(src) for src in state["srcs"][: args.k]))
                    drawn += 1
                    if drawn > args.strokes:
                        break
                if drawn > args.strokes:
                    break
            page.screenshot(path=str(work / "bench-browser.png"), full_page=True)
            pool = drawings(args.data.parent / "quickdraw", 200)
            paused, paused_sent, paused_skipped, paused_missed = pause_latencies(page, pool, box, args.pauses)
            sent, drawn_strokes = 0, 0
            for strokes in pool[: args.replays]:
                requests, count = replay(page, strokes, box)
                sent += requests
                drawn_strokes += count
            browser.close()

        p50, p95 = pct(latencies, 50), pct(latencies, 95)
        ratio = p50 / pct(floor, 50)
        runtime = os.environ.get("SKETCHLVM_RUNTIME", "auto")  # app.py reads it too; auto = ONNX Runtime on CPU
        target = TARGET_RATIO_TORCH if runtime == "torch" else TARGET_RATIO_FAST
        move_p50 = pct(moves, 50) * 1e3
        bytes_p50, bytes_max = pct(result_bytes, 50), max(result_bytes or [float("nan")])
        print(f"strokes timed: {len(latencies)} (missed {missed}); pointer moves: {len(moves)}")
        print(f"pen-up -> results shown: p50 {p50 * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms = {ratio:.2f}x the floor "
              f"(p95 {p95 / pct(floor, 50):.2f}x); target <= {target:.0f}x with runtime {runtime}")
        print(f"pointer move while drawing: p50 {move_p50:.1f} ms, p95 {pct(moves, 95) * 1e3:.1f} ms "
              f"(over the page header: p50 {pct(baseline_moves, 50) * 1e3:.1f} ms); target <= {TARGET_MOVE_MS:.0f} ms")
        print(f"{args.k} result images: p50 {bytes_p50 / 1e3:.0f} kB, max {bytes_max / 1e3:.0f} kB "
              f"(the originals: ~{photo_bytes / args.photos * args.k / 1e6:.1f} MB); target <= "
              f"{TARGET_RESULT_BYTES / 1e3:.0f} kB")
        floor_p50 = pct(floor, 50)
        print(f"mid-stroke pauses: {len(paused)} searched, {paused_skipped} let go by (the drawing grew less than "
              f"the canvas's GROWTH since its last search), {paused_missed} with no results in time")
        print(f"mid-stroke pause -> results for the drawing so far ({len(paused)} pauses): from the last move "
              f"p50 {pct(paused, 50) * 1e3:.0f} ms = {pct(paused, 50) / floor_p50:.2f}x the floor, p95 "
              f"{pct(paused, 95) * 1e3:.0f} ms = {pct(paused, 95) / floor_p50:.2f}x; from the canvas's send p50 "
              f"{pct(paused_sent, 50) * 1e3:.0f} ms = {pct(paused_sent, 50) / floor_p50:.2f}x, p95 "
              f"{pct(paused_sent, 95) * 1e3:.0f} ms = {pct(paused_sent, 95) / floor_p50:.2f}x; target <= 1.3x")
        print(f"requests per drawing, {args.replays} drawings replayed at their own pace: live {sent} for "
              f"{drawn_strokes} strokes = {sent / max(drawn_strokes, 1):.2f}x pen-up only; target <= 2x")
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        if args.keep:
            print(f"kept {work} (screenshot: bench-browser.png)")
        ok = ratio <= target and move_p50 <= TARGET_MOVE_MS and bytes_max <= TARGET_RESULT_BYTES
        print("targets: " + ("met" if ok else "NOT all met"))
        return 0
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
