"""Newest query wins, per session: a query that a newer one from the same session has superseded is
dropped before the model sees it, so a fast drawer (or typist) never builds a queue of work nobody will
look at.

The page numbers its requests (static/request.js); each search claims its number here when it starts
and asks again just before the encoder runs. Sessions are Gradio's session hashes (one per open page);
the table is bounded, the oldest sessions forgotten first. Shared by every query path that wants the
rule (the live page search; fair-use allowances may count by the same sessions).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

MAX_SESSIONS = 10_000  # ~100 bytes each: a bounded table whatever the traffic


class Newest:
    """The newest request number seen per session."""

    def __init__(self, max_sessions: int = MAX_SESSIONS):
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_sessions
        self.dropped = 0  # superseded queries dropped so far (benchmarks and tests read it)

    def claim(self, session: str | None, seq: int) -> bool:
        """Record request ``seq`` of ``session`` as started; False when a newer one already has (drop it).
        Without a session or a number (an API call) every request is its own newest."""
        if not session or seq <= 0:
            return True
        with self._lock:
            newest = self._seen.get(session, 0)
            if seq < newest:
                self.dropped += 1
                return False
            self._seen[session] = seq
            self._seen.move_to_end(session)
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
            return True

    def is_newest(self, session: str | None, seq: int) -> bool:
        """Whether request ``seq`` is still the newest of ``session`` (asked again before expensive work)."""
        if not session or seq <= 0:
            return True
        with self._lock:
            if seq < self._seen.get(session, 0):
                self.dropped += 1
                return False
            return True
