"""The app's command line: flags (each also an environment variable, for Hugging Face Spaces), model
loading, background indexing of the gallery, then the page that ``sketchlvm.webapp.page`` builds.

Run as ``python app.py`` (Spaces run that file), ``sketchlvm app`` or ``python -m sketchlvm app``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from sketchlvm.arguments import device as _device
from sketchlvm.arguments import port as _port
from sketchlvm.arguments import positive_int as _positive_int
from sketchlvm.arguments import runtime as _runtime
from sketchlvm.config import ModelConfig
from sketchlvm.search import Searcher
from sketchlvm.webapp import (  # noqa: F401  (app.py re-exports the app's public names)
    DEFAULT_TOP_K,
    DRAW_HINT,
    NO_GALLERY_HELP,
    UPLOAD_HINT,
    AppState,
    build_demo,
    launch,
    launch_kwargs,
)

# --------------------------------------------------------------------------------------------
# Command line


def _env(name: str, fallback: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else fallback


def _truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


def build_parser(prog: str = "app.py") -> argparse.ArgumentParser:
    model_defaults = ModelConfig()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="SketchLVM: draw in the browser, get the matching photos from your own gallery.",
        epilog=(
            "Every option can also be set by the environment variable in brackets (for Hugging Face "
            "Spaces); a flag on the command line wins over its variable. The host and port also fall back "
            "to Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, which Spaces sets."
        ),
    )
    parser.add_argument(
        "--gallery", metavar="DIR|hf://datasets/USER/REPO[/SUBDIR]", default=_env("SKETCHLVM_GALLERY"),
        help="folder of photos to search (one subfolder per category gives each photo its category), or a "
        "Hugging Face dataset (downloaded once into the Hugging Face cache, then used offline from it); "
        "indexed in the background on start (the page shows the progress; search covers what is indexed), "
        "only changed photos are re-embedded. Without it the gallery indexed most recently "
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
    sign_in = parser.add_argument_group("sign-in (see docs/deploying-in-public.md)")
    sign_in.add_argument(
        "--auth", metavar="USER:PASSWORD[,...]", default=_env("SKETCHLVM_AUTH"),
        help="require a login (Gradio's login page) for the page and the API [SKETCHLVM_AUTH]",
    )
    sign_in.add_argument(
        "--hf-sign-in", action="store_true", default=_truthy(_env("SKETCHLVM_HF_SIGN_IN")),
        help="on a Hugging Face Space (hf_oauth: true in its README): searching needs a Hugging Face sign-in "
        "[SKETCHLVM_HF_SIGN_IN=1]",
    )
    sign_in.add_argument(
        "--owners", metavar="USER[,...]", default=_env("SKETCHLVM_OWNERS"),
        help="with sign-in, who may rebuild the index and see the status panel (default: every --auth user; "
        "with --hf-sign-in, the Space's owner) [SKETCHLVM_OWNERS]",
    )
    sign_in.add_argument(
        "--users", metavar="USER[,...]|*", default=_env("SKETCHLVM_USERS"),
        help="with --hf-sign-in, who else may search ('*': anyone signed in; default: the owners only) "
        "[SKETCHLVM_USERS]",
    )
    return parser


def prepare(args: argparse.Namespace) -> AppState:
    """Load the model and start indexing the gallery in the background: the page comes up at once and
    shows the progress, search covers what is indexed so far. Raises WeightsUnavailableError,
    HubUnavailableError, FileNotFoundError (no such gallery)."""
    from sketchlvm.hub import resolve_folder
    from sketchlvm.gallery import latest_gallery
    from sketchlvm.gallery.background import BackgroundIndexer
    from sketchlvm.model.factory import create_sketchlvm
    from sketchlvm.webapp.access import make_access

    access = make_access(args.auth, args.owners, args.hf_sign_in, args.users)  # ValueError: a bad setting, first
    gallery = resolve_folder(args.gallery) if args.gallery else latest_gallery()  # an hf:// one fails fast
    if gallery is not None and not gallery.is_dir():
        raise FileNotFoundError(f"gallery folder {str(gallery)!r} does not exist (--gallery / SKETCHLVM_GALLERY)")
    model = create_sketchlvm(
        arch=args.model, pretrained=args.pretrained, checkpoint=args.checkpoint, device=args.device,
        runtime=args.runtime, text=True,  # the text tower: sketch + words and words-only search
    )
    for key, value in model.describe().items():
        print(f"{key:>18}: {value}")
    searcher = Searcher(model, None, default_k=args.top_k)
    if gallery is None:
        print("No gallery: the app starts empty. " + NO_GALLERY_HELP.replace("**", "").replace("`", ""))
        return AppState(searcher, access=access)
    gallery = gallery.resolve()
    indexer = BackgroundIndexer(gallery, model, on_index=searcher.set_index)
    state = AppState(searcher, gallery_dir=gallery, cache_dir=indexer.cache_dir, indexer=indexer, access=access)
    print(f"Indexing gallery {gallery} in the background (the page shows the progress) …")
    indexer.start()
    if model.runtime.name == "onnx-int8":
        # The int8 check needs the whole gallery: with --runtime onnx-int8 the start waits for the index.
        progress = indexer.wait()
        print(progress.summary())
        if progress.state == "failed":
            from sketchlvm.runtime.engine import Int8RefusedError

            raise Int8RefusedError(f"indexing {gallery} failed ({progress.error}), so int8 cannot be checked; "
                                   "fix that, or start with --runtime onnx for fp32")
        if len(searcher):
            from sketchlvm.runtime.int8 import check_int8

            line = check_int8(model, searcher.index)  # raises Int8RefusedError (how to run without int8)
            print(line)
            state.notes.append(f"**int8 check:** {line}")
    return state


def main(argv: list[str] | None = None, prog: str = "app.py") -> int:
    args = build_parser(prog).parse_args(argv)
    # Our own progress at INFO; other libraries (open_clip logs on the root logger, faiss, httpx) warnings only.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("sketchlvm").setLevel(logging.INFO)
    from sketchlvm.hub import HubUnavailableError
    from sketchlvm.gallery import StaleIndexError
    from sketchlvm.runtime.engine import Int8RefusedError
    from sketchlvm.model.weights import WeightsUnavailableError

    try:
        state = prepare(args)
    except (WeightsUnavailableError, HubUnavailableError, StaleIndexError, Int8RefusedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    demo = build_demo(state)
    # A stop request (Spaces, docker, systemd send SIGTERM) ends the process like Ctrl+C does, so the
    # index commits its batch in flight and the app's temp folders are removed (atexit).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        launch(demo, **launch_kwargs(state, args.host, args.port, args.share))
    finally:
        if state.indexer is not None:  # save the batch in flight (a kill loses at most one commit's work)
            state.indexer.stop(timeout=5)
    return 0

