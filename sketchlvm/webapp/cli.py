"""The app's command line: flags (each also an environment variable, for Hugging Face Spaces), model
loading, background indexing of the gallery, then the page that ``sketchlvm.webapp.page`` builds.

Run as ``python app.py`` (Spaces run that file), ``sketchlvm app`` or ``python -m sketchlvm app``.

Nothing heavy (gradio, torch, numpy, the model) is imported until the arguments are parsed and the port
is known to be free: ``--help`` and a wrong flag answer at once, and a port in use is one line, not a
traceback after the model loaded. tests/webapp/test_app_cli.py checks ``sys.modules`` for it.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

from sketchlvm.arguments import device as _device
from sketchlvm.arguments import port as _port
from sketchlvm.arguments import positive_int as _positive_int
from sketchlvm.arguments import runtime as _runtime
from sketchlvm.config import ModelConfig

DEFAULT_TOP_K = 12  # results shown at first (--top-k); the page's slider changes it

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
        "--demo", action="store_true", default=_truthy(_env("SKETCHLVM_DEMO")),
        help="without --gallery: search the demo gallery (everyday-object photos from a public Hugging Face "
        "dataset, fetched once into the Hugging Face cache; the page names their source and licence). A Space "
        "whose owner set no gallery shows it anyway [SKETCHLVM_DEMO=1]",
    )
    parser.add_argument(
        "--checkpoint", metavar="FILE", default=_env("SKETCHLVM_CHECKPOINT"),
        help="trained prompts (a SketchLVM checkpoint); without it both modes are zero-shot CLIP "
        "with no trained prompts [SKETCHLVM_CHECKPOINT]",
    )
    parser.add_argument(
        "--model", metavar="ARCH|EXPORT_FOLDER|hf://USER/REPO", default=_env("SKETCHLVM_MODEL"),
        help=f"open_clip architecture (default: the checkpoint's, else {model_defaults.arch}), or a folder written "
        "by `sketchlvm export` (local or hf://USER/REPO[/SUBDIR]): its ONNX graphs serve the app, and the serving "
        "install (requirements-serve.txt, no torch) needs one [SKETCHLVM_MODEL]",
    )
    parser.add_argument(
        "--pretrained", metavar="TAG|FILE|FOLDER|none", default=_env("SKETCHLVM_PRETRAINED", model_defaults.pretrained),
        help="CLIP weights: an open_clip tag (downloaded once into the Hugging Face cache), a weights "
        "file, an open_clip folder (or local-dir:FOLDER), or 'none' for random weights (testing only). "
        "If they cannot be loaded the app stops and says how to provide them. "
        f"Default: {model_defaults.pretrained} [SKETCHLVM_PRETRAINED]",
    )
    parser.add_argument(
        "--device", metavar="auto|cpu|cuda", default=_env("SKETCHLVM_DEVICE", "auto"),
        help="where the model runs (cuda:N also accepted); auto, the default, picks CUDA when present "
        "[SKETCHLVM_DEVICE]",
    )
    parser.add_argument(
        "--runtime", metavar="auto|torch|onnx|onnx-int8", default=_env("SKETCHLVM_RUNTIME", "auto"),
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


def _load_model(args: argparse.Namespace, device: str):
    """An export folder (``--model FOLDER|hf://...``: ONNX Runtime only, no torch), else the torch model."""
    from sketchlvm.model.folder_model import is_export, load_export

    if is_export(args.model):
        return load_export(args.model, runtime=args.runtime, checkpoint=args.checkpoint)
    try:
        from sketchlvm.model.factory import create_sketchlvm
    except ImportError as error:  # the serving install: no torch, no open_clip
        from sketchlvm.runtime.folder_runtime import ExportUnavailableError

        raise ExportUnavailableError(
            f"this install has no {error.name or 'torch'} (the serving install), so it serves export folders only: "
            "pass --model FOLDER or --model hf://USER/REPO (written by `sketchlvm export` on the full install), "
            "or install everything with pip install -r requirements.txt") from error
    return create_sketchlvm(
        arch=args.model, pretrained=args.pretrained, checkpoint=args.checkpoint, device=device,
        runtime=args.runtime, text=True,  # the text tower: sketch + words and words-only search
    )


def choose_gallery(args: argparse.Namespace):
    """(gallery folder or None, credit line or None): ``--gallery``; else the demo gallery when asked for
    (``--demo``) or on a Space (its owner set none); else the gallery indexed most recently. A demo that
    cannot be had stops an explicit request (HubUnavailableError) but leaves a Space empty, saying why."""
    from sketchlvm.gallery import latest_gallery
    from sketchlvm.gallery.demo import DEMO, demo_requested, wants_demo
    from sketchlvm.hub import HubUnavailableError, resolve_folder

    if args.gallery:
        return resolve_folder(args.gallery), None  # an hf:// one fails fast
    if not wants_demo(args.gallery, args.demo):
        return latest_gallery(), None
    try:
        folder = resolve_folder(DEMO.uri)
    except HubUnavailableError as error:
        if demo_requested(args.demo):
            raise
        print(f"warning: the demo gallery could not be fetched, so the Space starts empty: {error}", file=sys.stderr)
        return None, None
    print(f"No gallery set: searching the demo gallery {DEMO.uri} ({DEMO.source}, {DEMO.licence})")
    return folder, DEMO.credit()


def check_port(host: str, port: int) -> str | None:
    """Why the app cannot listen on ``host:port`` (in use, or not allowed), or None when it can.

    Binds and closes at once, as Gradio will bind it: a port taken between this check and the launch
    still fails, but then after the model loaded rather than before.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        if os.name != "nt":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return (f"port {port} on {host} is already in use: stop what runs there, or choose another with "
                        "--port N (or SKETCHLVM_PORT)")
            if error.errno == errno.EACCES:
                return f"port {port} on {host} needs privileges this user lacks: choose one above 1023 with --port N"
            return f"cannot listen on {host}:{port} ({error.strerror or error}): check --host and --port"
    return None


def launch(demo: Any, **kwargs: Any):
    """``sketchlvm.webapp.page.launch``, imported when the app starts (gradio is heavy)."""
    from sketchlvm.webapp.page import launch as launch_page

    return launch_page(demo, **kwargs)


def prepare(args: argparse.Namespace):
    """Load the model and start indexing the gallery in the background: the page comes up at once and
    shows the progress, search covers what is indexed so far. Returns the ``AppState``. Raises
    WeightsUnavailableError, HubUnavailableError, FileNotFoundError (no such gallery),
    NotADirectoryError (a file given as the gallery)."""
    from sketchlvm.gallery.background import BackgroundIndexer
    from sketchlvm.runtime import zerogpu
    from sketchlvm.search import Searcher
    from sketchlvm.webapp.access import make_access
    from sketchlvm.webapp.app_state import AppState, no_gallery_help

    access = make_access(args.auth, args.owners, args.hf_sign_in, args.users)  # ValueError: a bad setting, first
    gallery, credit = choose_gallery(args)
    if gallery is not None and gallery.exists() and not gallery.is_dir():
        raise NotADirectoryError(f"--gallery {str(gallery)!r} is a file, not a folder: give the folder that holds "
                                 "the photos (--gallery / SKETCHLVM_GALLERY)")
    if gallery is not None and not gallery.is_dir():
        raise FileNotFoundError(f"gallery folder {str(gallery)!r} does not exist (--gallery / SKETCHLVM_GALLERY)")
    on_zerogpu = zerogpu.on_zerogpu()
    model = _load_model(args, zerogpu.host_device(args.device) if on_zerogpu else args.device)
    if on_zerogpu:  # the CPU model answers what ZeroGPU does not; its GPU copy goes to cuda now, before launch
        zerogpu.attach(model)
    for key, value in model.describe().items():
        print(f"{key:>18}: {value}")
    searcher = Searcher(model, None, default_k=args.top_k)
    if gallery is None:
        print("No gallery: the app starts empty. " + no_gallery_help().replace("**", "").replace("`", ""))
        return AppState(searcher, access=access)
    gallery = gallery.resolve()
    indexer = BackgroundIndexer(gallery, model, on_index=searcher.set_index)
    state = AppState(searcher, gallery_dir=gallery, cache_dir=indexer.cache_dir, indexer=indexer, credit=credit, access=access)
    if on_zerogpu and model.runtime.name != "onnx-int8":
        # spaces prepares its GPU transfers when the app launches: main() starts indexing right after.
        print(f"Indexing gallery {gallery} in the background once the page is up (ZeroGPU) …")
        return state
    print(f"Indexing gallery {gallery} in the background (the page shows the progress) …")
    indexer.start()
    if model.runtime.name == "onnx-int8":
        # The int8 check needs the whole gallery: with --runtime onnx-int8 the start waits for the index.
        progress = indexer.wait()
        print(progress.summary())
        if progress.state == "failed":
            from sketchlvm.runtime.onnx_sessions import Int8RefusedError

            raise Int8RefusedError(f"indexing {gallery} failed ({progress.error}), so int8 cannot be checked; "
                                   "fix that, or start with --runtime onnx for fp32")
        if len(searcher):
            from sketchlvm.runtime.int8 import check_int8

            line = check_int8(model, searcher.index)  # raises Int8RefusedError (how to run without int8)
            print(line)
            state.notes.append(f"**int8 check:** {line}")
    return state


def main(argv: list[str] | None = None, prog: str = "app.py") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    problem = check_port(args.host, args.port)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    # Checked after the port: these checks import torch (is CUDA there?) and the runtime.
    for flag, check in (("--device", _device), ("--runtime", _runtime)):
        name = flag.lstrip("-")
        try:
            setattr(args, name, check(getattr(args, name)))
        except argparse.ArgumentTypeError as error:
            parser.error(f"argument {flag}: {error}")
    # Our own progress at INFO; other libraries (open_clip logs on the root logger, faiss, httpx) warnings only.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("sketchlvm").setLevel(logging.INFO)
    from sketchlvm.webapp.safe_text import install_safe_logging
    from sketchlvm.webapp.temp_sweep import sweep_dead

    install_safe_logging()  # one record, one line: file names cannot forge log lines
    sweep_dead()  # temp folders of app processes killed before they could remove them
    from sketchlvm.gallery import StaleIndexError
    from sketchlvm.hub import HubUnavailableError
    from sketchlvm.model.errors import WeightsUnavailableError
    from sketchlvm.runtime.folder_runtime import ExportUnavailableError
    from sketchlvm.runtime.onnx_sessions import Int8RefusedError

    try:
        state = prepare(args)
    except (WeightsUnavailableError, HubUnavailableError, StaleIndexError, Int8RefusedError,
            ExportUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from sketchlvm.runtime import zerogpu
    from sketchlvm.webapp.page import build_demo, launch_kwargs

    demo = build_demo(state)
    # A stop request (Spaces, docker, systemd send SIGTERM) ends the process like Ctrl+C does, so the
    # index commits its batch in flight and the app's temp folders are removed (atexit).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if zerogpu.on_zerogpu() and state.indexer is not None and state.indexer.snapshot().state == "idle":
            launch(demo, **launch_kwargs(state, args.host, args.port, args.share), prevent_thread_lock=True)
            state.indexer.start()  # after spaces' start-up (at launch): each chunk is then a GPU call
            demo.block_thread()
        else:
            launch(demo, **launch_kwargs(state, args.host, args.port, args.share))
    except OSError as error:  # the port was taken while the model loaded
        print(f"error: cannot listen on {args.host}:{args.port} ({error}): choose another with --port N",
              file=sys.stderr)
        return 2
    finally:
        if state.indexer is not None:  # save the batch in flight (a kill loses at most one commit's work)
            state.indexer.stop(timeout=5)
    return 0

