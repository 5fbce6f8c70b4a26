"""All configuration in one place.

Every default the library uses lives here, so a training run, an evaluation and the app can be
reproduced from the JSON written beside their outputs. Experiment presets are JSON files in
``sketchlvm/configs/`` that override these defaults; command-line flags override the presets.

The environment variables (``SKETCHLVM_*``) are read here too, by :func:`settings` only: the one table of
them in docs/app.md is :func:`settings_table` (tests/test_config_settings.py holds the two together).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
PRESETS_DIR = PACKAGE_DIR / "configs"

# A tiny open_clip tower shipped in sketchlvm/model_configs: for tests and CI, never for users.
TINY_ARCH = "SketchLVM-Tiny"

MODES = ("category", "fine_grained")
MODALITIES = ("sketch", "photo")
# Which learned prompt set each mode feeds each modality: category mode has one per modality, fine-grained
# mode shares one (the paper's setup). Read by the model's prompts and by the ONNX export.
PROMPT_SETS = {
    "category": {"sketch": "sketch", "photo": "photo"},
    "fine_grained": {"sketch": "shared", "photo": "shared"},
}
# Real prompts an exported text graph must reproduce torch on before it is used (Sketchy categories,
# one- and multi-token words, and a long phrase), each put in the tower's template.
TEXT_CHECK_WORDS = ("airplane", "alarm clock", "car (sedan)", "hot-air balloon", "jack-o-lantern", "umbrella",
                    "a red leather shoe on a sandy beach at sunset, seen from above")
# How a sketch is framed before resizing (PreprocessConfig.sketch_framing).
SKETCH_FRAMINGS = ("ink-crop", "pad-square")
# Numeric precision of training and embedding (TrainConfig.precision): the paper's fp32, or CUDA fp16 autocast.
PRECISIONS = ("fp32", "amp")
# Which data picks the best checkpoint (TrainConfig.select_on).
SELECT_ON = ("validation", "test")
# What an evaluation measures in each mode, so TrainConfig.eval_metric can be checked before training starts.
ACCURACY_KS = (1, 5, 10)
FINE_GRAINED_PROTOCOLS = ("within_class", "whole_gallery")
MEASURED_METRICS = {
    "category": ("mAP@all", "mAP@all_noninterp", "mAP@200", "mAP@200_lenient", "P@100", "P@200"),
    "fine_grained": ("mAP@all", "mAP@all_noninterp", "mAP@200", "mAP@200_lenient", "P@100", "P@200",
                     *(f"Acc@{k}_{p}" for p in FINE_GRAINED_PROTOCOLS for k in ACCURACY_KS)),
}
# Which photos of a Sketchy class a fine-grained set holds (DataConfig.fine_grained_gallery / _negatives;
# sketchlvm.datasets.fine_grained.FINE_GRAINED_GALLERIES describes each).
FINE_GRAINED_PHOTO_SETS = ("sketched", "with-distractors")

# CLIP's own normalisation (open_clip OPENAI_DATASET_MEAN/STD). Kept here so a preset can swap in
# per-modality statistics: with CLIP's, training a random backbone at lr 1e-3 collapsed every sketch to one
# point; per-modality statistics and lr <= 3e-4 with warm-up avoided it (the tiny_* presets).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ModelConfig:
    # ViT-B-32-quickgelu: the OpenAI weights were trained with QuickGELU; plain ViT-B-32 is wrong.
    arch: str = "ViT-B-32-quickgelu"
    # An open_clip tag ("openai"), a weights file, "local-dir:/folder" or a folder, or "none"
    # (random weights, for tests only).
    pretrained: str = "openai"
    n_prompts: int = 3
    # "paper": prompts + every LayerNorm of the visual tower.
    # "full-attention": the released code's rule (also attention in-proj, class/pos embeddings, proj).
    trainable: str = "paper"
    # Standard normal as in the released code; ln_pre follows, so the scale is tamed there.
    prompt_init_std: float = 1.0


@dataclass
class PreprocessConfig:
    # "pad-square": the whole sketch padded to a white square, as the paper and its code do (and as
    # photos are): keeps a Sketchy sketch aligned with its photo, which fine-grained matching and
    # patch shuffle rely on; the paper presets use it. "ink-crop": crop to the ink, add
    # sketch_margin, pad square: a drawing in a corner of the app's canvas fills the frame. It is
    # the zero-shot default (no checkpoint), and what checkpoints written before this field had.
    sketch_framing: str = "ink-crop"
    # White margin on every side, as a fraction of the drawing's box: under ink-crop, of the ink box's longer
    # side; under pad-square, where a stroke drawing is placed on the canvas (its lines fill the inner square
    # CANVAS_UNITS / (1 + 2 * sketch_margin)), which also sets its line width (preprocess/drawing.py).
    sketch_margin: float = 0.1
    # Stroke width used when rendering stroke lists, as a fraction of the drawing's box (ink-crop) or of the
    # canvas's inner square (pad-square); see sketchlvm/preprocess/drawing.py.
    stroke_width: float = 0.02
    # A pixel is ink when some channel is this far (0-255) below white: ignores JPEG noise and
    # the faint anti-aliased fringe, catches light-coloured strokes (yellow: blue channel 0).
    ink_threshold: int = 24
    sketch_mean: tuple[float, float, float] = CLIP_MEAN
    sketch_std: tuple[float, float, float] = CLIP_STD
    photo_mean: tuple[float, float, float] = CLIP_MEAN
    photo_std: tuple[float, float, float] = CLIP_STD
    # Photos larger than this many pixels are refused (decompression-bomb guard).
    max_image_pixels: int = 64_000_000


@dataclass
class LossConfig:
    margin: float = 0.3
    classification_weight: float = 0.5
    # None: CLIP's learned exp(logit_scale) (100 for the OpenAI weights).
    classification_scale: float | None = None
    class_prompt_template: str = "a photo of a {}"
    # CE_photo over the positive photos only (the paper's "photo features"); True also classifies
    # the triplets' negative photos (this code's earlier, undocumented behaviour).
    classify_negative_photos: bool = False
    separation_weight: float = 0.1
    patch_shuffle_weight: float = 1.0
    patch_grid: int = 2


@dataclass
class DataConfig:
    dataset: str = "sketchy"  # sketchy | tuberlin | quickdraw | sketchy_fg | shoev2 | chairv2
    root: str = ""
    split: str = "sketchy_21"
    # Optional caps for quick experiments; 0 means everything.
    max_classes: int = 0
    max_per_class: int = 0
    # sketchy_fg: which photos make each evaluated class's gallery (validation and test; the choices are
    # sketchlvm.datasets.fine_grained.FINE_GRAINED_GALLERIES): "sketched" (the original Sketchy photos, the
    # paper's protocol) or "with-distractors" (plus the Sketchy-extended folder's unsketched photos, ~6x as many).
    fine_grained_gallery: str = "sketched"
    # sketchy_fg: which photos of a training class the hard negatives are drawn from, with the same choices:
    # "sketched" (the paper: another photo of the sketch's class, among the original Sketchy photos) or
    # "with-distractors" (also the unsketched photos, as the first released code did). Independent of the
    # evaluation gallery, so training with more negatives does not change what is measured.
    fine_grained_negatives: str = "sketched"
    # Share of every training (seen) class's sketches and photos held out to choose the best
    # checkpoint (fine-grained: of its sketched photos, with their sketches); seeded by
    # validation_seed, recorded in the checkpoint.
    validation_fraction: float = 0.1
    validation_seed: int = 0
    num_workers: int = 2


@dataclass
class TrainConfig:
    mode: str = "category"
    epochs: int = 60
    batch_size: int = 64
    # Fine-grained P x K batches: classes per batch x triplets per class.
    classes_per_batch: int = 8
    samples_per_class: int = 8
    # The one source of the learning-rate defaults (the presets inherit them): the paper's 1e-5 for
    # the CLIP parameters being tuned (LayerNorms; with trainable="full-attention" use the released
    # code's 1e-6, see the sketchy_category_full_attention preset) and 1e-4 for the prompt tokens.
    lr: float = 1e-5
    prompt_lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_steps: int = 0  # 0: run all epochs
    steps_per_epoch: int = 0  # 0: one pass over the sketches
    seed: int = 42
    eval_metric: str = "mAP@200"
    eval_every: int = 1
    # Which data picks the best checkpoint: "validation" (held-out seen-class data, see
    # DataConfig.validation_fraction) or "test" (the unseen test classes, by eval_metric, which makes
    # the test numbers optimistic; the released code also chose on the test classes, but by triplet
    # validation loss, not a retrieval metric). The best checkpoint is evaluated on the test classes
    # once at the end either way.
    select_on: str = "validation"
    # Also measure the test classes after every evaluated epoch (for reporting only; slower).
    test_every_epoch: bool = False
    out_dir: str = "runs/experiment"
    device: str = "auto"
    # "fp32" as in the paper, or "amp" (fp16 autocast + gradient scaling on CUDA; no effect on CPU).
    # Evaluation during training always runs in fp32.
    precision: str = "fp32"
    # torch.distributed collective timeout: must cover an evaluation's ranking (QuickDraw's takes
    # minutes), which NCCL's 10-minute default does not.
    dist_timeout_minutes: float = 180


@dataclass
class IndexConfig:
    batch_size: int = 32
    decode_workers: int = 2
    # Progress is committed to disk every this many embedded photos, so an interrupted build resumes.
    commit_every: int = 1000
    # ... and at least this often (seconds; 0: by count only), so a background build's progress becomes
    # searchable soon and a kill loses little.
    commit_seconds: float = 10.0
    # Above this many photos an approximate index is built (see sketchlvm/gallery/index.py).
    exact_max: int = 200_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 64
    # Starting efSearch; doubled until the measured recall@10 reaches recall_target, up to the max.
    hnsw_ef_search: int = 128
    hnsw_ef_search_max: int = 2048
    recall_target: float = 0.99
    # Stored vectors sampled as queries when measuring the approximate index's recall@10.
    recall_queries: int = 1000
    # .heic/.heif need pillow-heif (else each is skipped, with the reason); .avif is Pillow's own.
    extensions: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".heic", ".heif", ".avif")


@dataclass
class RuntimeConfig:
    """How the prompted encoder runs at inference (sketchlvm/runtime/engine.py, onnx_sessions.py); training always
    runs on torch."""

    # An exported ONNX graph is used only if it reproduces the torch encoder on real images this closely
    # (per image: cosine of the two unit vectors, and the largest absolute difference of any component).
    # The index identity records these numbers: every runtime allowed into one index met them.
    min_cosine: float = 0.99999
    max_abs_diff: float = 1e-4
    # onnx-int8 (sketch side only) is refused when the int8 queries' top-k on the gallery share less than
    # this fraction of their photos with the fp32 queries' top-k.
    int8_top_k: int = 10
    int8_min_agreement: float = 0.9
    # ONNX Runtime intra-op threads; 0 = one per CPU core. Queries (batch 1) and indexing (slices of 8) both use
    # every core; indexing without busy-waiting, so the photo-decoding threads get the CPU whenever the
    # encoder waits (see runtime/onnx_sessions.session_options).
    query_threads: int = 0
    index_threads: int = 0
    # Photos per encoder run when indexing on the CPU (either engine; 0 = whole batches): the index's
    # batches (IndexConfig.batch_size, 32, which also sets how far decoding runs ahead) are encoded in
    # slices of this many. At 8 photos a ViT-B/32 block's activations (~5 MB) stay in cache; at 32
    # (~20 MB) they spill. Measured on the 2-core machine (bench_index, best of 5): bare torch
    # encode_image 1.13-1.36x faster at 8 than at 32; ONNX Runtime fp32 interleaved 70-72 against 76-96
    # ms/photo. CUDA keeps whole batches.
    index_run_batch: int = 8
    # Busy-waiting query threads. Off: the app runs several searches at once (webapp.page.SEARCH_CONCURRENCY)
    # beside Gradio's own threads, and spinning workers burn the cores those need. Measured on the shared
    # 2-core machine, ViT-B/32 fp32 batch 1: spinning 344 ms and 240 ms CPU per call (two callers: 3.2
    # calls/s), not spinning 146 ms and 143 ms CPU (two callers: 7.4 calls/s). On an idle machine spinning
    # saves a few ms per query at most.
    query_spinning: bool = False
    # Query encodes (sketches, words; on ONNX Runtime or torch) run one at a time, each on every core.
    # Two at once put 4 threads on 2 cores: measured in bench_load (16 users, ViT-B/32, paced), the
    # server's CPU per request fell from 175-185 ms to 162 ms with this on and p50 under load from
    # 0.93-0.98 s to 0.72 s, with the single user's p50 unchanged (one search never waits for itself).
    # The other searches' Gradio and Python work still runs beside the encoder.
    serial_queries: bool = True
    # At most this many query encodes that queued behind a running one go through the next run together,
    # as one batch (runtime/query_batches.py; 1: one at a time). ONNX Runtime only. ViT-B/32, 2 cores, CPU
    # per sketch: 115 ms alone, 93 ms in a batch of 2, 85 ms in 4, 82 ms in 8, with the same vectors.
    query_batch: int = 8


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """Refuse, before anything is loaded, a training run that could not finish or would measure nothing:
        each error names the value and the choices."""
        tc, dc = self.train, self.data
        if tc.mode not in MODES:
            raise ValueError(f"unknown mode {tc.mode!r}; choose category or fine_grained")
        if tc.eval_metric not in MEASURED_METRICS[tc.mode]:
            raise ValueError(f"eval_metric {tc.eval_metric!r} is not measured in {tc.mode} mode; "
                             f"choose one of {', '.join(MEASURED_METRICS[tc.mode])}")
        if tc.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {tc.precision!r}; choose {' or '.join(PRECISIONS)}")
        if tc.select_on not in SELECT_ON:
            raise ValueError(f"unknown select_on {tc.select_on!r}; choose one of {', '.join(SELECT_ON)}")
        for key in ("fine_grained_gallery", "fine_grained_negatives"):
            if getattr(dc, key) not in FINE_GRAINED_PHOTO_SETS:
                raise ValueError(f"unknown data.{key} {getattr(dc, key)!r}; choose one of "
                                 f"{', '.join(FINE_GRAINED_PHOTO_SETS)}")
        if not dc.root:
            raise ValueError("data.root is not set: pass --root DATASET_FOLDER")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ExperimentConfig":
        config = cls()
        merge_into(config, values)
        return config


def merge_into(config: Any, values: dict[str, Any]) -> None:
    """Overwrite fields of nested dataclasses from a nested dict, refusing unknown keys.

    Unknown keys are an error rather than ignored: a typo in a preset would otherwise silently
    leave the default in force.
    """
    known = {f.name: f for f in dataclasses.fields(config)}
    for key, value in values.items():
        if key.startswith("_"):  # "_comment" and friends document a preset
            continue
        if key not in known:
            raise ValueError(
                f"unknown config key {key!r} in {type(config).__name__}; known: {sorted(known)}"
            )
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config key {key!r} needs a mapping, got {value!r}")
            merge_into(current, value)
        else:
            if isinstance(current, tuple) and isinstance(value, list):
                value = tuple(value)
            setattr(config, key, value)


def configure_cli_logging() -> None:
    """Our INFO lines for command-line tools; open_clip's chatty root-logger INFO stays hidden."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("sketchlvm").setLevel(logging.INFO)


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


def load_experiment(preset_or_path: str | Path) -> ExperimentConfig:
    """Load a preset by name (``sketchy_category``) or a JSON file path."""
    path = Path(preset_or_path)
    if not path.suffix:
        path = PRESETS_DIR / f"{preset_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no experiment config {str(preset_or_path)!r}; presets: {', '.join(list_presets())}"
        )
    return ExperimentConfig.from_dict(json.loads(path.read_text()))


# ---------------------------------------------------------------------------------------------
# Settings: the environment variables

ENV_PREFIX = "SKETCHLVM_"
DEFAULT_TOP_K = 12  # results shown at first (--top-k); the page's slider changes it
TRUE_WORDS = ("1", "true", "yes", "on")  # a switch variable is on for these (any case), off otherwise


def _setting(default: Any, meaning: str, flag: str | None = None, *, shown: str | None = None,
             fallback: str | None = None) -> Any:
    """A :class:`Settings` field: its default; what it means (one line of Markdown for docs/app.md's table, so
    links are relative to docs/); the command-line flag that wins over it; the default as the table states it,
    where the value alone does not say it; and another variable read when this one is unset."""
    return field(default=default, metadata={"meaning": meaning, "flag": flag, "shown": shown, "fallback": fallback})


@dataclass(frozen=True)
class Settings:
    """Every environment variable of the app and the library: field ``name`` is ``SKETCHLVM_<NAME>``
    (:func:`env_var`), read by :func:`settings` only. An unset or empty variable leaves the default.

    Values that a command-line flag also takes stay the variable's text (``device``, ``runtime``,
    ``top_k``, ``port``...): the flag's parser reads both, so a bad variable is refused in the words a bad
    flag is, and a flag given on the command line wins even over a bad variable. Switches are on for
    ``TRUE_WORDS``; folders are paths with ``~`` expanded.
    """

    gallery: str | None = _setting(
        None, "the photos to search: a folder (one subfolder per category gives each photo its category) or "
        "`hf://datasets/USER/REPO[/SUBDIR]`", "--gallery",
        shown="on a Space, the demo gallery; else the gallery indexed most recently; else none (the page says how "
        "to add one)")
    gallery_split: str | None = _setting(
        None, "for a gallery of parquet files (an image dataset as the Hub stores it): only this split's files",
        "--gallery-split", shown="every split")
    gallery_classes: str | None = _setting(
        None, "`NAME[,...]`: for a gallery of parquet files, only the rows of these classes", "--gallery-classes",
        shown="every class")
    watch: str = _setting(
        "auto", "keep a local gallery folder's index current while the app runs: `auto` (change events, or a "
        "rescan every 20 s on network mounts), `events`, `poll` or `off`", "--watch")
    demo: bool = _setting(
        False, "without a gallery, search the demo gallery ([spaces.md](spaces.md#the-demo-gallery))", "--demo")
    galleries_dir: Path | None = _setting(  # noqa: RUF009 (_setting returns a dataclasses.field)
        None, "where gallery indexes live (on a Space: a persistent storage mount)",
        shown="`galleries/` in the project; installed elsewhere, `$XDG_CACHE_HOME/sketchlvm/galleries`, else "
        "`~/.cache/sketchlvm/galleries`")
    checkpoint: str | None = _setting(None, "trained prompts: a checkpoint file or `hf://USER/REPO/FILE`",
                                      "--checkpoint", shown="none: zero-shot CLIP")
    model: str | None = _setting(
        None, "an open_clip architecture, or an export folder (local or `hf://USER/REPO[/SUBDIR]`) whose ONNX "
        "graphs serve the app without torch", "--model",
        shown=f"the checkpoint's architecture, else `{ModelConfig.arch}`")
    pretrained: str = _setting(ModelConfig.pretrained, "CLIP weights: an open_clip tag, a weights file, a folder, "
                               "or `none` (random weights, for testing only)", "--pretrained")
    device: str = _setting("auto", "where the model runs: `auto` (CUDA, with mixed precision, when present; else the "
                           "CPU), `cpu`, `cuda` or `cuda:N`", "--device")
    runtime: str = _setting(
        "auto", "what runs the encoder: `auto` (ONNX Runtime fp32 on CPU when installed, torch on CUDA), `torch`, "
        "`onnx` or `onnx-int8` ([cpu-inference.md](cpu-inference.md))", "--runtime")
    onnx_cache: Path | None = _setting(  # noqa: RUF009 (_setting returns a dataclasses.field)
        None, "where exported ONNX graphs are kept",
        shown="`$XDG_CACHE_HOME/sketchlvm/onnx`, else `~/.cache/sketchlvm/onnx`")
    zerogpu: str = _setting("photos", "on ZeroGPU, what asks for the GPU: `photos` (indexing and photo queries), "
                            "`all` (strokes and words too) or `off` ([spaces.md](spaces.md))")
    top_k: str = _setting(str(DEFAULT_TOP_K), "results shown at first; the page's slider changes it", "--top-k")
    host: str = _setting("127.0.0.1", "address to listen on; `0.0.0.0` exposes the app to your network", "--host",
                         fallback="GRADIO_SERVER_NAME")
    port: str = _setting("7860", "port to listen on", "--port", fallback="GRADIO_SERVER_PORT")
    live_strokes: bool = _setting(
        True, "the canvas sends the drawing so far while the pen is down (after a 100 ms rest, at most once a "
        "second, once it has grown by 30%; not while other searches run); off (`0`): only at pen-up, one query per "
        "stroke ([app.md](app.md))")
    client_requests: str = _setting(
        "4", "requests one client (address) may have queued or running; half of them may run at once "
        "([deploying-in-public.md](deploying-in-public.md))")
    client_cost: str = _setting(
        "16", "cost units one client may have queued: 1 a request plus 1 per 64 KiB of its input (a ~900 kB "
        "drawing costs 14)")
    trust_forwarded: str | None = _setting(
        None, "`1`: believe the last `X-Forwarded-For` entry as the client's address (only behind a proxy that "
        "sets it); `0`: never", shown="on a Space (`SPACE_ID` set), else off")
    upload_area_mb: str = _setting("1024", "the upload area's total size, MiB (past it: HTTP 503)")
    upload_rate_mb: str = _setting("40", "uploads one client (address) may send, MiB a minute (past it: HTTP 429)")
    share: bool = _setting(False, "also open a temporary public `*.gradio.live` link", "--share")
    auth: str | None = _setting(None, "`USER:PASSWORD[,...]`: a login page in front of the page and the API "
                                "([deploying-in-public.md](deploying-in-public.md))", "--auth", shown="no login")
    hf_sign_in: bool = _setting(False, "on a Space, searching needs a Hugging Face sign-in "
                                "([deploying-in-public.md](deploying-in-public.md))", "--hf-sign-in")
    owners: str | None = _setting(None, "`USER[,...]`: with sign-in, who may rebuild the index and see the status",
                                  "--owners", shown="every `--auth` user; with `--hf-sign-in`, the Space's owner")
    users: str | None = _setting(None, "`USER[,...]` or `*`: with `--hf-sign-in`, who else may search", "--users",
                                 shown="the owners only")


SETTING_NAMES = tuple(spec.name for spec in dataclasses.fields(Settings))


def env_var(name: str) -> str:
    """The environment variable of the :class:`Settings` field ``name`` ("runtime" -> its variable)."""
    if name not in SETTING_NAMES:
        raise KeyError(f"no setting {name!r}; settings: {', '.join(SETTING_NAMES)}")
    return ENV_PREFIX + name.upper()


def settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings the environment (``os.environ`` unless given) holds now. Cheap: call it where a value is
    needed, not at import, so a variable set later (a test, a Space's start) is seen. Never raises: each
    value is checked where it is used, as the matching flag is."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(Settings):
        text = environ.get(env_var(spec.name))
        if not text and spec.metadata["fallback"]:
            text = environ.get(spec.metadata["fallback"])
        if not text:
            continue
        if spec.type == "bool":
            values[spec.name] = text.strip().lower() in TRUE_WORDS
        elif spec.type == "Path | None":
            values[spec.name] = Path(text).expanduser()
        else:
            values[spec.name] = text
    return Settings(**values)


def settings_table() -> str:
    """docs/app.md's table of the variables (Markdown), one row per :class:`Settings` field."""
    rows = ["| variable | flag (wins over it) | default | meaning |", "|---|---|---|---|"]
    for spec in dataclasses.fields(Settings):
        meta = spec.metadata
        if meta["shown"]:
            default = meta["shown"]
        elif spec.type == "bool":
            default = "on" if spec.default else "off"
        else:
            default = f"`{spec.default}`"
        if meta["fallback"]:
            default = f"`{meta['fallback']}`, else {default}"
        switch = ("=0" if spec.default else "=1") if spec.type == "bool" else ""  # what changes it
        variable = f"`{env_var(spec.name)}{switch}`"
        flag = f"`{meta['flag']}`" if meta["flag"] else "–"
        rows.append(f"| {variable} | {flag} | {default} | {meta['meaning']} |")
    return "\n".join(rows) + "\n"
