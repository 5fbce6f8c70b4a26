"""The page's events: what each control does, and the public API's endpoints.

``wire(demo, state, ui)`` connects the parts that ``page_layout.lay_out`` made (``ui``) to the handlers
below. Every search, from the page or the API, runs through the one query path (``query.py``,
``handlers.py``); the page's live search also drops requests that a newer one of its page has overtaken
(``newest.py``).
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from sketchlvm.search import DEFAULT_TEXT_WEIGHT
from sketchlvm.webapp import query as query_module
from sketchlvm.webapp import uploads
from sketchlvm.webapp.app_state import AppState, banner_markdown, no_gallery_help, progress_markdown, status_markdown
from sketchlvm.webapp.handlers import load_upload, search_like, search_strokes, search_with_photo
from sketchlvm.webapp.page_layout import static_text
from sketchlvm.webapp.query_inputs import is_partial
from sketchlvm.webapp.results import original
from sketchlvm.webapp.safe_text import display_name, from_page, to_page

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


def wire(demo: gr.Blocks, state: AppState, ui: SimpleNamespace) -> None:
    """Connect the page's parts to their handlers (the handlers close over ``state``)."""
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

    def answer(seq, stored, strokes, mode, k, text, weight, answered, request: gr.Request = None):
        # The page's one search: the current query (query.py) ranked with the controls on screen. When
        # that query or a setting changed since the page's last answer, the preview of a result of the
        # last one closes and the highlight goes. A repeat with the same results (the words box left
        # unchanged) leaves the results as they are: re-drawn, they would swallow a click in progress.
        # A request that a newer one of the same page has overtaken is dropped, before it is encoded
        # if it is not too late (newest.py): its answer would be out of date before it arrived.
        number = query_module.request_number(seq)
        session = getattr(request, "session_hash", None)
        if not state.newest.claim(session, number):
            return (gr.skip(),) * 7
        current = query_module.current(stored, strokes)
        # A drawing in progress is a preview: it gives way while other searches hold the encoder (busy.py).
        if state.busy.sheds(current.kind == "drawing" and is_partial(strokes)):
            return (gr.skip(),) * 4 + (query_module.shed(seq),) + (gr.skip(),) * 2
        settings = query_module.Settings.read(mode, k, text, weight)
        found = query_module.run(state, current, strokes, settings,
                                 wanted=lambda: state.newest.is_newest(session, number))
        if found is None or not state.newest.is_newest(session, number):
            return (gr.skip(),) * 7
        # Digests, not the drawing (up to 1 MB) nor the results: all a session keeps (bounded sessions).
        key = (current.id, query_module.fingerprint(strokes or "") if current.kind in ("drawing", "example") else "",
               query_module.fingerprint(repr(settings)))  # the words may be a whole request body long
        results_digest = query_module.fingerprint(repr(found.gallery))
        last_key, last_digest, opened = answered or (None, None, True)
        same = (key, results_digest) == (last_key, last_digest)
        changed = answered is None or key != last_key
        # What may be open on the page: a result's preview (opened, set by result_selected) or the query's
        # panel (an uploaded sketch or photo). Only then does a new query close them: each such update
        # rebuilds the component's config on the server (~10 ms a search), which a drawing growing
        # mid-stroke, with nothing open, does not need.
        viewed = query_module.has_view(current)
        closes = changed and (opened or viewed)
        gallery = (gr.skip() if same else gr.update(value=found.gallery, selected_index=None) if closes
                   else found.gallery)
        view = query_module.view_update(current) if opened or viewed else gr.skip()
        return (gallery, found.message, found.shown, view, found.tag(seq, current, settings),
                gr.update(visible=False) if closes else gr.skip(),
                (key, results_digest, viewed or (opened and not closes)))

    def result_selected(shown, answered, evt: gr.SelectData):
        if not shown or not 0 <= evt.index < len(shown):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        relpath = shown[evt.index]
        photo = original(state, relpath)
        if photo is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        # The preview's label names the photo; the button stays short enough for a phone. The next query
        # closes it (answer, above: opened).
        opened = (answered[0], answered[1], True) if answered else None
        return (gr.update(value=photo, label=f"{display_name(relpath)} (original)"), to_page(relpath),
                gr.update(visible=True), opened)

    def rebuild():
        """Index what changed in the gallery folder, in the background (the page shows the progress)."""
        indexer = state.ensure_indexer()
        if indexer is None:
            gr.Warning(no_gallery_help(state).replace("**", "").replace("`", ""))  # a visitor: no flags
            return status_markdown(state), no_gallery_help(state), banner_markdown(state), "", gr.Timer(active=False)
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

    search_events = dict(concurrency_limit=SEARCH_CONCURRENCY, concurrency_id="search")
    upload_events = dict(concurrency_limit=UPLOAD_CONCURRENCY, concurrency_id="upload")
    # The page's one search event. Every trigger that changes the query or a setting runs it, so
    # Gradio runs a page's searches one at a time and always_last drops those queued behind a newer
    # one: the last asked is the last shown. Its js numbers the requests (answer.js checks them).
    gr.on(
        [ui.canvas.input, ui.query.change, ui.mode.change, ui.top_k.change, ui.words.submit, ui.words.blur,
         ui.text_weight.release, ui.answer_box.submit],
        answer, [ui.seq, ui.query, ui.canvas, ui.mode, ui.top_k, ui.words, ui.text_weight, ui.answered],
        [ui.results, ui.message, ui.shown, ui.query_view, ui.answer_box, ui.preview_panel, ui.answered],
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

    ui.upload_button.upload(set_sketch,
                            [ui.upload_button, ui.canvas], [ui.query, ui.message, ui.answer_box], **upload_setters)
    ui.photo_button.upload(lambda path, strokes: query_module.set_photo(state, path, strokes),
                           [ui.photo_button, ui.canvas], [ui.query, ui.message, ui.answer_box], **upload_setters)
    ui.like_button.click(lambda relpath, strokes: query_module.set_gallery(state, from_page(relpath), strokes),
                         [ui.selected, ui.canvas], [ui.query, ui.message, ui.answer_box], **setters)

    def example_selected(evt: gr.SelectData):
        return query_module.set_example(state, evt.index)

    ui.examples.select(example_selected, None, [ui.canvas, ui.query, ui.answer_box], **setters)
    ui.results.select(result_selected, [ui.shown, ui.answered], [ui.preview, ui.selected, ui.preview_panel, ui.answered],
                      api_visibility="private", show_progress="hidden", queue=False)
    ui.close_button.click(lambda: gr.update(visible=False), None, ui.preview_panel, api_visibility="private",
                          queue=False)

    # The public endpoints (gradio_client, curl, apps), each on a hidden button of its own so that its
    # inputs and outputs are exactly those listed; the page itself uses the events above.
    api_search = gr.Button(visible=False)
    api_search.click(search, [ui.canvas, ui.mode, ui.top_k, ui.words, ui.text_weight], [ui.results, ui.message],
                     api_name="search", **search_events)
    # (sketch image, mode, k, words, weight) -> (the sketch as searched, results, message); the State
    # output is not part of the API.
    api_upload = gr.Button(visible=False)
    api_upload.click(uploaded, [ui.upload_button, ui.mode, ui.top_k, ui.words, ui.text_weight],
                     [ui.query_view, ui.results, ui.message, ui.shown], api_name="upload_sketch", **upload_events)
    # (relpath, mode, k) -> (results, message), and (photo file, mode, k) -> (results, message).
    api_like = gr.Button(visible=False)
    api_like.click(like, [ui.selected, ui.mode, ui.top_k], [ui.results, ui.message, ui.shown],
                   api_name="search_like", **search_events)
    api_photo = gr.Button(visible=False)
    api_photo.click(photo_query, [ui.photo_button, ui.mode, ui.top_k], [ui.results, ui.message, ui.shown],
                    api_name="search_photo", **upload_events)
    ui.rebuild_button.click(rebuild, None, [ui.status, ui.message, ui.banner, ui.progress_line, ui.progress_timer],
                            api_name="rebuild_index", concurrency_limit=1)
    ui.progress_timer.tick(poll_progress, None, [ui.progress_line, ui.status, ui.banner, ui.progress_timer],
                              api_visibility="private", show_progress="hidden", queue=False)
    demo.load(lambda: status_markdown(state), None, ui.status, api_name="status", queue=False)
    demo.load(poll_progress, None, [ui.progress_line, ui.status, ui.banner, ui.progress_timer],
              api_visibility="private", queue=False)
