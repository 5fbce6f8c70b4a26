"""Malformed API calls refused in one line, where they join the queue, before Gradio's own processing.

Gradio turns a call's JSON into the inputs of the event's function. A wrong type (``"many"`` results), a
missing argument, or a file reference to a path that was never uploaded raised inside Gradio: the client
got ``{"error": null}`` and the server log a 20-70 line traceback, for a call refused on purpose. So each
call is checked against its event's inputs as it joins the queue (:func:`check_call`), and a malformed
one is answered HTTP 422 with a one-line reason, and one line in the log. An API name that does not
exist gets HTTP 404 the same way (:func:`unknown_api_handler`, given to the app at launch).

The checks are those of the components the app uses: numbers (sliders) are numbers, choices (radios)
are among the choices, text is text, files are Gradio file references inside its upload folder (upload
first: ``POST /gradio_api/upload``). State inputs come from the session, never from the call.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Malformed(ValueError):
    """A call whose data does not fit its event's inputs; ``str()`` is the one-line reason."""


def _label(component: Any, position: int) -> str:
    label = getattr(component, "label", None)
    return f"argument {position + 1} ({label})" if label else f"argument {position + 1}"


def check_value(component: Any, value: Any, position: int, upload_root: Path | None) -> None:
    """Raise :class:`Malformed` when ``value`` cannot be an input of ``component``."""
    import gradio as gr

    where = _label(component, position)
    if isinstance(component, gr.State):
        return
    if isinstance(component, (gr.Slider, gr.Number)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise Malformed(f"{where} must be a number, not {type(value).__name__}")
    elif isinstance(component, gr.Radio):
        allowed = [choice[1] if isinstance(choice, (list, tuple)) else choice for choice in component.choices or []]
        if not isinstance(value, str) or value not in allowed:
            shown = repr(value)[:40] if isinstance(value, (str, int, float)) else type(value).__name__
            raise Malformed(f"{where} must be one of {', '.join(map(str, allowed))}, not {shown}")
    elif isinstance(component, gr.Textbox):
        if value is not None and not isinstance(value, str):
            raise Malformed(f"{where} must be text, not {type(value).__name__}")
    elif isinstance(component, (gr.File, gr.UploadButton, gr.Image)):
        if value is None:
            return
        path = value.get("path") if isinstance(value, dict) else None
        if not isinstance(path, str):
            raise Malformed(f"{where} must be a file uploaded first (POST /gradio_api/upload), given as "
                            "{\"path\": ..., \"meta\": {\"_type\": \"gradio.FileData\"}}")
        if upload_root is not None:
            try:
                inside = Path(path).resolve().is_relative_to(upload_root)
            except (OSError, ValueError):
                inside = False
            if not inside:
                raise Malformed(f"{where} names a file that was not uploaded here: upload it first "
                                "(POST /gradio_api/upload) and pass the path it returns")


def check_call(fn: Any, data: Any, upload_root: Path | None) -> None:
    """Raise :class:`Malformed` when ``data`` does not fit the inputs of the event ``fn``."""
    inputs = list(getattr(fn, "inputs", []) or [])
    if not isinstance(data, list):
        raise Malformed(f"data must be a list of {len(inputs)} values")
    if len(data) != len(inputs):
        raise Malformed(f"this endpoint takes {len(inputs)} values in data, not {len(data)}")
    for position, (component, value) in enumerate(zip(inputs, data)):
        check_value(component, value, position, upload_root)


def install(demo: Any) -> None:
    """Check every call that joins ``demo``'s queue (after ``demo.queue(...)``, before launch)."""
    from fastapi import HTTPException
    from gradio import route_utils

    from sketchlvm.webapp.uploads import upload_folder

    queue = demo._queue
    push = queue.push
    upload_root = upload_folder()

    async def checked_push(body: Any, request: Any, username: str | None):
        if getattr(body, "fn_index", None) is not None:
            try:
                fn = route_utils.get_fn(demo, None, body)
            except Exception:  # noqa: BLE001 - Gradio answers an unknown function itself
                fn = None
            if fn is not None:
                try:
                    check_call(fn, getattr(body, "data", None), upload_root)
                except Malformed as malformed:
                    name = fn.api_name or f"#{fn._id}"
                    log.info("refused a malformed call of %s: %s", name, malformed)
                    raise HTTPException(status_code=422, detail=f"{name}: {malformed}") from None
        return await push(body=body, request=request, username=username)

    queue.push = checked_push


def exception_handlers() -> dict:
    """For the app's ``exception_handlers``: an unknown API name is a 404 with one line, not a traceback."""
    try:
        from gradio.route_utils import FnIndexInferError
    except ImportError:  # pragma: no cover - Gradio moved it
        return {}
    return {FnIndexInferError: unknown_api_handler}


async def unknown_api_handler(request: Any, error: Exception):
    from fastapi.responses import JSONResponse

    log.info("refused a call of an unknown API name: %s", request.url.path)
    return JSONResponse({"detail": "No such API endpoint: see /gradio_api/info for the app's endpoints."},
                        status_code=404)
