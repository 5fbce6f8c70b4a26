"""The users: one person's app on Gradio's HTTP API (HttpUser) or through gradio_client, and each
user's session running its script in a loop, paced by its drawing's real pauses, until the clock runs out."""

from __future__ import annotations

import json
import sys
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.load import MAX_REQUESTS_PER_USER, REQUEST_TIMEOUT_S
from bench.load.workload import Op
from sketchlvm.search import DEFAULT_TEXT_WEIGHT

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

    def __init__(self, url: str, timeout_s: float, address: str | None = None):
        import uuid

        import httpx

        self.timeout_s = timeout_s
        self.session_hash = uuid.uuid4().hex[:11]
        # ``address``: a loopback address of its own (127.0.1.N), so that each user is its own client to the
        # server's per-address allowance (sketchlvm.webapp.fair_use), as people on the internet are.
        transport = httpx.HTTPTransport(local_address=address) if address else None
        self.http = httpx.Client(base_url=url.rstrip("/") + "/gradio_api", timeout=timeout_s, transport=transport)
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


def connect(url: str, client: str, timeout_s: float, user: int = -1):
    if client not in CLIENTS:
        raise ValueError(f"unknown client {client!r}; choose one of {CLIENTS}")
    if client == "http":
        return HttpUser(url, timeout_s, address=user_address(url, user))
    return GradioClientUser(url, timeout_s)


def user_address(url: str, user: int) -> str | None:
    """User ``user``'s own loopback address (127.0.1.1 for user -1, the single user, 127.0.1.2 on) when the
    server is on 127.0.0.1; None elsewhere (the system picks)."""
    from urllib.parse import urlsplit

    if urlsplit(url).hostname != "127.0.0.1" or not sys.platform.startswith("linux"):
        return None
    return f"127.0.1.{user + 2}"


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
        user_client = connect(url, client, timeout_s, user)
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

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
