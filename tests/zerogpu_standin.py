"""A stand-in for ZeroGPU's scheduler (its "device API"), on 127.0.0.1, for tests and bench_zerogpu_client.

``spaces`` (the Hub's ZeroGPU package) asks this API before every ``@spaces.GPU`` call
(``spaces.zero.api.APIClient``: POST /schedule, /allow, /release, /startup-report) and parses its answers;
this server gives those answers in the same formats, as a test queues them.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class StandInScheduler:
    """ZeroGPU's device API as ``spaces.zero.api.APIClient`` calls it: POST /schedule answers "grant"
    (200 and a ScheduleResponse), "quota" (429 and the quota left: the visitor's quota is spent) or "busy"
    (503: no GPU), in the order queued; /allow, /release and /startup-report answer 200."""

    def __init__(self):
        self.answers: list[str] = []
        self.calls: list[tuple[str, dict]] = []
        scheduler = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: dict | None = None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                url = urlparse(self.path)
                scheduler.calls.append((url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
                if url.path != "/schedule":
                    return self._send(200, {})
                answer = scheduler.answers.pop(0) if scheduler.answers else "grant"
                if answer == "quota":
                    return self._send(429, {"left": 0, "wait": 3600})
                if answer == "busy":
                    return self._send(503)
                return self._send(200, {"idle": True, "nvidiaIndex": 0, "nvidiaUUID": "GPU-standin",
                                        "allowToken": "token"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def schedules(self) -> list[dict]:
        return [params for path, params in self.calls if path == "/schedule"]
