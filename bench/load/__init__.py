"""bench_load's parts: workload.py (what users do), client.py (how they send it, paced), live.py (open
pages with live results: what the canvas sends, through the page's own search event), report.py (what
was measured). bench/bench_load.py runs them against a server; tests/bench/test_load.py reuses all but report.py."""

from __future__ import annotations

MODES = ("category", "fine_grained")
REQUEST_TIMEOUT_S = 20.0  # one request; a hung server fails the request instead of hanging the run
MAX_REQUESTS_PER_USER = 100_000  # a second bound besides the clock
UNTIMED = ("connect", "warmup")  # failures before the timed loop: counted as failed, not timed
