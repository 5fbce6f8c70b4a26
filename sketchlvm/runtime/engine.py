"""Which engine runs the prompted encoder: torch, or ONNX Runtime (fp32, or int8 on the sketch side).

On a CPU the encoder is nearly the whole cost of a query, and ONNX Runtime runs the same graph in about
half torch's time (docs/cpu-inference.md). ``SketchLVM`` encodes through a :class:`Runtime` and knows nothing
else: this module picks, per (mode, modality), an exported graph that agreed with torch on real images,
or torch itself, and remembers why.

Choice (``--runtime``, else the runtime setting): ``auto`` = ONNX Runtime fp32 on CPU when it is installed,
torch on CUDA; ``torch``; ``onnx`` (fp32, exact within ``RuntimeConfig`` tolerances); ``onnx-int8``
(dynamic int8 for sketches only, used only once its rankings agree with fp32, see ``quantize.py``).
Whatever fails (onnxruntime missing, an export error, a graph that disagrees with torch) falls back to
torch for what it affects, logged with the reason, and ``describe()`` says so.

CLIP's text tower (models with ``text=True``) follows the image side: under ``onnx`` and ``onnx-int8``
it runs an fp32 text graph (never int8) once that graph reproduces torch on real prompts, else torch,
with the reason in ``text_reason`` and at the end of ``describe()``.

Threads: query sessions (sketch graphs, batch 1) and index sessions (photo graphs, slices of 8) use
every core, without busy-waiting by default: the app's concurrent searches and Gradio's threads, or the
index build's photo-decoding threads, get the CPU while an operator waits (``session_options``,
``RuntimeConfig.query_spinning``). Since each query run uses every core, query encodes take turns,
on ONNX Runtime and on torch alike (``RuntimeConfig.serial_queries``): two at once would only
oversubscribe the cores, and the app lets several searches in at once so that re-ranks and
pre/post-processing need not wait behind an encode (``webapp.page.SEARCH_CONCURRENCY``). Index runs
do not wait for them, nor they for index runs (a search during indexing is not held up by a photo
slice).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sketchlvm.config import MODALITIES, PACKAGE_DIR, RuntimeConfig
from sketchlvm.device import autocast
from sketchlvm.runtime.interface import PHOTOS_NEEDED
from sketchlvm.runtime.onnx_export import (
    Agreement,
    GraphRefusedError,
    GraphSpec,
    agreement,
    default_cache_dir,
    ensure_graph,
    ensure_int8_graph,
    graph_spec,
    text_graph_spec,
)
from sketchlvm.runtime.onnx_sessions import (  # noqa: F401  (re-exported: their old home)
    ORT_MISSING,
    RUNTIME_ENV,
    RUNTIMES,
    Int8RefusedError,
    OnnxSessions,
    cpu_threads,
    in_slices,
    onnxruntime_or_reason,
    requested_runtime,
    role_of,
    session_options,
    trim_heap,
)

log = logging.getLogger(__name__)

EXAMPLES_DIR = PACKAGE_DIR / "examples"
# Photos the first photo batch of each graph is re-checked on against torch (real gallery photos).
_PHOTO_RECHECK = 4


def _role(modality: str) -> str:
    """Sketches are queries (latency); photos are indexed (throughput)."""
    return role_of(modality)


def example_sketches() -> list:
    """The app's shipped example drawings (``sketchlvm/examples/*.json``) as RGB sketches: real drawings
    to check graphs on and to measure int8 agreement with, available wherever the package is."""
    import json

    from sketchlvm.preprocess.strokes import render_strokes

    images = []
    for source in sorted(EXAMPLES_DIR.glob("*.json")):
        try:
            images.append(render_strokes(json.loads(source.read_text(encoding="utf-8"))["drawing"], size=224))
        except (ValueError, KeyError, OSError) as error:
            log.warning("skipping example sketch %s: %s", source.name, error)
    return images


@dataclass
class _Onnx:
    """One graph on ONNX Runtime: its file(s) and a session per role, made when first needed."""

    spec: GraphSpec
    path: Path
    int8_path: Path | None = None
    checked: Agreement | None = None
    photo_rechecked: bool = False


class Runtime:
    """Encodes (B, 3, S, S) tensors for a ``SketchLVM`` with torch or ONNX Runtime, per (mode, modality).
    Implements ``runtime.interface.EncoderRuntime``."""

    def __init__(self, model: Any, requested: str = "auto", config: RuntimeConfig | None = None,
                 cache_dir: str | Path | None = None, check_images: list | None = None):
        self.model = model
        self.requested = requested_runtime(requested)
        self.config = config or RuntimeConfig()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.fallbacks: dict[tuple[str, str], str] = {}  # (mode, modality) -> why torch runs it
        self.reason: str | None = None  # why nothing runs on ONNX Runtime, when so
        self.int8_status: str | None = None
        self.int8_agreement: dict[str, float] | None = None
        self._graphs: dict[tuple[str, str], _Onnx] = {}
        self._files: dict[str, Path] = {}  # graph key -> exported file
        # Sessions and turn-taking, shared with the serving install's runtime (runtime/onnx_sessions.py); torch
        # query encodes take the same turns. Made with onnxruntime once it is known to be there.
        self._onnx = OnnxSessions(None, self.config)
        self._export_failures: dict[str, str] = {}
        self._ort = None
        if self.requested not in ("auto", "torch") and model.device.type != "cpu":
            raise ValueError(f"runtime {self.requested!r} runs on the CPU, but the model is on {model.device}; "
                             "pass --device cpu, or --runtime torch (auto picks torch on CUDA)")
        self._check_images = check_images
        self._name: str | None = None
        self._prepare_lock = threading.Lock()
        self._text: _Onnx | None = None  # the text tower's graph, when it runs on ONNX Runtime
        self.text_reason: str | None = None  # why the text tower runs on torch although ONNX Runtime runs
        # On ZeroGPU, a runtime.zerogpu.ZeroGPU gate that sends encodes to @spaces.GPU calls first; what it
        # hands back (None: refused, busy, or not for the GPU) runs here as usual.
        self.offload = None
        self.torch_released = False  # release_torch freed the towers: only the graphs run

    @property
    def name(self) -> str:
        """The runtime that runs: "torch", "onnx" or "onnx-int8". Graphs are exported and checked on first
        use (the first encode, ``describe()`` or this), so a model built only for its identity (the
        cluster driver) or for torch-only work (evaluation) never pays for an export."""
        if self._name is None:
            with self._prepare_lock:
                if self._name is None:
                    self._name = self._choose(self._check_images)
                    self._check_images = None
                    log.info("runtime: %s", self.describe())
        return self._name

    # -- choosing ---------------------------------------------------------------------------------

    def _choose(self, check_images: list | None) -> str:
        name = self._choose_images(check_images)
        if self.model.text_tower is not None and self._ort is not None:
            try:
                self._text = self._prepare_text()
            except GraphRefusedError as error:
                self.text_reason = str(error)
                log.warning("text tower: %s; words encode with torch", error)
        return name

    def _choose_images(self, check_images: list | None) -> str:
        want = self.requested
        if want == "torch":
            return "torch"
        if self.model.device.type != "cpu":
            return "torch"  # auto on CUDA
        ort, missing = onnxruntime_or_reason()
        if ort is None:
            self.reason = missing
            log.warning("runtime %s: %s; encoding with torch", want, missing)
            return "torch"
        self._ort = self._onnx.ort = ort
        int8 = want == "onnx-int8"
        sketches = check_images if check_images is not None else example_sketches()
        for mode in self.model.modes:
            for modality in MODALITIES:
                try:
                    self._graphs[(mode, modality)] = self._prepare(mode, modality, sketches, int8 and modality == "sketch")
                except GraphRefusedError as error:
                    self.fallbacks[(mode, modality)] = str(error)
                    log.warning("%s %s: %s; this path encodes with torch", mode, modality, error)
        if not self._graphs:
            self.reason = "no graph could be used: " + "; ".join(sorted(set(self.fallbacks.values())))
            return "torch"
        if int8:
            self.int8_status = "int8: agreement with fp32 not measured yet (no gallery)"
        return "onnx-int8" if int8 else "onnx"

    def _prepare(self, mode: str, modality: str, check_images: list, int8: bool) -> _Onnx:
        spec = graph_spec(self.model, mode, modality)
        for (_, other_modality), graph in self._graphs.items():
            if graph.spec.key == spec.key and other_modality == modality:
                return graph  # the same graph on the same kind of input: already checked
        if spec.key in self._export_failures:
            raise GraphRefusedError(self._export_failures[spec.key])
        if spec.key not in self._files:
            try:
                self._files[spec.key], _ = ensure_graph(spec, self.model.encoders[mode], self.model.image_size,
                                                        self.cache_dir)
            except GraphRefusedError as error:
                self._export_failures[spec.key] = str(error)
                raise
        path = self._files[spec.key]
        graph = _Onnx(spec, path, checked=self._check(path, self._tensors(check_images, modality), mode, modality,
                                                      spec.name))
        if int8:
            graph.int8_path = ensure_int8_graph(spec, path, self.cache_dir)
        return graph

    def _prepare_text(self) -> _Onnx:
        """The text tower's fp32 graph (never int8: one prompt costs little and words steer rankings),
        checked against torch on real prompts (``TEXT_CHECK_WORDS``, each in the tower's template)."""
        from sketchlvm.config import TEXT_CHECK_WORDS

        tower = self.model.text_tower
        spec = text_graph_spec(self.model)
        path, _ = ensure_graph(spec, tower.clip_model, self.model.image_size, self.cache_dir)
        tokens = tower.tokenizer([tower.template.format(words) for words in TEXT_CHECK_WORDS])
        checked = self._verify(path, "tokens", tokens.numpy(), tower.encode_tokens_torch(tokens), "query",
                               spec.name, "prompts")
        self._onnx.close(path)  # checked: its session opens again when words are first searched for
        return _Onnx(spec, path, checked=checked)

    def _tensors(self, images: list, modality: str) -> torch.Tensor:
        if not images:
            raise GraphRefusedError("no real images to check the exported graph against torch")
        transform = self.model.sketch_transform if modality == "sketch" else self.model.photo_transform
        return torch.stack([transform(image) for image in images])

    def _check(self, path: Path, batch: torch.Tensor, mode: str, modality: str, name: str) -> Agreement:
        """Refuse a graph unless it reproduces torch on ``batch`` within the configured tolerances."""
        return self._verify(path, "images", batch.numpy(), self._torch(batch, modality, mode), _role(modality),
                            name, "images")

    def _verify(self, path: Path, input_name: str, inputs: np.ndarray, reference: np.ndarray, role: str,
                name: str, what: str) -> Agreement:
        try:
            onnx_out = self._run(path, role, {input_name: inputs})
        except Exception as error:
            raise GraphRefusedError(f"ONNX Runtime cannot run the {name} graph ({path}): {error}") from error
        found = agreement(reference, onnx_out)
        found = Agreement(found.min_cosine, found.max_abs_diff, found.n_images, what)
        if not found.within(self.config.min_cosine, self.config.max_abs_diff):
            raise GraphRefusedError(
                f"the exported {name} graph disagrees with torch ({found}; needs cosine >= "
                f"{self.config.min_cosine} and max abs diff <= {self.config.max_abs_diff:g})")
        log.info("ONNX graph %s agrees with torch: %s", name, found)
        return found

    def _turn(self, role: str):
        """Query encodes, on either engine, take turns (see the module doc); index runs never wait."""
        return self._onnx.turn(role)

    def _run(self, path: Path, role: str, inputs: dict[str, np.ndarray], batchable: bool = True) -> np.ndarray:
        """The graph's first output (``batchable``: see ``OnnxSessions.run``)."""
        return self._onnx.run(path, role, inputs, batchable)

    # -- encoding ---------------------------------------------------------------------------------

    @torch.no_grad()
    def _torch(self, batch: torch.Tensor | np.ndarray, modality: str, mode: str) -> np.ndarray:
        if self.torch_released:
            raise RuntimeError("the torch towers were freed after every graph was checked (release_torch); "
                               "nothing should encode with torch any more")
        device = self.model.device
        with self._turn(_role(modality)), autocast(device):
            features = self.model.encoders[mode](torch.as_tensor(batch).to(device), modality)
        return features.float().cpu().numpy()

    def encode(self, batch: torch.Tensor | np.ndarray, modality: str, mode: str, int8: bool = True) -> np.ndarray:
        """(B, 3, S, S) normalised images (numpy or torch) -> (B, D) float32 unit vectors. ``int8=False``
        forces fp32.

        On the CPU, index batches run in slices of ``RuntimeConfig.index_run_batch`` (see there)."""
        if self.offload is not None:
            out = self.offload.encode_images(batch, modality, mode)
            if out is not None:
                return out
        step = self.config.index_run_batch if self.model.device.type == "cpu" else 0
        return in_slices(batch, _role(modality), step, lambda part: self._encode(part, modality, mode, int8))

    def _encode(self, batch: torch.Tensor | np.ndarray, modality: str, mode: str, int8: bool) -> np.ndarray:
        if self.name == "torch":
            return self._torch(batch, modality, mode)
        graph = self._graphs.get((mode, modality))
        if graph is None:
            return self._torch(batch, modality, mode)
        if modality == "photo" and not graph.photo_rechecked:
            graph.photo_rechecked = True
            if not self._recheck_on_photos(graph, batch, mode):
                return self._torch(batch, modality, mode)
        path = graph.int8_path if (int8 and graph.int8_path is not None) else graph.path
        # An int8 graph's answer depends on its batch (dynamic quantisation): its queries never share a run.
        out = self._run(path, _role(modality), {"images": np.ascontiguousarray(_numpy(batch), np.float32)},
                        batchable=path == graph.path)
        return np.asarray(out, dtype=np.float32)

    def _recheck_on_photos(self, graph: _Onnx, batch: torch.Tensor | np.ndarray, mode: str) -> bool:
        """The first photos a graph encodes are real gallery photos: check them against torch too."""
        sample = torch.as_tensor(batch[:_PHOTO_RECHECK])
        try:
            self._check(graph.path, sample, mode, "photo", graph.spec.name)
            return True
        except GraphRefusedError as error:
            log.warning("%s photo: %s; photos encode with torch", mode, error)
            self.fallbacks[(mode, "photo")] = str(error)
            for key, g in list(self._graphs.items()):
                if g.path == graph.path and key[1] == "photo":
                    del self._graphs[key]
            return False

    def encode_text(self, tokens: torch.Tensor | np.ndarray) -> np.ndarray:
        """(N, context) token ids -> (N, D) float32 unit vectors, on the text graph when it agreed with torch."""
        _ = self.name  # prepares the graphs on first use, the text one included
        if self.offload is not None:
            out = self.offload.encode_tokens(tokens)
            if out is not None:
                return out
        if self._text is None:
            with self._turn("query"):
                return self.model.text_tower.encode_tokens_torch(torch.as_tensor(tokens))
        out = self._run(self._text.path, "query", {"tokens": _numpy(tokens).astype(np.int64)})
        return np.asarray(out, dtype=np.float32)

    def text_runtime(self) -> str:
        """Which engine runs the text tower, and why torch when ONNX Runtime runs the images."""
        if self.model.text_tower is None:
            return "no text tower"
        _ = self.name  # prepares the graphs, the text one included
        if self._text is not None:
            return "ONNX Runtime fp32"
        if self.text_reason:
            return f"torch ({self.text_reason})"
        return "torch"

    # -- freeing torch ------------------------------------------------------------------------------

    def release_torch(self, photos: list | None = None) -> str | None:
        """Free the model's torch towers when every encode runs on a checked graph: the app calls this once
        it has started, so the full install serves at the size of its graphs (issue 30). Returns why the
        towers stay, or None once they are freed.

        They stay for ``--runtime torch``, CUDA, ZeroGPU (its GPU copy), any path that falls back to torch,
        and a text tower on torch. A photo graph not yet checked on real photos (the first photos it
        encodes are, see ``_recheck_on_photos``) is checked now on ``photos`` (a few of the gallery's, RGB),
        so a check that would refuse it still can; without photos to check on, the towers stay."""
        if self.torch_released:
            return None
        if self.name == "torch" or self.model.device.type != "cpu":
            return "torch runs the encoder"
        if self.offload is not None:
            return "ZeroGPU runs the torch model"
        if self.model.text_tower is not None and self._text is None:
            return "torch runs the text tower"
        pending = {}
        for (mode, modality), graph in self._graphs.items():
            if modality == "photo" and not graph.photo_rechecked:
                pending.setdefault(graph.path, (mode, graph))
        if pending:
            if not photos:
                return PHOTOS_NEEDED
            batch = np.stack([self.model.photo_transform.array(p) for p in photos[:_PHOTO_RECHECK]])
            for mode, graph in pending.values():
                graph.photo_rechecked = True
                self._recheck_on_photos(graph, batch, mode)
        if self.fallbacks:
            return "torch encodes " + ", ".join(f"{mode} {modality}" for mode, modality in sorted(self.fallbacks))
        self.torch_released = True
        self.model.release_torch()
        release_freed_memory()
        log.debug("torch towers freed: every encode runs on a checked ONNX graph")
        return None

    # -- what runs ----------------------------------------------------------------------------------

    def uses_onnx(self, mode: str, modality: str) -> bool:
        return self.name != "torch" and (mode, modality) in self._graphs

    def uses_int8(self, mode: str) -> bool:
        graph = self._graphs.get((mode, "sketch")) if self.name != "torch" else None
        return graph is not None and graph.int8_path is not None

    def photo_identity(self) -> dict[str, Any]:
        """What the index records about how its photo vectors were computed: fp32, and (torch or an
        ONNX graph checked to) within these tolerances of torch. Runtimes that meet the same tolerances
        may share an index; any other setting is another identity, so the index rebuilds or refuses."""
        return {"numerics": "fp32", "within_of_torch": {"min_cosine": self.config.min_cosine,
                                                        "max_abs_diff": self.config.max_abs_diff}}

    def describe(self) -> str:
        if self.offload is not None:
            return f"{self._describe()}; {self.offload.describe()}"
        return self._describe()

    def _describe(self) -> str:
        if self.name == "torch":
            what = f"torch fp32 on {self.model.device}" if self.model.device.type == "cpu" else f"torch on {self.model.device}"
            if self.requested != "torch":
                why = self.reason or ("auto picks torch on CUDA" if self.model.device.type != "cpu" else "")
                what = f"{what} ({why})" if why else what
            return what + self._text_description()
        text = f"{self.name}: {self._onnx.describe()}"
        text += ", int8 sketches, fp32 photos" if self.name == "onnx-int8" else ", fp32"
        if self.fallbacks:
            text += "; torch for " + "; ".join(f"{m} {x} ({why})" for (m, x), why in sorted(self.fallbacks.items()))
        if self.int8_status:
            text += f"; {self.int8_status}"
        return text + self._text_description()

    def _text_description(self) -> str:
        if self.model.text_tower is None:
            return ""
        return f"; text tower on {self.text_runtime()}"


def release_freed_memory() -> None:
    """Collect, then hand the C heap's free pages back to the system, so freed towers leave the process's RSS
    instead of waiting in malloc's arenas for reuse."""
    import gc

    gc.collect()
    trim_heap()


def _numpy(batch: torch.Tensor | np.ndarray) -> np.ndarray:
    return batch.numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
