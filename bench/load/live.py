"""Live results under load: users who draw on the page, each sending what the page's canvas sends.

A ``PageUser`` joins the page's own search event (the one the canvas, the words and the settings
trigger; private, so not on the public API) through Gradio's queue, as the browser does
(``POST /gradio_api/queue/join`` with the event's ``fn_index`` and the user's session hash, answers from
``GET /gradio_api/queue/data``), so its requests take the one query path and the newest-wins rule of
``webapp/newest.py``. What it sends is what ``static/canvas.js`` would send for the user's real Quick,
Draw! drawing drawn at its own pace (every point at its recorded ``ts``): the drawing so far on a rest
of ``PAUSE_MS`` with the pen down or every ``EVERY_MS`` while it moves, each only when the ink has grown
by ``GROWTH`` of the ink last sent and never while a search is in flight (a rest that came meanwhile is
sent on the answer), and the finished drawing at every pen-up, queued behind an in-flight search with
only the newest kept (Gradio's ``always_last``, as the page's event is wired).

Each answer is checked afterwards against the ranking computed in the bench's process for the drawing
that request sent (wrong), and against what the page may show: an answer shown after a newer request's
answer, or a drawing whose last shown answer is not its finished drawing's, is stale.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field

from bench.load import REQUEST_TIMEOUT_S
from sketchlvm.search import DEFAULT_TEXT_WEIGHT
from sketchlvm.webapp.canvas import EVERY_MS, GROWTH, PAUSE_MS

SHED = ("<shed>",)  # what _call returns for a shed answer


@dataclass
class LiveSample:
    user: int
    seq: int
    drawing: str  # the stroke JSON this request sent (a list: the drawing so far or finished)
    partial: bool
    sent_s: float
    latency_s: float = 0.0
    captions: tuple[str, ...] | None = None  # None: not answered (overtaken by a newer request, or shed)
    shed: bool = False  # a mid-stroke search the busy server let go (webapp/busy.py)
    error: str | None = None
    wrong: str | None = None
    stale: str | None = None


@dataclass
class LiveRun:
    samples: list[LiveSample] = field(default_factory=list)
    drawings: int = 0  # finished drawings
    strokes: int = 0


class PageUser:
    """One open page: a session of its own, one search in flight at a time, the newest pending kept."""

    def __init__(self, url: str, mode: str, k: int, timeout_s: float = REQUEST_TIMEOUT_S):
        import httpx

        self.root = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout_s)
        self.timeout_s = timeout_s
        self.session = uuid.uuid4().hex[:11]
        config = self.http.get(f"{self.root}/config").json()
        self.fn_index = next(dep["id"] for dep in config["dependencies"]
                             if dep.get("js") and "page.seq += 1" in dep["js"])
        self.mode, self.k = mode, k
        self.seq = 0
        self.lock = threading.Condition()
        self.in_flight = False
        self.pending: tuple[str, bool] | None = None
        self.answered = 0  # answers received (the canvas's `waiting` rest is sent on the next)
        self.shed = False  # the latest answer was a shed mid-stroke search: the canvas waits for the next answer
        self.samples: list[LiveSample] = []
        self.closed = False
        self.sender = threading.Thread(target=self._send_loop, daemon=True)
        self.sender.start()

    def send(self, drawing: str, partial: bool) -> None:
        """Trigger the page's search (always_last: replaces a trigger that waits behind the one in flight)."""
        with self.lock:
            self.pending = (drawing, partial)
            self.lock.notify_all()

    def _send_loop(self) -> None:
        while True:
            with self.lock:
                while self.pending is None and not self.closed:
                    self.lock.wait()
                if self.pending is None:
                    return
                drawing, partial = self.pending
                self.pending = None
                self.in_flight = True
                self.seq += 1
                seq = self.seq
            sample = LiveSample(-1, seq, drawing, partial, time.monotonic())
            began = time.perf_counter()
            try:
                answer = self._call(seq, drawing, partial)
                sample.shed = answer is SHED
                sample.captions = None if sample.shed else answer
            except Exception as error:  # noqa: BLE001 (counted, not raised)
                sample.error = f"{type(error).__name__}: {error}"
            sample.latency_s = time.perf_counter() - began
            with self.lock:
                self.samples.append(sample)
                self.in_flight = False
                self.answered += 1
                if sample.shed:
                    self.shed = True
                elif sample.captions is not None and seq == self.seq:
                    self.shed = False  # the latest request is answered: the page waits no more (answer.js)
                self.lock.notify_all()

    def _call(self, seq: int, drawing: str, partial: bool) -> tuple[str, ...] | None:
        value = json.dumps({"drawing": json.loads(drawing), "partial": True}) if partial else drawing
        # The event's inputs: request number, the query State (server-side), canvas, mode, k, words, weight,
        # the answered State (server-side).
        data = [str(seq), None, value, self.mode, self.k, "", DEFAULT_TEXT_WEIGHT, None]
        joined = self.http.post(f"{self.root}/gradio_api/queue/join",
                                json={"data": data, "fn_index": self.fn_index, "session_hash": self.session,
                                      "event_data": None, "trigger_id": None})
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        began = time.monotonic()
        with self.http.stream("GET", f"{self.root}/gradio_api/queue/data",
                              params={"session_hash": self.session}) as stream:
            stream.raise_for_status()
            for line in stream.iter_lines():
                if time.monotonic() - began > self.timeout_s:
                    raise TimeoutError(f"no answer within {self.timeout_s:.0f} s")
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[len("data:"):])
                if message.get("event_id") != event_id or message.get("msg") != "process_completed":
                    continue
                if not message.get("success", False):
                    raise RuntimeError(f"the search event failed: {message.get('output')}")
                gallery, tag = message["output"]["data"][0], message["output"]["data"][4]
                if isinstance(tag, str) and '"shed"' in tag:
                    return SHED  # the busy server let this mid-stroke search go (webapp/busy.py)
                if not isinstance(gallery, (list, dict)) or (isinstance(gallery, dict) and "value" not in gallery):
                    return None  # gr.skip(): overtaken, dropped
                items = gallery["value"] if isinstance(gallery, dict) else gallery
                return tuple(item["caption"] for item in items)
        raise RuntimeError("the event stream ended without an answer")

    def wait_idle(self, timeout_s: float) -> None:
        with self.lock:
            self.lock.wait_for(lambda: not self.in_flight and self.pending is None, timeout=timeout_s)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify_all()
        self.sender.join(timeout=self.timeout_s + 5)
        self.http.close()


def _ink(stroke: list, upto: int | None = None) -> float:
    xs, ys = stroke[0][:upto], stroke[1][:upto]
    return sum(math.hypot(xs[i] - xs[i - 1], ys[i] - ys[i - 1]) for i in range(1, len(xs)))


def draw(user: PageUser, strokes: list, deadline: float, live: bool = True) -> int:
    """Draw ``strokes`` at their own pace, sending what canvas.js sends (``live=False``: only at pen-up, as
    with SKETCHLVM_LIVE_STROKES=0); the strokes drawn."""
    t0 = strokes[0][2][0]
    start = time.monotonic()
    done: list = []
    sent_ink = 0.0

    def at(t_ms: float) -> None:  # sleep until the drawing's time t_ms
        wait = start + (t_ms - t0) / 1000 - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def so_far(stroke: list, n: int) -> tuple[str, float]:
        drawing = done + [[stroke[0][:n], stroke[1][:n], stroke[2][:n]]]
        return json.dumps(drawing, separators=(",", ":")), sum(_ink(s) for s in done) + _ink(stroke, n)

    def partial(stroke: list, n: int) -> bool:
        nonlocal sent_ink
        if not live:
            return True
        with user.lock:
            if user.shed:
                return True  # the page still waits on a shed search: nothing more until pen-up (canvas.js)
            if user.in_flight or user.pending is not None:
                return False
        text, ink = so_far(stroke, n)
        if ink - sent_ink < GROWTH * sent_ink:
            return True  # let go by: counts as handled
        sent_ink = ink
        user.send(text, partial=True)
        return True

    for stroke in strokes:
        if time.monotonic() >= deadline:
            break
        ts = stroke[2]
        last_partial = ts[0]
        for i in range(1, len(ts)):
            at(ts[i - 1])
            gap = ts[i] - ts[i - 1]
            if i > 1 and gap >= PAUSE_MS:  # the pen rests: the drawing so far up to point i
                at(ts[i - 1] + PAUSE_MS)
                answered = user.answered
                if partial(stroke, i):
                    last_partial = ts[i - 1] + PAUSE_MS
                else:  # in flight: sent the moment its answer comes, if the pen still rests
                    with user.lock:
                        user.lock.wait_for(lambda answered=answered: user.answered > answered,
                                           timeout=max(0.0, start + (ts[i] - t0) / 1000 - time.monotonic()))
                    still = time.monotonic() < start + (ts[i] - t0) / 1000
                    if user.answered > answered and still and partial(stroke, i):
                        last_partial = ts[i] - 1
            at(ts[i])
            if ts[i] - last_partial >= EVERY_MS and partial(stroke, i + 1):
                last_partial = ts[i]
        done.append(stroke)
        sent_ink = sum(_ink(s) for s in done)
        user.send(json.dumps(done, separators=(",", ":")), partial=False)  # pen-up
    return len(done)


def run_user(url: str, user: int, drawings: list[list], seconds: float, mode: str, k: int,
             barrier: threading.Barrier | None = None, live: bool = True) -> LiveRun:
    """One page: its drawings one after another (each after the last one's answer) until ``seconds`` pass."""
    run = LiveRun()
    page = PageUser(url, mode, k)
    try:
        if barrier is not None:
            barrier.wait(timeout=120)
        deadline = time.monotonic() + seconds
        i = user
        while time.monotonic() < deadline:
            strokes = drawings[i % len(drawings)]
            i += 1
            first = len(page.samples)
            drawn = draw(page, strokes, deadline, live)
            page.wait_idle(REQUEST_TIMEOUT_S * 2)
            if not drawn:
                break
            run.strokes += drawn
            run.drawings += 1
            with page.lock:
                shown = [s for s in page.samples[first:] if s.captions is not None]
            final = json.dumps(strokes[:drawn], separators=(",", ":"))
            last = shown[-1] if shown else (page.samples[-1] if len(page.samples) > first else None)
            if last is not None and (last.partial or last.drawing != final):
                last.stale = "the drawing's last shown answer is not its own"
        with page.lock:
            samples = list(page.samples)
    finally:
        page.close()
    newest = 0
    for sample in samples:  # in the order the answers came
        sample.user = user
        if sample.captions is None:
            continue
        if sample.seq < newest:
            sample.stale = sample.stale or f"request {sample.seq} shown after request {newest}"
        newest = max(newest, sample.seq)
    run.samples = samples
    return run


def run_live(url: str, drawings: list[list], users: int, seconds: float, mode: str, k: int,
             live: bool = True) -> tuple[LiveRun, float]:
    """``users`` pages at once, started together; (all their samples, wall seconds). ``live=False``: pages
    that search at pen-up only (the same drawings, the control)."""
    barrier = threading.Barrier(users + 1)
    runs: list[LiveRun] = [LiveRun() for _ in range(users)]

    def one(i: int) -> None:
        runs[i] = run_user(url, i, drawings, seconds, mode, k, barrier, live)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(users)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=120)
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout=seconds + 4 * REQUEST_TIMEOUT_S + 60)
    wall = time.perf_counter() - began
    total = LiveRun()
    for run in runs:
        total.samples += run.samples
        total.drawings += run.drawings
        total.strokes += run.strokes
    return total, wall


def check_answers(samples: list[LiveSample], searcher, mode: str, k: int) -> None:
    """Mark each answer that is not the ranking of the drawing its request sent (computed here)."""
    from sketchlvm.webapp import AppState, caption
    from sketchlvm.webapp.query_inputs import strokes_to_sketch

    state = AppState(searcher)
    expected: dict[str, tuple[str, ...]] = {}
    for sample in samples:
        if sample.captions is None:
            continue
        if sample.drawing not in expected:
            query = strokes_to_sketch(state, sample.drawing)
            expected[sample.drawing] = tuple(caption(r) for r in searcher.search(query, mode, k))
        if sample.captions != expected[sample.drawing]:
            sample.wrong = f"request {sample.seq}: got {sample.captions[:2]}..., expected {expected[sample.drawing][:2]}..."
