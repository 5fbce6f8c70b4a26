"""Image datasets stored as parquet (the Hub's layout) -> a folder of photo files the index build reads.

Most image datasets on the Hub are parquet files with an ``image`` column of ``{bytes, path}`` and a
class-label column whose names are in the dataset's features (the ``huggingface`` key of the parquet
schema metadata, or the card's ``dataset_info``). Rather than teach every step of the index (scan,
build, thumbnails, served originals, the folder watcher) a second kind of photo, each wanted row is
written once as a file into a folder of the app's own, ``<label>/<parquet stem>-<row>-<hash>.<ext>``,
and that folder is indexed like any other. So a row's identity is stable across restarts (file, row and
content hash in its name; the file is never rewritten, so its size and mtime stay), and the originals
are served from the app's folder as other photos are.

A parquet file whose size and mtime are those of the last extraction, with the same filters, is not
read again (``.sketchlvm-parquet.json`` in the output folder records them). Rows the filters no longer
want, and rows of a parquet file that is gone, are deleted, so the next build drops them.

pyarrow reads the files (imported here only: a folder of loose photos never needs it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sketchlvm.gallery.scan import default_cache_dir

log = logging.getLogger(__name__)

STATE_FILE = ".sketchlvm-parquet.json"  # hidden: the gallery scan leaves it out
STATE_VERSION = 1
MAX_ROW_BYTES = 64 * 1024 * 1024  # one encoded image; a larger cell is skipped, not written
IMAGE_COLUMNS = ("image", "img", "photo", "picture")
LABEL_COLUMNS = ("label", "labels", "category", "class", "fine_label", "coarse_label")
SPLIT_NAMES = ("train", "validation", "valid", "val", "test", "dev")

# Magic bytes -> the extension the gallery scan knows that format by.
_SIGNATURES = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"GIF87a", ".gif"), (b"GIF89a", ".gif"),
               (b"BM", ".bmp"))
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


@dataclass
class ExtractReport:
    """What one extraction did: rows written now, kept from before, files read, skipped rows."""

    written: int = 0
    kept: int = 0
    removed: int = 0
    files_read: list[str] = field(default_factory=list)
    files_unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file:row, reason)
    labels: set[str] = field(default_factory=set)


def parquet_files(folder: str | Path) -> list[Path]:
    """The parquet files under ``folder`` (hidden files and folders left out), sorted by relative path."""
    folder = Path(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath, n) for n in filenames if n.endswith(".parquet") and not n.startswith(".")]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def is_parquet_gallery(folder: str | Path) -> bool:
    """A folder that holds parquet files (what ``hf download`` leaves of an image dataset)."""
    folder = Path(folder)
    return folder.is_dir() and bool(parquet_files(folder))


def split_of(relpath: str) -> str:
    """The split a parquet file belongs to, by the Hub's naming: ``data/train-00000-of-00001.parquet``,
    ``default/train/0000.parquet``, ``test.parquet``."""
    parts = relpath.split("/")
    stem = parts[-1][: -len(".parquet")]
    for part in reversed(parts[:-1]):
        if part.lower() in SPLIT_NAMES:
            return part.lower()
    return re.split(r"[-_.]", stem, maxsplit=1)[0].lower() or stem


def photos_dir(source: str | Path, galleries_dir: str | Path | None = None) -> Path:
    """Where the rows of the parquet gallery ``source`` are written: beside its index cache."""
    cache = default_cache_dir(Path(source), Path(galleries_dir) if galleries_dir else None)
    return cache.with_name(cache.name + "-rows")


def parse_classes(text: str | Iterable[str] | None) -> frozenset[str] | None:
    """``cup,chair , umbrella`` -> {"cup", "chair", "umbrella"}; None or empty -> None (every class)."""
    if text is None:
        return None
    names = text.split(",") if isinstance(text, str) else list(text)
    wanted = frozenset(n.strip() for n in names if n and n.strip())
    return wanted or None


# ---------------------------------------------------------------------------------------------
# Columns and label names


def _features(schema) -> dict:
    """The datasets library's features from the parquet schema metadata, or {}."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    try:
        info = json.loads(raw)
    except ValueError:
        return {}
    features = (info.get("info") or {}).get("features") or {}
    return features if isinstance(features, dict) else {}


def card_label_names(folder: Path) -> dict[str, list[str]]:
    """column -> class names from the dataset card's ``dataset_info`` (README.md in ``folder`` or the two
    folders above it: a download of one folder of a repository leaves the card at its root)."""
    import yaml

    for place in (folder, folder.parent, folder.parent.parent):
        card = place / "README.md"
        if not card.is_file():
            continue
        text = card.read_text(encoding="utf-8", errors="replace")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
        if not match:
            return {}
        try:
            meta = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as error:
            log.warning("cannot read the dataset card %s: %s", card, error)
            return {}
        infos = meta.get("dataset_info") or []
        names: dict[str, list[str]] = {}
        for info in infos if isinstance(infos, list) else [infos]:
            for feature in (info or {}).get("features") or []:
                dtype = feature.get("dtype") if isinstance(feature, dict) else None
                labels = dtype.get("class_label", {}).get("names") if isinstance(dtype, dict) else None
                if isinstance(labels, dict):
                    order = sorted(labels, key=lambda k: int(k))
                    names.setdefault(feature["name"], [str(labels[k]) for k in order])
                elif isinstance(labels, list):
                    names.setdefault(feature["name"], [str(n) for n in labels])
        return names
    return {}


def _columns(schema, card_names: dict[str, list[str]]) -> tuple[str | None, str | None, list[str] | None]:
    """(image column, label column, its class names or None for a string column) of a parquet schema."""
    import pyarrow as pa

    features = _features(schema)
    image = next((n for n, f in features.items() if isinstance(f, dict) and f.get("_type") == "Image"), None)
    if image is None:
        for name in schema.names:
            t = schema.field(name).type
            if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0 and (
                    name.lower() in IMAGE_COLUMNS or image is None):
                image = name
    label, names = None, None
    for name, f in features.items():
        if isinstance(f, dict) and f.get("_type") == "ClassLabel" and name in schema.names:
            label, names = name, [str(n) for n in f.get("names") or []]
            break
    if label is None:
        for name in schema.names:
            if name.lower() not in LABEL_COLUMNS:
                continue
            t = schema.field(name).type
            if pa.types.is_integer(t) and name in card_names:
                label, names = name, card_names[name]
                break
            if pa.types.is_string(t) or pa.types.is_large_string(t):
                label, names = name, None
                break
    return image, label, names


def _label_text(value, names: list[str] | None) -> str | None:
    if value is None:
        return None
    if names is None:
        return str(value)
    i = int(value)
    return names[i] if 0 <= i < len(names) else str(i)


def _safe(label: str) -> str:
    """A label as one folder name: no separators, no leading dot."""
    name = re.sub(r"[\\/\x00-\x1f]+", "_", label).strip().lstrip(".")
    return name[:100] or "_"


def _extension(data: bytes, path: str | None) -> str | None:
    for magic, ext in _SIGNATURES:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return ".avif"
        if brand in _HEIF_BRANDS:
            return ".heic"
    suffix = Path(path or "").suffix.lower()
    return suffix or None


# ---------------------------------------------------------------------------------------------
# Extraction


def _read_state(out: Path) -> dict:
    try:
        state = json.loads((out / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) and state.get("version") == STATE_VERSION else {}


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _extract_file(path: Path, relpath: str, out: Path, classes: frozenset[str] | None,
                  card_names: dict[str, list[str]], report: ExtractReport) -> list[str]:
    """Write the wanted rows of one parquet file; the relpaths (under ``out``) of its photos."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    image_col, label_col, names = _columns(pf.schema_arrow, card_names)
    if image_col is None:
        report.skipped.append((relpath, "no image column (a struct with 'bytes')"))
        return []
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", relpath[: -len(".parquet")])
    outputs: list[str] = []
    row = 0
    for group in range(pf.num_row_groups):
        n = pf.metadata.row_group(group).num_rows
        labels = ([None] * n if label_col is None
                  else [_label_text(v, names) for v in pf.read_row_group(group, columns=[label_col])
                        .column(label_col).to_pylist()])
        wanted = [i for i, lab in enumerate(labels) if classes is None or lab in classes]
        if wanted:
            images = pf.read_row_group(group, columns=[image_col]).column(image_col).take(wanted).to_pylist()
            for i, cell in zip(wanted, images):
                name = f"{relpath}:{row + i}"
                data = cell.get("bytes") if isinstance(cell, dict) else cell if isinstance(cell, bytes) else None
                if not data:
                    report.skipped.append((name, "no image bytes (a path-only image cell)"))
                    continue
                if len(data) > MAX_ROW_BYTES:
                    report.skipped.append((name, f"{len(data):,} bytes is over {MAX_ROW_BYTES:,}"))
                    continue
                ext = _extension(data, cell.get("path") if isinstance(cell, dict) else None)
                if ext is None:
                    report.skipped.append((name, "not a recognised image format"))
                    continue
                digest = hashlib.sha256(data).hexdigest()[:12]
                label = labels[i]
                folder = _safe(label) + "/" if label is not None else ""
                target = f"{folder}{stem.replace('/', '_')}-{row + i:06d}-{digest}{ext}"
                file = out / target
                if file.is_file() and file.stat().st_size == len(data):
                    report.kept += 1
                else:
                    _write_atomic(file, data)
                    report.written += 1
                if label is not None:
                    report.labels.add(label)
                outputs.append(target)
        row += n
    return outputs


def extract_parquet_gallery(source: str | Path, out: str | Path, split: str | None = None,
                            classes: frozenset[str] | None = None) -> ExtractReport:
    """Write the rows of the parquet files under ``source`` (of ``split``, of ``classes``) into ``out``.

    Unchanged parquet files (size, mtime, filters as last time, every photo still there) are not read.
    Files in ``out`` that no wanted row names any more are deleted. Raises ``ValueError`` when nothing
    in ``source`` is a parquet file of that split, and ``ImportError`` (with the fix) without pyarrow."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError as error:
        raise ImportError("reading a parquet gallery needs pyarrow: pip install pyarrow") from error
    source, out = Path(source), Path(out)
    files = parquet_files(source)
    splits = sorted({split_of(p.relative_to(source).as_posix()) for p in files})
    if split:
        files = [p for p in files if split_of(p.relative_to(source).as_posix()) == split.lower()]
    if not files:
        raise ValueError(f"no parquet files of split {split!r} under {source} (its splits: {', '.join(splits) or 'none'})"
                         if split else f"no parquet files under {source}")
    out.mkdir(parents=True, exist_ok=True)
    filters = {"split": split, "classes": sorted(classes) if classes else None}
    old = _read_state(out)
    old_files = old.get("files", {}) if old.get("filters") == filters else {}
    card_names = card_label_names(source)
    report = ExtractReport()
    done: dict[str, dict] = {}
    for path in files:
        relpath = path.relative_to(source).as_posix()
        st = path.stat()
        prev = old_files.get(relpath)
        if (prev and (prev["size"], prev["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
                and all((out / o).is_file() for o in prev["outputs"])):
            done[relpath] = prev
            report.files_unchanged.append(relpath)
            report.kept += len(prev["outputs"])
            report.labels.update(o.split("/")[0] for o in prev["outputs"] if "/" in o)
            continue
        try:
            outputs = _extract_file(path, relpath, out, classes, card_names, report)
        except (OSError, ValueError) as error:  # pyarrow's errors are both: one bad file is skipped
            report.skipped.append((relpath, f"cannot read parquet: {error}"))
            continue
        report.files_read.append(relpath)
        done[relpath] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "outputs": outputs}
    report.removed = _remove_others(out, {o for d in done.values() for o in d["outputs"]})
    _write_atomic(out / STATE_FILE, json.dumps({"version": STATE_VERSION, "source": str(source),
                                                "filters": filters, "files": done}).encode())
    if classes:
        missing = sorted(classes - report.labels)
        if missing:
            log.warning("%s: no rows of class(es) %s", source, ", ".join(missing))
    for where, why in report.skipped[:20]:
        log.warning("parquet gallery %s: skipping %s: %s", source, where, why)
    log.info("parquet gallery %s -> %s: %d photos (%d written now), %d parquet files read, %d unchanged",
             source, out, report.written + report.kept, report.written, len(report.files_read),
             len(report.files_unchanged))
    return report


def _remove_others(out: Path, keep: set[str]) -> int:
    removed = 0
    for dirpath, dirnames, filenames in os.walk(out):
        for name in filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(out).as_posix()
            if rel == STATE_FILE or rel in keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    for dirpath, _, _ in sorted(os.walk(out), key=lambda w: -len(w[0])):
        if Path(dirpath) != out:
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)  # only empty ones go
    return removed


def photo_folder(folder: str | Path, split: str | None = None, classes: frozenset[str] | None = None,
                 galleries_dir: str | Path | None = None) -> Path:
    """The folder of photos to index for the gallery ``folder``: itself, or for a folder of parquet files the
    folder its rows are written to (``photos_dir``). Filters on a folder of loose photos are refused."""
    folder = Path(folder)
    if not is_parquet_gallery(folder):
        if split or classes:
            raise ValueError(f"--gallery-split and --gallery-classes choose rows of a parquet dataset; {folder} "
                             "holds no parquet files (for a folder of photos, point --gallery at a subfolder)")
        return folder
    out = photos_dir(folder, galleries_dir)
    extract_parquet_gallery(folder, out, split, classes)
    return out
