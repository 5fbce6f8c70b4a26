"""Query caches per browser session, so that timing says nothing about other people's searches.

The searcher keeps recent drawings', photos' and words' embeddings so that a mode switch or the top-k
slider re-ranks without encoding again (tens of ms instead of ~100). Shared by everyone, that cache
told anyone who searched the same words or photo whether someone else had just done so: the message
shows the time taken, 1 ms instead of 109 ms. So the searcher's caches are keyed by a *scope* as well,
and in the app the scope is the Gradio session of the request: within one page (or one API client) a
re-rank stays fast, across sessions nothing is shared.

The session is read from Gradio's request context, as ``gr.cache(per_session=True)`` does, so no
handler needs a ``gr.Request`` argument for it. A request with no session (Gradio's ``/call`` routes
without one) gets ``None``: no caching at all. Outside an event (tests or scripts calling the handlers
directly, the library) the scope is ``""``: one shared cache, as before.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def current_session() -> str | None:
    """The cache scope of the request being handled: ``"session:<hash>"``, None (do not cache) in an
    event without a session, ``""`` outside any Gradio event."""
    try:
        from gradio.context import LocalContext
    except ImportError:  # pragma: no cover - gradio moved it: caching off rather than shared
        return None
    try:
        if not LocalContext.in_event_listener.get(False):
            return ""
        request = LocalContext.request.get(None)
    except (AttributeError, LookupError):  # pragma: no cover - as above
        return None
    session = getattr(request, "session_hash", None) if request is not None else None
    return f"session:{session}" if session else None
