"""The page's layout: warning banner, stroke canvas, words, uploads, examples, mode and top-k, results,
preview. ``lay_out(state)`` places the parts inside the Blocks being built and returns them by name;
``page_events.wire`` gives them their behaviour. On a narrow screen page.css (static/) lays the two
columns out as one.
"""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace
from typing import Any

import gradio as gr

from sketchlvm.model.text import MAX_TEXT_CHARS, TEXT_TEMPLATE
from sketchlvm.search import DEFAULT_TEXT_WEIGHT
from sketchlvm.webapp.app_state import (
    DRAW_HINT,
    MODE_LABELS,
    AppState,
    banner_markdown,
    progress_markdown,
    status_markdown,
)
from sketchlvm.webapp import uploads
from sketchlvm.webapp.canvas import STATIC_DIR, StrokeCanvas, live_strokes

MAX_TOP_K = 60
PROGRESS_POLL_S = 1.0  # how often an open page asks how far indexing is, while it runs
SESSION_TTL_S = 3600  # a page's state is dropped after an hour without use (bounded sessions)


@cache
def static_text(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def discard_query_upload(query: Any) -> None:
    """A page's query state is gone (its session ended or expired): its uploaded photo goes too."""
    path = getattr(query, "path", None)
    if path:
        uploads.discard(path)


def page_theme() -> gr.themes.Base:
    """Gradio's default theme with readable secondary text. Its subdued text (the controls' info lines,
    the results' caption) is neutral-400, #bbbbc2 on white: 1.9:1, under WCAG AA's 4.5:1 (axe-core,
    tests/webapp/test_accessibility.py). Neutral-600 (#52525b) is 7.7:1 on white and still reads as
    secondary next to the neutral-800 body text; the dark mode keeps its own."""
    return gr.themes.Default().set(body_text_color_subdued="*neutral_600")


def lay_out(state: AppState) -> SimpleNamespace:
    """Place every part of the page (inside an open ``gr.Blocks``); return them by name."""
    modes = list(state.searcher.modes)
    default_k = max(1, state.searcher.default_k)
    max_k = max(MAX_TOP_K, default_k)
    banner = gr.Markdown(banner_markdown(state), elem_id="sketchlvm-banner")
    if state.access is not None and state.access.sign_in == "huggingface":
        gr.LoginButton()  # Hugging Face OAuth: the Space's README needs hf_oauth: true
    gr.Markdown("# SketchLVM\nDraw something; the photos of your gallery that match it appear next to the canvas.",
                elem_id="sketchlvm-title")
    gr.Markdown(state.credit or "", visible=bool(state.credit), elem_id="sketchlvm-credit")
    progress_line = gr.Markdown(progress_markdown(state), elem_id="sketchlvm-progress")
    # Polls the background build while it runs; its tick switches it off when the build is over.
    progress_timer = gr.Timer(PROGRESS_POLL_S, active=state.indexer is not None)
    # Per-session state: small, and dropped after SESSION_TTL_S without use (and with the oldest
    # sessions past page.SESSION_CAPACITY: launch_kwargs).
    shown = gr.State([], time_to_live=SESSION_TTL_S)  # relpaths of the results on screen, for the preview
    query = gr.State(None, time_to_live=SESSION_TTL_S,  # the page's current query besides the canvas (query.py)
                     delete_callback=discard_query_upload)
    # Digests of the page's last answer (query, results), and whether a result's preview or the query panel
    # may be open (page_events.answer closes them on a new query).
    answered = gr.State(None, time_to_live=SESSION_TTL_S)
    seq = gr.Textbox(visible=False)  # the request's number, filled in by request.js as it leaves
    # Two columns side by side on a wide screen; on a narrow one page.css lays their parts out in
    # one column, canvas then results then controls (see the @media rule there).
    with gr.Row(elem_id="sketchlvm-main", equal_height=False):
        with gr.Column(scale=1, min_width=320, elem_id="sketchlvm-left"):
            canvas = StrokeCanvas(elem_id="sketchlvm-canvas", live=live_strokes())
            query_view = gr.Image(
                label="Searching with", type="pil", interactive=False, visible=False, height=200, format="png",
                buttons=[], elem_id="sketchlvm-query",
            )
            with gr.Row(elem_id="sketchlvm-words-row"):
                words = gr.Textbox(
                    value="", label="Words (optional): what a drawing cannot show",
                    placeholder="red, on a beach, leather",
                    info=f"Searched as you type, as “{TEXT_TEMPLATE.format('…')}”, up to {MAX_TEXT_CHARS} "
                    "characters. Words alone search too.",
                    lines=1, max_lines=1, scale=3, min_width=200, elem_id="sketchlvm-words",
                )
                text_weight = gr.Slider(
                    0, 1, value=DEFAULT_TEXT_WEIGHT, step=0.05, label="Words ↔ sketch",
                    info=f"0 = the sketch only, 1 = the words only; {DEFAULT_TEXT_WEIGHT} (default) counts both "
                    "equally", scale=2, min_width=160, elem_id="sketchlvm-text-weight",
                )
            with gr.Row(elem_id="sketchlvm-uploads"):
                upload_button = gr.UploadButton(
                    "Upload a sketch image", file_types=["image"], type="filepath", size="md",
                    elem_id="sketchlvm-sketch-upload",
                )
                photo_button = gr.UploadButton(
                    "Search with a photo", file_types=["image"], type="filepath", size="md",
                    elem_id="sketchlvm-photo-query",
                )
            examples = gr.Gallery(
                value=[(str(p), p.stem) for p in state.examples],
                label="Or start from an example (click one: it loads into the canvas)",
                columns=4,
                height=170,
                allow_preview=False,
                interactive=False,
                buttons=[],
                visible=bool(state.examples),
                elem_id="sketchlvm-examples",
            )
            with gr.Accordion("What is loaded", open=False, elem_id="sketchlvm-loaded"):
                status = gr.Markdown(status_markdown(state), elem_id="sketchlvm-status")
                rebuild_button = gr.Button("Rebuild index", size="sm", interactive=state.gallery_dir is not None)
        with gr.Column(scale=1, min_width=320, elem_id="sketchlvm-right"):
            with gr.Row(elem_id="sketchlvm-controls"):
                mode = gr.Radio(
                    choices=[(MODE_LABELS.get(m, m), m) for m in modes],
                    value=modes[0],
                    label="Search mode",
                    info="Category: same kind of thing. Fine-grained: the particular object drawn.",
                    min_width=160,
                    elem_id="sketchlvm-mode",
                )
                top_k = gr.Slider(1, max_k, value=default_k, step=1, label="Number of results", min_width=160,
                                  elem_id="sketchlvm-top-k")
            message = gr.Markdown(DRAW_HINT, elem_id="sketchlvm-message")
            results = gr.Gallery(
                label="Matches (category · similarity · file) — click one to see the original",
                show_label=False,  # the label floats over the first row; the message says what they are
                columns=4,  # 12 results in 3 rows, no scrolling (page.css: 3 on a phone)
                height=560,
                object_fit="contain",
                allow_preview=False,
                elem_id="sketchlvm-results",
            )
            answer_box = gr.HTML("", html_template="", js_on_load=static_text("answer.js"),
                                 elem_id="sketchlvm-answer")
    # The original of a clicked result, over the page (fixed, so it opens in view wherever the
    # results are scrolled to); a new answer closes it.
    with gr.Column(visible=False, elem_id="sketchlvm-preview-panel") as preview_panel:
        preview = gr.Image(label="Original", interactive=False, height=360, elem_id="sketchlvm-preview")
        with gr.Row():
            like_button = gr.Button("Search with this photo", variant="primary", elem_id="sketchlvm-like")
            close_button = gr.Button("Close", elem_id="sketchlvm-preview-close")
    selected = gr.Textbox(visible=False)  # the relpath of the result clicked last
    return SimpleNamespace(
        banner=banner,
        progress_line=progress_line,
        progress_timer=progress_timer,
        shown=shown,
        query=query,
        answered=answered,
        seq=seq,
        canvas=canvas,
        query_view=query_view,
        words=words,
        text_weight=text_weight,
        upload_button=upload_button,
        photo_button=photo_button,
        examples=examples,
        status=status,
        rebuild_button=rebuild_button,
        mode=mode,
        top_k=top_k,
        message=message,
        results=results,
        answer_box=answer_box,
        preview=preview,
        like_button=like_button,
        close_button=close_button,
        selected=selected,
        preview_panel=preview_panel,
    )
