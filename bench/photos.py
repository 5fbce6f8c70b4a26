"""Gallery samples for the benchmarks, taken from the shared Sketchy photos."""

from __future__ import annotations

import shutil
from pathlib import Path


def pick_photos(root: Path, n: int) -> list[Path]:
    """Round-robin over the class folders, so a small sample still spans many labels."""
    per_class = [sorted(d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()]
    picked, i = [], 0
    while len(picked) < n and any(i < len(c) for c in per_class):
        picked += [c[i] for c in per_class if i < len(c)][: n - len(picked)]
        i += 1
    return picked


def place_photos(root: Path, dest: Path, n: int, link: bool = False) -> int:
    """``pick_photos`` laid out as ``dest/<class>/<file>``: copied, or symlinked (read in place)."""
    photos = pick_photos(root, n)
    for photo in photos:
        target = dest / photo.parent.name / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if link:
            target.symlink_to(photo.resolve())
        else:
            shutil.copy2(photo, target)
    return len(photos)
