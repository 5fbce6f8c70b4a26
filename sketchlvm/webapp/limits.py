"""Request bodies are refused by size before Gradio reads them.

Gradio parses a request's whole JSON body into Python objects before any handler sees it, and a
nested list costs ~80 times its size there: a 16 MB body of ``[[[1],[1]], ...]`` took 20-26 s of CPU
and 1.3 GB that was never given back, and three at once stalled everyone else's searches. The
handlers' own limits (1 MB of stroke JSON, 300 characters of words) come too late for that. So this
ASGI middleware, which runs before Gradio's routes, answers HTTP 413 to any body over
``MAX_BODY_BYTES`` (uploads: ``upload_limit``, which Gradio's ``max_file_size`` also checks while it
streams the file to disk). A body with a ``Content-Length`` over the limit is refused unread; one
without (chunked) is read up to the limit, then refused or handed on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The largest legitimate body: 1 MB of stroke JSON (MAX_STROKE_BYTES) sent as a JSON string, plus the
# mode, top-k, up to 300 characters of words and Gradio's envelope. A nested-list body at this size
# costs Gradio ~150 MB to parse (measured: tests/webapp/test_public.py).
MAX_BODY_BYTES = 2 * 2**20
UPLOAD_OVERHEAD_BYTES = 2**20  # multipart headers around a file of the largest accepted size
UPLOAD_SUFFIX = "/upload"


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_body`` bytes (``upload_limit`` on Gradio's upload route) with 413."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES, upload_limit: int | None = None):
        self.app = app
        self.max_body = int(max_body)
        self.upload_limit = int(upload_limit) if upload_limit is not None else self.max_body

    def limit_for(self, path: str) -> int:
        return self.upload_limit if path.rstrip("/").endswith(UPLOAD_SUFFIX) else self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        length = _content_length(scope)
        if length is not None:
            if length > limit:
                await _refuse(send, limit)
                return
            await self.app(scope, receive, send)  # the server reads no more than Content-Length
            return
        # No Content-Length (chunked): read up to the limit here, then replay it to the app.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message]), send)
                return
            size += len(message.get("body", b""))
            if size > limit:
                await _refuse(send, limit)
                return
            chunks.append(message)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, receive), send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None



def _replay(messages: list[Message], receive: Receive | None = None) -> Receive:
    queue = list(messages)

    async def wrapped() -> Message:
        if queue:
            return queue.pop(0)
        if receive is not None:
            return await receive()  # after the body: the disconnect message
        return {"type": "http.disconnect"}

    return wrapped


async def _refuse(send: Send, limit: int) -> None:
    body = (f"Request body over the maximum allowed size of {limit:,} bytes.").encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
