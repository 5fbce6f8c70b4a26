"""Gallery index: every photo under a folder -> unit vectors per mode -> faiss, plus a JSON manifest.

One concept per module, imports pointing down:

    scan.py        the photos of a folder (scan_gallery), where indexes live (default_cache_dir)
    store.py       files on disk: layout, atomic writes, the manifest, memory-mapped vector stores
    index.py       the searchable index (GalleryIndex, open_gallery_index, build_search_index)
    state.py       what a build holds between commits, and how a commit is written
    build.py       the incremental, resumable build (build_gallery_index): scan, plan, embed
    background.py  the build on a thread while the app serves (BackgroundIndexer)
    watch.py       the folder watched while the app runs: changes rebuilt within a minute (FolderWatcher)
    parquet.py     image datasets stored as parquet -> a folder of photos the build indexes
    thumbnails.py  small WebP copies of the photos, for the results grid
    cli.py         ``sketchlvm index build|info``

May import ``sketchlvm.config``, ``hub``, ``preprocess`` and ``model`` (to embed); search and the web app
import it. This module re-exports the public names, so ``from sketchlvm.gallery import ...`` is the one import
for users of the index.
"""

from __future__ import annotations

from sketchlvm.gallery.build import Precomputed, build_gallery_index
from sketchlvm.gallery.index import (
    RECALL_K,
    BuildReport,
    GalleryIndex,
    StaleIndexError,
    build_search_index,
    open_gallery_index,
)
from sketchlvm.gallery.scan import (
    GALLERIES_ENV,
    Photo,
    _Entry,  # noqa: F401 - for sketchlvm.cluster.embed
    default_cache_dir,
    galleries_home,
    latest_gallery,
    scan_gallery,
)

# sketchlvm.cluster.embed writes shards the way a build writes its files; the tests read faiss files directly.
from sketchlvm.gallery.store import (  # noqa: F401
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
