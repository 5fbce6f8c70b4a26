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

from sketchlvm.model.text import MAX_TEXT_CHARS, TEXT_TEMPLATE
from sketchlvm.search import DEFAULT_TEXT_WEIGHT, Searcher
from sketchlvm.webapp import api_checks, fair_use
from sketchlvm.webapp import query as query_module
from sketchlvm.webapp import uploads
from sketchlvm.webapp.access import protect
from sketchlvm.webapp.canvas import STATIC_DIR, StrokeCanvas
from sketchlvm.webapp.handlers import (
    load_upload,
    render_examples,
    search_like,
    search_strokes,
    search_with_photo,
)
from sketchlvm.webapp.limits import MAX_BODY_BYTES, UPLOAD_OVERHEAD_BYTES, BodyLimitMiddleware
from sketchlvm.webapp.results import original, serve_thumbnails_in_place
from sketchlvm.webapp.sessions import bound_sessions
from sketchlvm.webapp.safe_text import display_name, from_page, to_page
from sketchlvm.webapp.sign_in_throttle import SignInThrottleMiddleware
from sketchlvm.webapp.uploads import UploadAreaMiddleware
from sketchlvm.webapp.cache_scope import current_session
from sketchlvm.webapp.app_state import (
    DRAW_HINT,
    MODE_LABELS,
    AppState,
    banner_markdown,
    no_gallery_help,
    progress_markdown,
    status_markdown,
)

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
# Uploads and returned files in Gradio's cache are deleted every 5 minutes once over 30 minutes old, the
# last resort after the upload area's own limits (sketchlvm.webapp.uploads: a file goes as soon as its
# query has run); the files of the page itself are kept.
DELETE_CACHE = (300, 1800)
# Sessions: Gradio keeps each page's state (above all the query being searched: at most an uploaded sketch,
# ~0.8 MB, usually a few hundred bytes) until the tab closes, for SESSION_TTL_S after its last change, and
# for SESSION_CAPACITY sessions at most, the least recently used dropped first (Gradio's default: 10,000).
SESSION_TTL_S = 3600
SESSION_CAPACITY = 1000
ANALYTICS_SUMMARY_EVERY = 100  # events between two of Gradio's queue-analytics summaries (see launch)


@cache
def static_text(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def page_css() -> str:
    return static_text("page.css")


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

    def uploaded(path, mode, k, text, text_weight):
        """Search the gallery with a sketch image (PNG/JPEG, dark lines on white), a mode, how many
        results and optional words with their weight. Returns (the sketch as searched, results, message)."""
        try:
            return load_upload(state, path, mode, k, text, text_weight)
        finally:
            uploads.discard(path)  # its query has run (sketchlvm.webapp.uploads)

    def like(relpath, mode, k):
        """More like this: a gallery photo (its path in the gallery, as in the captions' folder/file) as the
        query, from its stored vector; the photo itself comes first. Returns (results, message)."""
        return search_like(state, from_page(relpath), mode, k)

    def photo_query(path, mode, k):
        """Search the gallery with a photo (JPEG/PNG/WebP), a mode and how many results."""
        try:
            return search_with_photo(state, path, mode, k)
        finally:
            uploads.discard(path)

    def answer(seq, stored, strokes, mode, k, text, weight, answered):
        # The page's one search: the current query (query.py) ranked with the controls on screen. When
        # that query or a setting changed since the page's last answer, the preview of a result of the
        # last one closes and the highlight goes. A repeat with the same results (the words box left
        # unchanged) leaves the results as they are: re-drawn, they would swallow a click in progress.
        current = query_module.current(stored, strokes)
        settings = query_module.Settings.read(mode, k, text, weight)
        found = query_module.run(state, current, strokes, settings)
        # Digests, not the drawing (up to 1 MB) nor the results: all a session keeps (bounded sessions).
        key = (current.id, query_module.fingerprint(strokes or "") if current.kind in ("drawing", "example") else "",
               query_module.fingerprint(repr(settings)))  # the words may be a whole request body long
        results_digest = query_module.fingerprint(repr(found.gallery))
        same = (key, results_digest) == answered
        changed = answered is None or key != answered[0]
        gallery = gr.skip() if same else gr.update(value=found.gallery, selected_index=None) if changed else found.gallery
        return (gallery, found.message, found.shown, query_module.view_update(current),
                found.tag(seq, current, settings), gr.update(visible=False) if changed else gr.skip(),
                (key, results_digest))

    def result_selected(shown, evt: gr.SelectData):
        if not shown or not 0 <= evt.index < len(shown):
            return gr.skip(), gr.skip(), gr.skip()
        relpath = shown[evt.index]
        photo = original(state, relpath)
        if photo is None:
            return gr.skip(), gr.skip(), gr.skip()
        # The preview's label names the photo; the button stays short enough for a phone.
        return (gr.update(value=photo, label=f"{display_name(relpath)} (original)"), to_page(relpath),
                gr.update(visible=True))

    def rebuild():
        """Index what changed in the gallery folder, in the background (the page shows the progress)."""
        indexer = state.ensure_indexer()
        if indexer is None:
            gr.Warning("No gallery to index: start the app with --gallery DIR.")
            return status_markdown(state), no_gallery_help(), banner_markdown(state), "", gr.Timer(active=False)
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

    state.searcher.set_cache_scope(current_session)  # caches per browser session (sketchlvm.webapp.cache_scope)
    with gr.Blocks(title="SketchLVM: search photos by sketch", delete_cache=DELETE_CACHE) as demo:
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
        # sessions past SESSION_CAPACITY: launch_kwargs).
        shown = gr.State([], time_to_live=SESSION_TTL_S)  # relpaths of the results on screen, for the preview
        query = gr.State(None, time_to_live=SESSION_TTL_S,  # the page's current query besides the canvas (query.py)
                         delete_callback=discard_query_upload)
        answered = gr.State(None, time_to_live=SESSION_TTL_S)  # digests of the page's last answer (query, results)
        seq = gr.Textbox(visible=False)  # the request's number, filled in by request.js as it leaves
        # Two columns side by side on a wide screen; on a narrow one page.css lays their parts out in
        # one column, canvas then results then controls (see the @media rule there).
        with gr.Row(elem_id="sketchlvm-main", equal_height=False):
            with gr.Column(scale=1, min_width=320, elem_id="sketchlvm-left"):
                canvas = StrokeCanvas(elem_id="sketchlvm-canvas")
                query_view = gr.Image(
                    label="Searching with", type="pil", interactive=False, visible=False, height=200, format="png",
                    buttons=[], elem_id="sketchlvm-query",
                )
                with gr.Row(elem_id="sketchlvm-words-row"):
                    words = gr.Textbox(
                        value="", label="Words (optional): what a drawing cannot show",
                        placeholder="red, on a beach, leather",
                        info=f"Searched as “{TEXT_TEMPLATE.format('…')}”, up to {MAX_TEXT_CHARS} characters; "
                        "press Enter. Words alone search too.",
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

        search_events = dict(concurrency_limit=SEARCH_CONCURRENCY, concurrency_id="search")
        upload_events = dict(concurrency_limit=UPLOAD_CONCURRENCY, concurrency_id="upload")
        # The page's one search event. Every trigger that changes the query or a setting runs it, so
        # Gradio runs a page's searches one at a time and always_last drops those queued behind a newer
        # one: the last asked is the last shown. Its js numbers the requests (answer.js checks them).
        gr.on(
            [canvas.input, query.change, mode.change, top_k.change, words.submit, words.blur, text_weight.release],
            answer, [seq, query, canvas, mode, top_k, words, text_weight, answered],
            [results, message, shown, query_view, answer_box, preview_panel, answered],
            trigger_mode="always_last", show_progress="hidden", api_visibility="private",
            js=static_text("request.js"), **search_events,
        )
        # Setting a query only stores it; its search follows through query.change, above.
        setters = {"api_visibility": "private", "show_progress": "minimal",
                   "concurrency_limit": SEARCH_CONCURRENCY, "concurrency_id": "set-query"}
        # Uploads decode in a group of their own (UPLOAD_CONCURRENCY), so they cannot crowd out searches.
        upload_setters = {**setters, "concurrency_limit": UPLOAD_CONCURRENCY, "concurrency_id": "upload"}
        def set_sketch(path, strokes):
            try:
                return query_module.set_sketch(state, path, strokes)
            finally:
                uploads.discard(path)  # read into the query: the file is not needed again

        upload_button.upload(set_sketch,
                             [upload_button, canvas], [query, message, answer_box], **upload_setters)
        photo_button.upload(lambda path, strokes: query_module.set_photo(state, path, strokes),
                            [photo_button, canvas], [query, message, answer_box], **upload_setters)
        like_button.click(lambda relpath, strokes: query_module.set_gallery(state, from_page(relpath), strokes),
                          [selected, canvas], [query, message, answer_box], **setters)

        def example_selected(evt: gr.SelectData):
            return query_module.set_example(state, evt.index)

        examples.select(example_selected, None, [canvas, query, answer_box], **setters)
        results.select(result_selected, shown, [preview, selected, preview_panel],
                       api_visibility="private", show_progress="hidden", queue=False)
        close_button.click(lambda: gr.update(visible=False), None, preview_panel, api_visibility="private",
                           queue=False)

        # The public endpoints (gradio_client, curl, apps), each on a hidden button of its own so that its
        # inputs and outputs are exactly those listed; the page itself uses the events above.
        api_search = gr.Button(visible=False)
        api_search.click(search, [canvas, mode, top_k, words, text_weight], [results, message], api_name="search",
                         **search_events)
        # (sketch image, mode, k, words, weight) -> (the sketch as searched, results, message); the State
        # output is not part of the API.
        api_upload = gr.Button(visible=False)
        api_upload.click(uploaded, [upload_button, mode, top_k, words, text_weight], [query_view, results, message, shown],
                         api_name="upload_sketch", **upload_events)
        # (relpath, mode, k) -> (results, message), and (photo file, mode, k) -> (results, message).
        api_like = gr.Button(visible=False)
        api_like.click(like, [selected, mode, top_k], [results, message, shown], api_name="search_like",
                       **search_events)
        api_photo = gr.Button(visible=False)
        api_photo.click(photo_query, [photo_button, mode, top_k], [results, message, shown], api_name="search_photo",
                        **upload_events)
        rebuild_button.click(rebuild, None, [status, message, banner, progress_line, progress_timer],
                             api_name="rebuild_index", concurrency_limit=1)
        progress_timer.tick(poll_progress, None, [progress_line, status, banner, progress_timer],
                            api_visibility="private", show_progress="hidden", queue=False)
        demo.load(lambda: status_markdown(state), None, status, api_name="status", queue=False)
        demo.load(poll_progress, None, [progress_line, status, banner, progress_timer], api_visibility="private",
                  queue=False)
    bound_sessions(demo)  # no raw input kept per session (sketchlvm.webapp.sessions)
    if state.access is not None:
        protect(demo, state.access)  # sign-in and owner-only events (sketchlvm.webapp.access)
    return demo


def discard_query_upload(query: Any) -> None:
    """A page's query state is gone (its session ended or expired): its uploaded photo goes too."""
    path = getattr(query, "path", None)
    if path:
        uploads.discard(path)


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
        show_error=False,
        state_session_capacity=SESSION_CAPACITY,
        app_kwargs={"middleware": middleware, "exception_handlers": api_checks.exception_handlers()},
        **(state.access.launch_kwargs() if state.access is not None else {}),
    )
