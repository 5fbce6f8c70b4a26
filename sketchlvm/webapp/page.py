"""The page: its layout (page_layout.py) wired to its events (page_events.py), and how it is served.

``build_demo(searcher_or_state)`` builds the Blocks from what it is given (tests build it with a tiny
random model) and loads nothing itself; ``launch`` and ``launch_kwargs`` hold the queue and server
settings, so the CLI and the tests launch it the same way.
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

from sketchlvm.search import Searcher
from sketchlvm.webapp import api_checks, fair_use, uploads
from sketchlvm.webapp.access import protect
from sketchlvm.webapp.app_state import AppState
from sketchlvm.webapp.cache_scope import current_session
from sketchlvm.webapp.handlers import render_examples
from sketchlvm.webapp.limits import MAX_BODY_BYTES, UPLOAD_OVERHEAD_BYTES, BodyLimitMiddleware
from sketchlvm.webapp.newest import Newest
from sketchlvm.webapp.page_events import SEARCH_CONCURRENCY, UPLOAD_CONCURRENCY, wire  # noqa: F401 (named here too)
from sketchlvm.webapp.page_layout import MAX_TOP_K, lay_out, page_theme, static_text  # noqa: F401 (MAX_TOP_K)
from sketchlvm.webapp.results import serve_thumbnails_in_place
from sketchlvm.webapp.sessions import bound_sessions
from sketchlvm.webapp.sign_in_throttle import SignInThrottleMiddleware
from sketchlvm.webapp.uploads import UploadAreaMiddleware

QUEUE_MAX_SIZE = 64
MAX_UPLOAD_SIZE = "10mb"  # Gradio answers bigger uploads with HTTP 413 before any handler runs
MAX_UPLOAD_BYTES = 10 * 2**20  # the same, for the body limit (sketchlvm.webapp.limits)
# Uploads and returned files in Gradio's cache are deleted every 5 minutes once over 30 minutes old, the
# last resort after the upload area's own limits (sketchlvm.webapp.uploads: a file goes as soon as its
# query has run); the files of the page itself are kept.
DELETE_CACHE = (300, 1800)
# Sessions: Gradio keeps each page's state (page_layout.py: digests and the query, at most an uploaded
# sketch of ~0.8 MB, usually a few hundred bytes) until the tab closes, for SESSION_TTL_S after its last
# change (page_layout.SESSION_TTL_S), and for SESSION_CAPACITY sessions at most, the least recently used
# dropped first (Gradio's default: 10,000).
SESSION_CAPACITY = 1000
ANALYTICS_SUMMARY_EVERY = 100  # events between two of Gradio's queue-analytics summaries (see launch)


def page_css() -> str:
    return static_text("page.css")


def build_demo(searcher_or_state: Searcher | AppState) -> gr.Blocks:
    """The whole UI as a function of its dependencies; loads nothing itself (examples are rendered).
    The layout is page_layout.py, the behaviour page_events.py."""
    state = AppState.wrap(searcher_or_state)
    if not state.examples:
        state.examples = render_examples()
    if state.newest is None:
        state.newest = Newest()
    state.searcher.set_cache_scope(current_session)  # caches per browser session (sketchlvm.webapp.cache_scope)
    with gr.Blocks(title="SketchLVM: search photos by sketch", delete_cache=DELETE_CACHE) as demo:
        ui = lay_out(state)
        wire(demo, state, ui)
    bound_sessions(demo)  # no raw input kept per session (sketchlvm.webapp.sessions)
    if state.access is not None:
        protect(demo, state.access)  # sign-in and owner-only events (sketchlvm.webapp.access)
    return demo


def launch(demo: gr.Blocks, **kwargs: Any):
    """Queue settings in one place: live search events per session collapse to the latest.

    Gradio's queue rebuilds a pandas summary of its last 10,000 events (for its monitoring page) after
    every event by default: 5 ms of the server's CPU per search at first, 15 ms once a day's events have
    piled up. Every ``ANALYTICS_SUMMARY_EVERY`` events is plenty for a monitoring page (read when the
    queue is made; an explicit setting wins).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(ANALYTICS_SUMMARY_EVERY))
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    fair_use.install(demo)  # a few queued requests per client, taking turns (sketchlvm.webapp.fair_use)
    api_checks.install(demo)  # malformed calls: one line, before they take a place (sketchlvm.webapp.api_checks)
    return demo.launch(**kwargs)


def launch_kwargs(state: AppState, host: str, port: int, share: bool = False) -> dict[str, Any]:
    """Serve thumbnails and opened originals of indexed photos and nothing else on disk (plus Gradio's own
    upload folder): no folder is in ``allowed_paths``, the served files live in the app's own static
    folder (``sketchlvm.webapp.public_files``). Request bodies over a few MB are refused before Gradio reads them
    (``sketchlvm.webapp.limits``); with sign-in on, Gradio's login page comes first."""
    from starlette.middleware import Middleware

    serve_thumbnails_in_place(state)
    body_limit = Middleware(BodyLimitMiddleware, max_body=MAX_BODY_BYTES,
                            upload_limit=MAX_UPLOAD_BYTES + UPLOAD_OVERHEAD_BYTES)
    trust = fair_use.Allowance.from_environment().trust_forwarded  # whose address a request has
    middleware = [body_limit, Middleware(UploadAreaMiddleware, trust_forwarded=trust, max_upload=MAX_UPLOAD_BYTES)]
    if state.access is not None and state.access.sign_in == "password":
        middleware.append(Middleware(SignInThrottleMiddleware, trust_forwarded=trust))  # password guessing
    uploads.start_sweeper()  # uploads cut short leave files behind
    return dict(
        server_name=host,
        server_port=port,
        share=share,
        allowed_paths=[],
        max_file_size=MAX_UPLOAD_SIZE,
        css=page_css(),
        theme=page_theme(),
        show_error=False,
        state_session_capacity=SESSION_CAPACITY,
        app_kwargs={"middleware": middleware, "exception_handlers": api_checks.exception_handlers()},
        **(state.access.launch_kwargs() if state.access is not None else {}),
    )
