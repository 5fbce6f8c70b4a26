"""Gallery index: every photo under a folder -> unit vectors per mode -> faiss, plus a JSON manifest.

One concept per module, imports pointing down:

    gallery.py        the photos of a folder (scan_gallery), where indexes live (default_cache_dir)
    index_store.py    files on disk: layout, atomic writes, the manifest, memory-mapped vector stores
    gallery_index.py  the searchable index (GalleryIndex, open_gallery_index, build_search_index)
    index_build.py    the incremental, resumable build (build_gallery_index): scan, plan, embed
    index_state.py    what a build holds between commits, and how a commit is written

This module re-exports their public names, so ``from sketchlvm.index import ...`` is the one import
for users of the index, and runs the command line (``python -m sketchlvm.index``, see ``index_cli``).
"""

from __future__ import annotations

from .gallery import (
    GALLERIES_ENV,
    Photo,
    _Entry,  # noqa: F401 - for sketchlvm.cluster
    default_cache_dir,
    galleries_home,
    latest_gallery,
    scan_gallery,
)
from .gallery_index import RECALL_K, GalleryIndex, StaleIndexError, build_search_index, open_gallery_index
from .index_build import BuildReport, Precomputed, build_gallery_index

# sketchlvm.cluster writes shards the way a build writes its files; the tests read faiss files directly.
from .index_store import (  # noqa: F401
    FORMAT,
    FORMAT_VERSION,
    LOCK,
    MANIFEST,
    SKIPPED,
    _atomic_save_npy,
    _atomic_write_text,
    _embedding_key,
    _plain,
    _read_faiss,
    _shared_identity,  # noqa: F401
    load_manifest,
)

__all__ = [
    "FORMAT", "FORMAT_VERSION", "GALLERIES_ENV", "LOCK", "MANIFEST", "RECALL_K", "SKIPPED",
    "BuildReport", "GalleryIndex", "Photo", "Precomputed", "StaleIndexError",
    "build_gallery_index", "build_search_index", "default_cache_dir", "galleries_home", "latest_gallery",
    "load_manifest", "open_gallery_index", "scan_gallery",
]

if __name__ == "__main__":
    from sketchlvm.index_cli import main

    main()
