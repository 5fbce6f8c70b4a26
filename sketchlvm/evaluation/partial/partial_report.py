"""Partial-sketch evaluation outputs: partial_metrics.json, partial_summary.md, partial_curve.png.

Each file says what was measured: the model and its weights (random weights in capitals), the
checkpoint, the sketches and photos, the step unit and the protocol, and cites the paper the
on-the-fly summary comes from. Plots draw through matplotlib's Agg canvas (no pyplot state).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CITATION = (
    "Bhunia, Yang, Hospedales, Xiang, Song: \"Sketch Less for More: On-the-Fly Fine-Grained Sketch "
    "Based Image Retrieval\", CVPR 2020 (arXiv 2002.10310)"
)
DEFINITIONS = {
    "m@B": "mean over sketches and steps of 1/rank of the target photo (rank 1 = first)",
    "m@A": "mean over sketches and steps of the ranking percentile (N - rank) / (N - 1), N = gallery size",
    "target": {
        "category": "the first photo of the sketch's class in the ranking",
        "fine_grained": "the photo the sketch was drawn from",
    },
}
RANDOM_WARNING = "RANDOM WEIGHTS: these numbers measure nothing about a trained model (tests only)"


def _plain(value: Any) -> Any:
    """numpy values, tuples and non-finite floats -> JSON (NaN -> null)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _is_random(info: Mapping[str, Any]) -> bool:
    return "random" in str(info.get("model", {}).get("weights", "")).lower()


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # never half a file
    return path


def _caps(info: Mapping[str, Any]) -> str:
    names = {"max_classes": "--max-classes", "max_photos_per_class": "--max-photos-per-class",
             "limit_per_class": "--limit-per-class"}
    return ", ".join(f"{flag} {info[key]}" for key, flag in names.items() if info.get(key))


def _seen_line(info: Mapping[str, Any]) -> str:
    """Which scored classes the model was trained on: a checkpoint scored on its training classes is not zero-shot."""
    classes = [photo for _, photo in info.get("classes", [])]
    seen = info.get("seen_in_training")
    if seen is None:
        return "- classes seen in training: not recorded in the checkpoint"
    unseen = [c for c in classes if c not in set(seen)]
    return (f"- classes seen in training: {len(seen)} of {len(classes)}"
            + (f" ({', '.join(seen)})" if seen else "") + f"; unseen (zero-shot): {len(unseen)}")


def partial_document(result: Any, info: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document: summary, per-step values, what was measured."""
    return _plain({
        "summary": result.summary,
        "unit": result.unit,
        "protocol": result.protocol,
        "percent_of_sketch": [100 * f for f in result.fractions],
        "steps": result.steps,
        "gallery_size": result.gallery_size,
        "definitions": {"m@B": DEFINITIONS["m@B"], "m@A": DEFINITIONS["m@A"],
                        "target": DEFINITIONS["target"][result.protocol]},
        "citation": CITATION,
        "random_weights": _is_random(info),
        "extra": dict(info),
    })


def partial_markdown(result: Any, info: Mapping[str, Any]) -> str:
    model = info.get("model", {})
    lines = ["# Partial-sketch (on-the-fly) evaluation", ""]
    if _is_random(info):
        lines += [f"**{RANDOM_WARNING}.**", ""]
    classes = info.get("classes", [])
    lines += [
        "## What was measured", "",
        (f"- model: {model.get('model', '?')}; weights: {model.get('weights', '?')}; "
         f"checkpoint: {model.get('checkpoint', '?')}; encoder mode: {info.get('mode', '?')}"),
        f"- sketches: {info.get('sketches', '?')} stroke-ordered drawings from `{info.get('strokes', '?')}`",
        (f"- gallery: {result.gallery_size} photos from `{info.get('photos', '?')}`, "
         f"{len(classes)} classes shared with the sketches (names matched after normalisation)"),
        (f"- steps: {len(result.fractions)}, each a share of the **{result.unit}** of every sketch "
         "(the first ceil(share x total), in drawing order)"),
        f"- schedule: **{info.get('schedule', 'even')}**: {info.get('schedule_description', '')}",
        (f"- sketch framing: **{info.get('framing', '?')}** ({info.get('framing_source', 'source not recorded')}); "
         "each partial drawing is placed where it stood on the canvas and framed as the app frames its canvas"),
        f"- split: {info.get('split', 'none')} ({info.get('split_source', 'not recorded')})",
        _seen_line(info),
        *([f"- caps: {caps}"] if (caps := _caps(info)) else []),
        (f"- protocol: {result.protocol}; target photo = {DEFINITIONS['target'][result.protocol]}; "
         "every step ranks the whole gallery (ties: lower gallery index first)"),
        "",
        "## On-the-fly summary", "",
        "| m@A | m@B |", "|---|---|",
        f"| {result.summary['m@A']:.4f} | {result.summary['m@B']:.4f} |", "",
        f"m@A: {DEFINITIONS['m@A']}. m@B: {DEFINITIONS['m@B']}. From {CITATION}.", "",
        "## Per step", "",
    ]
    keys = list(result.steps)
    lines.append(f"| % of {result.unit} | " + " | ".join(keys) + " |")
    lines.append("|---|" + "---|" * len(keys))
    for i, fraction in enumerate(result.fractions):
        lines.append(f"| {100 * fraction:.0f} | " + " | ".join(f"{result.steps[k][i]:.4f}" for k in keys) + " |")
    lines += ["", ("mAP@all / mAP@200: VOC-interpolated AP (SAKE-style); P@k: relevant in the top k / k; "
                   "Acc@k: share of sketches whose target photo is in the top k."), ""]
    return "\n".join(lines)


def plot_partial_curves(out_dir: str | Path, result: Any, info: Mapping[str, Any]) -> Path:
    """``partial_curve.png``: retrieval metrics (left) and target rank measures (right) per step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = [100 * f for f in result.fractions]
    fig = Figure(figsize=(10, 4), dpi=110)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    for key in ("mAP@all", "mAP@200", "P@100", "P@200"):
        left.plot(x, result.steps[key], marker="o", markersize=3, label=key)
    for key, label in (("mean 1/rank", "1/rank (m@B = mean)"), ("mean percentile", "rank percentile (m@A = mean)"),
                       ("Acc@1", "Acc@1"), ("Acc@10", "Acc@10")):
        right.plot(x, result.steps[key], marker="o", markersize=3, label=label)
    for ax, title in ((left, "retrieval per step"), (right, f"target photo ({result.protocol})")):
        ax.set(xlim=(0, 100), ylim=(0, 1.02), xlabel=f"% of {result.unit} drawn", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    model = info.get("model", {})
    title = f"{model.get('model', '?')} ({model.get('weights', '?')}) - m@A {result.summary['m@A']:.3f}, " \
            f"m@B {result.summary['m@B']:.3f}"
    if _is_random(info):
        fig.suptitle(f"{RANDOM_WARNING}\n{title}", color="red", fontsize=9)
    else:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(out_dir) / "partial_curve.png"
    fig.savefig(path)
    return path


def write_partial_report(out_dir: str | Path, result: Any, info: Mapping[str, Any]) -> list[Path]:
    """All three files into ``out_dir`` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = json.dumps(partial_document(result, info), indent=2, allow_nan=False) + "\n"
    return [
        _write(out / "partial_metrics.json", doc),
        _write(out / "partial_summary.md", partial_markdown(result, info)),
        plot_partial_curves(out, result, info),
    ]
