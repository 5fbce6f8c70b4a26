"""Loading CLIP honestly: real weights by default, a loud error when they cannot be had.

A failed load must never leave random weights behind silently (open_clip only logs a warning unless
``require_pretrained=True``). Random initialisation happens only when ``pretrained="none"`` is asked
for, and then every surface says "random weights".
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

from sketchlvm.config import PACKAGE_DIR
from sketchlvm.model.errors import WeightsUnavailableError  # noqa: F401  (defined without torch, raised here)

log = logging.getLogger(__name__)

RANDOM_WEIGHTS = "none"
RANDOM_WEIGHTS_LABEL = "random weights — for testing only"
# Random weights are seeded so that a test gallery's index stays valid across restarts.
RANDOM_WEIGHTS_SEED = 0
_HUB_HOST = ("huggingface.co", 443)

_configs_registered = False


def register_model_configs() -> None:
    """Make the project's own open_clip configs (e.g. the tiny test tower) known to open_clip."""
    global _configs_registered
    if not _configs_registered:
        open_clip.add_model_config(PACKAGE_DIR / "model_configs")
        _configs_registered = True


@dataclass(frozen=True)
class WeightsSource:
    """What ``pretrained`` resolved to: an open_clip tag, a local file, a local folder, or random."""

    kind: str  # "tag" | "file" | "folder" | "random"
    value: str

    @property
    def label(self) -> str:
        if self.kind == "random":
            return RANDOM_WEIGHTS_LABEL
        if self.kind == "tag":
            return f"pretrained '{self.value}'"
        return f"pretrained from {self.value}"

    def identity(self) -> dict:
        """A stable description for manifests: tags by name, local files by path, size and mtime."""
        ident = {"kind": self.kind, "value": self.value}
        if self.kind in ("file", "folder"):
            path = Path(self.value)
            stat_target = path if path.is_file() else next(iter(sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))), path)
            st = stat_target.stat()
            ident.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        return ident


def resolve_weights_source(pretrained: str | None) -> WeightsSource:
    if pretrained is None or str(pretrained).strip().lower() in ("", RANDOM_WEIGHTS, "random"):
        return WeightsSource("random", RANDOM_WEIGHTS)
    text = str(pretrained)
    if text.startswith("local-dir:"):
        return WeightsSource("folder", str(Path(text[len("local-dir:"):]).expanduser().resolve()))
    path = Path(text).expanduser()
    if path.is_dir():
        return WeightsSource("folder", str(path.resolve()))
    if path.is_file():
        return WeightsSource("file", str(path.resolve()))
    if os.sep in text or text.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise WeightsUnavailableError(f"weights file or folder {text!r} does not exist")
    return WeightsSource("tag", text)


def _hub_cached(arch: str, tag: str) -> bool:
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    hub = cfg.get("hf_hub", "")
    if not hub:
        return False
    from huggingface_hub import try_to_load_from_cache

    model_id, filename = os.path.split(hub)
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(model_id, n), str) for n in names)


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(_HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _how_to_fix(arch: str, tag: str) -> str:
    return (
        f"To provide them: run once with internet access so open_clip caches them "
        f"(open_clip.create_model({arch!r}, pretrained={tag!r})), or pass a local weights file "
        f"(--pretrained /path/to/open_clip_model.safetensors) or an open_clip folder "
        f"(--pretrained local-dir:/path/to/folder). For tests only, --pretrained none builds random weights."
    )


def load_clip(arch: str, pretrained: str | None, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, WeightsSource]:
    """Create an open_clip model with the requested weights, or raise WeightsUnavailableError fast."""
    register_model_configs()
    source = resolve_weights_source(pretrained)
    if arch not in open_clip.list_models() and source.kind != "folder":
        raise ValueError(f"unknown model {arch!r}; available include: ViT-B-32-quickgelu, SketchLVM-Tiny, "
                         f"and {len(open_clip.list_models())} open_clip configs (open_clip.list_models())")

    if source.kind == "random":
        log.warning("Building %s with RANDOM WEIGHTS (pretrained='none'): %s.", arch, RANDOM_WEIGHTS_LABEL)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = open_clip.create_model(arch, pretrained=None, device=device)
        return model.eval(), source

    if source.kind == "tag":
        known_tags = [t for a, t in open_clip.list_pretrained() if a == arch]
        if not known_tags:  # a test architecture (SketchLVM-Tiny) or an untrained config: no download exists
            raise WeightsUnavailableError(
                f"open_clip has no pretrained weights at all for {arch!r}, so {source.value!r} cannot be loaded: "
                "pass a weights file or folder trained for it (--pretrained FILE|FOLDER), or, for tests only, "
                "--pretrained none for random weights"
            )
        if source.value not in known_tags:
            raise WeightsUnavailableError(
                f"open_clip has no pretrained tag {source.value!r} for {arch!r}; known tags: {known_tags}. "
                + _how_to_fix(arch, known_tags[0])
            )
        if not _hub_cached(arch, source.value):
            reason = None
            if _offline():
                reason = "HF_HUB_OFFLINE is set"
            elif not _hub_reachable():
                reason = f"{_HUB_HOST[0]} cannot be reached"
            if reason:
                cfg = open_clip.get_pretrained_cfg(arch, source.value)
                raise WeightsUnavailableError(
                    f"CLIP weights {arch} / {source.value!r} are not in the local cache "
                    f"(looked for Hugging Face repo {cfg.get('hf_hub', '?').rstrip('/')!r} in "
                    f"{os.environ.get('HF_HUB_CACHE') or os.environ.get('HF_HOME') or '~/.cache/huggingface'}) "
                    f"and cannot be downloaded: {reason}. " + _how_to_fix(arch, source.value)
                )
            log.info("Downloading CLIP weights %s / %s through open_clip (first use only).", arch, source.value)

    try:
        if source.kind == "folder":
            model = open_clip.create_model(f"local-dir:{source.value}", device=device, require_pretrained=True)
        else:
            model = open_clip.create_model(arch, pretrained=source.value, device=device, require_pretrained=True)
    except Exception as error:  # open_clip raises several types; all mean "no real weights"
        raise WeightsUnavailableError(
            f"could not load CLIP weights {arch} from {source.label}: {error}. " + _how_to_fix(arch, "openai")
        ) from error
    return model.eval(), source
