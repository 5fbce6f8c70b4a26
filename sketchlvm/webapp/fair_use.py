"""Fair use of one server: no client can take the queue, or the encoder, from everyone else.

Gradio has one queue for everybody (``QUEUE_MAX_SIZE`` places), first come first served. One script with
8 connections posting ``/gradio_api/call/search`` kept it full, and every other visitor got HTTP 503; one
searching as fast as answers came made everyone else's searches 8x slower. So the queue is watched
where a request joins it and where the next one is taken from it (``install``), with the queue itself as
the only record: nothing is kept per client between requests, so nothing grows with the number of clients.

- **A client** is an address and a session. Past ``Allowance.requests`` queued or running requests from one
  address (``SESSION_REQUESTS`` from one session), or ``Allowance.cost`` cost units, a request is refused
  at once with HTTP 429 and a one-line reason; its place in the queue stays free for others.
- **Cost** counts the request's size, not only its number (``request_cost``): 1 unit, plus one per
  ``COST_UNIT_BYTES`` of strings and files in it, so a 900 kB drawing weighs 15 and a 2 kB one 1. A client
  with nothing queued is always let in (the largest legal query still gets through).
- **Order.** Of the requests waiting, each client's first goes before anyone's second, and a client runs
  at most ``Allowance.running`` requests at a time while others wait: a flooder's requests take turns
  with everyone else's instead of running side by side ahead of them.
- **The address** is the TCP peer's. A forwarded header (``X-Forwarded-For``) is believed only where a
  proxy is known to set it: on a Hugging Face Space (``SPACE_ID`` set), whose proxy adds the address it
  saw as the header's last entry, or when the owner says so (the trust_forwarded setting, for a reverse
  proxy of their own). Elsewhere anyone could write the header, so it is ignored, and uvicorn is told not
  to rewrite the peer from it (``FORWARDED_ALLOW_IPS``, which it otherwise trusts from 127.0.0.1).

The query path (the page's and the API's) needs no call of its own: every queued event passes here before
it takes a place. A newer query from the same page superseding an older one (newest query wins) frees its
place as soon as the older event leaves the queue.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SESSION_REQUESTS = 3  # queued or running, per session: a page runs one search at a time, plus a query being set
COST_UNIT_BYTES = 64 * 1024  # one cost unit per this many bytes of strings and files in a request
TOO_MANY = ("Too many requests from your address at once ({held} queued or running, at most {limit}): "
            "wait for an answer before sending more.")
TOO_COSTLY = ("Too much work queued from your address at once (cost {held} of at most {limit}; this request "
              "costs {cost}): wait for an answer before sending more.")


@dataclass(frozen=True)
class Allowance:
    """What one address may have in the queue at once: ``requests`` queued or running, ``cost`` units of
    them, ``running`` of them running while others wait."""

    requests: int = 4
    cost: int = 16
    running: int = 2  # requests // 2
    trust_forwarded: bool = False

    @classmethod
    def from_environment(cls) -> Allowance:
        """The allowance from the client_requests, client_cost and trust_forwarded settings (the last 1/0;
        default: on a Space only)."""
        from sketchlvm.config import settings

        env = settings()
        trust = (env.trust_forwarded or "").strip().lower()
        requests = _positive(env.client_requests, cls.requests)
        cost = _positive(env.client_cost, cls.cost)
        on_space = bool(os.environ.get("SPACE_ID"))
        return cls(requests, cost, max(1, requests // 2),  # half the allowance may run at once
                   trust in ("1", "true", "yes", "on") or (on_space and trust not in ("0", "false", "no", "off")))


def _positive(text: str | None, default: int) -> int:
    try:
        value = int(text) if text not in (None, "") else default
    except ValueError:
        log.warning("ignoring %r: a positive whole number was expected", text)
        return default
    return value if value > 0 else default


class Refused(Exception):
    """A request over its client's allowance; ``str()`` is the one-line reason."""


# --------------------------------------------------------------------------------------------
# Who is asking, and how much


def client_address(scope: dict | Any, trust_forwarded: bool) -> str:
    """The address of an ASGI ``scope`` (or a Starlette request): the forwarded header's last entry where
    it is trusted, the TCP peer otherwise ("unknown" without either)."""
    if not isinstance(scope, dict):
        scope = getattr(scope, "scope", {}) or {}
    if trust_forwarded:
        for name, value in scope.get("headers", []):
            if name.lower() == b"x-forwarded-for":
                last = value.decode("latin-1").split(",")[-1].strip()
                if last:
                    return last
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def request_cost(data: Any, upload_root: Path | None = None) -> int:
    """Cost units of a request's data: 1 + one per ``COST_UNIT_BYTES`` of its strings and of the files it
    names (uploaded files: their size on disk, under ``upload_root`` only)."""
    return 1 + _size(data, upload_root, depth=0) // COST_UNIT_BYTES


def _size(value: Any, upload_root: Path | None, depth: int) -> int:
    if depth > 8:  # Gradio's data is shallow; a deeper value is refused by its handler, not weighed here
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        path = value.get("path")
        if isinstance(path, str) and upload_root is not None:
            try:
                file = Path(path).resolve()
                if file.is_relative_to(upload_root):
                    return file.stat().st_size
            except (OSError, ValueError):
                return 0
        return sum(_size(v, upload_root, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_size(v, upload_root, depth + 1) for v in value)
    return 8


# --------------------------------------------------------------------------------------------
# The queue


@dataclass(frozen=True)
class Held:
    """What one client has queued or running now."""

    requests: int = 0
    cost: int = 0
    session_requests: int = 0


def check(held: Held, cost: int, allowance: Allowance) -> None:
    """Raise :class:`Refused` when a request of ``cost`` would take its client past ``allowance``."""
    if held.requests >= allowance.requests or held.session_requests >= SESSION_REQUESTS:
        limit = allowance.requests if held.requests >= allowance.requests else SESSION_REQUESTS
        raise Refused(TOO_MANY.format(held=max(held.requests, held.session_requests), limit=limit))
    if held.requests and held.cost + cost > allowance.cost:
        raise Refused(TOO_COSTLY.format(held=held.cost, limit=allowance.cost, cost=cost))


def fair_order(events: list, running: Counter, address_of) -> list:
    """``events`` (one concurrency group's waiting list) reordered: each address's first before anyone's
    second, counting what each already runs; Gradio's order within an address and among equals."""
    seen: Counter = Counter()
    ranked = []
    for position, event in enumerate(events):
        address = address_of(event)
        ranked.append((running[address] + seen[address], position, event))
        seen[address] += 1
    return [event for *_, event in sorted(ranked, key=lambda item: item[:2])]


class RefusalLog:
    """One log line for an address's first refusal, then at most one a minute with the count since: a
    flooder is refused hundreds of times a minute, and its refusals must not flood the log in turn."""

    EVERY_S = 60.0
    MAX_ADDRESSES = 1024

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()  # address -> (last logged, refused since)

    def note(self, address: str, reason: str) -> None:
        now = self.clock()
        logged, since = self._seen.pop(address, (None, 0))
        since += 1
        if logged is None or now - logged >= self.EVERY_S:
            more = f" ({since} refusals since the last line)" if logged is not None else ""
            log.info("refused a request from %s%s: %s", address, more, reason)
            logged, since = now, 0
        self._seen[address] = (logged, since)
        while len(self._seen) > self.MAX_ADDRESSES:
            self._seen.popitem(last=False)


class FairQueue:
    """Watches one Gradio queue (see the module doc). ``install`` it once the queue exists."""

    def __init__(self, queue: Any, allowance: Allowance, upload_root: Path | None = None):
        self.queue = queue
        self.allowance = allowance
        self.upload_root = upload_root
        self.refusal_log = RefusalLog()
        self._push = queue.push
        self._get_events = queue.get_events

    def address_of(self, event: Any) -> str:
        address = getattr(event, "sketchlvm_address", None)
        if address is None:
            address = client_address(getattr(event, "request", None), self.allowance.trust_forwarded)
            event.sketchlvm_address = address
        return address

    def waiting(self) -> Iterable[Any]:
        for event_queue in list(self.queue.event_queue_per_concurrency_id.values()):
            yield from list(event_queue.queue)

    def running(self) -> Iterable[Any]:
        for job in list(self.queue.active_jobs):
            yield from job or ()

    def held(self, address: str, session: str | None) -> Held:
        requests = cost = in_session = 0
        for event in [*self.waiting(), *self.running()]:
            if self.address_of(event) == address:
                requests += 1
                cost += getattr(event, "sketchlvm_cost", 1)
            if session is not None and event.session_hash == session:
                in_session += 1
        return Held(requests, cost, in_session)

    async def push(self, body: Any, request: Any, username: str | None):
        from fastapi import HTTPException

        address = client_address(request, self.allowance.trust_forwarded)
        cost = request_cost(getattr(body, "data", None), self.upload_root)
        try:
            check(self.held(address, getattr(body, "session_hash", None)), cost, self.allowance)
        except Refused as refusal:
            self.refusal_log.note(address, str(refusal))
            raise HTTPException(status_code=429, detail=str(refusal), headers={"Retry-After": "1"}) from None
        success, event_id, state = await self._push(body=body, request=request, username=username)
        event = self.queue.event_ids_to_events.get(event_id) if success and isinstance(event_id, str) else None
        if event is not None:
            event.sketchlvm_address, event.sketchlvm_cost = address, cost
        return success, event_id, state

    def get_events(self):
        """Gradio's choice of the next events to run, from fairly ordered waiting lists with each address's
        events set aside while it runs ``allowance.running`` (they keep their places)."""
        running = Counter(self.address_of(event) for event in self.running())
        set_aside = {}
        for concurrency_id, event_queue in self.queue.event_queue_per_concurrency_id.items():
            ordered = fair_order(event_queue.queue, running, self.address_of)
            eligible = [e for e in ordered if running[self.address_of(e)] < self.allowance.running]
            set_aside[concurrency_id] = [e for e in ordered if running[self.address_of(e)] >= self.allowance.running]
            event_queue.queue[:] = eligible
        try:
            return self._get_events()
        finally:
            for concurrency_id, held_back in set_aside.items():
                event_queue = self.queue.event_queue_per_concurrency_id[concurrency_id]
                event_queue.queue[:] = fair_order(event_queue.queue + held_back, running, self.address_of)

    def install(self) -> FairQueue:
        self.queue.push = self.push
        self.queue.get_events = self.get_events
        return self


def install(demo: Any, allowance: Allowance | None = None) -> FairQueue:
    """Watch ``demo``'s queue (call after ``demo.queue(...)``, before launch)."""
    allowance = allowance or Allowance.from_environment()
    if not allowance.trust_forwarded:
        # uvicorn rewrites the peer from X-Forwarded-For when the peer is 127.0.0.1 unless told otherwise;
        # read when the server is made, at launch.
        os.environ.setdefault("FORWARDED_ALLOW_IPS", "")
    upload_root = None
    try:
        from gradio.utils import get_upload_folder

        upload_root = Path(get_upload_folder()).resolve()
    except (ImportError, AttributeError, OSError):
        pass
    return FairQueue(demo._queue, allowance, upload_root).install()
