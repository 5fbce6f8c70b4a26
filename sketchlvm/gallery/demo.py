"""The demo gallery: photos to search on a Space's first visit, when its owner set no gallery.

A Space that starts with nothing to search shows an empty page, and a visitor cannot add photos to
someone else's Space. So a Space (Hugging Face sets ``SPACE_ID``) with no gallery setting searches
the demo gallery; locally ``--demo`` (or the demo setting, ``DEMO_ENV``) asks for it, and plain ``python app.py``
keeps saying how to add a gallery of your own.

The demo is ``flwrlabs/caltech101`` on the Hub, pinned to a commit: Caltech 101 as one parquet file
(image + ClassLabel, 8,677 photos in 101 classes), read through the ``hf://`` path (``sketchlvm.hub``,
downloaded once into the Hugging Face cache) and the parquet gallery (``sketchlvm.gallery.parquet``),
narrowed to twenty everyday classes people draw in a few strokes. The page names the photos' source
and licence as the dataset card gives them (:meth:`DemoGallery.credit`); docs/spaces.md says why these.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sketchlvm.config import env_var, settings

DEMO_ENV = env_var("demo")
SPACE_ENV = "SPACE_ID"  # set by Hugging Face in every Space


@dataclass(frozen=True)
class DemoGallery:
    """A public photo collection on the Hub, and what the page must say about it."""

    uri: str  # hf://datasets/USER/REPO[@REVISION][/SUBDIR]: parquet files (or one folder per category)
    source: str  # who made the photos, as they are to be credited
    licence: str  # as the dataset card states it
    page_url: str  # the dataset's page on the Hub, at the pinned revision
    origin_url: str  # where the photos were first published
    split: str | None = None
    classes: tuple[str, ...] = ()

    def credit(self) -> str:
        """One line for the page (visitors read it: no owner instructions): what these photos are, where
        they come from, their licence."""
        return (f"**Demo gallery:** {len(self.classes)} everyday-object classes of {self.source} "
                f"([dataset]({self.page_url}), first published [by Caltech]({self.origin_url})); "
                f"licence as its dataset card states it: {self.licence}.")


# Pinned: a later commit of the dataset cannot change what a Space shows, and the cache is reused offline.
DEMO_REVISION = "3ec6286e202ebe3e1a263d74ba5d95209af41794"
DEMO = DemoGallery(
    uri=f"hf://datasets/flwrlabs/caltech101@{DEMO_REVISION}",
    source="Caltech 101 (L. Fei-Fei, M. Andreetto, M. Ranzato, P. Perona)",
    licence="unknown",
    page_url=f"https://huggingface.co/datasets/flwrlabs/caltech101/tree/{DEMO_REVISION}",
    origin_url="https://data.caltech.edu/records/mzrjq-6wc02",
    split="train",
    # Everyday objects drawn in a few strokes (many are Sketchy or Quick, Draw! classes too); about
    # 1,400 photos by Caltech 101's per-class counts, minutes to index on a free CPU Space.
    classes=("butterfly", "camera", "cellphone", "chair", "cup", "electric_guitar", "headphone", "helicopter",
             "lamp", "laptop", "pizza", "scissors", "soccer_ball", "stapler", "strawberry", "sunflower",
             "umbrella", "watch", "wheelchair", "wrench"),
)

OWNER_HINT = (f"To search your own photos, set {env_var('gallery')} (a Space variable) to a folder or to "
              f"hf://datasets/USER/REPO; {env_var('gallery_classes')} narrows a dataset to some classes.")


def on_space() -> bool:
    """Whether this process runs in a Hugging Face Space."""
    return bool(os.environ.get(SPACE_ENV, "").strip())


def demo_requested(flag: bool = False) -> bool:
    """``--demo`` or the demo setting (``DEMO_ENV``)."""
    return flag or settings().demo


def wants_demo(gallery: str | None, flag: bool = False) -> bool:
    """Search the demo gallery when none was given and it was asked for, or on a Space (no owner's gallery)."""
    if gallery:
        return False
    return demo_requested(flag) or on_space()
