"""One hostile client: 8 connections from one address, each searching with the largest drawing the app
accepts as fast as answers come, and again at once when refused (issue 27's attack, bounded in time).

It runs beside the paced users (``bench_load --pacing hostile``), from an address of its own
(127.0.0.2), so that the server sees one client among many. Refusals (HTTP 429) are counted; after one it
waits ``RETRY_S`` before sending again, so that on a shared 2-core machine the load generator's own CPU
does not stand in for the server's.
"""

from __future__ import annotations

import json
import threading
import time

import httpx

CONNECTIONS = 8
ADDRESS = "127.0.0.2"
RETRY_S = 0.05


def largest_drawing() -> str:
    """Legal stroke JSON near the app's 1 MB limit: 1,000 strokes of 60 points (x, y, t)."""
    strokes = []
    for s in range(1000):
        xs = [(s * 7 + i * 13) % 1000 for i in range(60)]
        ys = [(s * 11 + i * 17) % 1000 for i in range(60)]
        ts = [s * 1000 + i * 10 for i in range(60)]
        strokes.append([xs, ys, ts])
    return json.dumps(strokes, separators=(",", ":"))


class HostileClient:
    """``start()``, then ``stop()`` -> counts of answered, refused (429) and failed requests."""

    def __init__(self, url: str, connections: int = CONNECTIONS, address: str = ADDRESS):
        self.url = url.rstrip("/") + "/gradio_api"
        self.connections, self.address = connections, address
        self.drawing = largest_drawing()
        self.counts = {"answered": 0, "refused": 0, "failed": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def _run(self) -> None:
        data = {"data": [self.drawing, "category", 12, "", 0.5]}
        with httpx.Client(base_url=self.url, timeout=60,
                          transport=httpx.HTTPTransport(local_address=self.address)) as http:
            while not self._stop.is_set():
                try:
                    sent = http.post("/call/search", json=data)
                    if sent.status_code == 429:
                        self._count("refused")
                        time.sleep(RETRY_S)
                        continue
                    sent.raise_for_status()
                    event = sent.json()["event_id"]
                    with http.stream("GET", f"/call/search/{event}") as stream:
                        for line in stream.iter_lines():
                            if line.startswith(("event: complete", "event: error")):
                                break
                    self._count("answered")
                except httpx.HTTPError:
                    self._count("failed")
                    time.sleep(RETRY_S)

    def start(self) -> HostileClient:
        self._threads = [threading.Thread(target=self._run, name=f"hostile-{i}", daemon=True)
                         for i in range(self.connections)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> dict[str, int]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)
        return dict(self.counts)
