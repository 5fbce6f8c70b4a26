"""The page: warning banner, stroke canvas, upload, examples, mode and top-k, results, preview.

``build_demo(searcher_or_state)`` builds the Blocks from what it is given (tests build it with a tiny
random model) and loads nothing itself; ``launch`` and ``launch_kwargs`` hold the queue and server
settings, so the CLI and the tests launch it the same way.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import gradio as gr

from ..search import Searcher
from .canvas import STATIC_DIR, StrokeCanvas
from .handlers import load_example, load_upload, render_examples, run_search, search_strokes
from .results import original, serve_thumbnails_in_place, served_folders
from .state import DRAW_HINT, MODE_LABELS, NO_GALLERY_HELP, AppState, banner_markdown, status_markdown

DEFAULT_TOP_K = 12
MAX_TOP_K = 60
SEARCH_CONCURRENCY = 2  # model calls at once; more only adds contention on a small CPU
QUEUE_MAX_SIZE = 64
MAX_UPLOAD_SIZE = "10mb"  # Gradio answers bigger uploads with HTTP 413 before any handler runs


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

    def search(strokes, mode, k):
        """Search the gallery with a drawing: strokes as JSON in the Quick, Draw! raw format
        ([[xs, ys, ts], ...]), a mode ("category" or "fine_grained") and how many results."""
        gallery, message, _ = search_strokes(state, strokes, mode, k, live=False)
        return gallery, message

    def search_live(strokes, uploaded, mode, k):
        # The query is the canvas, unless a sketch was uploaded since the last stroke.
        if uploaded is not None:
            return run_search(state, uploaded, mode, k, live=True)
        return search_strokes(state, strokes, mode, k, live=True)

    def stroke_drawn(strokes, mode, k):
        gallery, message, shown = search_strokes(state, strokes, mode, k, live=True)
        return gallery, message, shown, gr.update(value=None, visible=False)

    def uploaded(path, mode, k):
        """Search the gallery with a sketch image (PNG/JPEG, dark lines on white), a mode and how many
        results. Returns (the sketch as searched, results, message)."""
        return load_upload(state, path, mode, k)

    def example_selected(mode, k, evt: gr.SelectData):
        strokes, gallery, message, shown = load_example(state, evt.index, mode, k)
        return strokes, gallery, message, shown, gr.update(value=None, visible=False)

    def result_selected(shown, evt: gr.SelectData):
        if not shown or not 0 <= evt.index < len(shown):
            return gr.skip()
        photo = original(state, shown[evt.index])
        return gr.update(value=photo, visible=photo is not None, label=f"{shown[evt.index]} (original)")

    def rebuild(progress=gr.Progress()):
        if state.gallery_dir is None:
            gr.Warning("No gallery to index: start the app with --gallery DIR.")
            return status_markdown(state), NO_GALLERY_HELP, banner_markdown(state)
        from ..index import build_gallery_index

        progress(0, desc="Indexing photos")
        try:
            index = build_gallery_index(
                state.gallery_dir,
                state.searcher.model,
                cache_dir=state.cache_dir,
                progress=lambda done, total: progress((done, total), desc="Indexing photos", unit="photos"),
                show_progress_bar=False,
            )
        except (OSError, ValueError, RuntimeError) as error:
            gr.Warning(f"Could not rebuild the index: {error}")
            return status_markdown(state), f"**Could not rebuild the index:** {error}", banner_markdown(state)
        state.searcher.set_index(index)
        report = index.report
        message = (
            f"Index rebuilt: {len(index)} photos ({report.added} added, {report.updated} updated, "
            f"{report.removed} removed, {report.unchanged} unchanged, {len(report.skipped)} skipped)."
        )
        return status_markdown(state), message, banner_markdown(state)

    with gr.Blocks(title="SketchLVM: search photos by sketch") as demo:
        banner = gr.Markdown(banner_markdown(state), elem_id="sketchlvm-banner")
        gr.Markdown("# SketchLVM\nDraw something; the photos of your gallery that match it appear next to the canvas.")
        shown = gr.State([])  # relpaths of the results on screen, for the preview
        with gr.Row():
            with gr.Column(scale=1):
                canvas = StrokeCanvas(elem_id="sketchlvm-canvas")
                with gr.Row():
                    upload_button = gr.UploadButton(
                        "Upload a sketch image", file_types=["image"], type="filepath", size="md"
                    )
                uploaded_view = gr.Image(
                    label="Uploaded sketch (searched until you draw again)", type="pil", interactive=False,
                    visible=False, height=200, elem_id="sketchlvm-uploaded",
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
                preview = gr.Image(label="Original", interactive=False, visible=False, elem_id="sketchlvm-preview")

        search_events = dict(concurrency_limit=SEARCH_CONCURRENCY, concurrency_id="search")
        # The public endpoint (gradio_client, curl, apps): strokes JSON + mode + k -> results. An event of
        # its own (on a hidden button) so that its inputs and outputs are exactly those three and two.
        api_trigger = gr.Button(visible=False)
        api_trigger.click(search, [canvas, mode, top_k], [results, message], api_name="search", **search_events)
        # Live search: the canvas fires .input once per pen-up, undo, redo and clear; always_last drops
        # events queued behind a newer one, so a fast drawer gets the latest drawing's results.
        live = dict(trigger_mode="always_last", show_progress="hidden", api_visibility="private", **search_events)
        canvas.input(stroke_drawn, [canvas, mode, top_k], [results, message, shown, uploaded_view], **live)
        for control in (mode, top_k):  # re-ranks from the cached embedding
            control.change(search_live, [canvas, uploaded_view, mode, top_k], [results, message, shown], **live)
        # Public too: (sketch image, mode, k) -> (the sketch as searched, results, message); the State
        # output is not part of the API.
        upload_button.upload(
            uploaded, [upload_button, mode, top_k], [uploaded_view, results, message, shown],
            api_name="upload_sketch", show_progress="minimal", **search_events,
        )
        examples.select(
            example_selected, [mode, top_k], [canvas, results, message, shown, uploaded_view],
            api_visibility="private", show_progress="minimal", **search_events,
        )
        results.select(result_selected, shown, preview, api_visibility="private", show_progress="minimal")
        rebuild_button.click(rebuild, None, [status, message, banner], api_name="rebuild_index", concurrency_limit=1)
        demo.load(lambda: status_markdown(state), None, status, api_name="status", queue=False)
    return demo


def launch(demo: gr.Blocks, **kwargs: Any):
    """Queue settings in one place: live search events per session collapse to the latest."""
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    return demo.launch(**kwargs)


def launch_kwargs(state: AppState, host: str, port: int, share: bool = False) -> dict[str, Any]:
    """Serve the gallery's photos and thumbnails and nothing else on disk (plus Gradio's own upload folder)."""
    serve_thumbnails_in_place(state)
    return dict(
        server_name=host,
        server_port=port,
        share=share,
        allowed_paths=[str(p) for p in served_folders(state)],
        max_file_size=MAX_UPLOAD_SIZE,
        css=page_css(),
        show_error=False,
    )
