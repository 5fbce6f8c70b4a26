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
    PhotoFile,
    default_cache_dir,
    galleries_home,
    latest_gallery,
    scan_gallery,
)

# What writes an index's files the way a build does (sketchlvm.cluster.embed writes its shards with them, and
# keys them as a build keys its vectors): atomic writes, identities as a manifest holds them, faiss files.
from sketchlvm.gallery.store import (
    FORMAT,
    FORMAT_VERSION,
    LOCK,
    MANIFEST,
    SKIPPED,
    atomic_save_npy,
    atomic_write_text,
    embedding_key,
    load_manifest,
    plain_identity,
    read_faiss,
    shared_identity,
)

__all__ = [
    "FORMAT", "FORMAT_VERSION", "GALLERIES_ENV", "LOCK", "MANIFEST", "RECALL_K", "SKIPPED",
    "BuildReport", "GalleryIndex", "Photo", "PhotoFile", "Precomputed", "StaleIndexError",
    "atomic_save_npy", "atomic_write_text", "build_gallery_index", "build_search_index", "default_cache_dir",
    "embedding_key", "galleries_home", "latest_gallery", "load_manifest", "open_gallery_index", "plain_identity",
    "read_faiss", "scan_gallery", "shared_identity",
]
