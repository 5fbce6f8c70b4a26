"""Load: many people drawing and searching at once, each with their own sketch, in both modes.

Each simulated user is one Gradio session that draws its own real Quick, Draw! drawing: its strokes
arrive in ``--stages`` steps, and every step is searched in both modes through ``/search`` with the
stroke JSON the browser's canvas sends on pen-up; then the finished drawing, rendered to a PNG, is
uploaded through ``/upload_sketch`` in both modes.
Users loop over their script until the time is up (bounded in time and in request count).

The users talk to the app as curl or a phone app would, over Gradio's documented HTTP API (``--client
http``, the default: ``HttpUser``, one keep-alive httpx connection and session each), or each through
its own gradio_client ``Client`` (``--client gradio_client``, what the README's examples use). The
load generator runs on the server's cores; gradio_client costs about 140 ms of client CPU per request
there (its own event-stream thread, API description, per-call upload client), which the server then
does not get: the HTTP users cost a small fraction of that. The single-user baseline goes through the
same kind of client as the load.

Every answer is checked against the ranking computed beforehand in this process with the same model
and gallery index (the captions carry category, score to 3 decimals and file name, in rank order), so a
request that is answered with another user's results, another mode's or another stage's counts as
wrong. The workload is arranged so that this check has teeth: the 16 sketches and 2 modes give pairwise
different rankings (asserted), which a random-weight model only does with distinct per-mode weights,
so a checkpoint with strongly perturbed per-mode state is written first (``make_checkpoint``).

Two load phases (``--pacing``, both by default, one after the other against the same server):
*closed loop*, each user sending again the moment it is answered (16 people who never draw: on 2 cores
this is a stress test, and its p50 ratio is at least 8x whatever the server does), and *paced*, each
user sending at the real pen-up times of its drawing (the Quick, Draw! ``ts`` of the strokes a request
adds, counted from the previous send, since a person keeps drawing while a search runs; the other-mode
search and the uploads follow at once). The paced phase is the one the issue's target is judged on.

Printed per phase: p50 / p95 latency, requests/s, failed (exception or timeout) and wrong requests, the
server's CPU per request, the p50 of each request kind (with ``--model``, both modes are zero-shot and
share one encoder, so a drawing's second mode is a re-rank from its cached embedding: the overall p50 of
the single user falls near the edge between re-ranks and encodes), and the ratio
of the p50 under load to the p50 of a single user measured in the same run against the same server
(that single user walks through all the users' scripts in turn, so its cache-hit rate matches the load
phase's: ~every request runs the encoder, as new strokes would).

``--live`` (or ``--live-only``) adds the live-results phase (``bench/load/live.py``): after an unmeasured
warm-up of ``--users`` pages (``LIVE_WARMUP_S``), one open page alone, then ``--users`` pages at once,
then the same pages at pen-up only (the control), each drawing its drawing at its recorded pace and
sending what the canvas sends, mid-stroke and at pen-up, through the page's own search event; printed:
p50 / p95, requests per stroke, dropped, shed, failed, stale and wrong answers, the ratios to the single
page and to pen-up only, and each phase's server and client CPU.

The server is the real CLI (``python app.py --gallery ... --checkpoint ...``) in its own process, so
client threads and server do not share a GIL; ``--in-process`` runs it in this process instead (as
tests/bench/test_load.py does).

    python -m bench.bench_load --users 16 --seconds 60
    python -m bench.bench_load --users 16 --seconds 60 --model ViT-B-32   # the issue's target model
    python -m bench.bench_load --users 4 --seconds 10 --baseline-seconds 5     # quick check
    python -m bench.bench_load --users 16 --seconds 30 --model ViT-B-32 --live-only  # live results
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
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_query import DEFAULT_DATA, wait_for_complete_index, wait_for_server  # noqa: E402
from bench.load import MODES  # noqa: E402
from bench.load.hostile import HostileClient  # noqa: E402
from bench.load.client import CLIENTS, Sample, free_port, interleaved, run_load, run_session  # noqa: E402
from bench.load.report import by_kind, cpu_seconds, summarise  # noqa: E402
from bench.load.workload import build_scripts, load_model, prepare, torch_threads  # noqa: E402

# --------------------------------------------------------------------------------------------
# Script


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=16, help="simultaneous users (default: 16)")
    parser.add_argument("--seconds", type=float, default=60, help="length of the load phase (default: 60)")
    parser.add_argument("--baseline-seconds", type=float, default=None,
                        help="length of the single-user phase (default: a quarter of --seconds, 5-15 s)")
    parser.add_argument("--stages", type=int, default=4, help="drawing steps searched per sketch (default: 4)")
    parser.add_argument("--classes", type=int, default=8, help="gallery classes (default: 8)")
    parser.add_argument("--per-class", type=int, default=3, help="gallery photos per class (default: 3)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Sketchy subset (photo/, sketch/)")
    parser.add_argument("--pacing", choices=("both", "closed", "paced", "hostile"), default="both",
                        help="load phases: closed = no pause between a user's requests; paced = sent at the real "
                        "pen-up times of the user's drawing (its Quick, Draw! ts); both (default), one after the other; "
                        "hostile = paced, then paced again beside one hostile client (bench/load/hostile.py)")
    parser.add_argument("--client", choices=CLIENTS, default="http",
                        help="how the simulated users talk to the app: http = Gradio's HTTP API with httpx (light, "
                        "default); gradio_client = one gradio_client Client per user")
    parser.add_argument("--live", action="store_true",
                        help="also a live-results phase: each user an open page drawing its drawing at its own pace, "
                        "sending what the canvas sends mid-stroke and at pen-up through the page's search event "
                        "(bench/load/live.py), against one such page alone")
    parser.add_argument("--live-only", action="store_true", help="only the live-results phase")
    parser.add_argument("--in-process", action="store_true", help="run the server in this process (shared GIL)")
    parser.add_argument("--server-threads", type=int, default=None,
                        help="torch threads in the server (OMP_NUM_THREADS); default: torch's own, as app.py runs")
    parser.add_argument("--server-timeout", type=float, default=180, help="seconds to wait for app.py to start")
    parser.add_argument("--model", metavar="ARCH", default=None,
                        help="an open_clip architecture with random weights and no checkpoint, e.g. ViT-B-32 (the "
                        "load target's model; both modes are then zero-shot, so only cross-talk between users and "
                        "drawing steps is checked); default: the tiny test tower with a perturbed checkpoint")
    args = parser.parse_args(argv)
    if not (args.data / "photo").is_dir():
        print(f"error: no Sketchy data at {args.data} (--data or SKETCHLVM_SHARED_DATA)", file=sys.stderr)
        return 2
    baseline_s = args.baseline_seconds if args.baseline_seconds is not None else min(15.0, max(5.0, args.seconds / 4))

    import app as app_module
    from sketchlvm.gallery import build_gallery_index
    from sketchlvm.search import Searcher

    work = Path(tempfile.mkdtemp(prefix="sketchlvm-load-"))
    server = demo = None
    try:
        workload = prepare(work, args.data, args.classes, args.per_class, args.users)
        if args.model:
            from sketchlvm.model.factory import create_sketchlvm

            model = create_sketchlvm(arch=args.model, pretrained="none", device="cpu")
        else:
            model = load_model(workload.checkpoint)
        index = build_gallery_index(workload.gallery, model, cache_dir=workload.cache, show_progress_bar=False)
        k = len(index)  # the whole gallery, ranked: the strictest check
        searcher = Searcher(model, index, default_k=k)
        with torch_threads(1):  # the live phase checks its answers afterwards, and needs no script
            scripts = [] if args.live_only else build_scripts(searcher, workload.sketches, work / "users", args.stages, k)
        searcher.clear_cache()
        if args.server_threads and args.in_process:
            import torch

            torch.set_num_threads(args.server_threads)

        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        if args.in_process:
            state = app_module.AppState(searcher, gallery_dir=workload.gallery, cache_dir=index.cache_dir)
            demo = app_module.build_demo(state)
            app_module.launch(demo, **app_module.launch_kwargs(state, "127.0.0.1", port), prevent_thread_lock=True,
                              quiet=True)
        else:
            env = {**os.environ, "SKETCHLVM_GALLERIES_DIR": str(work / "galleries")}
            if args.client == "gradio_client" or args.live or args.live_only:
                # these users all come from 127.0.0.1: one client to the fair queue's allowance
                env["SKETCHLVM_CLIENT_REQUESTS"] = str(4 * args.users)
                env["SKETCHLVM_CLIENT_COST"] = str(64 * args.users)
            if args.server_threads:
                env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.server_threads)
            cmd = [sys.executable, str(ROOT / "app.py"), "--gallery", str(workload.gallery), "--model",
                   model.arch, "--pretrained", "none", "--device", "cpu", "--port", str(port), "--top-k", str(k)]
            if not args.model:
                cmd += ["--checkpoint", str(workload.checkpoint)]
            server = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
            wait_for_server(url, server, timeout_s=args.server_timeout)
            # The page answers before the gallery is indexed: load the whole gallery only.
            wait_for_complete_index(work / "galleries", server, time.perf_counter() + args.server_timeout)
            # From here on nobody reads the server's stderr: drain it, or a full pipe (64 kB of log lines,
            # e.g. one per refused request) blocks the server's next write, and with it the server.
            threading.Thread(target=lambda: [None for _ in server.stderr], name="server-stderr", daemon=True).start()
        if args.live or args.live_only:
            print(f"model {model.arch}; gallery {len(index)} photos, k={k}; {os.cpu_count()} CPUs, load average "
                  f"{os.getloadavg()[0]:.1f}")
            live_phase(url, workload.sketches, args.users, args.seconds, baseline_s, searcher, k, server)
        if args.live_only:
            return 0
        print(f"{args.users} users x {len(scripts[0])} requests per script ({args.stages} drawing stages x "
              f"{len(MODES)} modes on /search + {len(MODES)} uploads); model {model.arch}; gallery {len(index)} photos, k={k}; "
              f"server {'in this process' if args.in_process else 'app.py in its own process'}, torch threads "
              f"{args.server_threads or 'default'}; clients: {args.client}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

        single, single_wall = [], 0.0
        if baseline_s > 0:
            began = time.perf_counter()
            single = run_session(url, -1, interleaved(scripts), baseline_s, warmup=3, client=args.client)
            single_wall = time.perf_counter() - began
        one = summarise(single, single_wall) if single else None
        if one is not None:
            print(f"single user ({baseline_s:.0f} s, no pause): {one.line()}")
            print(f"  {by_kind(one)}")
        phases = {"closed": ["closed"], "paced": ["paced"], "both": ["closed", "paced"],
                  "hostile": ["paced", "hostile"]}[args.pacing]
        paced_p50 = None
        loaded: list[Sample] = []
        for phase in phases:
            server_cpu, client_cpu = cpu_seconds(server.pid) if server else float("nan"), cpu_seconds()
            hostile = HostileClient(url).start() if phase == "hostile" else None
            try:
                samples, wall = run_load(url, scripts, args.seconds, paced=phase != "closed", client=args.client)
            finally:
                hostile_counts = hostile.stop() if hostile is not None else None
            server_cpu = (cpu_seconds(server.pid) if server else float("nan")) - server_cpu
            client_cpu = cpu_seconds() - client_cpu
            loaded += samples
            load = summarise(samples, wall)
            label = {"closed": "closed loop: each user sends again as soon as it is answered",
                     "paced": "paced: each user sends at its drawing's real pen-up times (Quick, Draw! ts)",
                     "hostile": "paced, beside one hostile client (8 connections of the largest drawing, one address)",
                     }[phase]
            print(f"{args.users} users, {label} ({args.seconds:.0f} s): {load.line()}")
            print(f"  requests per user: min {min(load.per_user.values(), default=0)}, "
                  f"max {max(load.per_user.values(), default=0)}; by kind: {load.kinds}")
            print(f"  {by_kind(load, one)}")
            if phase == "paced":
                paced_p50 = load.p50_ms
            if hostile_counts is not None:
                print(f"  hostile client: {hostile_counts['answered']} answered, {hostile_counts['refused']} refused "
                      f"(429), {hostile_counts['failed']} failed")
                if paced_p50:
                    print(f"  [hostile] users' p50 beside the hostile client / without it: {load.p50_ms:.0f} / "
                          f"{paced_p50:.0f} ms = {load.p50_ms / paced_p50:.2f}x")
            if one is not None:
                print(f"  [{phase}] p50 under load / single-user p50: {load.p50_ms / one.p50_ms:.2f}x "
                      f"(p95: {load.p95_ms / one.p95_ms:.2f}x); throughput {load.per_s / one.per_s:.2f}x a single user's")
            if args.in_process:
                print(f"  encoder runs in the server: {searcher.encode_calls}; CPU {client_cpu:.1f} s (server and "
                      f"clients, one process) in {wall:.1f} s")
            else:
                print(f"  CPU during this phase: server {server_cpu:.1f} s ({1000 * server_cpu / max(1, load.requests):.0f}"
                      f" ms per request), clients {client_cpu:.1f} s, in {wall:.1f} s of {os.cpu_count()} CPUs")
        problems = [s for s in single + loaded if s.error or s.wrong]
        for sample in problems[:10]:
            print(f"  user {sample.user}: {sample.error or sample.wrong}")
        return 1 if problems else 0
    finally:
        if demo is not None:
            demo.close()
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


LIVE_WARMUP_S = 15.0  # the live phase's unmeasured warm-up (live_phase)


def live_phase(url: str, sketches: list[Path], users: int, seconds: float, baseline_s: float, searcher, k: int,
               server) -> None:
    """One page alone, then ``users`` pages at once, each drawing at its own pace with live results."""
    import json

    from bench.load.live import check_answers, run_live
    from bench.load.report import live_line

    drawings = [json.loads(p.read_text())["drawing"] for p in sketches]
    mode = MODES[0]
    # Not measured: the same pages for a while first. The first phase under load ran slower in its first
    # half every time (p50 500-640 ms, then 310-450) while later phases did not: the server warms up
    # under its first load (worker threads, ONNX Runtime's buffers for each batch size). Every phase
    # below then meets the same warm server.
    run_live(url, drawings, users, LIVE_WARMUP_S, mode, k)
    one, one_wall = run_live(url, drawings, 1, max(baseline_s, 20.0), mode, k)

    def cpu() -> tuple[float, float]:  # (server, this process: the pages' clients share the cores)
        return (cpu_seconds(server.pid) if server else float("nan")), cpu_seconds()

    before = cpu()
    many, many_wall = run_live(url, drawings, users, seconds, mode, k)
    between = cpu()
    # The control: the same pages searching at pen-up only (SKETCHLVM_LIVE_STROKES=0), same server.
    penup, penup_wall = run_live(url, drawings, users, seconds, mode, k, live=False)
    after = cpu()
    server_cpu, client_cpu = between[0] - before[0], between[1] - before[1]
    everything = one.samples + many.samples + penup.samples
    with torch_threads(1):
        check_answers(everything, searcher, mode, k)
    alone = live_line(one, one_wall)
    print(f"live results, one page alone ({one_wall:.0f} s): {alone.text}")
    loaded = live_line(many, many_wall)
    print(f"live results, {users} pages at once, each drawing at its own pace ({many_wall:.0f} s): {loaded.text}")
    print(f"  [live] p50 under load / one page's p50: {loaded.p50_ms / alone.p50_ms:.2f}x (p95: "
          f"{loaded.p95_ms / alone.p95_ms:.2f}x); server CPU {server_cpu:.1f} s, clients' {client_cpu:.1f} s; "
          f"load average {os.getloadavg()[0]:.1f}")
    control = live_line(penup, penup_wall)
    print(f"pen-up only, {users} pages at once ({penup_wall:.0f} s): {control.text}")
    print(f"  [pen-up only] p50 under load / one live page's p50: {control.p50_ms / alone.p50_ms:.2f}x; "
          f"live / pen-up only p50 under load: {loaded.p50_ms / control.p50_ms:.2f}x; server CPU "
          f"{after[0] - between[0]:.1f} s, clients' {after[1] - between[1]:.1f} s")
    for sample in [s for s in everything if s.error or s.wrong or s.stale][:10]:
        print(f"  user {sample.user}: {sample.error or sample.wrong or sample.stale}")


if __name__ == "__main__":
    sys.exit(main())
