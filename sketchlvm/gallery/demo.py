"""The demo gallery: photos to search on a Space's first visit, when its owner set no gallery.

A Space that starts with nothing to search shows an empty page, and a visitor cannot add photos to
someone else's Space. So a Space (Hugging Face sets ``SPACE_ID``) with no gallery setting searches
the demo gallery; locally ``--demo`` (or the demo setting, ``DEMO_ENV``) asks for it, and plain ``python app.py``
keeps saying how to add a gallery of your own.

The photos come through the ``hf://`` path (``sketchlvm.hub``): downloaded once into the Hugging Face
cache, then indexed in the background like any other gallery. The page names their source and licence (:meth:`DemoGallery.credit`).

Why these photos (docs/spaces.md has the longer answer): everyday objects people can draw in a few
strokes (cups, chairs, scissors, umbrellas...), many of them Sketchy and Quick, Draw! categories; real
photographs with the object large in the frame; a licence that allows showing them on a public page
with attribution (CC BY 4.0); and a size (about 1,000 photos) that indexes in minutes on a free CPU.
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

    uri: str  # hf://datasets/USER/REPO[/SUBDIR][@REVISION]: one folder per category
    source: str  # who made the photos, as their licence asks to be credited
    licence: str
    licence_url: str
    page_url: str  # the dataset's page on the Hub

    def credit(self) -> str:
        """One line for the page: what these photos are, where they come from, their licence."""
        return (f"**Demo gallery:** everyday-object photos from {self.source} ([dataset]({self.page_url})), "
                f"licensed [{self.licence}]({self.licence_url}). To search your own photos, set `{env_var('gallery')}` "
                "(a Space variable) or `--gallery`.")


# Twenty everyday-object categories of Caltech 101 (Fei-Fei, Fergus and Perona, 2004; CC BY 4.0 on
# CaltechDATA), as one folder of photos per category.
DEMO = DemoGallery(
    uri="hf://datasets/sketchlvm/caltech101-everyday-objects/photos",
    source="Caltech 101 (L. Fei-Fei, R. Fergus, P. Perona)",
    licence="CC BY 4.0",
    licence_url="https://creativecommons.org/licenses/by/4.0/",
    page_url="https://huggingface.co/datasets/sketchlvm/caltech101-everyday-objects",
)


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
