"""Evaluation: an encoder (trained, or plain zero-shot CLIP) on a dataset split -> metrics + report.

Always ranks the whole, deterministic gallery (never one sampled photo per sketch: see METHOD.md).
Category level ranks every unseen sketch against every unseen photo (plus the seen photos in the
generalised setting). Fine-grained Acc@k (is the sketch's own photo in the top k?) is reported
under both protocols, named so: ``Acc@k_within_class`` ranks each sketch among the photos of its own
class; ``Acc@k_whole_gallery`` among every unseen-class photo (the cross-category setting as later
papers describe it).

The command line is ``cli.py`` (``python -m sketchlvm evaluate --help``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sketchlvm.config import ACCURACY_KS, MEASURED_METRICS
from sketchlvm.datasets import CategoryDataset, FineGrainedPairs, list_class_folders, load_category_split, split_classes
from sketchlvm.datasets.fine_grained import DEFAULT_FINE_GRAINED_GALLERY, FINE_GRAINED_GALLERIES
from sketchlvm.evaluation.embedding import embed_items
from sketchlvm.model.encoder import PromptedVisionEncoder
from sketchlvm.evaluation.metrics import RetrievalResult, evaluate_retrieval

log = logging.getLogger(__name__)

# What each mode measures (config.MEASURED_METRICS), so a checkpoint-selection metric can be checked before
# training starts.
METRIC_NAMES = MEASURED_METRICS
CATEGORY_DATASETS = ("sketchy", "tuberlin", "quickdraw")
FINE_GRAINED_DATASETS = ("sketchy_fg", "shoev2", "chairv2")
DEFAULT_SPLITS = {"sketchy": "sketchy_21", "tuberlin": "tuberlin_30", "quickdraw": "quickdraw_30", "sketchy_fg": "sketchy_21"}
# Which headline metric each benchmark reports in the paper (Table 1).
HEADLINE = {
    "sketchy": ("mAP@200", "P@200"),
    "tuberlin": ("mAP@all", "P@100"),
    "quickdraw": ("mAP@all", "P@200"),
    "sketchy_fg": ("Acc@1_within_class", "Acc@5_within_class"),
    "shoev2": ("Acc@1_within_class", "Acc@10_within_class"),  # one class: both protocols agree
    "chairv2": ("Acc@1_within_class", "Acc@10_within_class"),
}


@dataclass
class Evaluation:
    """Features and results of one evaluation run (features kept for reports and .npz export)."""

    result: RetrievalResult
    query_features: np.ndarray
    query_labels: np.ndarray
    gallery_features: np.ndarray
    gallery_labels: np.ndarray
    query_items: list
    gallery_items: list
    query_ids: np.ndarray | None = None
    gallery_ids: np.ndarray | None = None

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.metrics


def evaluate_category(
    encoder: PromptedVisionEncoder,
    sketch_transform,
    photo_transform,
    test: CategoryDataset,
    device: torch.device,
    extra_gallery: CategoryDataset | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    precision: str = "fp32",
    distributed: bool = False,
) -> Evaluation:
    """Category-level ZS-SBIR: labels are class names, so a generalised gallery can mix datasets.

    ``distributed``: call on every rank; each embeds its share (see ``embed_items``) and every rank
    gets the same metrics."""
    query_labels = np.asarray([test.class_names[i] for i in test.sketch_labels])
    gallery_items = list(test.photo_paths)
    gallery_labels = [test.class_names[i] for i in test.photo_labels]
    if extra_gallery is not None:
        gallery_items += list(extra_gallery.photo_paths)
        gallery_labels += [extra_gallery.class_names[i] for i in extra_gallery.photo_labels]
    sketches = embed_items(encoder, test.sketch_paths, "sketch", sketch_transform, device, batch_size, num_workers,
                           desc="sketches", precision=precision, distributed=distributed)
    photos = embed_items(encoder, gallery_items, "photo", photo_transform, device, batch_size, num_workers,
                         desc="photos", precision=precision, distributed=distributed)
    gallery_labels = np.asarray(gallery_labels)
    result = evaluate_retrieval(sketches, query_labels, photos, gallery_labels)
    return Evaluation(result, sketches, query_labels, photos, gallery_labels, list(test.sketch_paths), gallery_items)


def fine_grained_result(
    query_features: np.ndarray,
    query_labels: np.ndarray,
    query_ids: np.ndarray,
    gallery_features: np.ndarray,
    gallery_labels: np.ndarray,
    gallery_ids: np.ndarray,
) -> RetrievalResult:
    """Acc@k under both protocols (``_within_class``, ``_whole_gallery``); other metrics over all photos.

    The class-level metrics (mAP, P@k) and ``Acc@k_whole_gallery`` come from one ranking over the
    whole gallery; ``Acc@k_within_class`` from the per-class rankings, merged back into query order.
    ``per_query["match_rank"]`` is the within-class rank (-1: the sketch's photo is missing; such sketches
    are left out of Acc@k under both protocols and counted in ``n_without_match``; a class none of whose
    sketches has its photo is left out of the within-class pass and counted in ``n_classes_without_match``).
    """
    overall = evaluate_retrieval(query_features, query_labels, gallery_features, gallery_labels,
                                 query_ids, gallery_ids, accuracy_ks=ACCURACY_KS)
    for k in ACCURACY_KS:
        overall.metrics[f"Acc@{k}_whole_gallery"] = overall.metrics.pop(f"Acc@{k}")
    overall.per_query["match_rank_whole_gallery"] = overall.per_query.pop("match_rank")
    match_rank = np.full(len(query_labels), -1, dtype=np.int64)
    for label in np.unique(query_labels):
        q = np.flatnonzero(query_labels == label)
        g = np.flatnonzero(gallery_labels == label)
        if not np.isin(query_ids[q], gallery_ids[g]).any():  # no sketch of the class has its photo: left out,
            overall.n_classes_without_match += 1            # as the whole-gallery pass leaves its sketches out
            continue
        within = evaluate_retrieval(
            query_features[q], query_labels[q], gallery_features[g], gallery_labels[g],
            query_ids[q], gallery_ids[g], precision_ks=(1,), map_cutoff=1, no_relevant="zero",
        )
        match_rank[q] = within.per_query["match_rank"]
    # A sketch whose own photo is not in the gallery is left out of Acc@k under both protocols (the
    # metric module's "exclude" policy, which the whole-gallery ranking above applies), so the two agree;
    # the report states how many there were (n_without_match).
    found = match_rank >= 0
    for k in ACCURACY_KS:
        overall.metrics[f"Acc@{k}_within_class"] = float(np.mean(match_rank[found] < k)) if found.any() else float("nan")
    overall.per_query["match_rank"] = match_rank
    return overall


def evaluate_fine_grained(
    encoder: PromptedVisionEncoder,
    sketch_transform,
    photo_transform,
    pairs: FineGrainedPairs,
    device: torch.device,
    batch_size: int = 64,
    num_workers: int = 0,
    precision: str = "fp32",
    distributed: bool = False,
) -> Evaluation:
    sketches = embed_items(encoder, pairs.sketch_paths, "sketch", sketch_transform, device, batch_size, num_workers,
                           desc="sketches", precision=precision, distributed=distributed)
    photos = embed_items(encoder, pairs.photo_paths, "photo", photo_transform, device, batch_size, num_workers,
                         desc="photos", precision=precision, distributed=distributed)
    query_labels = np.asarray([pairs.class_names[i] for i in pairs.sketch_labels])
    gallery_labels = np.asarray([pairs.class_names[i] for i in pairs.photo_labels])
    query_ids = np.asarray(pairs.sketch_photo_ids)
    gallery_ids = np.asarray(pairs.photo_ids)
    result = fine_grained_result(sketches, query_labels, query_ids, photos, gallery_labels, gallery_ids)
    return Evaluation(
        result, sketches, query_labels, photos, gallery_labels, list(pairs.sketch_paths), list(pairs.photo_paths),
        query_ids, gallery_ids,
    )


def load_test_data(dataset: str, root: str | Path, split: str | None, max_classes: int = 0, max_per_class: int = 0,
                   fg_gallery: str = DEFAULT_FINE_GRAINED_GALLERY, fg_seen_photos: str | None = None):
    """-> (seen part, unseen part) of a dataset: CategoryDataset or FineGrainedPairs. ``fg_gallery``: which
    Sketchy photos a fine-grained gallery holds (``FINE_GRAINED_GALLERIES``; default the sketched ones);
    ``fg_seen_photos``: the same choice for the seen part (training: where hard negatives come from),
    default ``fg_gallery``."""
    if dataset in CATEGORY_DATASETS:
        return load_category_split(root, split or DEFAULT_SPLITS[dataset], max_classes, max_per_class)
    if dataset == "sketchy_fg":
        seen, unseen = split_classes(list_class_folders(root), split or DEFAULT_SPLITS[dataset])
        return (
            FineGrainedPairs.sketchy(root, seen, max_classes, max_per_class, fg_seen_photos or fg_gallery),
            FineGrainedPairs.sketchy(root, unseen, max_classes, max_per_class, fg_gallery),
        )
    if dataset in ("shoev2", "chairv2"):
        return FineGrainedPairs.qmul(root, "train"), FineGrainedPairs.qmul(root, "test")
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {CATEGORY_DATASETS + FINE_GRAINED_DATASETS}")


def describe_protocol(dataset: str, generalised: bool = False, fg_gallery: str = DEFAULT_FINE_GRAINED_GALLERY) -> str:
    """One sentence on how the numbers were measured, for reports."""
    if dataset in CATEGORY_DATASETS:
        gallery = "every unseen-class photo plus every seen-class photo (generalised)" if generalised else \
            "every unseen-class photo"
        return (f"category-level zero-shot SBIR: every unseen-class sketch ranked against {gallery}; a photo is "
                f"relevant when its class matches (SAKE-style VOC-interpolated AP)")
    gallery = f"; gallery: {FINE_GRAINED_GALLERIES[fg_gallery]}" if dataset == "sketchy_fg" else ""
    return ("fine-grained: Acc@k of each sketch's own photo, ranked among the photos of the sketch's class "
            f"(Acc@k_within_class) and among every photo of the evaluated classes (Acc@k_whole_gallery){gallery}")


def evaluate_features_file(path: str | Path) -> Evaluation:
    """Score any model's features: an .npz with query/gallery features and labels (and optional ids)."""
    with np.load(path, allow_pickle=False) as data:
        required = ("query_features", "query_labels", "gallery_features", "gallery_labels")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"{path} lacks arrays {missing}; it needs {list(required)} (+ optional query_ids, gallery_ids)")
        arrays = {k: data[k] for k in data.files}
    q_ids, g_ids = arrays.get("query_ids"), arrays.get("gallery_ids")
    args = (arrays["query_features"], arrays["query_labels"], arrays["gallery_features"], arrays["gallery_labels"])
    if q_ids is not None and g_ids is not None:
        result = fine_grained_result(args[0], args[1], q_ids, args[2], args[3], g_ids)
    else:
        result = evaluate_retrieval(*args)
    n_q, n_g = len(args[1]), len(args[3])
    return Evaluation(result, args[0], args[1], args[2], args[3], list(range(n_q)), list(range(n_g)), q_ids, g_ids)



