"""The training loop over the trainable set only (after nanoGPT's train.py): ``train`` checks the config
(``ExperimentConfig.check``), builds a run (:class:`_Run`), then alternates ``_train_epoch`` and ``_end_epoch``.

dataset -> sampler -> losses -> this loop -> checkpoint -> per-epoch evaluation. The best checkpoint
is kept by the chosen retrieval metric (never by loss) measured on a seeded validation split of the
training classes (``train.select_on="validation"``); the unseen test classes are evaluated once at
the end, on the best checkpoint. ``select_on="test"`` selects on the test classes by the same retrieval
metric; the released code also chose on the test classes, but by its triplet validation loss.
A run is resumable: ``train_state.pt`` in the output folder records, in one atomic write, the learned
weights, the optimiser, the step and the position inside the epoch (batches are a pure function of seed
and epoch, so they can be skipped). A stop by ``max_steps`` inside an epoch saves that state and nothing
else: no evaluation or history entry that an uninterrupted run would not have made.
Multi-GPU: launch with ``torchrun --nproc_per_node N -m sketchlvm train ...``; each rank takes every
N-th batch, so the effective batch is ``batch_size x N``. Evaluation runs on every rank, each
embedding its share of the images; the process group's timeout (``train.dist_timeout_minutes``)
covers the ranking, which every rank does itself.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from sketchlvm.model.checkpoint import apply_state, learned_state, load_checkpoint, preprocess_metadata, save_checkpoint
from sketchlvm.config import SELECT_ON, ExperimentConfig  # noqa: F401  (SELECT_ON: re-exported)
from sketchlvm.datasets import CategoryDataset, FineGrainedPairs, hold_out_validation
from sketchlvm.device import autocast, resolve_device
from sketchlvm.model.encoder import PromptedVisionEncoder, freeze_except, trainable_parameter_names
from sketchlvm.evaluation.evaluate import CATEGORY_DATASETS, evaluate_category, evaluate_fine_grained, load_test_data
from sketchlvm.training.losses import TextClassifier, category_loss, fine_grained_loss, patch_shuffle_triplets
from sketchlvm.model.factory import build_prompted_encoder
from sketchlvm.training.sampler import CategoryTripletSampler, FineGrainedBatchSampler
from sketchlvm.preprocess.transforms import PhotoTransform, SketchTransform
from sketchlvm.model.weights import load_clip

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"
BEST_FILE = "best.safetensors"
LAST_FILE = "last.safetensors"


class TripletImages(Dataset):
    """Index = (sketch, positive photo, negative photo, class id) -> the three image tensors + labels."""

    def __init__(self, sketch_paths, photo_paths, photo_labels, sketch_transform, photo_transform):
        self.sketch_paths, self.photo_paths = list(sketch_paths), list(photo_paths)
        self.photo_labels = np.asarray(photo_labels)
        self.sketch_transform, self.photo_transform = sketch_transform, photo_transform

    def __len__(self) -> int:
        return len(self.sketch_paths)

    def __getitem__(self, triplet):
        from sketchlvm.datasets.images import load_item  # files, or stroke drawings rendered by the transform
        from sketchlvm.preprocess.transforms import load_photo

        s, p, n, label = (int(v) for v in triplet)
        return (
            self.sketch_transform(load_item(self.sketch_paths[s])),
            self.photo_transform(load_photo(self.photo_paths[p])),
            self.photo_transform(load_photo(self.photo_paths[n])),
            label,
            int(self.photo_labels[n]),
        )


@dataclass
class TrainResult:
    encoder: PromptedVisionEncoder
    best_checkpoint: Path | None
    last_checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    test_metrics: dict[str, float] | None = None  # the best checkpoint on the unseen test classes


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _distributed(timeout_minutes: float = 180) -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun, with a timeout
    long enough for an evaluation (NCCL's default of 10 minutes is shorter than QuickDraw's ranking)."""
    from datetime import timedelta

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                                timeout=timedelta(minutes=timeout_minutes))
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _epoch_batches(sampler, mode: str, epoch: int, batch_size: int) -> list[np.ndarray]:
    """The epoch's batches as (B, 4) arrays [sketch, positive, negative, class]: pure in (seed, epoch)."""
    if mode == "category":
        sampler.set_epoch(epoch)
        batches = sampler.batches(batch_size, drop_last=True)
    else:
        batches = sampler.batches(epoch)
    return [np.concatenate([b.triplets, b.class_ids[:, None]], axis=1) for b in batches]


def _step_generator(seed: int, epoch: int, step: int, rank: int) -> torch.Generator:
    """The random stream of one optimiser step (patch-shuffle permutations): a pure function of
    (seed, epoch, step, rank), so a resumed run draws exactly what an uninterrupted one would have,
    whatever the global RNG did in between."""
    (state,) = np.random.SeedSequence([int(seed), int(epoch), int(step), int(rank)]).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state))


def _learning_rate_factor(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


@dataclass
class _Run:
    """One training run's parts, built by :func:`train`, so that an epoch and its end are plain functions of it.

    ``model`` is the encoder or, under torchrun, its DDP wrapper; ``state`` is what ``train_state.pt`` records
    (epoch, batch inside it, step, best score, history, the current epoch's losses)."""

    config: ExperimentConfig
    out: Path
    device: torch.device
    rank: int
    world: int
    encoder: PromptedVisionEncoder
    model: torch.nn.Module
    trainable_names: list[str]
    sketch_tf: SketchTransform
    photo_tf: PhotoTransform
    sampler: Any
    batch_size: int
    images: TripletImages
    classifier: TextClassifier
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    selection_data: Any
    test_data: Any
    metadata: dict[str, Any]
    state: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "batch": 0, "step": 0, "best": None,
                                                           "history": []})
    last_save: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]

    def save(self, name: str, metrics: dict | None = None, **extra) -> Path:
        meta = {**self.metadata, "metrics": metrics or {}, "epoch": self.state["epoch"], "step": self.state["step"],
                **extra}
        return save_checkpoint(self.out / name, {self.config.train.mode: learned_state(self.encoder, self.trainable_names)},
                               meta)

    def save_progress(self) -> None:
        """One atomic write holds everything a resume needs: the learned weights, the optimiser, the scaler and
        the position, all of the same step, so a kill at any moment leaves either the old state or the new one.
        ``history.jsonl`` and ``last.safetensors`` are written after it; resuming never reads them."""
        if self.rank != 0:
            return
        state_path = self.out / STATE_FILE
        tmp = state_path.with_suffix(".tmp")
        torch.save({"learned": learned_state(self.encoder, self.trainable_names),
                    "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                    "progress": self.state, "config": self.config.to_dict()}, tmp)
        os.replace(tmp, state_path)
        write_history(self.out, self.state["history"])
        self.save(LAST_FILE)

    def evaluate(self, data) -> dict[str, float]:
        """On every rank: each embeds its share; all get the same metrics (fp32, the evaluation default)."""
        common = dict(num_workers=self.config.data.num_workers, distributed=self.world > 1)
        if self.config.train.mode == "category":
            evaluation = evaluate_category(self.encoder, self.sketch_tf, self.photo_tf, data, self.device, **common)
        else:
            evaluation = evaluate_fine_grained(self.encoder, self.sketch_tf, self.photo_tf, data, self.device, **common)
        return evaluation.metrics


def train(config: ExperimentConfig, resume: bool = True, show_progress: bool = True) -> TrainResult:
    """Train one mode as configured; returns the encoder and where its checkpoints are."""
    config.check()
    tc = config.train
    rank, world = _distributed(tc.dist_timeout_minutes)
    device = resolve_device(tc.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    _seed_everything(tc.seed)
    out = Path(tc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = _build_run(config, out, device, rank, world)
    if resume and (out / STATE_FILE).exists():
        _resume(run)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

    run.encoder.train()
    while run.state["epoch"] < tc.epochs and not (tc.max_steps and run.state["step"] >= tc.max_steps):
        if not _train_epoch(run, show_progress):
            break  # stopped by max_steps inside the epoch: saved, nothing else
        _end_epoch(run)
    best = out / BEST_FILE
    if world > 1:
        dist.barrier()  # rank 0 has written the best checkpoint
    test_metrics = _test_best(best, run.encoder, run.trainable_names, run.evaluate, run.test_data, tc.select_on, rank)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(run.encoder, best if best.exists() else None, out / LAST_FILE, run.state["history"],
                       run.state["best"], test_metrics)


def _build_run(config: ExperimentConfig, out: Path, device: torch.device, rank: int, world: int) -> _Run:
    """Model (frozen CLIP, prompts + the trainable set), data, sampler, text classifier and optimiser, in the
    order that draws the seeded random numbers as every earlier run did."""
    tc, mc, lc, dc = config.train, config.model, config.loss, config.data
    clip_model, weights = load_clip(mc.arch, mc.pretrained, device)
    clip_model.requires_grad_(False)
    encoder = build_prompted_encoder(clip_model.visual, tc.mode, mc.n_prompts, mc.prompt_init_std)
    trainable = freeze_except(encoder, mc.trainable)
    trainable_names = trainable_parameter_names(encoder, mc.trainable)
    sketch_tf = SketchTransform(encoder.image_size, config.preprocess)
    photo_tf = PhotoTransform(encoder.image_size, config.preprocess)

    train_data, test_data = load_test_data(dc.dataset, dc.root, dc.split, dc.max_classes, dc.max_per_class,
                                           dc.fine_grained_gallery, dc.fine_grained_negatives)
    validation_record = None
    if tc.select_on == "validation":
        train_data, selection_data, validation_record = hold_out_validation(
            train_data, dc.validation_fraction, dc.validation_seed
        )
        log.info("validation split: %d sketches, %d photos of the training classes", validation_record["sketches"],
                 validation_record["photos"])
    else:
        selection_data = test_data
    sampler, batch_size = _sampler(config, train_data)
    images = TripletImages(train_data.sketch_paths, train_data.photo_paths, train_data.photo_labels, sketch_tf, photo_tf)
    tokenizer = open_clip.get_tokenizer(mc.arch)
    classifier = TextClassifier.from_clip(clip_model, tokenizer, train_data.class_names, lc, device).to(device)
    del clip_model.transformer  # the text tower is done once its class features are computed

    # prompts learn faster than the CLIP parameters they steer
    prompt_ids = {id(p) for p in encoder.prompts.parameters()}
    optimizer = torch.optim.Adam(
        [{"params": [p for p in trainable if id(p) in prompt_ids], "lr": tc.prompt_lr},
         {"params": [p for p in trainable if id(p) not in prompt_ids], "lr": tc.lr}],
        weight_decay=tc.weight_decay,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and tc.precision == "amp")
    model = torch.nn.parallel.DistributedDataParallel(encoder) if world > 1 else encoder
    metadata = {
        "arch": mc.arch,
        "pretrained": weights.identity(),
        "n_prompts": mc.n_prompts,
        "trainable": mc.trainable,
        **preprocess_metadata(config.preprocess, encoder.image_size),
        "training": {"dataset": dc.dataset, "root": str(dc.root), "split": dc.split, "classes": train_data.class_names,
                     "max_classes": dc.max_classes, "max_per_class": dc.max_per_class, "select_on": tc.select_on,
                     **({"fine_grained_negatives": dc.fine_grained_negatives,
                         "fine_grained_gallery": dc.fine_grained_gallery} if dc.dataset == "sketchy_fg" else {}),
                     **({"validation": validation_record} if validation_record else {}), "config": config.to_dict()},
    }
    return _Run(config, out, device, rank, world, encoder, model, trainable_names, sketch_tf, photo_tf, sampler,
                batch_size, images, classifier, optimizer, scaler, selection_data, test_data, metadata)


def _sampler(config: ExperimentConfig, train_data) -> tuple[Any, int]:
    """-> (the mode's triplet sampler over the training data, triplets per batch)."""
    tc, lc, dc = config.train, config.loss, config.data
    if tc.mode == "category":
        if not isinstance(train_data, CategoryDataset):
            raise ValueError(f"category mode needs a category dataset ({CATEGORY_DATASETS}), got {dc.dataset!r}")
        return CategoryTripletSampler(train_data.sketch_labels, train_data.photo_labels, seed=tc.seed), tc.batch_size
    if not isinstance(train_data, FineGrainedPairs):
        raise ValueError(f"fine-grained mode needs paired data (sketchy_fg, shoev2, chairv2), got {dc.dataset!r}")
    sampler = FineGrainedBatchSampler(
        train_data.pairs, tc.classes_per_batch, tc.samples_per_class, seed=tc.seed, photo_labels=train_data.photo_labels
    )
    if tc.classes_per_batch == 1 and (lc.classification_weight or lc.separation_weight):
        log.warning("one class per batch: the classification loss and the separation regulariser are identically 0 "
                    "(use the shoev2_fine_grained / chairv2_fine_grained presets, which set their weights to 0)")
    return sampler, sampler.batch_size


def _resume(run: _Run) -> None:
    """Load ``train_state.pt`` into the run, refusing one written by another model, mode, split or gallery."""
    config, out, dc, tc = run.config, run.out, run.config.data, run.config.train
    state_path = out / STATE_FILE
    try:  # tensors, numbers, strings and containers only: a pickle cannot run code here
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{state_path} holds more than a training state (objects a pickle would construct), "
                         "so it is not loaded; delete it, or pass another --out or --no-resume") from error
    now = config.to_dict()
    split_keys = ("validation_fraction", "validation_seed")
    if (saved["config"]["train"]["mode"] != tc.mode or saved["config"]["model"] != now["model"]
            or saved["config"]["train"].get("select_on", "test") != tc.select_on
            or (tc.select_on == "validation"
                and any(saved["config"]["data"].get(k) != now["data"][k] for k in split_keys))):
        raise ValueError(f"{out} holds a run with another model, mode or validation split (runs from before the "
                         f"validation split: --select-on test); pass another --out or --no-resume")
    # Runs from before the gallery option ranked and sampled among the distractors too; runs from before
    # the negatives option drew negatives from the gallery's photos.
    if dc.dataset == "sketchy_fg":
        was = saved["config"]["data"]
        gallery = was.get("fine_grained_gallery", "with-distractors")
        for key, before in (("fine_grained_gallery", gallery),
                            ("fine_grained_negatives", was.get("fine_grained_negatives", gallery))):
            if before != getattr(dc, key):
                raise ValueError(f"{out} holds a run with data.{key}={before}; pass --set data.{key}=... to "
                                 f"match it, another --out, or --no-resume")
    if "learned" in saved:  # the weights of the same step as the optimiser and the position
        apply_state(run.encoder, saved["learned"], str(state_path))
    else:  # a state file from before the weights moved into it: last.safetensors was written beside it
        log.warning("%s predates the one-file training state; taking the weights from %s", state_path, LAST_FILE)
        apply_state(run.encoder, load_checkpoint(out / LAST_FILE).states[tc.mode], f"{out / LAST_FILE}")
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scaler.load_state_dict(saved["scaler"])
    run.state = saved["progress"]
    if run.rank == 0:  # a kill between the state and its history left the file one line behind (or, before, ahead)
        write_history(out, run.state["history"])
    log.info("resuming %s at epoch %d, batch %d (step %d)", out, run.state["epoch"], run.state["batch"],
             run.state["step"])


def _train_epoch(run: _Run, show_progress: bool) -> bool:
    """The rest of the current epoch's batches. -> True when the epoch is done; False when ``max_steps``
    stopped it inside (its state saved, nothing evaluated or logged that a run going on from here would not)."""
    tc, state, rank, world = run.config.train, run.state, run.rank, run.world
    batches = _epoch_batches(run.sampler, tc.mode, state["epoch"], run.batch_size)
    if tc.steps_per_epoch:
        batches = batches[: tc.steps_per_epoch]
    batches = batches[rank::world][: len(batches) // world]  # equal counts per rank, no hang
    loader = DataLoader(run.images, batch_sampler=[b.tolist() for b in batches[state["batch"]:]],
                        num_workers=run.config.data.num_workers)
    bar = tqdm(loader, total=len(batches), initial=state["batch"], desc=f"epoch {state['epoch'] + 1}/{tc.epochs}",
               unit="batch", disable=not show_progress or rank != 0, dynamic_ncols=True)
    tick = time.monotonic()
    epoch_losses = state.setdefault("epoch_losses", [])  # kept in the state: a resumed epoch's mean is whole
    for batch in bar:
        loss = _train_step(run, *batch)
        epoch_losses.append(loss)
        state["step"] += 1
        state["batch"] += 1
        now = time.monotonic()
        bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{3 * len(batch[0]) / max(now - tick, 1e-9):.1f}")
        tick = now
        if now - run.last_save > 600:  # resumable mid-epoch, at most ten minutes lost
            run.save_progress()
            run.last_save = now
        if tc.max_steps and state["step"] >= tc.max_steps:
            break
    bar.close()
    if state["batch"] < len(batches):
        log.info("stopped by max_steps at step %d inside epoch %d; resumable, no evaluation made",
                 state["step"], state["epoch"] + 1)
        run.save_progress()
        return False
    return True


def _train_step(run: _Run, sketch, positive, negative, labels, negative_labels) -> float:
    """One optimiser step on one batch of triplets -> its total loss."""
    tc, lc, device, state, model = run.config.train, run.config.loss, run.device, run.state, run.model
    sketch, positive, negative = (t.to(device, non_blocking=True) for t in (sketch, positive, negative))
    labels, negative_labels = labels.to(device), negative_labels.to(device)
    for group, base in zip(run.optimizer.param_groups, run.base_lrs):
        group["lr"] = base * _learning_rate_factor(state["step"], tc.warmup_steps)
    with autocast(device, tc.precision):
        s = model(sketch, "sketch")
        p, n = model(torch.cat([positive, negative]), "photo").chunk(2)  # one batched photo pass
        if tc.mode == "category":
            loss, parts = category_loss(s, p, n, labels, run.classifier, lc, negative_labels=negative_labels)
        else:
            def patch_embeddings():
                generator = _step_generator(tc.seed, state["epoch"], state["step"], run.rank)
                ps, pp, pn = patch_shuffle_triplets(sketch, positive, lc.patch_grid, generator)
                return (model(ps, "sketch"), *model(torch.cat([pp, pn]), "photo").chunk(2))

            loss, parts = fine_grained_loss(s, p, n, labels, run.classifier, lc, patch=patch_embeddings)
    if not math.isfinite(parts["total"]):
        raise FloatingPointError(f"loss became {parts['total']} at step {state['step']}; lower the learning rate")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return parts["total"]


def _end_epoch(run: _Run) -> None:
    """A finished epoch: its history entry, the selection metric (keeping the best checkpoint), one saved state."""
    tc, state, rank = run.config.train, run.state, run.rank
    epoch_losses = state.get("epoch_losses", [])
    state["epoch"] += 1
    state["batch"] = 0
    state["epoch_losses"] = []
    entry: dict[str, Any] = {"epoch": state["epoch"], "step": state["step"],
                             "mean_loss": float(np.mean(epoch_losses)) if epoch_losses else None}
    if state["epoch"] % max(tc.eval_every, 1) == 0:
        metrics = run.evaluate(run.selection_data)
        entry["metrics"], entry["selected_on"] = metrics, tc.select_on
        score = metrics.get(tc.eval_metric)
        if score is None:
            raise ValueError(f"eval_metric {tc.eval_metric!r} is not measured; available: {sorted(metrics)}")
        if rank == 0:
            log.info("epoch %d (%s): %s", state["epoch"], tc.select_on, json.dumps(metrics))
        if tc.test_every_epoch and tc.select_on == "validation":
            entry["test_metrics"] = run.evaluate(run.test_data)  # for reporting only; never selects
        if state["best"] is None or score > state["best"]:
            state["best"] = score
            if rank == 0:
                run.save(BEST_FILE, metrics)
    state["history"].append(entry)
    run.save_progress()  # history.jsonl follows the state it is part of
    run.last_save = time.monotonic()
    if run.world > 1:
        dist.barrier()


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    """``history.jsonl``, one line per finished epoch, rewritten whole from the training state just committed:
    it never holds an epoch the state does not, so a resumed run cannot write an epoch twice."""
    if not history:
        return
    tmp = out / "history.jsonl.tmp"
    tmp.write_text("".join(json.dumps(entry) + "\n" for entry in history))
    os.replace(tmp, out / "history.jsonl")


def _test_best(best: Path, encoder, trainable_names, evaluate, test_data, select_on: str,
               rank: int = 0) -> dict[str, float] | None:
    """Measure the best checkpoint on the unseen test classes once (all ranks take part), and record
    it in its metadata (rank 0)."""
    if not best.exists():
        return None
    checkpoint = load_checkpoint(best)
    if "test_metrics" in checkpoint.metadata:  # a resumed run that had already finished
        return checkpoint.metadata["test_metrics"]
    (mode,) = checkpoint.modes
    current = learned_state(encoder, trainable_names)
    if select_on == "test":
        metrics = checkpoint.metadata["metrics"]  # already measured on the test classes
    else:
        apply_state(encoder, checkpoint.states[mode], str(best))
        metrics = evaluate(test_data)
        apply_state(encoder, current, "the last training state")
    if rank == 0:
        log.info("best checkpoint on the test classes: %s", json.dumps(metrics))
        save_checkpoint(best, checkpoint.states, {**checkpoint.metadata, "test_metrics": metrics})
    return metrics
