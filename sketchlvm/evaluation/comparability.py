"""Whether a run's numbers may stand beside the published ones: the same split, gallery, framing and caps.

A number set beside 0.723 or 28.68 says "measured as the paper measured". That holds only when the run used
the paper's protocol, so the report shows the comparison table only then, and otherwise one line saying why
(``report.summary_markdown``); ``metrics.json`` records the same verdict under ``extra.comparable_to_paper``.
What the published numbers were measured on (CLIP for All Things, Table 1 and the fine-grained table):

- the dataset's standard split (Sketchy 21 unseen, TU-Berlin 30, QuickDraw 30; fine-grained Sketchy on the
  same 21), every class and every image (no ``--max-classes`` / ``--max-per-class``);
- zero-shot: no test class was a training class; not generalised (only unseen-class photos in the gallery);
- sketches padded to a square, as the released code does (framing ``pad-square``);
- fine-grained Sketchy: the sketched photos as the gallery (``--fg-gallery sketched``), 100 a class;
- the whole published test gallery (METHOD.md's test sizes): a folder holding fewer photos is a subset of
  the benchmark even with no cap (a gallery of 3-5 photos a class makes Acc@5 trivially 100%).

The weights are not part of the protocol: a run with random weights carries its own warning in the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The split each published table used (None: no published numbers recorded here).
PAPER_SPLITS = {"sketchy": "sketchy_21", "tuberlin": "tuberlin_30", "quickdraw": "quickdraw_30",
                "sketchy_fg": "sketchy_21"}
PAPER_FRAMING = "pad-square"
PAPER_FG_GALLERY = "sketched"
# The published test galleries: photos in all (category), or photos a class (fine-grained Sketchy: the 100
# original photos of each class). Download scripts differ by a few photos, hence the 1% slack.
PAPER_GALLERY_PHOTOS = {"sketchy": 12_553, "tuberlin": 27_989, "quickdraw": 54_151}
PAPER_FG_PHOTOS_PER_CLASS = 100
GALLERY_SLACK = 0.99


def paper_verdict(dataset: str | None, info: Mapping[str, Any] | None) -> dict[str, Any]:
    """-> ``{"comparable": bool, "reasons": [why not, ...]}`` for a run described by the evaluator's ``info``
    (a fact that is not recorded counts against the comparison: the protocol cannot be shown to match)."""
    info = info or {}
    paper_split = PAPER_SPLITS.get(dataset or "")
    if paper_split is None:
        return {"comparable": False, "reasons": [f"no published numbers are recorded for {dataset or 'this run'}"]}
    if info.get("features"):
        return {"comparable": False,
                "reasons": ["scored from a features file, which does not record the split, gallery or framing"]}
    reasons = []
    split = info.get("split")
    if split != paper_split:
        reasons.append(f"split {split or 'not recorded'}; the published numbers are on {paper_split}")
    seen = info.get("seen_in_training") or []
    if seen:
        reasons.append(f"{len(seen)} of the {len(info.get('classes') or [])} test classes were seen in training "
                       f"(not zero-shot)")
    if info.get("generalised"):
        reasons.append("generalised gallery (seen-class photos added); the published numbers are not generalised")
    framing = info.get("framing")
    if framing != PAPER_FRAMING:
        reasons.append(f"sketches framed {framing or 'as not recorded'}; the published protocol pads them to a "
                       f"square ({PAPER_FRAMING})")
    if dataset == "sketchy_fg" and info.get("fg_gallery") != PAPER_FG_GALLERY:
        reasons.append(f"fine-grained gallery {info.get('fg_gallery') or 'not recorded'}; the published protocol "
                       f"ranks among the sketched photos ({PAPER_FG_GALLERY})")
    if info.get("subset"):
        reasons.append(str(info["subset"]))
    elif (why := _smaller_gallery(dataset, info)) is not None:
        reasons.append(why)
    return {"comparable": not reasons, "reasons": reasons}


def _smaller_gallery(dataset: str, info: Mapping[str, Any]) -> str | None:
    """Why the gallery is smaller than the published test set, or None when it is not (or not recorded)."""
    if dataset == "sketchy_fg":
        per_class = ((info.get("gallery_photos") or {}).get("photos_per_class") or {}).get("min")
        if per_class is None or per_class < PAPER_FG_PHOTOS_PER_CLASS * GALLERY_SLACK:
            return (f"the gallery has {per_class if per_class is not None else 'an unrecorded number of'} photos in "
                    f"its smallest class; the published test set has {PAPER_FG_PHOTOS_PER_CLASS} a class")
        return None
    published = PAPER_GALLERY_PHOTOS.get(dataset)
    photos = info.get("gallery")
    if published is not None and (photos is None or photos < published * GALLERY_SLACK):
        return (f"the gallery has {photos if photos is not None else 'an unrecorded number of'} photos; the "
                f"published test set has {published:,}")
    return None


def verdict_line(verdict: Mapping[str, Any]) -> str:
    """The one line a report writes instead of the table."""
    return "Not comparable with the published numbers, so no table: " + "; ".join(verdict["reasons"]) + "."
