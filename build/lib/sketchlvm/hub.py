"""``hf://`` paths: checkpoints and galleries from the Hugging Face Hub, through its cache.

A trained checkpoint or a demo gallery does not belong in a Space's git repository (nothing over
10 MB there). So wherever the app and the CLIs take a checkpoint file or a gallery folder they also
take a Hub path, in huggingface_hub's own URI syntax (``huggingface_hub.parse_hf_uri``)::

    hf://USER/REPO/FILE.safetensors              a file of a model repository (hf_hub_download)
    hf://datasets/USER/REPO[/SUBDIR]             a dataset repository, or one folder of it (snapshot_download)
    hf://...USER/REPO@REVISION/...               pinned to a branch, tag or commit

Files land in the Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``, default
``~/.cache/huggingface/hub``) and are used from there offline (``HF_HUB_OFFLINE=1``, or when the Hub
cannot be reached). When a file is neither cached nor downloadable, :class:`HubUnavailableError` names
the repository, what was missing and the fix. Downloads are announced in the log, never silent.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path

log = logging.getLogger(__name__)

HF_SCHEME = "hf://"
HUB_HOST = ("huggingface.co", 443)


class HubUnavailableError(RuntimeError):
    """An ``hf://`` path could not be had from the cache or the Hub; the message names the repo and the fix."""


def is_hub_path(value: object) -> bool:
    return isinstance(value, str) and value.strip().startswith(HF_SCHEME)


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it (at its import; the environment as a fallback)."""
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe: without it, huggingface_hub waits out DNS and HTTP timeouts before using its cache."""
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def hub_cache_dir(cache_dir: str | Path | None = None) -> str:
    if cache_dir:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def resolve_file(spec: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local file path as it is; an ``hf://`` file path -> its file in the Hugging Face cache."""
    if not is_hub_path(spec):
        return Path(spec).expanduser()
    uri = _parse(str(spec).strip(), "hf://USER/REPO/FILE.safetensors")
    if not uri.path_in_repo:
        raise ValueError(f"{spec!r} names a repository, not a file; give the file too: hf://{uri.id}/FILE.safetensors")
    from huggingface_hub import hf_hub_download

    local_only = _local_only()
    if not local_only:
        log.info("Fetching %s from the Hugging Face Hub (once; then from the cache)", spec)
    try:
        path = hf_hub_download(uri.id, uri.path_in_repo, repo_type=uri.type, revision=uri.revision,
                               cache_dir=cache_dir, local_files_only=local_only)
    except Exception as error:  # huggingface_hub raises a dozen types; each becomes one clear message
        raise HubUnavailableError(_explain(error, str(spec), uri, cache_dir, local_only, folder=False)) from error
    log.info("%s -> %s", spec, path)
    return Path(path)


def resolve_folder(spec: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local folder path as it is; an ``hf://`` repository or folder path -> its snapshot folder in the
    Hugging Face cache (only ``SUBDIR`` is downloaded when one is given)."""
    if not is_hub_path(spec):
        return Path(spec).expanduser()
    uri = _parse(str(spec).strip(), "hf://datasets/USER/REPO[/SUBDIR]")
    from huggingface_hub import snapshot_download

    subdir = uri.path_in_repo.strip("/")
    local_only = _local_only()
    if not local_only:
        log.info("Fetching %s from the Hugging Face Hub (only what changed; then from the cache)", spec)
    try:
        snapshot = snapshot_download(uri.id, repo_type=uri.type, revision=uri.revision, cache_dir=cache_dir,
                                     allow_patterns=[f"{subdir}/**"] if subdir else None,
                                     local_files_only=local_only)
    except Exception as error:  # noqa: BLE001 - see resolve_file
        raise HubUnavailableError(_explain(error, str(spec), uri, cache_dir, local_only, folder=True)) from error
    folder = Path(snapshot) / subdir if subdir else Path(snapshot)
    if not folder.is_dir():
        raise HubUnavailableError(f"{spec}: the {uri.type} repository {uri.id} has no folder {subdir!r} "
                                  f"(its files are in {snapshot}); check the path after the repository name")
    log.info("%s -> %s", spec, folder)
    return folder


def serving_root(folder: str | Path) -> Path:
    """The folder a web server must allow to serve the photos under ``folder``.

    In the Hugging Face cache a snapshot's files are symlinks into the repository's ``blobs/``, and
    servers that resolve symlinks (Gradio's ``allowed_paths`` does) would refuse them: for a folder
    inside ``<type>s--USER--REPO/snapshots/<commit>/`` this is ``<type>s--USER--REPO``. Any other
    folder is its own serving root."""
    folder = Path(folder).expanduser().absolute()
    for parent in folder.parents:
        if parent.name == "snapshots" and re.match(r"^(models|datasets|spaces)--.+--.+$", parent.parent.name):
            return parent.parent
    return folder


def _parse(spec: str, expected: str):
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    try:
        uri = parse_hf_uri(spec)
    except (HfUriError, ValueError) as error:
        raise ValueError(f"{spec!r} is not a valid Hugging Face path ({error}); expected {expected}") from error
    if not uri.is_repo:
        raise ValueError(f"{spec!r} is a {uri.type}, not a repository; expected {expected}")
    return uri


def _local_only() -> bool:
    """Use only the cache when offline is asked for, or when the Hub is out of reach (fail in ms, not minutes)."""
    return hub_offline() or not hub_reachable()


def _explain(error: Exception, spec: str, uri, cache_dir: str | Path | None, local_only: bool, folder: bool) -> str:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo = f"{uri.type} repository {uri.id}" + (f" at revision {uri.revision!r}" if uri.revision else "")
    path = uri.path_in_repo.strip("/")
    what = (f"folder {path!r}" if folder else f"file {path!r}") if path else "its files"
    download = (f"hf download {uri.id}" + ((f" --include '{path}/**'" if folder else f" {path}") if path else "")
                + (f" --repo-type {uri.type}" if uri.type != "model" else "")
                + (f" --revision {uri.revision}" if uri.revision else ""))
    if isinstance(error, GatedRepoError):
        return (f"{spec}: the {repo} is gated: accept its terms on huggingface.co/{uri.id} and log in "
                "(`hf auth login`, or set HF_TOKEN)")
    if isinstance(error, RepositoryNotFoundError):
        return (f"{spec}: no {repo} on the Hugging Face Hub, or it is private: check the name, or log in "
                "(`hf auth login`, or set HF_TOKEN)")
    if isinstance(error, RevisionNotFoundError):
        return f"{spec}: the {repo} has no such revision; check the part after '@'"
    if isinstance(error, (LocalEntryNotFoundError, IncompleteSnapshotError)) or local_only:
        reason = ("HF_HUB_OFFLINE is set" if hub_offline()
                  else f"{HUB_HOST[0]} cannot be reached" if local_only else f"the download failed ({error})")
        return (f"{spec}: {what} of the {repo} is not in the Hugging Face cache ({hub_cache_dir(cache_dir)}) and "
                f"cannot be downloaded: {reason}. To fix: run once with internet access (without HF_HUB_OFFLINE) "
                f"so it is cached, or on a connected machine run `{download}` and copy the cache folder "
                "(HF_HOME) here, or pass a local path instead")
    if isinstance(error, EntryNotFoundError):
        return f"{spec}: the {repo} has no file {uri.path_in_repo!r}; check the path after the repository name"
    if isinstance(error, HfHubHTTPError):
        return f"{spec}: the Hugging Face Hub refused the download of {what} of the {repo}: {error}"
    return f"{spec}: could not fetch {what} of the {repo}: {type(error).__name__}: {error}"
