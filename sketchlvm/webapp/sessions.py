"""What Gradio keeps per session, kept small: no raw input survives the event that read it.

Gradio 6 keeps, for every session, a copy of each input's last value (``SessionState.config_values``, for
its deep links), and every API call without a session of its own is a new session. So 1,100 sessions that
each sent ~1 MB of strokes and ~0.9 MB of words held 2.85 GB, growing linearly up to Gradio's 10,000
sessions. The page's own state keeps digests (``query.fingerprint``), and :func:`bound_sessions` wraps each
event of the page so that, as it runs, any value over ``MAX_KEPT_CHARS`` is dropped from its session's
copy (the event has its inputs already; the page's deep links are not used). The number of sessions is
bounded by Gradio's ``state_session_capacity`` (``SESSION_CAPACITY`` in page.py, least recently used
dropped first) and the page's states expire (``time_to_live``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

MAX_KEPT_CHARS = 4096  # a session's copy of an input longer than this is dropped


def _large(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return len(value) > MAX_KEPT_CHARS
    if isinstance(value, (list, tuple, dict)):
        return len(repr(value)) > MAX_KEPT_CHARS if len(value) < 10_000 else True
    return False


def trim(demo: Any, session_hash: str | None) -> int:
    """Drop large input values from the session's copy; returns how many were dropped."""
    if not session_hash:
        return 0
    try:
        state = demo.state_holder.session_data.get(session_hash)
        configs = state.config_values if state is not None else {}
    except AttributeError:  # Gradio changed: nothing to trim
        return 0
    dropped = 0
    for config in list(configs.values()):
        props = config.get("props") if isinstance(config, dict) else None
        if isinstance(props, dict) and _large(props.get("value")):
            props["value"] = None
            dropped += 1
    return dropped


def _current_session() -> str | None:
    try:
        from gradio.context import LocalContext

        request = LocalContext.request.get(None)
    except (ImportError, AttributeError, LookupError):  # pragma: no cover
        return None
    return getattr(request, "session_hash", None)


def bound_sessions(demo: Any) -> None:
    """Wrap every event of ``demo`` so that its session keeps no large input (call after the page is built)."""
    for block_fn in demo.fns.values():
        if block_fn.fn is None:
            continue
        block_fn.fn = _trimming(block_fn.fn, demo)


def _trimming(fn, demo):
    @functools.wraps(fn)  # Gradio reads the wrapped signature (special arguments, input count)
    def trimmed(*args, **kwargs):
        trim(demo, _current_session())
        return fn(*args, **kwargs)

    return trimmed
