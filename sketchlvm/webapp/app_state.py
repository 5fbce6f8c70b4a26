"""What the app runs on, and the text that says so: status panel, warning banner, hints."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sketchlvm.config import env_var
from sketchlvm.search import Searcher
from sketchlvm.webapp.access import OWNER_ONLY_STATUS, owner_now
from sketchlvm.webapp.busy import Busy
from sketchlvm.webapp.markdown import escape
from sketchlvm.webapp.public_files import public_name

MODE_LABELS = {"category": "Category", "fine_grained": "Fine-grained"}
MODE_HINTS = {
    "category": "photos of the same kind of thing",
    "fine_grained": "the particular object drawn: pose, shape, details",
}
VISITOR_NO_PHOTOS = "**This Space has no photos to search yet.**"


def owner_reads(state: AppState | None = None) -> bool:
    """Whether the reader may see the owner's instructions (flags, variables, folders): off a Space the
    one running the app, unless sign-in is on; on a Space only an owner who is signed in (with sign-in
    off, everyone on a Space is a visitor)."""
    from sketchlvm.gallery.demo import on_space

    access = None if state is None else state.access
    if access is not None and access.on:
        return owner_now(access)
    return not on_space()


def no_gallery_help(state: AppState | None = None) -> str:
    """Why there are no photos: to the owner, how to add a gallery, naming the folder where its index will be
    kept (the galleries_dir setting or the default, read now: the variable may be set after import); to a
    visitor of a Space (``owner_reads``), one line. Without ``state`` on a Space: the visitor's line."""
    from sketchlvm.gallery.scan import galleries_home

    if not owner_reads(state):
        return VISITOR_NO_PHOTOS
    return (
        "**No gallery loaded yet.** Start the app with `python app.py --gallery /path/to/photos` "
        "(a folder of photos; one subfolder per category gives each photo its category), or set "
        f"`{env_var('gallery')}`. Once indexed (the index is kept in `{galleries_home()}`), it is reopened by "
        "default next time."
    )


NO_GALLERY_HELP = no_gallery_help()  # as at import; the page calls no_gallery_help()
RANDOM_WEIGHTS_WARNING = "⚠️ **Random weights — for testing only.** Rankings are meaningless."
UPLOAD_HINT = "Upload a PNG or JPEG of a sketch (dark lines on white)."
DRAW_HINT = (
    "Draw something on the canvas (or type a few words, upload a sketch or a photo, or click an example) to search."
)


@dataclass
class AppState:
    """What the app runs on: the searcher, where its gallery lives, and how to rebuild its index.

    ``indexer``: the ``BackgroundIndexer`` building the gallery's index (None without a gallery, or
    when the caller indexed it itself; "Rebuild index" then makes one). ``notes``: lines for the
    status panel (the int8 check). ``credit``: the line that names where the gallery's photos come from
    and their licence (the demo gallery), or None. ``access``: sign-in and owners (``sketchlvm.webapp.access``; None:
    open). ``public``: the folder files are served from (``sketchlvm.webapp.public_files``, made on first use).
    """

    searcher: Searcher
    gallery_dir: Path | None = None
    cache_dir: Path | None = None
    examples: list[Path] = field(default_factory=list)
    indexer: Any = None
    notes: list[str] = field(default_factory=list)
    credit: str | None = None  # the demo gallery's source and licence (gallery.demo), shown under the title
    access: Any = None
    public: Any = None
    watcher: Any = None  # the FolderWatcher keeping a local gallery's index current (sketchlvm.gallery.watch)
    newest: Any = None  # the live search's newest request per session (sketchlvm.webapp.newest), made by the page
    busy: Busy = field(default_factory=Busy)  # searches in progress; mid-stroke ones shed when busy (webapp.busy)

    def ensure_indexer(self):
        """The background indexer of the gallery, made on first use; None without a gallery."""
        if self.indexer is None and self.gallery_dir is not None:
            from sketchlvm.gallery.background import BackgroundIndexer

            self.indexer = BackgroundIndexer(self.gallery_dir, self.searcher.model, cache_dir=self.cache_dir,
                                             on_index=self.searcher.set_index)
        return self.indexer

    def progress(self):
        """The indexer's IndexProgress, or None when there is no background build."""
        return None if self.indexer is None else self.indexer.snapshot()

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

    @property
    def random_weights(self) -> bool:
        return getattr(self.searcher.model.weights, "kind", None) == "random"


# An absolute path (a checkpoint or weights file): shown by its file name only. Not after ':' or '/' (URLs).
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/])/(?:[^\s/`()]+/)+([^\s/`()]+)")


def public_text(state: AppState, text: str, markdown: bool = True) -> str:
    """``text`` without the server's folders: the gallery by its public name (escaped for Markdown
    unless ``markdown`` is False), the index cache unnamed."""
    if state.gallery_dir is not None:
        name = public_name(state.gallery_dir)
        text = text.replace(str(state.gallery_dir), escape(name) if markdown else name)
    if state.cache_dir is not None:
        text = text.replace(str(state.cache_dir), "the index cache")
    return text


def status_markdown(state: AppState) -> str:
    """What is loaded: model, weights, checkpoint, device, gallery name and size, skipped files; with
    sign-in on, for owners only. No server folder is named (``public_text``)."""
    if not owner_now(state.access):
        return OWNER_ONLY_STATUS
    model = state.searcher.model
    facts = {key: _ABSOLUTE_PATH.sub(r"\1", str(value)) for key, value in model.describe().items()}
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
        lines.append(f"- **Gallery:** none. {no_gallery_help(state)}")
    else:
        size = len(index) if index is not None else 0
        lines.append(f"- **Gallery:** {escape(public_name(state.gallery_dir))} ({size} photo{'s' if size != 1 else ''})")
        progress = state.progress()
        if progress is not None:
            lines.append(f"- **Index:** {public_text(state, progress.summary())}")
        report = getattr(index, "report", None)
        skipped = list(getattr(report, "skipped", []) or [])
        lines.append(f"- **Skipped files:** {len(skipped)}")
        for relpath, reason in skipped[:5] if owner_reads(state) else ():  # reasons may say what to install
            lines.append(f"    - {escape(relpath)}: {escape(public_text(state, str(reason), markdown=False))}")
        if len(skipped) > 5 and owner_reads(state):
            lines.append(f"    - … and {len(skipped) - 5} more (see the terminal log)")
    lines += [f"- {note}" for note in state.notes]
    if state.random_weights:
        lines.insert(0, f"> {RANDOM_WEIGHTS_WARNING}\n")
    return "\n".join(lines)


def progress_markdown(state: AppState) -> str:
    """The indexing line under the title (photos searchable, done/total, rate, time left); "" when idle
    and complete, so a finished gallery shows nothing there."""
    progress = state.progress()
    if progress is None or (not progress.running and progress.complete and progress.state != "failed"):
        return ""
    gpu = gpu_line(state) if progress.running else None
    return public_text(state, progress.summary()) + (f"\n\n{gpu}" if gpu else "")


def gpu_line(state: AppState) -> str | None:
    """On ZeroGPU, while indexing runs on the CPU because the GPU was refused: the line that says so."""
    gate = getattr(state.searcher.model.runtime, "offload", None)
    return gate.status("photo") if gate is not None else None


def coverage_note(state: AppState) -> str | None:
    """How much of the gallery results come from, while it is still being indexed; None when all of it."""
    progress = state.progress()
    if progress is None or progress.complete:
        return None
    if progress.running:
        return progress.coverage_note()
    return (f"Results from the {progress.searchable:,} photos indexed before indexing stopped: "
            + public_text(state, progress.summary()))


def gallery_problem(state: AppState) -> str:
    """Why there is nothing to search, or "" when there is."""
    if state.gallery_dir is None:
        return no_gallery_help(state)
    progress = state.progress()
    if len(state.searcher) == 0 and progress is not None and progress.running:
        return ("**The gallery is being indexed; search starts with the first photos.** "
                + public_text(state, progress.summary()))
    if len(state.searcher) == 0 and not owner_reads(state):
        return VISITOR_NO_PHOTOS
    if len(state.searcher) == 0:
        return (
            f"**The gallery {escape(public_name(state.gallery_dir))} has no usable photos.** Add .jpg/.png/.webp/.heic/.avif photos to it "
            "(one subfolder per category) and press *Rebuild index*."
        )
    return ""


def banner_markdown(state: AppState) -> str:
    """The banner at the top of the page: what makes results untrustworthy, and a missing gallery."""
    model = state.searcher.model
    lines = []
    if state.random_weights:
        lines.append(RANDOM_WEIGHTS_WARNING)
    untrained = [MODE_LABELS.get(m, m) for m in model.modes if m not in model.trained_modes()]
    if untrained:
        lines.append(
            f"⚠️ **{' and '.join(untrained)} mode{'s' if len(untrained) > 1 else ''}: zero-shot CLIP, no trained "
            "prompts.**" + (" Start the app with `--checkpoint` for the trained ones." if owner_reads(state) else "")
        )
    problem = gallery_problem(state)
    if problem:
        lines.append(problem)
    return "\n\n".join(lines)
