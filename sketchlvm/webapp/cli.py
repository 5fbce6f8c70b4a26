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

from sketchlvm.arguments import add_model_arguments
from sketchlvm.arguments import device as _device
from sketchlvm.arguments import port as _port
from sketchlvm.arguments import positive_int as _positive_int
from sketchlvm.arguments import runtime as _runtime
from sketchlvm.config import DEFAULT_TOP_K, Settings, env_var, settings

# --------------------------------------------------------------------------------------------
# Command line


def _variable(name: str) -> str:
    """How a flag's help names the variable behind it: ``[VARIABLE]``, or ``[VARIABLE=1]`` for a switch."""
    switch = isinstance(getattr(Settings, name), bool)
    return f"[{env_var(name)}{'=1' if switch else ''}]"


def build_parser(prog: str = "app.py") -> argparse.ArgumentParser:
    env = settings()  # read now, not at import: each flag's default is its variable, and the flag wins
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
        "--gallery", metavar="DIR|hf://datasets/USER/REPO[@REV][/SUBDIR]", default=env.gallery,
        help="folder of photos to search (one subfolder per category gives each photo its category), a folder "
        "of parquet files (an image dataset as the Hub stores it: each row a photo, its class label its "
        "category), or a Hugging Face dataset of either (downloaded once into the Hugging Face cache, then "
        "used offline from it); "
        "indexed in the background on start (the page shows the progress; search covers what is indexed), "
        "only changed photos are re-embedded. Without it the gallery indexed most recently "
        f"(indexes live in galleries/, or ${env_var('galleries_dir')}) is used; with none, the app starts empty "
        f"and says how to add one {_variable('gallery')}",
    )
    parser.add_argument(
        "--gallery-split", metavar="SPLIT", default=env.gallery_split,
        help="for a gallery of parquet files (an image dataset as the Hub stores it): only this split's files "
        f"(train, test, ...; by their names) {_variable('gallery_split')}",
    )
    parser.add_argument(
        "--gallery-classes", metavar="NAME[,...]", default=env.gallery_classes,
        help="for a gallery of parquet files: only the rows of these classes (label names, comma-separated), "
        f"so a large dataset is narrowed to what people draw {_variable('gallery_classes')}",
    )
    parser.add_argument(
        "--watch", metavar="auto|events|poll|off", default=None,
        help="keep the index of a local gallery folder current while the app runs: photos added, changed or "
        "removed are indexed within a minute. auto (the default): the system's change events, or a rescan "
        "every 20 s on network mounts; poll: always the rescan; off: only at start and on 'Rebuild index' "
        f"{_variable('watch')}",
    )
    parser.add_argument(
        "--demo", action="store_true", default=env.demo,
        help="without --gallery: search the demo gallery (everyday-object photos from a public Hugging Face "
        "dataset, fetched once into the Hugging Face cache; the page names their source and licence). A Space "
        f"whose owner set no gallery shows it anyway {_variable('demo')}",
    )
    add_model_arguments(parser, exports=True, with_runtime=True, check=False, variables=True, defaults={
        "model": env.model, "pretrained": env.pretrained, "checkpoint": env.checkpoint, "device": env.device,
        "runtime": env.runtime})
    parser.add_argument(
        "--top-k", metavar="N", type=_positive_int, default=env.top_k,
        help=f"results shown at first; the slider in the page changes it (default: {DEFAULT_TOP_K}) "
        f"{_variable('top_k')}",
    )
    parser.add_argument(
        "--host", default=env.host,
        help="address to listen on; 0.0.0.0 exposes the app to your network (default: 127.0.0.1, this machine "
        f"only) {_variable('host')}",
    )
    parser.add_argument(
        "--port", type=_port, default=env.port,
        help=f"port to listen on (default: {Settings.port}) {_variable('port')}",
    )
    parser.add_argument(
        "--share", action="store_true", default=env.share,
        help=f"also open a temporary public *.gradio.live link (needs internet) {_variable('share')}",
    )
    sign_in = parser.add_argument_group("sign-in (see docs/deploying-in-public.md)")
    sign_in.add_argument(
        "--auth", metavar="USER:PASSWORD[,...]", default=env.auth,
        help=f"require a login (Gradio's login page) for the page and the API {_variable('auth')}",
    )
    sign_in.add_argument(
        "--hf-sign-in", action="store_true", default=env.hf_sign_in,
        help="on a Hugging Face Space (hf_oauth: true in its README): searching needs a Hugging Face sign-in "
        f"{_variable('hf_sign_in')}",
    )
    sign_in.add_argument(
        "--owners", metavar="USER[,...]", default=env.owners,
        help="with sign-in, who may rebuild the index and see the status panel (default: every --auth user; "
        f"with --hf-sign-in, the Space's owner) {_variable('owners')}",
    )
    sign_in.add_argument(
        "--users", metavar="USER[,...]|*", default=env.users,
        help="with --hf-sign-in, who else may search ('*': anyone signed in; default: the owners only) "
        f"{_variable('users')}",
    )
    return parser


def _load_model(args: argparse.Namespace, device: str):
    """An export folder (``--model FOLDER|hf://...``: ONNX Runtime only, no torch), else the torch model
    with CLIP's text tower (sketch + words and words-only search): ``model/loader.py``."""
    from sketchlvm.model.loader import model_from_args

    return model_from_args(args, device=device, text=True)


def free_torch(model: Any, gallery: Any, check_photos: int = 4) -> str | None:
    """On the full install, free the torch towers once every encode runs on a checked ONNX graph, so the
    app holds its weights once (issue 30); photo graphs not yet checked on real photos are checked on a
    few of the gallery's first (``Runtime.release_torch``). Returns why they stay, or None. Says nothing:
    the answers are the same."""
    from sketchlvm.runtime.interface import PHOTOS_NEEDED

    reason = model.runtime.release_torch()
    if reason != PHOTOS_NEEDED:
        return reason
    from sketchlvm.gallery.scan import first_photos
    from sketchlvm.preprocess.transforms import load_photo

    photos = []
    for path in first_photos(gallery, 2 * check_photos):  # a few spare, for files that do not decode
        try:
            photos.append(load_photo(path, draft_size=model.image_size))
        except (OSError, ValueError):
            continue
        if len(photos) == check_photos:
            break
    return model.runtime.release_torch(photos)


def choose_gallery(args: argparse.Namespace):
    """(gallery folder or None, credit line or None): ``--gallery``; else the demo gallery when asked for
    (``--demo``) or on a Space (its owner set none); else the gallery indexed most recently. A folder of
    parquet files becomes the folder its rows are written to (``sketchlvm.gallery.parquet``). A demo that
    cannot be had stops an explicit request (HubUnavailableError) but leaves a Space empty: the reason and
    the owner's instructions go to the log, the page says only that there are no photos yet."""
    from sketchlvm.gallery import latest_gallery
    from sketchlvm.gallery.demo import DEMO, OWNER_HINT, demo_requested, wants_demo
    from sketchlvm.gallery.parquet import parse_classes, photo_folder
    from sketchlvm.hub import HubUnavailableError, resolve_folder

    split, classes = getattr(args, "gallery_split", None), parse_classes(getattr(args, "gallery_classes", None))
    if args.gallery:
        folder = resolve_folder(args.gallery)  # an hf:// one fails fast
        return (photo_folder(folder, split, classes) if folder.is_dir() else folder), None
    if not wants_demo(args.gallery, args.demo):
        return latest_gallery(), None
    try:
        folder = photo_folder(resolve_folder(DEMO.uri), DEMO.split, frozenset(DEMO.classes))
    except (HubUnavailableError, ImportError, ValueError, OSError) as error:
        if demo_requested(args.demo):
            raise HubUnavailableError(str(error)) from error
        print(f"warning: the demo gallery could not be fetched, so the Space starts empty: {error}. {OWNER_HINT}",
              file=sys.stderr)
        return None, None
    print(f"No gallery set: searching the demo gallery {DEMO.uri} ({DEMO.source}; licence: {DEMO.licence}). "
          + OWNER_HINT)
    return folder, DEMO.credit()


def _watcher(args: argparse.Namespace, gallery, credit: str | None, indexer):
    """The folder watcher of a local gallery (sketchlvm.gallery.watch), started; None for a Hub dataset, the
    demo or the rows of a parquet dataset (nobody adds photos there), or with --watch off."""
    from sketchlvm.gallery.parquet import STATE_FILE
    from sketchlvm.gallery.watch import FolderWatcher, watch_mode
    from sketchlvm.hub import is_hub_path

    mode = watch_mode(getattr(args, "watch", None))  # ValueError: a wrong value, said in one line
    if mode == "off" or credit is not None or is_hub_path(args.gallery) or (gallery / STATE_FILE).exists():
        return None
    return FolderWatcher(indexer, mode).start()


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
                        f"--port N (or {env_var('port')})")
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
                                 f"the photos (--gallery / {env_var('gallery')})")
    if gallery is not None and not gallery.is_dir():
        raise FileNotFoundError(f"gallery folder {str(gallery)!r} does not exist (--gallery / {env_var('gallery')})")
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
    free_torch(model, gallery)  # before indexing starts: nothing may encode with torch while the towers go
    indexer = BackgroundIndexer(gallery, model, on_index=searcher.set_index)
    state = AppState(searcher, gallery_dir=gallery, cache_dir=indexer.cache_dir, indexer=indexer, credit=credit, access=access)
    state.watcher = _watcher(args, gallery, credit, indexer)
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
    except (FileNotFoundError, NotADirectoryError, ValueError, ImportError) as error:
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
        if getattr(state, "watcher", None) is not None:
            state.watcher.stop()
        if state.indexer is not None:  # save the batch in flight (a kill loses at most one commit's work)
            state.indexer.stop(timeout=5)
    return 0

