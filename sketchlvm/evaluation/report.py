"""Evaluation outputs written into one folder: metrics.json, summary.md, pr_curve.png, examples.png.

Only files are produced here (no pyplot state, no display): matplotlib draws through its Agg canvas
and the example grid is plain PIL, so this works on a headless server and inside tests.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageOps

logger = logging.getLogger(__name__)

# Where each published row comes from (the papers, never this repository's notes).
PAPER_SOURCES = (
    ("CLIP for All Things and the pre-CLIP baselines: Sain, Bhunia, Chowdhury, Koley, Xiang, Song, \"CLIP for "
     "All Things: Zero-Shot Sketch-Based Image Retrieval, Fine-Grained or Not\", CVPR 2023 (arXiv:2303.13440)."),
    ("SpLIP: Singha, Jha, Gupta, Singla, Banerjee, \"Elevating All Zero-Shot Sketch-Based Image Retrieval Through "
     "Multimodal Prompt Learning\", ECCV 2024 (arXiv:2407.04207)."),
    ("Off-the-shelf CLIP ViT-L/14: as reported by later work comparing against Sain et al. (CVPR 2023); "
     "we have not checked that table against its source."),
)

# Published numbers, as fractions (Acc@k are percentages in the papers). Each dataset lists the
# metrics reported for it, and one row per method. The papers use the usual ZS-SBIR (SAKE-style)
# evaluation: VOC-interpolated AP, mAP@200 with denominator min(200, relevant).
PAPER_NUMBERS: dict[str, dict[str, Any]] = {
    "sketchy": {
        "title": "Sketchy-extended, 21 unseen classes",
        "metrics": ("mAP@200", "P@200"),
        "rows": {
            "CLIP for All Things (paper)": {"mAP@200": 0.723, "P@200": 0.725},
            "Off-the-shelf CLIP ViT-L/14 (no training)": {"mAP@200": 0.250, "P@200": 0.261},
            "Best pre-CLIP (Sketch3T / PSKD / CC-DG)": {"mAP@200": 0.579, "P@200": 0.648},
            "SpLIP (ECCV 2024)": {"mAP@200": 0.764, "P@200": 0.773},
        },
    },
    "tuberlin": {
        "title": "TU-Berlin-extended, 30 unseen classes",
        "metrics": ("mAP@all", "P@100"),
        "rows": {
            "CLIP for All Things (paper)": {"mAP@all": 0.651, "P@100": 0.732},
            "Off-the-shelf CLIP ViT-L/14 (no training)": {"mAP@all": 0.228, "P@100": 0.257},
            "Best pre-CLIP (Sketch3T / PSKD / CC-DG)": {"mAP@all": 0.507, "P@100": 0.671},
            "SpLIP (ECCV 2024)": {"mAP@all": 0.731, "P@100": 0.782},
        },
    },
    "quickdraw": {
        "title": "QuickDraw-extended, 30 unseen classes",
        "metrics": ("mAP@all", "P@200"),
        "rows": {
            "CLIP for All Things (paper)": {"mAP@all": 0.202, "P@200": 0.388},
            "Off-the-shelf CLIP ViT-L/14 (no training)": {"mAP@all": 0.080, "P@200": 0.141},
            "Best pre-CLIP (Sketch3T / PSKD / CC-DG)": {"mAP@all": 0.150, "P@200": 0.298},
            "SpLIP (ECCV 2024)": {"mAP@all": 0.342, "P@200": 0.446},
        },
    },
    "sketchy_fg": {
        "title": "Sketchy fine-grained, 21 unseen classes",
        # The papers do not state the gallery; within the sketch's class is the usual reading of
        # the earlier fine-grained ZS-SBIR work they compare with, so ours is shown that way.
        "protocol": ("Acc@k within the sketch's class, among the photos that have sketches (the original Sketchy "
                     "photos; --fg-gallery sketched). The papers do not state the gallery; this is our reading, "
                     "see docs/evaluation.md"),
        "metrics": ("Acc@1_within_class", "Acc@5_within_class"),
        "rows": {
            "CLIP for All Things (paper)": {"Acc@1_within_class": 0.2868, "Acc@5_within_class": 0.6234},
            "Off-the-shelf CLIP ViT-L/14 (no training)": {"Acc@1_within_class": 0.1184, "Acc@5_within_class": 0.2166},
            "Best pre-CLIP (Sketch3T / PSKD / CC-DG)": {"Acc@1_within_class": 0.226, "Acc@5_within_class": 0.490},
            "SpLIP (ECCV 2024)": {"Acc@1_within_class": 0.3345, "Acc@5_within_class": 0.6671},
        },
    },
    # Within-category fine-grained sets: no published numbers are recorded here yet, but the summary
    # leads with the two figures these benchmarks report.
    "shoev2": {"title": "QMUL ShoeV2 (within-category fine-grained)",
               "metrics": ("Acc@1_within_class", "Acc@10_within_class"), "rows": {}},
    "chairv2": {"title": "QMUL ChairV2 (within-category fine-grained)",
                "metrics": ("Acc@1_within_class", "Acc@10_within_class"), "rows": {}},
}

METRIC_NOTES = {
    "mAP@all": "VOC-interpolated AP over the whole gallery (SAKE-style), denominator = relevant photos",
    "mAP@all_noninterp": "non-interpolated AP over the whole gallery (scikit-learn's average_precision_score, as "
    "the QuickDraw-extended baselines report it), denominator = relevant photos; the paper's table uses mAP@all",
    "mAP@200": "VOC-interpolated AP on the top 200 (SAKE-style), denominator = min(200, relevant)",
    "mAP@200_lenient": "non-interpolated AP of the top-200 list, denominator = relevant found in it "
    "(scikit-learn / torchmetrics on the truncated list); not comparable to the papers",
    "P@100": "relevant photos in the top 100 / 100",
    "P@200": "relevant photos in the top 200 / 200",
    **{f"Acc@{k}_within_class": f"share of sketches whose own photo is in the top {k} among the photos of "
       f"the sketch's class" for k in (1, 5, 10)},
    **{f"Acc@{k}_whole_gallery": f"share of sketches whose own photo is in the top {k} among every photo of "
       f"the evaluated classes (cross-category)" for k in (1, 5, 10)},
}


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, so a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays, Paths, tuples and NaN -> plain JSON values (NaN -> null)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def write_metrics_json(
    out_dir: str | Path, metrics: Mapping[str, float], extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``out_dir/metrics.json``: the metric keys at top level (fractions in [0, 1]) and,
    when given, ``extra`` (checkpoint, config, dataset, counts...) under the key ``"extra"``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "extra" in metrics:
        raise ValueError("'extra' is reserved for metadata; rename that metric")
    doc: dict[str, Any] = {str(k): _jsonable(float(v)) for k, v in metrics.items()}
    if extra is not None:
        doc["extra"] = _jsonable(extra)
    path = out / "metrics.json"
    _atomic_write(path, (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode())
    return path


def _fmt(metric: str, value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.2f}" if metric.startswith("Acc@") else f"{value:.3f}"


def _is_random(weights: Any) -> bool:
    return "random" in str(weights).lower()


def measured_facts(info: Mapping[str, Any] | None) -> dict[str, str]:
    """What was measured, as label -> text, from the evaluator's ``info`` (missing facts say so)."""
    info = info or {}
    model = info.get("model") if isinstance(info.get("model"), Mapping) else {}
    checkpoint = info.get("checkpoint")
    if isinstance(checkpoint, Mapping):
        checkpoint = f"{checkpoint.get('path')} (sha256 {str(checkpoint.get('sha256'))[:12]}…)"
    facts = {
        "model": model.get("model") or info.get("model") or "not recorded (scored from a features file)",
        "weights": model.get("weights") or "not recorded",
        "checkpoint": checkpoint or model.get("checkpoint") or "not recorded",
        "dataset": " ".join(str(x) for x in (info.get("dataset"), info.get("root")) if x) or "not recorded",
        "split": str(info.get("split") or "not recorded") + (f" ({info['split_source']})" if info.get("split_source") else ""),
        "protocol": info.get("protocol") or "not recorded",
    }
    if info.get("encoder"):
        facts["encoder"] = str(info["encoder"])
    if info.get("seen_in_training"):
        seen = list(info["seen_in_training"])
        facts["test classes seen in training"] = (f"{len(seen)} of {len(info.get('classes') or [])} "
                                                  f"(--allow-seen-classes): {', '.join(map(str, seen))}")
    if info.get("framing"):
        facts["sketch framing"] = f"{info['framing']} ({info.get('framing_source', 'source not recorded')})"
    if model.get("runtime"):
        facts["embedded by"] = str(model["runtime"])
    if info.get("classes") is not None:
        classes = list(info["classes"])
        facts["classes"] = f"{len(classes)}: {', '.join(map(str, classes))}"
    caps = [f"--{k.replace('_', '-')} {info[k]}" for k in ("max_classes", "max_per_class") if info.get(k)]
    if caps:
        facts["caps"] = ", ".join(caps)
    if isinstance(info.get("gallery_photos"), Mapping):
        g = info["gallery_photos"]
        per = g.get("photos_per_class", {})
        facts["fine-grained gallery"] = (
            f"{info.get('fg_gallery', '?')}: {g.get('photos')} photos, {g.get('photos_with_sketches')} of them "
            f"sketched; {per.get('min')}-{per.get('max')} photos per class (mean {per.get('mean', 0):.1f})")
    if info.get("fg_training_negatives"):
        facts["training negatives"] = (f"{info['fg_training_negatives']} (the checkpoint's "
                                       "data.fine_grained_negatives; the gallery above is chosen apart)")
    if info.get("queries_without_own_photo"):
        facts["sketches without their photo"] = (f"{info['queries_without_own_photo']}: left out of every Acc@k "
                                                 "(both protocols)")
    if info.get("classes_without_own_photos"):
        facts["classes without their sketches' photos"] = (f"{info['classes_without_own_photos']}: no sketch of "
                                                            "theirs has its photo, so they are left out of Acc@k")
    if info.get("features"):
        facts["features file"] = str(info["features"])
    return facts


def summary_markdown(metrics: Mapping[str, float], dataset_key: str, info: Mapping[str, Any] | None = None) -> str:
    """The Markdown text of :func:`write_summary_markdown`. The published rows stand beside ours only when
    the run's protocol is the published one (:func:`~sketchlvm.evaluation.comparability.paper_verdict`);
    otherwise one line says why not."""
    from sketchlvm.evaluation.comparability import paper_verdict, verdict_line

    zero_shot = bool(info and str(info.get("encoder", "")).startswith("zero-shot"))
    lines = [f"# Evaluation: {dataset_key}" + (" with zero-shot CLIP (no trained prompts for this mode)"
                                                if zero_shot else ""), ""]
    facts = measured_facts(info)
    if _is_random(facts["weights"]):
        lines += [("> **RANDOM WEIGHTS.** The backbone was not pretrained: these numbers say nothing about the "
                   "method or the paper and must not be compared with the published ones."), ""]
    lines += ["## What was measured", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in facts.items()]
    lines.append("")
    ref = PAPER_NUMBERS.get(dataset_key)
    verdict = (info or {}).get("comparable_to_paper") or paper_verdict(dataset_key, info)
    if ref is None:
        logger.warning("no published numbers for dataset %r; known: %s", dataset_key, ", ".join(PAPER_NUMBERS))
        lines += [f"No published numbers to compare against for `{dataset_key}`.", ""]
    elif ref["rows"] and not verdict["comparable"]:
        lines += [f"## {ref['title']}: not compared", "", verdict_line(verdict), "",
                  "Ours, on this run: " + ", ".join(f"{c} {_fmt(c, metrics.get(c))}" for c in ref["metrics"]), ""]
    else:
        cols = ref["metrics"]
        heading = "ours beside the published numbers" if ref["rows"] else "the figures this benchmark reports"
        lines += [f"## {ref['title']}: {heading}", ""]
        lines.append("| method | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        ours = "**ours** (zero-shot CLIP, no trained prompts)" if zero_shot else "**ours**"
        lines.append(f"| {ours} | " + " | ".join(_fmt(c, metrics.get(c)) for c in cols) + " |")
        for name, row in ref["rows"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(c, row.get(c)) for c in cols) + " |")
        if ref.get("protocol"):
            lines += ["", f"Published protocol: {ref['protocol']}."]
        if ref["rows"]:
            lines += ["", "Published numbers from:", ""] + [f"- {source}" for source in PAPER_SOURCES] + [""]
        else:
            lines += ["", "No published numbers are recorded here for this benchmark.", ""]
    lines += ["## All our metrics", "", "| metric | value | convention |", "|---|---|---|"]
    for key, value in metrics.items():
        lines.append(f"| {key} | {_fmt(key, value)} | {METRIC_NOTES.get(key, '')} |")
    lines += [
        "",
        "mAP and P@k are fractions; Acc@k are percentages. AP convention: mAP@all and mAP@200 are "
        "VOC-interpolated (precision made monotone from the right, integrated over recall), as in "
        "the SAKE evaluation code the papers use: CLIP for All Things' mAP@all is this interpolated value. "
        "mAP@all_noninterp is the non-interpolated AP over the whole gallery (scikit-learn's average "
        "precision, which the QuickDraw-extended baselines report); mAP@200_lenient is the non-interpolated value with "
        "only the relevant photos found in the top 200 as denominator (it can read higher or lower). Every query is ranked against the whole gallery "
        "(ties: lower gallery index first).",
        "",
    ]
    return "\n".join(lines)


def write_summary_markdown(
    out_dir: str | Path, metrics: Mapping[str, float], dataset_key: str, info: Mapping[str, Any] | None = None
) -> Path:
    """Write ``out_dir/summary.md``: what was measured (model, weights, checkpoint, data, split,
    protocol, from ``info``), our numbers beside the papers' (PAPER_NUMBERS[dataset_key]), then
    every metric with its AP convention. Unknown datasets get our numbers only."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.md"
    _atomic_write(path, summary_markdown(metrics, dataset_key, info).encode())
    return path


def plot_precision_recall(
    out_dir: str | Path,
    curve: tuple[np.ndarray, np.ndarray] | Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str = "Mean interpolated precision-recall",
) -> Path:
    """Write ``out_dir/pr_curve.png``.

    curve: ``(recall (P,), precision (P,))`` as returned by ``metrics.precision_recall_curve``,
    or ``{label: (recall, precision)}`` to overlay several models.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = dict(curve) if isinstance(curve, Mapping) else {"": curve}
    fig = Figure(figsize=(5, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, (recall, precision) in curves.items():
        recall, precision = np.asarray(recall, dtype=float), np.asarray(precision, dtype=float)
        if recall.shape != precision.shape or recall.ndim != 1:
            raise ValueError(
                f"curve {label!r}: recall {recall.shape} and precision {precision.shape} must be equal 1-D"
            )
        ax.plot(recall, precision, marker="o" if recall.size <= 21 else None, markersize=3, label=label or None)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="interpolated precision")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    if any(curves):
        ax.legend(loc="upper right")
    fig.tight_layout()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pr_curve.png"
    fig.savefig(path, metadata={"Title": title})
    return path


def _tile(path: str | Path, size: int) -> Image.Image:
    """An image fitted inside a white size x size tile (aspect kept); a grey tile if unreadable."""
    canvas = Image.new("RGB", (size, size), "white")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                flat = Image.new("RGBA", im.size, "white")
                flat.alpha_composite(im)
                im = flat
            im = ImageOps.contain(im.convert("RGB"), (size, size))
    except (OSError, ValueError) as e:
        logger.warning("example grid: cannot read %s (%s)", path, e)
        canvas = Image.new("RGB", (size, size), (200, 200, 200))
        ImageDraw.Draw(canvas).text((6, size // 2 - 6), "unreadable", fill="black")
        return canvas
    canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return canvas


def write_example_grid(
    out_dir: str | Path,
    query_paths: Sequence[str | Path],
    gallery_paths: Sequence[str | Path],
    top_indices: np.ndarray,
    relevant_mask: np.ndarray,
    n_queries: int = 8,
    k: int = 5,
    tile: int = 112,
    border: int = 5,
    query_labels: Sequence[Any] | None = None,
    gallery_labels: Sequence[Any] | None = None,
) -> Path:
    """Write ``out_dir/examples.png``: one row per query, the sketch then its top-k photos framed
    green (relevant) or red (not). With ``query_labels`` (Q,) and ``gallery_labels`` (N,) a caption
    under each tile names the query's class and each result's rank and class.

    top_indices (Q, >=k) gallery indices best first (``metrics.top_k``), relevant_mask (Q, >=k)
    bool, aligned with top_indices. ``n_queries`` rows are taken evenly spaced over the Q queries,
    so a class-sorted query list shows several classes.
    """
    top = np.asarray(top_indices)
    rel = np.asarray(relevant_mask, dtype=bool)
    if top.ndim != 2 or rel.shape != top.shape:
        raise ValueError(f"top_indices {top.shape} and relevant_mask {rel.shape} must be the same (Q, k) shape")
    if top.shape[0] != len(query_paths):
        raise ValueError(f"{top.shape[0]} rows of top_indices for {len(query_paths)} query paths")
    if top.size and (top.min() < 0 or top.max() >= len(gallery_paths)):
        raise ValueError(f"top_indices out of range for {len(gallery_paths)} gallery paths")
    if k < 1 or n_queries < 1:
        raise ValueError(f"k and n_queries must be >= 1; got k={k}, n_queries={n_queries}")
    k = min(k, top.shape[1])
    rows = np.unique(np.linspace(0, len(query_paths) - 1, min(n_queries, len(query_paths))).round().astype(int))

    labelled = query_labels is not None and gallery_labels is not None
    cell, gap = tile + 2 * border, 4
    caption = 14 if labelled else 0  # one line of PIL's default font under each tile
    sep = 3 * gap  # wider gap between the query and its results
    width = cell * (k + 1) + gap * (k - 1) + sep + 2 * gap
    height = max(len(rows), 1) * (cell + caption + gap) + gap
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    colours = {True: (40, 170, 60), False: (210, 40, 40), None: (90, 90, 90)}

    def put(path, x, y, relevant, text=None):
        draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colours[relevant])
        grid.paste(_tile(path, tile), (x + border, y + border))
        if text is not None:
            while len(text) > 1 and draw.textlength(text) > cell:
                text = text[:-2] + "…"
            draw.text((x, y + cell + 1), text, fill=(0, 0, 0))

    for r, qi in enumerate(rows):
        y = gap + r * (cell + caption + gap)
        put(query_paths[qi], gap, y, None, f"query: {query_labels[qi]}" if labelled else None)
        for j in range(k):
            x = gap + cell + sep + j * (cell + gap)
            g = int(top[qi, j])
            put(gallery_paths[g], x, y, bool(rel[qi, j]), f"#{j + 1} {gallery_labels[g]}" if labelled else None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "examples.png"
    grid.save(path)
    return path


def write_report(out_dir: str | Path, evaluation: Any, dataset_key: str | None, info: Mapping[str, Any] | None = None) -> None:
    """Everything an evaluation writes: metrics.json, summary.md, pr_curve.png and examples.png.

    ``evaluation`` is a :class:`sketchlvm.evaluation.evaluate.Evaluation`. The example grid is drawn only when
    the queries and gallery are files (not for scored ``.npz`` features).
    """
    from sketchlvm.evaluation.comparability import paper_verdict
    from sketchlvm.evaluation.metrics import top_k

    result = evaluation.result
    info = {**(info or {})}
    if evaluation.query_ids is not None:
        info["queries_without_own_photo"] = result.n_without_match
        info["classes_without_own_photos"] = result.n_classes_without_match
    info.setdefault("comparable_to_paper", paper_verdict(dataset_key, info))
    extra = {**info, "queries_without_relevant": result.n_without_relevant}
    write_metrics_json(out_dir, result.metrics, extra)
    write_summary_markdown(out_dir, result.metrics, dataset_key or "custom", info)
    facts = measured_facts(info)
    title = f"{facts['model']} ({facts['weights']})\n{dataset_key or 'custom'}, {facts['split']}"
    plot_precision_recall(out_dir, (result.pr_recall, result.pr_precision), title=title)
    if evaluation.query_items and isinstance(evaluation.query_items[0], (str, Path)):
        rows = np.unique(np.linspace(0, len(evaluation.query_items) - 1, min(8, len(evaluation.query_items))).round().astype(int))
        _, top = top_k(evaluation.query_features[rows], evaluation.gallery_features, 5)
        if evaluation.query_ids is not None:  # fine-grained: only the sketch's own photo is right
            relevant = np.asarray(evaluation.gallery_ids)[top] == np.asarray(evaluation.query_ids)[rows][:, None]
        else:
            relevant = evaluation.gallery_labels[top] == evaluation.query_labels[rows][:, None]
        write_example_grid(out_dir, [evaluation.query_items[i] for i in rows], evaluation.gallery_items, top, relevant,
                           query_labels=[evaluation.query_labels[i] for i in rows],
                           gallery_labels=list(evaluation.gallery_labels))


if __name__ == "__main__":  # a library module: say where its reports come from instead of doing nothing
    import sys

    print("sketchlvm.evaluation.report writes the reports of `sketchlvm evaluate`; it is not a command. "
          "Run: sketchlvm evaluate --help", file=sys.stderr)
    sys.exit(2)
