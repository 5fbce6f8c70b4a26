"""Zero-shot class splits, and matching class names across download scripts.

Class folder names differ between download scripts (``hot-air_balloon`` vs ``hot_air_balloon``),
so splits are matched through :func:`normalise_class_name`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

# Unseen (test) classes of the standard zero-shot splits; every other class of the dataset is seen.
SPLITS: dict[str, tuple[str, ...]] = {
    # Yelamarthi et al. 2018 (Sketchy-extended, 104 / 21).
    "sketchy_21": (
        "bat", "cabin", "cow", "dolphin", "door", "giraffe", "helicopter", "mouse", "pear",
        "raccoon", "rhinoceros", "saw", "scissors", "seagull", "skyscraper", "songbird", "sword",
        "tree", "wheelchair", "windmill", "window",
    ),
    # Shen et al. 2018 (Sketchy-extended, 100 / 25).
    "sketchy_25": (
        "cup", "swan", "harp", "squirrel", "snail", "ray", "pineapple", "volcano", "rifle",
        "scissors", "parrot", "windmill", "teddy_bear", "tree", "wine_bottle", "deer", "chicken",
        "airplane", "wheelchair", "tank", "umbrella", "butterfly", "camel", "horse", "bell",
    ),
    # SAKE (TU-Berlin-extended, 220 / 30).
    "tuberlin_30": (
        "banana", "bus", "tractor", "suitcase", "streetlight", "telephone", "bottle opener",
        "canoe", "fan", "teacup", "penguin", "laptop", "shoe", "lighter", "hot air balloon",
        "pizza", "brain", "ant", "t-shirt", "trombone", "windmill", "snowboard", "table",
        "rollerblades", "parachute", "space shuttle", "bridge", "frying-pan", "bread", "horse",
    ),
    # Doodle-to-Search (QuickDraw-extended, 80 / 30).
    "quickdraw_30": (
        "bat", "cow", "dolphin", "door", "giraffe", "helicopter", "mouse", "raccoon",
        "rhinoceros", "saw", "scissors", "skyscraper", "tree", "windmill", "feather", "campfire",
        "palm tree", "fire_hydrant", "bread", "beach", "megaphone", "cactus", "zebra", "tiger",
        "shark", "frog", "banana", "cake", "hamburger", "fan",
    ),
}  # fmt: skip


# --------------------------------------------------------------------------- class names and splits


def normalise_class_name(name: str) -> str:
    """Canonical form for matching: ``Hot-Air Balloon`` / ``hot_air_balloon`` -> ``hot_air_balloon``.

    Lower case; spaces, hyphens and other separators become one underscore; leading/trailing
    separators dropped. Brackets are kept (``car_(sedan)``).
    """
    text = str(name).strip().lower()
    text = re.sub(r"[\s\-_./\\]+", "_", text)
    return text.strip("_")


def available_splits() -> list[str]:
    return sorted(SPLITS)


def unseen_classes(split: str) -> tuple[str, ...]:
    """The unseen class list of a named split (as written in the paper's source)."""
    try:
        return SPLITS[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; available: {', '.join(available_splits())}") from None


def _index_by_normalised(names: Sequence[str]) -> dict[str, str]:
    index: dict[str, str] = {}
    for name in names:
        key = normalise_class_name(name)
        if key in index and index[key] != name:
            raise ValueError(
                f"class names {index[key]!r} and {name!r} are the same after normalisation "
                f"({key!r}); rename one"
            )
        index[key] = name
    return index


def resolve_classes(available: Sequence[str], requested: Sequence[str]) -> list[str]:
    """Map requested class names onto the dataset's own spelling (normalised match).

    A requested class missing from ``available`` is a ValueError naming it (and close matches).
    """
    index = _index_by_normalised(available)
    resolved, missing = [], []
    for name in requested:
        hit = index.get(normalise_class_name(name))
        if hit is None:
            missing.append(name)
        elif hit not in resolved:
            resolved.append(hit)
    if missing:
        hints = []
        for name in missing:
            close = difflib.get_close_matches(normalise_class_name(name), list(index), n=2)
            hints.append(f"{name!r}" + (f" (close: {', '.join(index[c] for c in close)})" if close else ""))
        raise ValueError(
            f"{len(missing)} class(es) not found in the data: {'; '.join(hints)}; "
            f"the data has {len(available)} classes"
        )
    return resolved


def split_classes(
    all_class_names: Sequence[str], split: str | Sequence[str]
) -> tuple[list[str], list[str]]:
    """-> (seen, unseen), both in the data's own spelling and in the order of ``all_class_names``.

    ``split``: a name in :data:`SPLITS`, an explicit list of unseen classes, or ``""``/``"none"``
    (everything seen). A split class missing from the data is a ValueError naming it.
    """
    if isinstance(split, str):
        if split.strip().lower() in ("", "none"):
            return list(all_class_names), []
        requested: Sequence[str] = unseen_classes(split)
    else:
        requested = list(split)
    unseen = set(resolve_classes(all_class_names, requested))
    seen = [c for c in all_class_names if c not in unseen]
    return seen, [c for c in all_class_names if c in unseen]
