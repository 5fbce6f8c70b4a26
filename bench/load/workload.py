"""The load's workload: a gallery, a trained-looking checkpoint, and each user's script of drawings
(stroke by stroke, with the pauses people really make), searches and uploads, with the answer each must get."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from bench.bench_query import make_gallery
from bench.load import MODES

# Workload


@dataclass(frozen=True)
class Op:
    """One request of a user's script and the answer it must get."""

    kind: str  # "search" (canvas strokes) or "upload" (the upload button)
    path: Path  # the stroke JSON (search) or PNG (upload) sent
    mode: str
    k: int
    expected: tuple[str, ...]  # result captions in rank order: "category · 0.123 · file.jpg"
    pause_s: float = 0.0  # paced users: the real drawing time of the strokes this request adds (their ts)


@dataclass
class Workload:
    gallery: Path
    cache: Path
    checkpoint: Path
    sketches: list[Path]  # one drawing per user (a Quick, Draw! record as JSON), all different
    scripts: list[list[Op]] = field(default_factory=list)  # one per user


def make_checkpoint(path: Path, scale: float = 1.0, n_prompts: int = 3) -> Path:
    """A checkpoint for the tiny test tower with strongly perturbed, different state per mode.

    With the bare random tower (both modes zero-shot, hence identical) different sketches mostly get the
    same ranking, so a cross-talk check would be blind; with this one, 16 sketches x 2 modes give 32
    different rankings of a 24-photo gallery.
    """
    import open_clip
    import torch

    from sketchlvm.config import TINY_ARCH
    from sketchlvm.model.checkpoint import learned_state, save_checkpoint
    from sketchlvm.model.encoder import freeze_except, trainable_parameter_names
    from sketchlvm.model.factory import build_prompted_encoder
    from sketchlvm.model.weights import register_model_configs, resolve_weights_source

    register_model_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clip = open_clip.create_model(TINY_ARCH, pretrained=None)
    states = {}
    for i, mode in enumerate(MODES):
        encoder = build_prompted_encoder(clip.visual, mode, n_prompts)
        names = trainable_parameter_names(encoder, "paper")
        generator = torch.Generator().manual_seed(1000 + i)
        with torch.no_grad():
            for param in freeze_except(encoder, "paper"):
                param.add_(scale * torch.randn(param.shape, generator=generator))
        states[mode] = learned_state(encoder, names)
    metadata = {"arch": TINY_ARCH, "pretrained": resolve_weights_source("none").identity(),
                "n_prompts": n_prompts, "trainable": "paper", "training": {"dataset": "none (load test)"}}
    return save_checkpoint(path, states, metadata)


def pick_drawings(quickdraw: Path, users: int, out_dir: Path, min_strokes: int = 8) -> list[Path]:
    """One real Quick, Draw! drawing per user, each of another word, saved as ``user<N>.json``."""
    from sketchlvm.preprocess.strokes import load_ndjson

    out_dir.mkdir(parents=True, exist_ok=True)
    words = sorted(quickdraw.glob("*.ndjson"))
    chosen = []
    for path in words:
        record = next((r for r in load_ndjson(path, limit=100) if len(r["drawing"]) >= min_strokes), None)
        if record is None:
            continue
        out = out_dir / f"user{len(chosen):02d}-{path.stem.replace(' ', '_')}.json"
        out.write_text(json.dumps(record))
        chosen.append(out)
        if len(chosen) == users:
            return chosen
    raise ValueError(f"only {len(chosen)} Quick, Draw! words in {quickdraw} have a drawing of {min_strokes}+ strokes")


def drawing_stages(strokes: list, stages: int) -> list[list]:
    """The drawing as it grows: its first ceil(n * s / stages) strokes for s = 1..stages."""
    n = len(strokes)
    return [strokes[: max(1, -(-n * stage // stages))] for stage in range(1, stages + 1)]


def stage_pauses(strokes: list, stages: int) -> list[float]:
    """Seconds the person spent drawing each stage's strokes (Quick, Draw! ``ts``, ms from the drawing's
    start): the pen-up of the stage's last stroke minus that of the stage before (the first: minus the
    first point's time). Gaps between strokes count: they are part of drawing."""
    start = strokes[0][2][0] if len(strokes[0]) > 2 and strokes[0][2] else 0
    ends = [partial[-1][2][-1] if len(partial[-1]) > 2 and partial[-1][2] else start
            for partial in drawing_stages(strokes, stages)]
    return [max(0.0, (end - before) / 1000) for end, before in zip(ends, [start] + ends[:-1])]


def expected_captions(searcher, op_kind: str, path: Path, mode: str, k: int) -> tuple[str, ...]:
    """The captions the app must answer with, computed in-process as its handlers would."""
    from sketchlvm.preprocess.transforms import load_photo
    from sketchlvm.webapp import AppState, caption
    from sketchlvm.webapp.handlers import strokes_to_sketch

    if op_kind == "upload":
        query = searcher.model.sketch_transform.to_image(load_photo(path))  # what load_upload searches with
    else:
        query = strokes_to_sketch(AppState(searcher), path.read_text())
    return tuple(caption(r) for r in searcher.search(query, mode, k))


def build_scripts(searcher, sketches: list[Path], out_dir: Path, stages: int, k: int) -> list[list[Op]]:
    """Per user: every drawing stage in both modes, then the finished drawing uploaded in both modes.

    Raises if two requests of different users (or the two modes, or two stages) would get the same
    answer: the cross-talk check would not be able to tell them apart.
    """
    from sketchlvm.preprocess.strokes import render_strokes

    scripts = []
    for user, sketch in enumerate(sketches):
        folder = out_dir / f"user{user:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        strokes = json.loads(sketch.read_text())["drawing"]
        ops = []
        pauses = stage_pauses(strokes, stages)
        for stage, partial in enumerate(drawing_stages(strokes, stages), 1):
            path = folder / f"stage{stage}.json"
            path.write_text(json.dumps(partial, separators=(",", ":")))
            for mode in MODES:  # the other mode follows at once (no pause: a click, counted as instant)
                ops.append(Op("search", path, mode, k, expected_captions(searcher, "search", path, mode, k),
                              pause_s=pauses[stage - 1] if mode == MODES[0] else 0.0))
        upload = folder / f"{sketch.stem}.png"
        render_strokes(strokes, size=512).save(upload)
        for mode in MODES:
            ops.append(Op("upload", upload, mode, k, expected_captions(searcher, "upload", upload, mode, k)))
        scripts.append(ops)
    owners: dict[tuple[str, ...], set[int]] = {}
    for user, ops in enumerate(scripts):
        for op in ops:
            owners.setdefault(op.expected, set()).add(user)
    shared = [users for users in owners.values() if len(users) > 1]
    if shared:
        raise AssertionError(f"users {sorted(shared[0])} would get identical answers: cross-talk undetectable")
    return scripts


def prepare(work: Path, data: Path, classes: int, per_class: int, users: int) -> Workload:
    """Gallery (first ``classes`` Sketchy classes x ``per_class`` photos), checkpoint, one drawing per user
    (Quick, Draw!, from ``data/../quickdraw``)."""
    make_gallery(data, classes, per_class, work / "gallery")
    checkpoint = make_checkpoint(work / "load-test.safetensors")
    drawings = pick_drawings(Path(data).parent / "quickdraw", users, work / "drawings")
    return Workload(work / "gallery", work / "cache", checkpoint, drawings)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads, then restore the previous setting.

    Precomputing answers uses 1: on a busy 2-core machine two OpenMP threads per encode are 15-50x slower
    than one (oversubscription), and the results are the same.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_model(checkpoint: Path):
    from sketchlvm.config import TINY_ARCH
    from sketchlvm.model.factory import create_sketchlvm

    import torch

    # The random backbone the checkpoint was made on (seed 0), not whatever the global RNG holds after other
    # work: otherwise the rankings, and whether two users' answers can be told apart, depend on what ran first.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_sketchlvm(arch=TINY_ARCH, pretrained="none", checkpoint=checkpoint, device="cpu")
