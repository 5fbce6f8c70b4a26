"""Password guessing slowed down: after a few failed sign-ins from one address, that address waits.

Gradio's login route (``POST /login``, with ``--auth``) answers as fast as it is asked: 500 guesses went
through at 41 a second, and the right one was accepted. This ASGI middleware watches that route's answers.
An address may fail ``FREE_FAILURES`` times; each failure after that locks it out for twice as long as the
one before (``FIRST_LOCK_S``, doubling, at most ``MAX_LOCK_S``), and while it is locked out it gets HTTP 429
with the seconds to wait, without its password being checked. A success clears the address's record.
Other addresses are not affected: the owner still signs in from their own while someone guesses from
another. What is kept is bounded: the ``MAX_ADDRESSES`` most recently failing addresses.

The address is the one ``sketchlvm.webapp.fair_use`` uses (a forwarded header only behind a known proxy).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from sketchlvm.webapp.fair_use import client_address
from sketchlvm.webapp.limits import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

LOGIN_PATHS = ("/login", "/login/")
FREE_FAILURES = 3
FIRST_LOCK_S = 2.0
MAX_LOCK_S = 300.0
MAX_ADDRESSES = 10_000


@dataclass
class Record:
    failures: int = 0
    locked_until: float = 0.0


class SignInThrottle:
    """Failed sign-ins per address, and how long each must wait (see the module doc). Thread-safe."""

    def __init__(self, free: int = FREE_FAILURES, first_lock_s: float = FIRST_LOCK_S, max_lock_s: float = MAX_LOCK_S,
                 max_addresses: int = MAX_ADDRESSES, clock=time.monotonic):
        self.free, self.first_lock_s, self.max_lock_s = free, first_lock_s, max_lock_s
        self.max_addresses = max_addresses
        self.clock = clock
        self._records: OrderedDict[str, Record] = OrderedDict()
        self._lock = threading.Lock()

    def wait_s(self, address: str) -> float:
        """Seconds ``address`` must still wait before it may try again (0: it may)."""
        with self._lock:
            record = self._records.get(address)
            return max(0.0, record.locked_until - self.clock()) if record else 0.0

    def failed(self, address: str) -> float:
        """Count a failure; returns the lock it earned, in seconds (0 while failures are free)."""
        with self._lock:
            record = self._records.pop(address, None) or Record()
            self._records[address] = record  # the most recent last
            while len(self._records) > self.max_addresses:
                self._records.popitem(last=False)
            record.failures += 1
            over = record.failures - self.free
            if over <= 0:
                return 0.0
            lock = min(self.max_lock_s, self.first_lock_s * 2 ** (over - 1))
            record.locked_until = self.clock() + lock
            return lock

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._records.pop(address, None)


class SignInThrottleMiddleware:
    """Refuses a locked-out address's sign-in with 429; counts the login route's failures (HTTP 4xx)."""

    def __init__(self, app: ASGIApp, throttle: SignInThrottle | None = None, trust_forwarded: bool = False):
        self.app = app
        self.throttle = throttle or SignInThrottle()
        self.trust_forwarded = trust_forwarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").endswith(LOGIN_PATHS):
            await self.app(scope, receive, send)
            return
        address = client_address(scope, self.trust_forwarded)
        wait = self.throttle.wait_s(address)
        if wait > 0:
            await _refuse(send, wait)
            return
        status = {}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        code = status.get("code", 500)
        if code < 400:
            self.throttle.succeeded(address)
        elif code < 500 and code != 429:
            lock = self.throttle.failed(address)
            if lock:
                log.warning("failed sign-ins from %s: the next attempt waits %.0f s", address, lock)


async def _refuse(send: Send, wait_s: float) -> None:
    seconds = max(1, round(wait_s))
    body = json.dumps({"detail": f"Too many failed sign-ins from your address: try again in {seconds} s."}).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(seconds).encode())]})
    await send({"type": "http.response.body", "body": body})
