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

The server is the real CLI (``python app.py --gallery ... --checkpoint ...``) in its own process, so
client threads and server do not share a GIL; ``--in-process`` runs it in this process instead (as
tests/test_load.py does).

    python -m bench.bench_load --users 16 --seconds 60
    python -m bench.bench_load --users 16 --seconds 60 --model ViT-B-32   # the issue's target model
    python -m bench.bench_load --users 4 --seconds 10 --baseline-seconds 5     # quick check
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_query import DEFAULT_DATA, make_gallery, wait_for_complete_index, wait_for_server  # noqa: E402
from sketchlvm.search import DEFAULT_TEXT_WEIGHT  # noqa: E402

MODES = ("category", "fine_grained")
REQUEST_TIMEOUT_S = 20.0  # one request; a hung server fails the request instead of hanging the run
MAX_REQUESTS_PER_USER = 100_000  # a second bound besides the clock
UNTIMED = ("connect", "warmup")  # failures before the timed loop: counted as failed, not timed


# --------------------------------------------------------------------------------------------
# Workload


@dataclass(frozen=True)
class Op:
    """One request of a user's script and the answer it must get."""

    kind: str  # "search" (canvas strokes) or "upload" (the upload button)
    path: Path  # the stroke JSON (search) or PNG (upload) sent
    mode: str
    k: int
    expected: tuple[str, ...]  # result captions in rank order: "category · 0.123 · file.jpg"
    pause_s: float = 0.0  # paced users: the real drawing time of the strokes this request adds (their ts)


@dataclass
class Workload:
    gallery: Path
    cache: Path
    checkpoint: Path
    sketches: list[Path]  # one drawing per user (a Quick, Draw! record as JSON), all different
    scripts: list[list[Op]] = field(default_factory=list)  # one per user


def make_checkpoint(path: Path, scale: float = 1.0, n_prompts: int = 3) -> Path:
    """A checkpoint for the tiny test tower with strongly perturbed, different state per mode.

    With the bare random tower (both modes zero-shot, hence identical) different sketches mostly get the
    same ranking, so a cross-talk check would be blind; with this one, 16 sketches x 2 modes give 32
    different rankings of a 24-photo gallery.
    """
    import open_clip
    import torch

    from sketchlvm.checkpoint import learned_state, save_checkpoint
    from sketchlvm.config import TINY_ARCH
    from sketchlvm.encoder import freeze_except, trainable_parameter_names
    from sketchlvm.model import build_prompted_encoder
    from sketchlvm.weights import register_model_configs, resolve_weights_source

    register_model_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clip = open_clip.create_model(TINY_ARCH, pretrained=None)
    states = {}
    for i, mode in enumerate(MODES):
        encoder = build_prompted_encoder(clip.visual, mode, n_prompts)
        names = trainable_parameter_names(encoder, "paper")
        generator = torch.Generator().manual_seed(1000 + i)
        with torch.no_grad():
            for param in freeze_except(encoder, "paper"):
                param.add_(scale * torch.randn(param.shape, generator=generator))
        states[mode] = learned_state(encoder, names)
    metadata = {"arch": TINY_ARCH, "pretrained": resolve_weights_source("none").identity(),
                "n_prompts": n_prompts, "trainable": "paper", "training": {"dataset": "none (load test)"}}
    return save_checkpoint(path, states, metadata)


def pick_drawings(quickdraw: Path, users: int, out_dir: Path, min_strokes: int = 8) -> list[Path]:
    """One real Quick, Draw! drawing per user, each of another word, saved as ``user<N>.json``."""
    from sketchlvm.strokes import load_ndjson

    out_dir.mkdir(parents=True, exist_ok=True)
    words = sorted(quickdraw.glob("*.ndjson"))
    chosen = []
    for path in words:
        record = next((r for r in load_ndjson(path, limit=100) if len(r["drawing"]) >= min_strokes), None)
        if record is None:
            continue
        out = out_dir / f"user{len(chosen):02d}-{path.stem.replace(' ', '_')}.json"
        out.write_text(json.dumps(record))
        chosen.append(out)
        if len(chosen) == users:
            return chosen
    raise ValueError(f"only {len(chosen)} Quick, Draw! words in {quickdraw} have a drawing of {min_strokes}+ strokes")


def drawing_stages(strokes: list, stages: int) -> list[list]:
    """The drawing as it grows: its first ceil(n * s / stages) strokes for s = 1..stages."""
    n = len(strokes)
    return [strokes[: max(1, -(-n * stage // stages))] for stage in range(1, stages + 1)]


def stage_pauses(strokes: list, stages: int) -> list[float]:
    """Seconds the person spent drawing each stage's strokes (Quick, Draw! ``ts``, ms from the drawing's
    start): the pen-up of the stage's last stroke minus that of the stage before (the first: minus the
    first point's time). Gaps between strokes count: they are part of drawing."""
    start = strokes[0][2][0] if len(strokes[0]) > 2 and strokes[0][2] else 0
    ends = [partial[-1][2][-1] if len(partial[-1]) > 2 and partial[-1][2] else start
            for partial in drawing_stages(strokes, stages)]
    return [max(0.0, (end - before) / 1000) for end, before in zip(ends, [start] + ends[:-1])]


def expected_captions(searcher, op_kind: str, path: Path, mode: str, k: int) -> tuple[str, ...]:
    """The captions the app must answer with, computed in-process as its handlers would."""
    from sketchlvm.transforms import load_photo
    from sketchlvm.webapp import AppState, caption, fit_to_canvas
    from sketchlvm.webapp.handlers import strokes_to_sketch

    if op_kind == "upload":
        query = fit_to_canvas(load_photo(path))  # what load_upload searches with
    else:
        query = strokes_to_sketch(AppState(searcher), path.read_text())
    return tuple(caption(r) for r in searcher.search(query, mode, k))


def build_scripts(searcher, sketches: list[Path], out_dir: Path, stages: int, k: int) -> list[list[Op]]:
    """Per user: every drawing stage in both modes, then the finished drawing uploaded in both modes.

    Raises if two requests of different users (or the two modes, or two stages) would get the same
    answer: the cross-talk check would not be able to tell them apart.
    """
    from sketchlvm.strokes import render_strokes

    scripts = []
    for user, sketch in enumerate(sketches):
        folder = out_dir / f"user{user:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        strokes = json.loads(sketch.read_text())["drawing"]
        ops = []
        pauses = stage_pauses(strokes, stages)
        for stage, partial in enumerate(drawing_stages(strokes, stages), 1):
            path = folder / f"stage{stage}.json"
            path.write_text(json.dumps(partial, separators=(",", ":")))
            for mode in MODES:  # the other mode follows at once (no pause: a click, counted as instant)
                ops.append(Op("search", path, mode, k, expected_captions(searcher, "search", path, mode, k),
                              pause_s=pauses[stage - 1] if mode == MODES[0] else 0.0))
        upload = folder / f"{sketch.stem}.png"
        render_strokes(strokes, size=512).save(upload)
        for mode in MODES:
            ops.append(Op("upload", upload, mode, k, expected_captions(searcher, "upload", upload, mode, k)))
        scripts.append(ops)
    owners: dict[tuple[str, ...], set[int]] = {}
    for user, ops in enumerate(scripts):
        for op in ops:
            owners.setdefault(op.expected, set()).add(user)
    shared = [users for users in owners.values() if len(users) > 1]
    if shared:
        raise AssertionError(f"users {sorted(shared[0])} would get identical answers: cross-talk undetectable")
    return scripts


def prepare(work: Path, data: Path, classes: int, per_class: int, users: int) -> Workload:
    """Gallery (first ``classes`` Sketchy classes x ``per_class`` photos), checkpoint, one drawing per user
    (Quick, Draw!, from ``data/../quickdraw``)."""
    make_gallery(data, classes, per_class, work / "gallery")
    checkpoint = make_checkpoint(work / "load-test.safetensors")
    drawings = pick_drawings(Path(data).parent / "quickdraw", users, work / "drawings")
    return Workload(work / "gallery", work / "cache", checkpoint, drawings)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads, then restore the previous setting.

    Precomputing answers uses 1: on a busy 2-core machine two OpenMP threads per encode are 15-50x slower
    than one (oversubscription), and the results are the same.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_model(checkpoint: Path):
    from sketchlvm.config import TINY_ARCH
    from sketchlvm.model import create_sketchlvm

    return create_sketchlvm(arch=TINY_ARCH, pretrained="none", checkpoint=checkpoint, device="cpu")


# --------------------------------------------------------------------------------------------
# Running users


@dataclass
class Sample:
    user: int
    kind: str
    mode: str
    latency_s: float
    error: str | None = None  # exception / timeout
    wrong: str | None = None  # answered, but not this request's answer


CLIENTS = ("http", "gradio_client")


class HttpUser:
    """One person's app (curl, a phone app) on Gradio's documented HTTP API, one keep-alive connection.

    ``POST /gradio_api/call/<api>`` with ``{"data": [...], "session_hash": ...}`` -> an event id, then
    ``GET /gradio_api/call/<api>/<event_id>``: server-sent events until ``event: complete`` (its
    ``data:`` line is the outputs) or ``event: error``. Files go to ``POST /gradio_api/upload`` first.
    The session hash is this user's own, so each user is one Gradio session, as with gradio_client.
    Much lighter than gradio_client on the client side, which matters when the load generator shares
    the server's cores.
    """

    def __init__(self, url: str, timeout_s: float):
        import uuid

        import httpx

        self.timeout_s = timeout_s
        self.session_hash = uuid.uuid4().hex[:11]
        self.http = httpx.Client(base_url=url.rstrip("/") + "/gradio_api", timeout=timeout_s)
        self.http.get("/info").raise_for_status()  # connects, as Client(url) does: a refused one fails here

    def call(self, api_name: str, data: list) -> list:
        began = time.monotonic()
        sent = self.http.post(f"/call/{api_name}", json={"data": data, "session_hash": self.session_hash})
        sent.raise_for_status()
        event_id = sent.json()["event_id"]
        event = None
        with self.http.stream("GET", f"/call/{api_name}/{event_id}") as stream:
            stream.raise_for_status()
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[len("event:"):].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = json.loads(line[len("data:"):])
                    if event == "error":
                        raise RuntimeError(f"/{api_name} answered an error: {payload}")
                    return payload
                if time.monotonic() - began > self.timeout_s:
                    raise TimeoutError(f"/{api_name} did not answer within {self.timeout_s:.0f} s")
        raise RuntimeError(f"/{api_name}: the event stream ended without an answer")

    def upload(self, path: Path) -> dict:
        answer = self.http.post("/upload", files=[("files", (path.name, path.read_bytes(), "image/png"))])
        answer.raise_for_status()
        return {"path": answer.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def answer(self, op: Op) -> tuple[str, ...]:
        # Every input of the endpoint is sent, defaults included (no words, the default weight), as a
        # client without gradio_client's API description has to. The raw outputs are every output of the
        # event, the page's private State too: the results are the first (search: results, message) or
        # the second (upload: sketch as searched, results, message, State).
        if op.kind == "search":
            gallery = self.call("search", [op.path.read_text(), op.mode, op.k, "", DEFAULT_TEXT_WEIGHT])[0]
        else:
            gallery = self.call("upload_sketch", [self.upload(op.path), op.mode, op.k, "", DEFAULT_TEXT_WEIGHT])[1]
        return tuple(item["caption"] for item in gallery)

    def close(self) -> None:
        self.http.close()


class GradioClientUser:
    """One person on gradio_client (its own ``Client``, so its own Gradio session), as the README shows."""

    def __init__(self, url: str, timeout_s: float):
        from gradio_client import Client

        self.timeout_s = timeout_s
        self.client = Client(url, verbose=False, analytics_enabled=False, download_files=False,
                             httpx_kwargs={"timeout": timeout_s})

    def answer(self, op: Op) -> tuple[str, ...]:
        from gradio_client import handle_file

        if op.kind == "search":
            job = self.client.submit(op.path.read_text(), op.mode, op.k, api_name="/search")
            gallery, _message = job.result(timeout=self.timeout_s)
        else:
            job = self.client.submit(handle_file(str(op.path)), op.mode, op.k, api_name="/upload_sketch")
            _shown, gallery, _message = job.result(timeout=self.timeout_s)
        return tuple(item["caption"] for item in gallery)

    def close(self) -> None:
        self.client.close()


def connect(url: str, client: str, timeout_s: float):
    if client not in CLIENTS:
        raise ValueError(f"unknown client {client!r}; choose one of {CLIENTS}")
    return (HttpUser if client == "http" else GradioClientUser)(url, timeout_s)


def run_session(url: str, user: int, ops: list[Op], seconds: float, *, start: int = 0,
                barrier: threading.Barrier | None = None, timeout_s: float = REQUEST_TIMEOUT_S,
                max_requests: int = MAX_REQUESTS_PER_USER, warmup: int = 0, paced: bool = False,
                client: str = "http") -> list[Sample]:
    """One simulated user: its own session (``client``: "http" or "gradio_client", see ``CLIENTS``),
    looping over ``ops`` from ``start`` until ``seconds`` pass.

    ``paced``: each request is sent no sooner than ``op.pause_s`` after the previous one was sent, as a
    person's pen-ups arrive (they keep drawing while a search runs, so a slow answer delays nothing
    further); otherwise at once after the previous answer (closed loop, no pause).
    """
    samples: list[Sample] = []
    user_client = None
    try:
        user_client = connect(url, client, timeout_s)
    except Exception as error:  # counted, not raised: a refused connection is a failed request
        samples.append(Sample(user, "connect", "-", 0.0, error=f"{type(error).__name__}: {error}"))
    try:
        try:
            for i in range(warmup if user_client is not None else 0):
                user_client.answer(ops[(start + i) % len(ops)])
        except Exception as error:
            samples.append(Sample(user, "warmup", "-", 0.0, error=f"{type(error).__name__}: {error}"))
        if barrier is not None:
            barrier.wait(timeout=120)
        if user_client is None:
            return samples
        deadline = time.monotonic() + seconds
        i = start
        last_sent = time.monotonic()
        while time.monotonic() < deadline and len(samples) < max_requests:
            op = ops[i % len(ops)]
            i += 1
            if paced:
                wait = last_sent + op.pause_s - time.monotonic()
                if wait > 0:
                    if time.monotonic() + wait >= deadline:
                        break
                    time.sleep(wait)
                last_sent = time.monotonic()
            began = time.perf_counter()
            sample = Sample(user, op.kind, op.mode, 0.0)
            try:
                got = user_client.answer(op)
                if got != op.expected:
                    sample.wrong = f"{op.kind} {op.path.name} {op.mode}: got {got[:3]}..., expected {op.expected[:3]}..."
            except Exception as error:
                sample.error = f"{op.kind} {op.path.name} {op.mode}: {type(error).__name__}: {error}"
            sample.latency_s = time.perf_counter() - began
            samples.append(sample)
        return samples
    finally:
        if user_client is not None:
            user_client.close()


def run_load(url: str, scripts: list[list[Op]], seconds: float, warmup: int = 1,
             timeout_s: float = REQUEST_TIMEOUT_S, paced: bool = False,
             client: str = "http") -> tuple[list[Sample], float]:
    """All users at once (one thread and one session each), started together; (samples, wall seconds)."""
    barrier = threading.Barrier(len(scripts) + 1)
    results: list[list[Sample]] = [[] for _ in scripts]

    def user(i: int) -> None:
        # Users start at different points of their script, so the two modes and both endpoints mix.
        results[i] = run_session(url, i, scripts[i], seconds, start=i, barrier=barrier, timeout_s=timeout_s,
                                 warmup=warmup, paced=paced, client=client)

    threads = [threading.Thread(target=user, args=(i,), name=f"load-user-{i}", daemon=True)
               for i in range(len(scripts))]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=120)
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout=seconds + timeout_s + 60)
    wall = time.perf_counter() - began
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("a simulated user did not finish in time")
    return [s for r in results for s in r], wall


def interleaved(scripts: list[list[Op]]) -> list[Op]:
    """Every user's script, one op of each user in turn: one session that sees what all of them send.

    User ``u`` starts at its op ``u``, as in ``run_load``, so each round of requests mixes drawing stages,
    modes and uploads as the load phase does, and a short baseline measures the same mix (starting every
    user at op 0 put only first-stage searches in its first rounds, and no upload in an 8 s baseline).
    """
    longest = max(len(ops) for ops in scripts)
    return [ops[(j + u) % len(ops)] for j in range(longest) for u, ops in enumerate(scripts)]


@dataclass
class Summary:
    requests: int
    failed: int
    wrong: int
    p50_ms: float
    p95_ms: float
    per_s: float
    per_user: dict[int, int]
    kinds: dict[str, int]
    p50_by_kind_ms: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        return (f"{self.requests} requests, {self.per_s:.1f} req/s, p50 {self.p50_ms:.0f} ms, p95 {self.p95_ms:.0f} ms, "
                f"failed {self.failed}, wrong {self.wrong}")


def summarise(samples: list[Sample], wall_s: float) -> Summary:
    timed = [s.latency_s for s in samples if s.kind not in UNTIMED]
    ms = np.asarray(timed or [np.nan]) * 1000
    return Summary(
        requests=len(timed),
        failed=sum(s.error is not None for s in samples),
        wrong=sum(s.wrong is not None for s in samples),
        p50_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)),
        per_s=len(timed) / wall_s if wall_s > 0 else float("nan"),
        per_user=dict(Counter(s.user for s in samples if s.kind not in UNTIMED)),
        kinds=dict(Counter(f"{s.kind}/{s.mode}" for s in samples if s.kind not in UNTIMED)),
        p50_by_kind_ms={kind: float(np.percentile([1000 * s.latency_s for s in samples if f"{s.kind}/{s.mode}" == kind],
                                                  50))
                        for kind in sorted({f"{s.kind}/{s.mode}" for s in samples if s.kind not in UNTIMED})},
    )


def by_kind(summary: Summary, baseline: Summary | None = None) -> str:
    """p50 per request kind (and its ratio to the single user's): with both modes zero-shot the second
    mode of a drawing is a re-rank from the cached embedding, the first mode a new encode, so the
    overall p50 sits between two clusters and this says which is which."""
    parts = []
    for kind, ms in summary.p50_by_kind_ms.items():
        alone = baseline.p50_by_kind_ms.get(kind) if baseline else None
        parts.append(f"{kind} {ms:.0f} ms" + (f" ({ms / alone:.1f}x)" if alone else ""))
    return "p50 by kind: " + ", ".join(parts)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one by default), from /proc; NaN where unavailable."""
    try:
        if pid is None:
            times = os.times()
            return times.user + times.system
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    parser.add_argument("--pacing", choices=("both", "closed", "paced"), default="both",
                        help="load phases: closed = no pause between a user's requests; paced = sent at the real "
                        "pen-up times of the user's drawing (its Quick, Draw! ts); both (default), one after the other")
    parser.add_argument("--client", choices=CLIENTS, default="http",
                        help="how the simulated users talk to the app: http = Gradio's HTTP API with httpx (light, "
                        "default); gradio_client = one gradio_client Client per user")
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
    from sketchlvm.index import build_gallery_index
    from sketchlvm.search import Searcher

    work = Path(tempfile.mkdtemp(prefix="sketchlvm-load-"))
    server = demo = None
    try:
        workload = prepare(work, args.data, args.classes, args.per_class, args.users)
        if args.model:
            from sketchlvm.model import create_sketchlvm

            model = create_sketchlvm(arch=args.model, pretrained="none", device="cpu")
        else:
            model = load_model(workload.checkpoint)
        index = build_gallery_index(workload.gallery, model, cache_dir=workload.cache, show_progress_bar=False)
        k = len(index)  # the whole gallery, ranked: the strictest check
        searcher = Searcher(model, index, default_k=k)
        with torch_threads(1):
            scripts = build_scripts(searcher, workload.sketches, work / "users", args.stages, k)
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
        phases = {"closed": ["closed"], "paced": ["paced"], "both": ["closed", "paced"]}[args.pacing]
        loaded: list[Sample] = []
        for phase in phases:
            server_cpu, client_cpu = cpu_seconds(server.pid) if server else float("nan"), cpu_seconds()
            samples, wall = run_load(url, scripts, args.seconds, paced=phase == "paced", client=args.client)
            server_cpu = (cpu_seconds(server.pid) if server else float("nan")) - server_cpu
            client_cpu = cpu_seconds() - client_cpu
            loaded += samples
            load = summarise(samples, wall)
            label = ("closed loop: each user sends again as soon as it is answered" if phase == "closed" else
                     "paced: each user sends at its drawing's real pen-up times (Quick, Draw! ts)")
            print(f"{args.users} users, {label} ({args.seconds:.0f} s): {load.line()}")
            print(f"  requests per user: min {min(load.per_user.values(), default=0)}, "
                  f"max {max(load.per_user.values(), default=0)}; by kind: {load.kinds}")
            print(f"  {by_kind(load, one)}")
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


if __name__ == "__main__":
    sys.exit(main())
