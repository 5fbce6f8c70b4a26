"""The page: warning banner, stroke canvas, upload, examples, mode and top-k, results, preview.

``build_demo(searcher_or_state)`` builds the Blocks from what it is given (tests build it with a tiny
random model) and loads nothing itself; ``launch`` and ``launch_kwargs`` hold the queue and server
settings, so the CLI and the tests launch it the same way.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import gradio as gr

from sketchlvm.search import DEFAULT_TEXT_WEIGHT, Searcher
from sketchlvm.model.text import MAX_TEXT_CHARS, TEXT_TEMPLATE
from sketchlvm.webapp.canvas import STATIC_DIR, StrokeCanvas
from sketchlvm.webapp.handlers import (
    load_example,
    load_upload,
    render_examples,
    run_search,
    search_like,
    search_strokes,
    search_with_photo,
)
from sketchlvm.webapp.access import protect
from sketchlvm.webapp.limits import MAX_BODY_BYTES, UPLOAD_OVERHEAD_BYTES, BodyLimitMiddleware
from sketchlvm.webapp.results import original, serve_thumbnails_in_place
from sketchlvm.webapp.sessions import current_session
from sketchlvm.webapp.state import (
    DRAW_HINT,
    MODE_LABELS,
    NO_GALLERY_HELP,
    AppState,
    banner_markdown,
    progress_markdown,
    status_markdown,
)

DEFAULT_TOP_K = 12
MAX_TOP_K = 60
PROGRESS_POLL_S = 1.0  # how often an open page asks how far indexing is, while it runs
# Searches let in at once. The encoder itself runs one query at a time (RuntimeConfig.serial_queries),
# so more slots do not oversubscribe the cores: they let a re-rank (mode toggle, slider: ~20 ms) or a
# request's rendering and Gradio work run while another user's drawing encodes, instead of queueing
# behind it. bench_load, 16 users paced, ViT-B/32: with 2 slots re-ranks waited 475 ms (13.8x alone),
# with 6, 80 ms (2.2x), and encodes were no slower (586 vs 616 ms). Memory bound: 8 uploads of the
# largest accepted sketch (4096 x 4096 RGB, 50 MB decoded) at once hold ~0.4 GB.
SEARCH_CONCURRENCY = 8
# Uploaded images (sketch or photo) decode in a group of their own: each may take up to ~100-250 MB
# while it decodes (a 4096 x 4096 PNG at most), so two at once bound that memory whatever the traffic.
UPLOAD_CONCURRENCY = 2
QUEUE_MAX_SIZE = 64
MAX_UPLOAD_SIZE = "10mb"  # Gradio answers bigger uploads with HTTP 413 before any handler runs
MAX_UPLOAD_BYTES = 10 * 2**20  # the same, for the body limit (sketchlvm.webapp.limits)
# Uploads and returned files in Gradio's cache are deleted every hour once over an hour old: people's
# uploaded photos do not pile up on the server (the files of the page itself are kept).
DELETE_CACHE = (3600, 3600)
ANALYTICS_SUMMARY_EVERY = 100  # events between two of Gradio's queue-analytics summaries (see launch)


@cache
def page_css() -> str:
    return (STATIC_DIR / "page.css").read_text(encoding="utf-8")


def build_demo(searcher_or_state: Searcher | AppState) -> gr.Blocks:
    """The whole UI as a function of its dependencies; loads nothing itself (examples are rendered)."""
    state = AppState.wrap(searcher_or_state)
    if not state.examples:
        state.examples = render_examples()
    modes = list(state.searcher.modes)
    default_k = max(1, state.searcher.default_k)
    max_k = max(MAX_TOP_K, default_k)

    def search(strokes, mode, k, text="", text_weight=DEFAULT_TEXT_WEIGHT):
        """Search the gallery with a drawing and/or words: strokes as JSON in the Quick, Draw! raw format
        ([[xs, ys, ts], ...]; "[]" for none), a mode ("category" or "fine_grained"), how many results,
        optional words ("" for none) and the words' weight (0 = the sketch only, 1 = the words only)."""
        gallery, message, _ = search_strokes(state, strokes, mode, k, live=False, text=text, text_weight=text_weight)
        return gallery, message

    def search_live(strokes, uploaded, mode, k, text, text_weight):
        # The query is the canvas, unless a sketch was uploaded since the last stroke; plus the words.
        if uploaded is not None:
            return run_search(state, uploaded, mode, k, live=True, text=text, text_weight=text_weight)
        return search_strokes(state, strokes, mode, k, live=True, text=text, text_weight=text_weight)

    def stroke_drawn(strokes, mode, k, text, text_weight):
        gallery, message, shown = search_strokes(state, strokes, mode, k, live=True, text=text,
                                                 text_weight=text_weight)
        return gallery, message, shown, gr.update(value=None, visible=False)

    def uploaded(path, mode, k, text, text_weight):
        """Search the gallery with a sketch image (PNG/JPEG, dark lines on white), a mode, how many
        results and optional words with their weight. Returns (the sketch as searched, results, message)."""
        return load_upload(state, path, mode, k, text, text_weight)

    def example_selected(mode, k, text, text_weight, evt: gr.SelectData):
        strokes, gallery, message, shown = load_example(state, evt.index, mode, k, text, text_weight)
        return strokes, gallery, message, shown, gr.update(value=None, visible=False)

    def result_selected(shown, evt: gr.SelectData):
        if not shown or not 0 <= evt.index < len(shown):
            return gr.skip(), gr.skip(), gr.skip()
        relpath = shown[evt.index]
        photo = original(state, relpath)
        preview_update = gr.update(value=photo, visible=photo is not None, label=f"{relpath} (original)")
        name = relpath.rsplit("/", 1)[-1]
        return preview_update, relpath, gr.update(visible=True, value=f"Search with this photo ({name})")

    def like(relpath, mode, k):
        """More like this: a gallery photo (its path in the gallery, as in the captions' folder/file) as the
        query, from its stored vector; the photo itself comes first. Returns (results, message)."""
        return search_like(state, relpath, mode, k)

    def photo_query(path, mode, k):
        """Search the gallery with a photo (JPEG/PNG/WebP), a mode and how many results."""
        return search_with_photo(state, path, mode, k)

    def rebuild():
        """Index what changed in the gallery folder, in the background (the page shows the progress)."""
        indexer = state.ensure_indexer()
        if indexer is None:
            gr.Warning("No gallery to index: start the app with --gallery DIR.")
            return status_markdown(state), NO_GALLERY_HELP, banner_markdown(state), "", gr.Timer(active=False)
        try:
            indexer.rebuild()
        except (OSError, ValueError) as error:  # the folder is gone
            gr.Warning(f"Could not rebuild the index: {error}")
            message = f"**Could not rebuild the index:** {error}"
            return status_markdown(state), message, banner_markdown(state), "", gr.Timer(active=False)
        message = "Rebuilding the index in the background: search keeps working meanwhile."
        return status_markdown(state), message, banner_markdown(state), progress_markdown(state), gr.Timer(active=True)

    def poll_progress():
        progress = state.progress()
        running = progress is not None and progress.running
        return progress_markdown(state), status_markdown(state), banner_markdown(state), gr.Timer(active=running)

    state.searcher.set_cache_scope(current_session)  # caches per browser session (sketchlvm.webapp.sessions)
    with gr.Blocks(title="SketchLVM: search photos by sketch", delete_cache=DELETE_CACHE) as demo:
        banner = gr.Markdown(banner_markdown(state), elem_id="sketchlvm-banner")
        if state.access is not None and state.access.sign_in == "huggingface":
            gr.LoginButton()  # Hugging Face OAuth: the Space's README needs hf_oauth: true
        gr.Markdown("# SketchLVM\nDraw something; the photos of your gallery that match it appear next to the canvas.")
        progress_line = gr.Markdown(progress_markdown(state), elem_id="sketchlvm-progress")
        # Polls the background build while it runs; its tick switches it off when the build is over.
        progress_timer = gr.Timer(PROGRESS_POLL_S, active=state.indexer is not None)
        shown = gr.State([])  # relpaths of the results on screen, for the preview
        with gr.Row():
            with gr.Column(scale=1):
                canvas = StrokeCanvas(elem_id="sketchlvm-canvas")
                with gr.Row():
                    words = gr.Textbox(
                        value="", label="Words (optional): what a drawing cannot show",
                        placeholder="red, on a beach, leather",
                        info=f"Searched as “{TEXT_TEMPLATE.format('…')}”, up to {MAX_TEXT_CHARS} characters; "
                        "press Enter. Words alone search too.",
                        lines=1, max_lines=1, scale=3, elem_id="sketchlvm-words",
                    )
                    text_weight = gr.Slider(
                        0, 1, value=DEFAULT_TEXT_WEIGHT, step=0.05, label="Words ↔ sketch",
                        info=f"0 = the sketch only, 1 = the words only; {DEFAULT_TEXT_WEIGHT} (default) counts both "
                        "equally", scale=2, elem_id="sketchlvm-text-weight",
                    )
                with gr.Row():
                    upload_button = gr.UploadButton(
                        "Upload a sketch image", file_types=["image"], type="filepath", size="md"
                    )
                    photo_button = gr.UploadButton(
                        "Search with a photo", file_types=["image"], type="filepath", size="md",
                        elem_id="sketchlvm-photo-query",
                    )
                # PNG: lossless for line art, and 9 ms to encode a 512 px sketch here against WebP's 14
                # (Gradio's default), on the upload's request path.
                uploaded_view = gr.Image(
                    label="Uploaded sketch (searched until you draw again)", type="pil", interactive=False,
                    visible=False, height=200, format="png", elem_id="sketchlvm-uploaded",
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
                with gr.Accordion("What is loaded", open=False):
                    status = gr.Markdown(status_markdown(state), elem_id="sketchlvm-status")
                    rebuild_button = gr.Button("Rebuild index", size="sm", interactive=state.gallery_dir is not None)
            with gr.Column(scale=1):
                with gr.Row():
                    mode = gr.Radio(
                        choices=[(MODE_LABELS.get(m, m), m) for m in modes],
                        value=modes[0],
                        label="Search mode",
                        info="Category: same kind of thing. Fine-grained: the particular object drawn.",
                    )
                    top_k = gr.Slider(1, max_k, value=default_k, step=1, label="Number of results")
                message = gr.Markdown(DRAW_HINT, elem_id="sketchlvm-message")
                results = gr.Gallery(
                    label="Matches (category · similarity · file) — click one to see the original",
                    columns=4,  # 12 results in 3 rows, no scrolling
                    height=560,
                    object_fit="contain",
                    allow_preview=False,
                    elem_id="sketchlvm-results",
                )
                selected = gr.Textbox(visible=False)  # the relpath of the result clicked last
                like_button = gr.Button("Search with this photo", visible=False, elem_id="sketchlvm-like")
                preview = gr.Image(label="Original", interactive=False, visible=False, elem_id="sketchlvm-preview")

        search_events = dict(concurrency_limit=SEARCH_CONCURRENCY, concurrency_id="search")
        upload_events = dict(concurrency_limit=UPLOAD_CONCURRENCY, concurrency_id="upload")
        # The public endpoint (gradio_client, curl, apps): strokes JSON + mode + k -> results. An event of
        # its own (on a hidden button) so that its inputs and outputs are exactly those three and two.
        api_trigger = gr.Button(visible=False)
        api_trigger.click(search, [canvas, mode, top_k, words, text_weight], [results, message], api_name="search",
                          **search_events)
        # Live search: the canvas fires .input once per pen-up, undo, redo and clear; always_last drops
        # events queued behind a newer one, so a fast drawer gets the latest drawing's results.
        live = dict(trigger_mode="always_last", show_progress="hidden", api_visibility="private", **search_events)
        query = [mode, top_k, words, text_weight]
        canvas.input(stroke_drawn, [canvas, *query], [results, message, shown, uploaded_view], **live)
        # Re-ranks from the cached embeddings (sketch per drawing, words per prompt).
        for event in (mode.change, top_k.change, words.submit, words.blur, text_weight.release):
            event(search_live, [canvas, uploaded_view, *query], [results, message, shown], **live)
        # Public too: (sketch image, mode, k) -> (the sketch as searched, results, message); the State
        # output is not part of the API.
        upload_button.upload(
            uploaded, [upload_button, *query], [uploaded_view, results, message, shown],
            api_name="upload_sketch", show_progress="minimal", **upload_events,
        )
        examples.select(
            example_selected, query, [canvas, results, message, shown, uploaded_view],
            api_visibility="private", show_progress="minimal", **search_events,
        )
        results.select(result_selected, shown, [preview, selected, like_button], api_visibility="private",
                       show_progress="minimal")
        # Public: (relpath, mode, k) -> (results, message), and (photo file, mode, k) -> (results, message).
        like_button.click(like, [selected, mode, top_k], [results, message, shown], api_name="search_like",
                          show_progress="minimal", **search_events)
        photo_button.upload(photo_query, [photo_button, mode, top_k], [results, message, shown],
                            api_name="search_photo", show_progress="minimal", **upload_events)
        rebuild_button.click(rebuild, None, [status, message, banner, progress_line, progress_timer],
                             api_name="rebuild_index", concurrency_limit=1)
        progress_timer.tick(poll_progress, None, [progress_line, status, banner, progress_timer],
                            api_visibility="private", show_progress="hidden", queue=False)
        demo.load(lambda: status_markdown(state), None, status, api_name="status", queue=False)
        demo.load(poll_progress, None, [progress_line, status, banner, progress_timer], api_visibility="private",
                  queue=False)
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
    return demo.launch(**kwargs)


def launch_kwargs(state: AppState, host: str, port: int, share: bool = False) -> dict[str, Any]:
    """Serve thumbnails and opened originals of indexed photos and nothing else on disk (plus Gradio's own
    upload folder): no folder is in ``allowed_paths``, the served files live in the app's own static
    folder (``sketchlvm.webapp.served``). Request bodies over a few MB are refused before Gradio reads them
    (``sketchlvm.webapp.limits``); with sign-in on, Gradio's login page comes first."""
    from starlette.middleware import Middleware

    serve_thumbnails_in_place(state)
    body_limit = Middleware(BodyLimitMiddleware, max_body=MAX_BODY_BYTES,
                            upload_limit=MAX_UPLOAD_BYTES + UPLOAD_OVERHEAD_BYTES)
    return dict(
        server_name=host,
        server_port=port,
        share=share,
        allowed_paths=[],
        max_file_size=MAX_UPLOAD_SIZE,
        css=page_css(),
        show_error=False,
        app_kwargs={"middleware": [body_limit]},
        **(state.access.launch_kwargs() if state.access is not None else {}),
    )
