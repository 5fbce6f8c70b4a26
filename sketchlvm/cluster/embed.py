"""Beyond one machine: embed a huge gallery on a Ray cluster, then merge it into the normal gallery index.

    embed  (``python -m sketchlvm cluster embed``, on the cluster): the driver lists the photos (the
           scanner of ``index.py`` for a folder, ``pyarrow.fs`` for a URI such as ``s3://bucket/photos``)
           -> Ray Data: read + decode in CPU tasks -> encode in an actor pool, one model per actor and
           one GPU each when the cluster has GPUs -> the driver streams the vectors into shards.
    merge  (``python -m sketchlvm cluster merge``, where the gallery is served): ``build_gallery_index``
           takes the shard vectors (its ``precomputed`` hook) for every photo whose relpath, size and
           mtime match the folder, and embeds anything else itself. The result is the ordinary cache
           that ``open_gallery_index`` and the app load; later builds see those photos as unchanged.

Shard folder (written by the driver; ``shards.json`` last, so a folder without it is unfinished)::

    shards.json            format, source, model identity and embedding key per mode, dim, shard list,
                           skipped files (relpath, reason, size, mtime_ns, kind)
    shard-<i>.json         {"relpath": [...], "label": [...], "size": [...], "mtime_ns": [...]}
    shard-<i>-<key>.npy    (n, D) float32 unit vectors, row j = photo j of shard-<i>.json

Workers build the model with the same ``load_model`` as the driver and check that its identity
(hence its embedding keys) is the driver's; the merge refuses shards made under another identity.
Ray is imported only by ``embed``: merging needs no Ray.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sketchlvm.config import PACKAGE_DIR, IndexConfig, PreprocessConfig
from sketchlvm.gallery import (
    GalleryIndex,
    PhotoFile,
    StaleIndexError,
    atomic_save_npy,
    atomic_write_text,
    build_gallery_index,
    embedding_key,
    plain_identity,
    scan_gallery,
    shared_identity,
)
from sketchlvm.preprocess.transforms import ImageLoadError, PhotoTransform, load_photo

if TYPE_CHECKING:
    from sketchlvm.model.factory import SketchLVM

log = logging.getLogger(__name__)

SHARDS_FORMAT = "sketchlvm-ray-shards"
SHARDS_VERSION = 1
SHARDS_MANIFEST = "shards.json"
SHARD_ROWS = 65536  # photos per shard file
_SHARD_FILE = re.compile(r"^(shards\.json|shard-\d+(\.json|-[0-9a-f]+\.npy))(\.tmp)?$")
# Decode outcomes: "unusable" files fail exactly as they would in the index build and are recorded as
# skipped; "unreadable" means object storage could not be read (network, permissions), so the merge
# leaves them for the local build to try rather than record them as broken.
OK, UNUSABLE, UNREADABLE = "ok", "unusable", "unreadable"


class ShardIdentityError(StaleIndexError):
    """The shards were embedded under another model identity than the one merging them."""


# ---------------------------------------------------------------------------------------------
# What the index calls the model's embeddings


def model_embeddings(model: SketchLVM) -> tuple[dict[str, dict], dict[str, str]]:
    """({mode: identity}, {mode: embedding key}), computed exactly as ``build_gallery_index`` does."""
    identities = {m: plain_identity(model.identity(m)) for m in model.modes}
    return identities, {m: embedding_key(i) for m, i in identities.items()}


def _identity_diff(have: dict | None, want: dict | None, have_name: str = "shards", want_name: str = "model") -> str:
    have, want = have or {}, want or {}
    return ", ".join(f"{k}: {have_name} {have.get(k)!r} vs {want_name} {want.get(k)!r}"
                     for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k))


# ---------------------------------------------------------------------------------------------
# Listing and decoding (the decoding runs in Ray tasks)


def _is_uri(source: str | Path) -> bool:
    return isinstance(source, str) and "://" in source


@dataclass(frozen=True)
class PhotoSource:
    root: str  # the folder (absolute) or the URI as given: names files in messages
    filesystem: Any = None  # pyarrow.fs.FileSystem for a URI; None: local files
    base: str = ""  # the folder's path inside ``filesystem``


def list_photos(
    source: str | Path, extensions: Sequence[str] = IndexConfig().extensions, exclude: Sequence[Path] = ()
) -> tuple[PhotoSource, list[PhotoFile], list[tuple[str, str]]]:
    """(where the photos are, photos sorted by relpath, (relpath, reason) that could not be listed).

    A folder is scanned exactly as the index scans it; a URI (``s3://``, ``gs://``, ``file://``, anything
    ``pyarrow.fs.FileSystem.from_uri`` opens) is listed recursively with the same rules (extensions,
    hidden names left out, first-level folder = label), recording the size and mtime storage reports.
    """
    if not _is_uri(source):
        root = Path(source).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"gallery folder {str(root)!r} does not exist or is not a folder")
        entries, problems = scan_gallery(root.resolve(), extensions, exclude)
        return PhotoSource(str(root.resolve())), entries, problems
    from pyarrow import fs as pafs

    try:
        filesystem, base = pafs.FileSystem.from_uri(source)
        infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
    except Exception as e:  # pyarrow raises OSError, ArrowInvalid, ... for missing buckets or credentials
        raise FileNotFoundError(f"cannot list {source!r}: {e}") from e
    wanted = {e.lower() for e in extensions}
    base = base.rstrip("/")
    entries = []
    for info in infos:
        relpath = info.path[len(base):].lstrip("/")
        parts = relpath.split("/")
        if (info.type != pafs.FileType.File or any(p.startswith(".") for p in parts)
                or os.path.splitext(relpath)[1].lower() not in wanted):
            continue
        entries.append(PhotoFile(relpath, parts[0] if len(parts) > 1 else None, int(info.size), int(info.mtime_ns or 0)))
    entries.sort(key=lambda e: e.relpath)
    return PhotoSource(source.rstrip("/"), filesystem, base), entries, []


def _decode_one(where: PhotoSource, relpath: str, transform: PhotoTransform) -> tuple[Any, str, str]:
    """(S x S RGB image, OK, "") or (None, UNUSABLE | UNREADABLE, reason), with the index's reasons."""
    if where.filesystem is None:
        name = str(Path(where.root) / relpath)
        source: Any = name
    else:
        name = f"{where.root}/{relpath}"
        try:
            with where.filesystem.open_input_file(f"{where.base}/{relpath}") as f:
                data = f.read()
        except Exception as e:  # noqa: BLE001 - any storage failure: leave the file to the local build
            return None, UNREADABLE, f"cannot read file: {e}"
        if not data:
            return None, UNUSABLE, "the file is empty (0 bytes)"
        source = io.BytesIO(data)
        source.name = name  # load_photo names the file by it
    try:
        image = load_photo(source, transform.config.max_image_pixels, draft_size=transform.image_size)
        return transform.to_image(image), OK, ""
    except Exception as e:  # as index._Build._decode: ImageLoadError, but also MemoryError & co
        reason = str(e) if isinstance(e, ImageLoadError) else f"{type(e).__name__}: {e}"
        prefix = f"cannot load image {name!r}: "
        return None, UNUSABLE, reason[len(prefix):] if reason.startswith(prefix) else reason


def _decode_batch(batch: dict[str, np.ndarray], where: PhotoSource, image_size: int,
                  preprocess: PreprocessConfig) -> dict[str, np.ndarray]:
    """Ray task: rows (idx, relpath) -> image (B, S, S, 3) uint8 as the encoder's transform makes it,
    status and reason (failed rows get a blank image)."""
    transform = PhotoTransform(image_size, preprocess)
    n = len(batch["idx"])
    images = np.zeros((n, image_size, image_size, 3), np.uint8)
    status, reasons = [], []
    for i, relpath in enumerate(batch["relpath"]):
        image, state, reason = _decode_one(where, str(relpath), transform)
        if image is not None:
            images[i] = np.asarray(image, dtype=np.uint8)
        status.append(state)
        reasons.append(reason)
    return {"idx": batch["idx"], "image": images, "status": np.array(status), "reason": np.array(reasons)}


class _Encoder:
    """Ray actor: one model per actor; decoded images -> vectors (B, K, D), one per embedding key.

    Refuses to start when its model's embedding keys are not the driver's (another weights file or
    checkpoint on this node), so every shard row comes from the identity recorded in shards.json.
    """

    def __init__(self, arch: str | None, pretrained: str | None, checkpoint: str | None, device: str,
                 identities: dict[str, dict]):
        import socket

        from sketchlvm.model.loader import load_model

        self.model = load_model(arch, pretrained, checkpoint, device, exports=False)
        mine, mode_key = model_embeddings(self.model)
        if mine != identities:
            diff = "; ".join(f"{m}: {_identity_diff(identities.get(m), mine.get(m), 'driver', 'worker')}"
                             for m in sorted(set(mine) | set(identities)) if mine.get(m) != identities.get(m))
            raise ShardIdentityError(
                f"the Ray worker on {socket.gethostname()} built another model than the driver ({diff}); give "
                "every node the same weights and checkpoint files (same path, size and mtime) or use an open_clip tag")
        self.keys = list(dict.fromkeys(mode_key.values()))
        self.encode_mode = {k: next(m for m in self.model.modes if mode_key[m] == k) for k in self.keys}
        self.dim = int(self.model.encoders[self.encode_mode[self.keys[0]]].visual.output_dim)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image

        ok = np.flatnonzero(batch["status"] == OK)
        vectors = np.zeros((len(batch["idx"]), len(self.keys), self.dim), np.float32)
        if len(ok):
            photos = [Image.fromarray(batch["image"][i]) for i in ok]
            for j, key in enumerate(self.keys):  # the index's own path: encode_photos(S x S images, mode)
                vectors[ok, j] = self.model.encode_photos(photos, self.encode_mode[key])
        return {"idx": batch["idx"], "status": batch["status"], "reason": batch["reason"], "vectors": vectors}


# ---------------------------------------------------------------------------------------------
# Embedding on the cluster


def ray_runtime_env() -> dict:
    """Ships this checkout's ``sketchlvm`` package to every worker, so they run the driver's code."""
    return {"py_modules": [str(PACKAGE_DIR)]}


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _start_ray(address: str | None) -> None:
    """Join ``address``, or start a private instance on this machine that binds and advertises only
    127.0.0.1: Ray picks the node address when it is imported, and this switch (meant for macOS and
    Windows, where Ray is single-machine) makes it the loopback one."""
    if not address and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    elif not address and os.environ.get(LOOPBACK_ENV) != "0":
        log.info("Ray was imported before %s=0 was set: the private instance uses this machine's address",
                 LOOPBACK_ENV)
    import ray

    if address:
        ray.init(address=address, runtime_env=ray_runtime_env())
    else:
        ray.init(include_dashboard=False, runtime_env=ray_runtime_env())


def _plan_workers(concurrency: int | None, num_gpus_per_worker: float | None) -> tuple[int, float]:
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 1.0)
    if num_gpus_per_worker is None:
        num_gpus_per_worker = 1.0 if gpus >= 1 else 0.0
    if num_gpus_per_worker < 0:
        raise ValueError(f"num_gpus_per_worker must be >= 0, got {num_gpus_per_worker}")
    if num_gpus_per_worker > 0 and gpus < num_gpus_per_worker:
        raise ValueError(f"{num_gpus_per_worker} GPU(s) per worker asked for, but the Ray cluster has {gpus:g}; "
                         "pass --gpus-per-worker 0 to encode on CPUs")
    if concurrency is None:  # every GPU busy; on CPUs, half the cores encode and half decode
        concurrency = int(gpus // num_gpus_per_worker) if num_gpus_per_worker else int(cpus // 2)
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    return concurrency, num_gpus_per_worker


def _absolute_if_local(value: str | Path | None) -> str | None:
    """Workers have their own working directory: pass local files by absolute path."""
    if value is None:
        return None
    text = str(value)
    if text.startswith("local-dir:"):
        return "local-dir:" + str(Path(text[len("local-dir:"):]).expanduser().resolve())
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


def _check_out(out: Path) -> None:
    """Refuse a shard folder that holds anything but a previous shard set (which will be replaced)."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"shard folder {str(out)!r} is a file; choose a new folder for --out")
    others = [p.name for p in out.iterdir() if not _SHARD_FILE.match(p.name)] if out.is_dir() else []
    if others:
        raise FileExistsError(f"shard folder {str(out)!r} holds other files ({', '.join(sorted(others)[:3])}...); "
                              "choose an empty or new folder for --out")


def _prepare_out(out: Path) -> None:
    """Create ``out``, or clear the previous shard set in it."""
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / SHARDS_MANIFEST).unlink(missing_ok=True)  # first: a half-replaced set is never mistaken for whole
    for path in out.iterdir():
        path.unlink()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def _worker_failure(error: BaseException) -> BaseException:
    """One clear exception for a failed Ray job. Ray wraps a worker's exception (RayTaskError,
    UserCodeException, ActorDiedError, ...) and sometimes keeps only its text: the last
    "Type: message" line of the quoted traceback is the worker's own error."""
    cause, seen = error, set()
    while id(cause) not in seen:
        seen.add(id(cause))
        inner = getattr(cause, "cause", None) or cause.__cause__
        if not isinstance(inner, BaseException):
            break
        cause = inner
    if isinstance(cause, (ShardIdentityError, OSError, ValueError)):
        return cause
    lines = [line.strip() for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
    for line in reversed(lines):
        match = _ERROR_LINE.match(line)
        if match:
            name, message = match.groups()
            if name.rsplit(".", 1)[-1] == ShardIdentityError.__name__:
                return ShardIdentityError(message)
            return RuntimeError(f"a Ray worker failed: {name.rsplit('.', 1)[-1]}: {message}")
    return RuntimeError(f"the Ray job failed: {type(error).__name__}: {lines[0] if lines else ''}")


class _ShardWriter:
    """Collects embedded rows on the driver and writes them as numbered shards."""

    def __init__(self, out: Path, keys: list[str], rows: int):
        self.out, self.keys, self.rows = out, keys, rows
        self.entries: list[PhotoFile] = []
        self.vectors: list[np.ndarray] = []  # (n, K, D) pieces
        self.shards: list[dict] = []
        self.dim: int | None = None

    def add(self, entries: list[PhotoFile], vectors: np.ndarray) -> None:
        self.entries += entries
        self.vectors.append(vectors)
        self.dim = vectors.shape[2]
        while len(self.entries) >= self.rows:
            self.flush(self.rows)

    def flush(self, n: int | None = None) -> None:
        if not self.entries:
            return
        allv = np.concatenate(self.vectors)
        n = len(self.entries) if n is None else n
        entries, self.entries = self.entries[:n], self.entries[n:]
        vectors, rest = allv[:n], allv[n:]
        self.vectors = [rest] if len(rest) else []
        name = f"shard-{len(self.shards):05d}"
        for j, key in enumerate(self.keys):
            atomic_save_npy(self.out / f"{name}-{key}.npy", vectors[:, j])
        cols = {"relpath": [e.relpath for e in entries], "label": [e.label for e in entries],
                "size": [e.size for e in entries], "mtime_ns": [e.mtime_ns for e in entries]}
        atomic_write_text(self.out / f"{name}.json", json.dumps(cols, separators=(",", ":")))
        self.shards.append({"name": name, "rows": len(entries)})


def _pipeline(entries: list[PhotoFile], where: PhotoSource, model: SketchLVM, model_args: dict, batch_size: int,
              workers: int, gpus: float) -> Any:
    """The Ray Data plan: (idx, relpath) blocks -> decode (CPU tasks) -> encode (actor pool) ->
    rows (idx, status, reason, vectors (K, D)). On CPUs Ray fuses both steps into the actors; with GPUs
    they stay apart, so decoding scales on the cluster's CPUs while the GPUs encode."""
    import pyarrow as pa
    import ray

    blocks = [pa.table({"idx": np.arange(lo, min(lo + batch_size, len(entries)), dtype=np.int64),
                        "relpath": [e.relpath for e in entries[lo : lo + batch_size]]})
              for lo in range(0, len(entries), batch_size)]
    decoded = ray.data.from_arrow(blocks).map_batches(
        _decode_batch, batch_format="numpy", batch_size=None, num_cpus=1,
        fn_kwargs={"where": where, "image_size": model.image_size, "preprocess": model.preprocess})
    return decoded.map_batches(
        _Encoder, batch_format="numpy", batch_size=batch_size, num_cpus=1, num_gpus=gpus,
        compute=ray.data.ActorPoolStrategy(size=workers),
        fn_constructor_kwargs={**model_args, "device": "cuda" if gpus else "cpu"})


def embed_gallery_with_ray(
    gallery: str | Path,
    out_dir: str | Path,
    arch: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
    batch_size: int = 64,
    concurrency: int | None = None,
    num_gpus_per_worker: float | None = None,
    address: str | None = None,
    shard_rows: int = SHARD_ROWS,
    extensions: Sequence[str] = IndexConfig().extensions,
) -> Path:
    """Embed every photo of ``gallery`` (a folder every node sees at the same path, or a URI such as
    ``s3://bucket/photos``) with Ray Data; write shards + ``shards.json`` into ``out_dir`` and return it.

    Uses the Ray instance already initialised in this process; else connects to ``address`` (e.g.
    ``auto`` or ``ray://head:10001``), else starts a private one on this machine. One model per actor:
    ``num_gpus_per_worker`` (default: 1 when the cluster has GPUs, else 0 = CPU), ``concurrency`` actors
    (default: one per GPU; on CPUs, half the cores). Unusable files are logged and listed in
    ``shards.json`` as the index lists them. The driver loads the model once on CPU, for the identity
    the shards record; each worker checks that its own model has that identity.
    """
    from sketchlvm.model.loader import load_model

    if batch_size < 1 or shard_rows < 1:
        raise ValueError(f"batch_size and shard_rows must be >= 1, got {batch_size} and {shard_rows}")
    t0 = time.perf_counter()
    out = Path(out_dir).expanduser().resolve()
    _check_out(out)  # before anything slow
    where, entries, problems = list_photos(gallery if _is_uri(gallery) else Path(gallery), extensions, exclude=[out])
    skipped = [{"relpath": r, "reason": why, "size": None, "mtime_ns": None, "kind": UNREADABLE} for r, why in problems]
    for s in skipped:
        log.warning("skipping %s: %s", s["relpath"], s["reason"])
    pretrained, checkpoint = _absolute_if_local(pretrained), _absolute_if_local(checkpoint)
    model = load_model(arch, pretrained, checkpoint, "cpu", exports=False)
    identities, mode_key = model_embeddings(model)
    keys = list(dict.fromkeys(mode_key.values()))
    _prepare_out(out)
    writer = _ShardWriter(out, keys, shard_rows)

    started = "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    if started:
        _start_ray(address)
    try:
        workers, gpus = _plan_workers(concurrency, num_gpus_per_worker)
        log.info("embedding %d photos of %s with %d %s worker(s), batches of %d", len(entries), where.root, workers,
                 f"{gpus:g}-GPU" if gpus else "CPU", batch_size)
        model_args = {"arch": arch, "pretrained": pretrained, "checkpoint": checkpoint, "identities": identities}
        rows = _pipeline(entries, where, model, model_args, batch_size, workers, gpus) if entries else None
        try:
            for batch in rows.iter_batches(batch_size=None, batch_format="numpy") if rows is not None else ():
                ok = batch["status"] == OK
                for i, state, reason in zip(batch["idx"][~ok], batch["status"][~ok], batch["reason"][~ok], strict=True):
                    e = entries[int(i)]
                    log.warning("skipping %s: %s", e.relpath, reason)
                    skipped.append({"relpath": e.relpath, "reason": str(reason), "size": e.size,
                                    "mtime_ns": e.mtime_ns, "kind": str(state)})
                if ok.any():
                    writer.add([entries[int(i)] for i in batch["idx"][ok]], batch["vectors"][ok])
        except Exception as error:
            failure = _worker_failure(error)
            if failure is error:
                raise
            raise failure from error
        writer.flush()
    finally:
        if started:
            sys.modules["ray"].shutdown()

    dim = writer.dim or int(model.encoders[model.modes[0]].visual.output_dim)
    encoded_by = {k: next(m for m in model.modes if mode_key[m] == k) for k in keys}
    manifest = {
        "format": SHARDS_FORMAT,
        "version": SHARDS_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": where.root,
        "count": sum(s["rows"] for s in writer.shards),
        "dim": dim,
        "modes": {m: {"identity": identities[m], "embedding": mode_key[m]} for m in model.modes},
        "embeddings": {k: {"identity": shared_identity(identities[encoded_by[k]]), "dim": dim} for k in keys},
        "max_image_pixels": model.preprocess.max_image_pixels,
        "shards": writer.shards,
        "skipped": sorted(skipped, key=lambda s: s["relpath"]),
        "ray": {"workers": workers, "gpus_per_worker": gpus, "batch_size": batch_size},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_text(out / SHARDS_MANIFEST, json.dumps(manifest, indent=1))
    log.info("embedded %d photos of %s into %d shard(s) in %s (%d skipped) in %.1f s", manifest["count"], where.root,
             len(writer.shards), out, len(skipped), manifest["seconds"])
    return out


# ---------------------------------------------------------------------------------------------
# Merging into the gallery index


def load_shards(shards_dir: str | Path) -> dict:
    """The ``shards.json`` of a shard folder, checked."""
    path = Path(shards_dir).expanduser() / SHARDS_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no finished shard set in {str(shards_dir)!r} (no {SHARDS_MANIFEST}); "
                                "embed one with: python -m sketchlvm cluster embed DIR --out SHARDS")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        ok = manifest.get("format") == SHARDS_FORMAT and manifest.get("version") == SHARDS_VERSION
        ok = ok and all(k in manifest for k in ("modes", "embeddings", "shards", "skipped", "dim"))
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"cannot read {path}: {e}; embed the gallery again") from e
    if not ok:
        raise ValueError(f"{path} is not a SketchLVM shard manifest (format {SHARDS_FORMAT} v{SHARDS_VERSION}); "
                         "embed the gallery again with: python -m sketchlvm cluster embed DIR --out SHARDS")
    return manifest


def check_shards_model(manifest: dict, model: SketchLVM, shards_dir: str | Path) -> None:
    """Raise ``ShardIdentityError`` unless the shards hold every mode of ``model`` under its identity."""
    identities, _ = model_embeddings(model)
    fix = ("merge with the model they were embedded with (the same --model/--pretrained/--checkpoint as "
           f"`embed`), or embed again with this one: python -m sketchlvm cluster embed {manifest.get('source', 'DIR')} "
           f"--out {shards_dir} [model flags]")
    for mode, want in identities.items():
        have = manifest["modes"].get(mode, {}).get("identity")
        if have != want:
            raise ShardIdentityError(f"the shards in {shards_dir} were embedded with another model for mode "
                                     f"{mode!r} ({_identity_diff(have, want)}); {fix}")


class ShardVectors:
    """The ``Precomputed`` hook of ``build_gallery_index`` over a shard folder (memory-mapped).

    ``(relpath, size, mtime_ns)`` -> {key: (D,) vector} when the shards hold that version of the file, its
    reason when the cluster found it unusable, else None. Counts what it gave (``taken``) and the shard
    rows whose file has changed since (``stale``).
    """

    def __init__(self, shards_dir: str | Path, manifest: dict, keys: Sequence[str], import_failures: bool = True):
        folder = Path(shards_dir).expanduser()
        self.where: dict[str, tuple[int, int, int, int]] = {}  # relpath -> (size, mtime_ns, shard, row)
        self.arrays: list[dict[str, np.ndarray]] = []
        for s, shard in enumerate(manifest["shards"]):
            try:
                cols = json.loads((folder / f"{shard['name']}.json").read_text(encoding="utf-8"))
                arrays = {k: np.load(folder / f"{shard['name']}-{k}.npy", mmap_mode="r") for k in keys}
            except (OSError, ValueError) as e:
                raise ValueError(f"shard {shard['name']} in {folder} is unreadable ({e}); embed the gallery "
                                 "again") from e
            for key, arr in arrays.items():
                if arr.dtype != np.float32 or arr.shape != (shard["rows"], manifest["dim"]) \
                        or len(cols["relpath"]) != shard["rows"]:
                    raise ValueError(f"shard {shard['name']}-{key}.npy in {folder} has shape {arr.shape} {arr.dtype}, "
                                     f"expected ({shard['rows']}, {manifest['dim']}) float32; embed the gallery again")
            self.arrays.append(arrays)
            for row, (relpath, size, mtime) in enumerate(zip(cols["relpath"], cols["size"], cols["mtime_ns"],
                                                             strict=True)):
                self.where[relpath] = (size, mtime, s, row)
        self.failed = {f["relpath"]: (f["size"], f["mtime_ns"], f["reason"]) for f in manifest["skipped"]
                       if import_failures and f.get("kind") == UNUSABLE}
        self.taken = self.stale = 0

    def __call__(self, relpath: str, size: int, mtime_ns: int) -> dict[str, np.ndarray] | str | None:
        hit = self.where.get(relpath)
        if hit is not None:
            if hit[:2] == (size, mtime_ns):
                self.taken += 1
                return {key: arr[hit[3]] for key, arr in self.arrays[hit[2]].items()}
            self.stale += 1
            return None
        bad = self.failed.get(relpath)
        return bad[2] if bad is not None and bad[:2] == (size, mtime_ns) else None

    def __len__(self) -> int:
        return len(self.where)


def import_ray_shards(
    gallery_dir: str | Path,
    shards_dir: str | Path,
    model: SketchLVM,
    cache_dir: str | Path | None = None,
    config: IndexConfig | None = None,
    show_progress_bar: bool = True,
) -> GalleryIndex:
    """Build (or update) the gallery index of the local folder ``gallery_dir`` from shards.

    Photos whose relpath, size and mtime match a shard row take its vectors; the rest (new or changed
    since, or never embedded) are embedded here by the ordinary incremental build. Raises
    ``ShardIdentityError`` when the shards come from another model identity than ``model``.
    """
    manifest = load_shards(shards_dir)
    check_shards_model(manifest, model, shards_dir)
    _, mode_key = model_embeddings(model)
    same_limit = manifest.get("max_image_pixels") == model.preprocess.max_image_pixels  # else retry failures
    vectors = ShardVectors(shards_dir, manifest, list(dict.fromkeys(mode_key.values())), import_failures=same_limit)
    index = build_gallery_index(gallery_dir, model, cache_dir, config, show_progress_bar=show_progress_bar,
                                precomputed=vectors)
    if vectors.stale:
        log.warning("%d photos changed since they were embedded on the cluster (or were copied without their "
                    "mtimes): embedded them here", vectors.stale)
    log.info("merged %s: %d photos from the shards, %d of %d shard rows used", shards_dir, vectors.taken,
             vectors.taken, len(vectors))
    return index

