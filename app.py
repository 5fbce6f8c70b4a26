"""SketchLVM web app: draw in the browser, get the matching photos from your own gallery.

    python app.py --gallery path/to/photos            # one subfolder per category, or a flat folder
    python app.py --help

``build_demo(searcher_or_state)`` builds the Gradio Blocks from what it is given (tests build it with a
tiny random model); only ``main()`` parses flags, loads weights, indexes the gallery and launches.
Every flag can also be set by an environment variable (for Hugging Face Spaces, where there are no
flags); a flag wins over its variable.
"""

from __future__ import annotations

import os

# Read by gradio and huggingface_hub at import time, so set before importing either.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from sketchlvm.cli_types import device as _device  # noqa: E402
from sketchlvm.cli_types import runtime as _runtime  # noqa: E402
from sketchlvm.cli_types import port as _port  # noqa: E402
from sketchlvm.cli_types import positive_int as _positive_int  # noqa: E402
from sketchlvm.config import PACKAGE_DIR, ModelConfig  # noqa: E402
from sketchlvm.search import EmptyGalleryError, SearchResult, Searcher  # noqa: E402
from sketchlvm.strokes import EmptySketchError, crop_to_ink, render_strokes  # noqa: E402
from sketchlvm.transforms import ImageLoadError, load_photo  # noqa: E402

log = logging.getLogger("sketchlvm.app")

EXAMPLES_DIR = PACKAGE_DIR / "examples"
CANVAS_SIZE = 512
BRUSH_RADIUS = 4  # px on the 512 canvas: close to the stroke width the examples are rendered with
DEFAULT_TOP_K = 12
MAX_TOP_K = 60
THUMBNAIL_SIZE = 512  # photos sent as pixels (symlinks out of the gallery) are shrunk to this
MODE_LABELS = {"category": "Category", "fine_grained": "Fine-grained"}
MODE_HINTS = {
    "category": "photos of the same kind of thing",
    "fine_grained": "the particular object drawn: pose, shape, details",
}
SEARCH_CONCURRENCY = 2  # model calls at once; more only adds contention on a small CPU
QUEUE_MAX_SIZE = 64
MAX_UPLOAD_SIZE = "10mb"  # Gradio answers bigger uploads with HTTP 413 before any handler runs
MAX_SKETCH_PIXELS = 4096 * 4096  # canvas values and uploaded sketches (the canvas itself sends 512 x 512)
UNREADABLE_IMAGE = "That image could not be read: draw on the canvas or upload a PNG/JPEG sketch."

NO_GALLERY_HELP = (
    "**No gallery loaded yet.** Start the app with `python app.py --gallery /path/to/photos` "
    "(a folder of photos; one subfolder per category gives each photo its category), or set "
    "`SKETCHLVM_GALLERY`. Once indexed (the index is kept in `galleries/`), it is reopened by default next time."
)
UPLOAD_HINT = "Upload a PNG or JPEG of a sketch (dark lines on white)."
DRAW_HINT = "Draw something on the canvas (or upload a sketch, or click an example) to search."

CSS = """
#sketchlvm-canvas canvas { cursor: crosshair; }
#sketchlvm-message { min-height: 2.5em; }
"""


@dataclass
class AppState:
    """What the app runs on: the searcher, where its gallery lives, and how to rebuild its index."""

    searcher: Searcher
    gallery_dir: Path | None = None
    cache_dir: Path | None = None
    examples: list[Path] = field(default_factory=list)

    @classmethod
    def wrap(cls, searcher_or_state: Searcher | AppState) -> AppState:
        if isinstance(searcher_or_state, AppState):
            return searcher_or_state
        index = searcher_or_state.index
        return cls(
            searcher_or_state,
            gallery_dir=Path(index.root) if index is not None else None,
            cache_dir=Path(index.cache_dir) if index is not None else None,
        )


# --------------------------------------------------------------------------------------------
# Text shown in the UI


def blank_canvas() -> dict[str, Any]:
    """The editor value that makes the brush live at once: a white background (see shared/NOTES.md)."""
    return {"background": Image.new("RGB", (CANVAS_SIZE, CANVAS_SIZE), "white"), "layers": [], "composite": None}


def caption(result: SearchResult) -> str:
    """File name, category and similarity, as shown under each result."""
    category = result.label or "no category"
    # Category and score first: a thumbnail caption is cut short at the tile's width.
    return f"{category} · {result.score:.3f} · {Path(result.relpath).name}"


def gallery_item(state: AppState, result: SearchResult) -> tuple[str | Image.Image, str] | None:
    """(image, caption) for the results gallery: the photo's path, served from the allowed gallery folder.

    Gradio serves only files whose real path lies in ``allowed_paths``, so a symlink pointing out of the
    gallery is sent as pixels (a thumbnail) instead of widening what the server may read.
    """
    root = state.gallery_dir.resolve() if state.gallery_dir is not None else None
    if root is not None and result.path.resolve().is_relative_to(root):
        return str(result.path), caption(result)
    try:
        image = load_photo(result.path)
    except ImageLoadError as error:
        log.warning("cannot show %s: %s", result.relpath, error)
        return None
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return image, caption(result)


def status_markdown(state: AppState) -> str:
    """What is loaded: model, weights, checkpoint, device, gallery path and size, skipped files."""
    model = state.searcher.model
    facts = model.describe()
    lines = [
        f"- **Model:** {facts.get('model', '?')}",
        f"- **Weights:** {facts.get('weights', '?')}",
        f"- **Checkpoint:** {facts.get('checkpoint', '?')}",
        f"- **Device:** {facts.get('device', '?')}",
        f"- **Runtime:** {facts.get('runtime', '?')}",
    ]
    for mode in model.modes:
        lines.append(f"- **{MODE_LABELS.get(mode, mode)} mode:** {facts.get(f'mode {mode}', '?')}")
    index = state.searcher.index
    if state.gallery_dir is None:
        lines.append(f"- **Gallery:** none. {NO_GALLERY_HELP}")
    else:
        size = len(index) if index is not None else 0
        lines.append(f"- **Gallery:** `{state.gallery_dir}` ({size} photo{'s' if size != 1 else ''})")
        report = getattr(index, "report", None)
        skipped = list(getattr(report, "skipped", []) or [])
        lines.append(f"- **Skipped files:** {len(skipped)}")
        for relpath, reason in skipped[:5]:
            lines.append(f"    - `{relpath}`: {reason}")
        if len(skipped) > 5:
            lines.append(f"    - … and {len(skipped) - 5} more (see the terminal log)")
    if getattr(model.weights, "kind", None) == "random":
        lines.insert(0, "> ⚠️ **Random weights — for testing only.** Rankings are meaningless.\n")
    return "\n".join(lines)


def banner_markdown(state: AppState) -> str:
    if state.gallery_dir is None:
        return NO_GALLERY_HELP
    if len(state.searcher) == 0:
        return (
            f"**The gallery `{state.gallery_dir}` has no usable photos.** Add .jpg/.png/.webp photos to it "
            "(one subfolder per category) and press *Rebuild index*."
        )
    return ""


# --------------------------------------------------------------------------------------------
# Handlers (plain functions of their inputs, so tests can call them too)


def run_search(state: AppState, sketch: Any, mode: str, k: float, *, live: bool) -> tuple[list, str]:
    """Canvas value -> (gallery value, message). Never raises for user mistakes.

    ``live``: a search fired by a stroke, a mode switch or the slider; a blank canvas is then a quiet
    hint rather than a warning pop-up.
    """
    started = time.perf_counter()
    try:
        results = state.searcher.search(sketch, mode, int(k))
    except EmptySketchError:
        if not live:
            gr.Warning("The canvas is empty: draw something first.")
        return [], DRAW_HINT
    except EmptyGalleryError:
        if not live:
            gr.Warning("There is no photo to search: add a gallery first.")
        return [], banner_markdown(state) or NO_GALLERY_HELP
    except (ValueError, TypeError) as error:  # an unreadable image value
        gr.Warning("That image could not be read; draw on the canvas or upload a PNG/JPEG sketch.")
        log.info("unreadable sketch: %s", error)
        return [], f"**That image could not be read:** {error}"
    elapsed_ms = (time.perf_counter() - started) * 1000
    gallery = [item for item in (gallery_item(state, r) for r in results) if item is not None]
    label = MODE_LABELS.get(mode, mode)
    message = (
        f"**{len(results)} best match{'es' if len(results) != 1 else ''}** · {label} mode "
        f"({MODE_HINTS.get(mode, '')}) · {elapsed_ms:.0f} ms"
    )
    return gallery, message


def fit_to_canvas(image: Image.Image, size: int = CANVAS_SIZE) -> Image.Image:
    """Any RGB image -> ``size`` x ``size``, aspect kept, centred on white (how it shows on the canvas)."""
    return ImageOps.pad(image, (size, size), method=Image.Resampling.LANCZOS, color="white")


def search_image(state: AppState, image: Image.Image, mode: str, k: float, what: str) -> tuple[Any, list, str]:
    """Put ``image`` on the canvas and search with it: (canvas value, gallery value, message)."""
    fitted = fit_to_canvas(image)
    gallery, message = run_search(state, fitted, mode, k, live=False)
    if gallery:
        message = f"{what} · {message}"
    return {"background": fitted, "layers": [], "composite": fitted}, gallery, message


def load_upload(state: AppState, path: str | None, mode: str, k: float) -> tuple[Any, Any, str]:
    """An uploaded sketch image -> (canvas value, gallery value, message).

    A file that is not a readable image, or a blank page, leaves the canvas and results as they were and
    says why (no traceback reaches the browser).
    """
    if not path:
        return gr.skip(), gr.skip(), DRAW_HINT
    name = Path(path).name
    try:
        image = load_photo(path, max_pixels=MAX_SKETCH_PIXELS)  # any format -> upright RGB; refuses non-images, huge ones
        crop_to_ink(image)  # refuses a blank page
    except ImageLoadError as error:
        gr.Warning("That file is not an image we can read. Upload a PNG or JPEG sketch.")
        reason = str(error).replace(str(path), name)  # no server paths in the UI
        return gr.skip(), gr.skip(), f"**Upload refused:** {reason}. {UPLOAD_HINT}"
    except EmptySketchError:
        gr.Warning("That image is blank: no lines found.")
        return gr.skip(), gr.skip(), f"**Upload refused:** {name} has no dark lines on it. {UPLOAD_HINT}"
    return search_image(state, image, mode, k, f"Uploaded **{name}**")


def load_example(state: AppState, index: int, mode: str, k: float) -> tuple[Any, list, str]:
    path = state.examples[index]
    with Image.open(path) as image:
        return search_image(state, image.convert("RGB"), mode, k, f"Example **{path.stem}**")


def render_examples(out_dir: Path | None = None, size: int = CANVAS_SIZE) -> list[Path]:
    """Render the shipped stroke lists (``sketchlvm/examples/*.json``) to PNGs in a temp dir."""
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="sketchlvm-examples-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in sorted(EXAMPLES_DIR.glob("*.json")):
        try:
            record = json.loads(source.read_text(encoding="utf-8"))
            image = render_strokes(record["drawing"], size=size)
        except (ValueError, KeyError, OSError) as error:
            log.warning("skipping example %s: %s", source.name, error)
            continue
        path = out_dir / f"{source.stem}.png"
        image.save(path)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# The Blocks


def check_sketch_header(image: Any) -> None:
    """Refuse (gr.Error) an image that cannot be opened or declares more than MAX_SKETCH_PIXELS.

    ``image``: a Gradio FileData (API clients) or bytes (the browser's blob upload). Reads the header
    only: no pixel is decoded.
    """
    source = image.path if hasattr(image, "path") else io.BytesIO(bytes(image))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                width, height = opened.size
    except Image.DecompressionBombError:
        width = height = None
    except Exception as error:  # not an image, truncated header...
        log.info("unreadable canvas value: %s", error)
        raise gr.Error(UNREADABLE_IMAGE, print_exception=False) from None
    if width is None or width * height > MAX_SKETCH_PIXELS:
        size = "" if width is None else f" ({width} x {height})"
        raise gr.Error(
            f"That image is too large{size}: sketches up to {MAX_SKETCH_PIXELS:,} pixels are accepted.",
            print_exception=False,
        )


class SketchCanvas(gr.ImageEditor):
    """gr.ImageEditor that refuses unreadable or oversized images with a message, before decoding them.

    gr.ImageEditor decodes whatever an API client sends in full (below Pillow's own 178 M-pixel bomb
    error): a 170 kB, 12000 x 12000 PNG cost ~4 GB of memory, and a broken file a generic error.
    """

    is_template = True  # as Gradio's own presets (gr.Sketchpad): the browser renders it as an ImageEditor

    def preprocess(self, payload):
        if payload is not None:
            data = self.blob_storage.get(payload.id) if payload.id is not None else payload
            if data is not None:
                for image in (data.background, data.composite, *data.layers):
                    if image is not None:
                        check_sketch_header(image)
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception as error:  # a body that fails to decode after a readable header
            log.info("unreadable canvas value: %s", error)
            raise gr.Error(UNREADABLE_IMAGE, print_exception=False) from None


def build_demo(searcher_or_state: Searcher | AppState) -> gr.Blocks:
    """The whole UI as a function of its dependencies; loads nothing itself (examples are rendered)."""
    state = AppState.wrap(searcher_or_state)
    if not state.examples:
        state.examples = render_examples()
    modes = list(state.searcher.modes)
    default_k = max(1, state.searcher.default_k)
    max_k = max(MAX_TOP_K, default_k)

    def search_clicked(sketch, mode, k):
        return run_search(state, sketch, mode, k, live=False)

    def search_live(sketch, mode, k):
        if isinstance(sketch, dict) and sketch.get("composite") is None and not sketch.get("layers"):
            # The editor's early event as a first stroke begins (no layer yet): keep what is shown.
            return gr.skip(), gr.skip()
        return run_search(state, sketch, mode, k, live=True)

    def clear():
        return blank_canvas(), [], DRAW_HINT

    def uploaded(path, mode, k):
        return load_upload(state, path, mode, k)

    def example_selected(mode, k, evt: gr.SelectData):
        return load_example(state, evt.index, mode, k)

    def rebuild(progress=gr.Progress()):
        if state.gallery_dir is None:
            gr.Warning("No gallery to index: start the app with --gallery DIR.")
            return status_markdown(state), NO_GALLERY_HELP, banner_markdown(state)
        from sketchlvm.index import build_gallery_index

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
        gr.Markdown("# SketchLVM\nDraw something; the photos of your gallery that match it appear on the right.")
        banner = gr.Markdown(banner_markdown(state), elem_id="sketchlvm-banner")
        with gr.Row():
            with gr.Column(scale=1):
                canvas = SketchCanvas(
                    value=blank_canvas(),
                    type="pil",
                    sources=(),
                    canvas_size=(CANVAS_SIZE, CANVAS_SIZE),
                    fixed_canvas=True,
                    brush=gr.Brush(colors=["#000000"], default_size=BRUSH_RADIUS, color_mode="fixed"),
                    eraser=gr.Eraser(default_size=12),
                    layers=False,
                    transforms=(),
                    format="png",
                    label="Your sketch (draw here)",
                    height=620,
                    elem_id="sketchlvm-canvas",
                )
                with gr.Row():
                    search_button = gr.Button("Search", variant="primary")
                    clear_button = gr.Button("Clear")
                    upload_button = gr.UploadButton(
                        "Upload a sketch image", file_types=["image"], type="filepath", size="md"
                    )
                examples = gr.Gallery(
                    value=[(str(p), p.stem) for p in state.examples],
                    label="Or start from an example (click one)",
                    columns=4,
                    height=170,
                    allow_preview=False,
                    interactive=False,
                    buttons=[],
                    visible=bool(state.examples),
                    elem_id="sketchlvm-examples",
                )
                with gr.Accordion("What is loaded", open=True):
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
                    label="Matches (category · similarity · file)",
                    columns=3,
                    height=720,
                    object_fit="contain",
                    allow_preview=True,
                    elem_id="sketchlvm-results",
                )

        inputs = [canvas, mode, top_k]
        outputs = [results, message]
        search_events = dict(concurrency_limit=SEARCH_CONCURRENCY, concurrency_id="search")
        search_button.click(search_clicked, inputs, outputs, api_name="search", **search_events)
        # Live search: .input fires once per stroke, after pointer-up, with that stroke in the value (plus one
        # early event with no layer as the first stroke starts). In 6.31 .change fires only as the *next*
        # stroke begins, one stroke late, so it is not used. always_last drops events queued behind a newer one.
        live = dict(trigger_mode="always_last", show_progress="hidden", api_visibility="private", **search_events)
        canvas.input(search_live, inputs, outputs, **live)
        mode.change(search_live, inputs, outputs, **live)  # re-ranks from the cached embedding when possible
        top_k.change(search_live, inputs, outputs, **live)
        quiet = dict(api_visibility="private", queue=False, show_progress="hidden")
        clear_button.click(clear, None, [canvas, results, message], **quiet)
        # The editor's own clear removes the white background, which would disarm the brush: put it back.
        canvas.clear(clear, None, [canvas, results, message], **quiet)
        # Programmatic canvas updates do not fire .change in Gradio 6.31, so these search themselves.
        upload_button.upload(
            uploaded, [upload_button, mode, top_k], [canvas, results, message], api_name="upload_sketch",
            show_progress="minimal", **search_events,
        )
        examples.select(
            example_selected, [mode, top_k], [canvas, results, message], api_visibility="private",
            show_progress="minimal", **search_events,
        )
        rebuild_button.click(rebuild, None, [status, message, banner], api_name="rebuild_index", concurrency_limit=1)
        demo.load(lambda: status_markdown(state), None, status, api_name="status", queue=False)
    return demo


def launch(demo: gr.Blocks, **kwargs: Any):
    """Queue settings in one place: live search events per session collapse to the latest."""
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    return demo.launch(**kwargs)


def launch_kwargs(state: AppState, host: str, port: int, share: bool = False) -> dict[str, Any]:
    """Serve the gallery's photos and nothing else on disk (plus Gradio's own upload/cache folders)."""
    allowed = [str(state.gallery_dir.resolve())] if state.gallery_dir is not None else []
    return dict(
        server_name=host,
        server_port=port,
        share=share,
        allowed_paths=allowed,
        max_file_size=MAX_UPLOAD_SIZE,
        css=CSS,
        show_error=False,
    )


# --------------------------------------------------------------------------------------------
# Command line


def _env(name: str, fallback: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else fallback


def _truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


def build_parser() -> argparse.ArgumentParser:
    model_defaults = ModelConfig()
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="SketchLVM: draw in the browser, get the matching photos from your own gallery.",
        epilog=(
            "Every option can also be set by the environment variable in brackets (for Hugging Face "
            "Spaces); a flag on the command line wins over its variable. The host and port also fall back "
            "to Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, which Spaces sets."
        ),
    )
    parser.add_argument(
        "--gallery", metavar="DIR", default=_env("SKETCHLVM_GALLERY"),
        help="folder of photos to search (one subfolder per category gives each photo its category); "
        "indexed on start, only changed photos are re-embedded. Without it the gallery indexed most recently "
        "(indexes live in galleries/, or $SKETCHLVM_GALLERIES_DIR) is used; with none, the app starts empty "
        "and says how to add one [SKETCHLVM_GALLERY]",
    )
    parser.add_argument(
        "--checkpoint", metavar="FILE", default=_env("SKETCHLVM_CHECKPOINT"),
        help="trained prompts (a SketchLVM checkpoint); without it both modes are zero-shot CLIP "
        "with no trained prompts [SKETCHLVM_CHECKPOINT]",
    )
    parser.add_argument(
        "--model", metavar="ARCH", default=_env("SKETCHLVM_MODEL"),
        help=f"open_clip architecture; default: the checkpoint's, else {model_defaults.arch} [SKETCHLVM_MODEL]",
    )
    parser.add_argument(
        "--pretrained", metavar="TAG|FILE|FOLDER|none", default=_env("SKETCHLVM_PRETRAINED", model_defaults.pretrained),
        help="CLIP weights: an open_clip tag (downloaded once into the Hugging Face cache), a weights "
        "file, an open_clip folder (or local-dir:FOLDER), or 'none' for random weights (testing only). "
        "If they cannot be loaded the app stops and says how to provide them. "
        f"Default: {model_defaults.pretrained} [SKETCHLVM_PRETRAINED]",
    )
    parser.add_argument(
        "--device", metavar="auto|cpu|cuda", type=_device, default=_env("SKETCHLVM_DEVICE", "auto"),
        help="where the model runs (cuda:N also accepted); auto, the default, picks CUDA when present "
        "[SKETCHLVM_DEVICE]",
    )
    parser.add_argument(
        "--runtime", metavar="auto|torch|onnx|onnx-int8", type=_runtime, default=_env("SKETCHLVM_RUNTIME", "auto"),
        help="what runs the encoder: auto (the default) = ONNX Runtime fp32 on CPU when installed, torch on CUDA; "
        "onnx-int8 = int8 sketches, only if their rankings agree with fp32 on the gallery [SKETCHLVM_RUNTIME]",
    )
    parser.add_argument(
        "--top-k", metavar="N", type=_positive_int, default=_env("SKETCHLVM_TOP_K", str(DEFAULT_TOP_K)),
        help=f"results shown at first; the slider in the page changes it (default: {DEFAULT_TOP_K}) [SKETCHLVM_TOP_K]",
    )
    parser.add_argument(
        "--host", default=_env("SKETCHLVM_HOST", _env("GRADIO_SERVER_NAME", "127.0.0.1")),
        help="address to listen on; 0.0.0.0 exposes the app to your network (default: 127.0.0.1, this machine "
        "only) [SKETCHLVM_HOST]",
    )
    parser.add_argument(
        "--port", type=_port, default=_env("SKETCHLVM_PORT", _env("GRADIO_SERVER_PORT", "7860")),
        help="port to listen on (default: 7860) [SKETCHLVM_PORT]",
    )
    parser.add_argument(
        "--share", action="store_true", default=_truthy(_env("SKETCHLVM_SHARE")),
        help="also open a temporary public *.gradio.live link (needs internet) [SKETCHLVM_SHARE=1]",
    )
    return parser


def prepare(args: argparse.Namespace) -> AppState:
    """Load the model and index the gallery (terminal progress bar). Raises WeightsUnavailableError."""
    from sketchlvm.index import build_gallery_index, latest_gallery
    from sketchlvm.model import create_sketchlvm

    model = create_sketchlvm(
        arch=args.model, pretrained=args.pretrained, checkpoint=args.checkpoint, device=args.device,
        runtime=args.runtime,
    )
    for key, value in model.describe().items():
        print(f"{key:>18}: {value}")
    gallery = Path(args.gallery).expanduser() if args.gallery else latest_gallery()
    index = None
    if gallery is not None:
        if not gallery.is_dir():
            raise FileNotFoundError(f"gallery folder {str(gallery)!r} does not exist (--gallery / SKETCHLVM_GALLERY)")
        gallery = gallery.resolve()
        print(f"Indexing gallery {gallery} …")
        index = build_gallery_index(gallery, model, show_progress_bar=True)
        report = index.report
        print(
            f"Gallery: {len(index)} photos ({report.added} added, {report.updated} updated, {report.removed} removed, "
            f"{report.unchanged} unchanged, {len(report.skipped)} skipped)"
        )
        for relpath, reason in report.skipped[:10]:
            print(f"  skipped {relpath}: {reason}")
        if model.runtime.name == "onnx-int8" and len(index):
            from sketchlvm.quantize import check_int8

            print(check_int8(model, index))  # raises Int8RefusedError (how to run without int8) when too low
    else:
        print("No gallery: the app starts empty. " + NO_GALLERY_HELP.replace("**", "").replace("`", ""))
    searcher = Searcher(model, index, default_k=args.top_k)
    return AppState(searcher, gallery_dir=gallery, cache_dir=Path(index.cache_dir) if index is not None else None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our own progress at INFO; other libraries (open_clip logs on the root logger, faiss, httpx) warnings only.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("sketchlvm").setLevel(logging.INFO)
    from sketchlvm.index import StaleIndexError
    from sketchlvm.runtime import Int8RefusedError
    from sketchlvm.weights import WeightsUnavailableError

    try:
        state = prepare(args)
    except (WeightsUnavailableError, StaleIndexError, Int8RefusedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    demo = build_demo(state)
    launch(demo, **launch_kwargs(state, args.host, args.port, args.share))
    return 0


if __name__ == "__main__":
    sys.exit(main())
