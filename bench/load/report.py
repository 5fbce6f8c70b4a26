"""What a load run measured: latency percentiles over all and by kind, errors, wrong answers, CPU time."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.load import UNTIMED
from bench.load.client import Sample


@dataclass
class Summary:
    requests: int
    failed: int
    wrong: int
    p50_ms: float
    p95_ms: float
    per_s: float
    per_user: dict[int, int]
    kinds: dict[str, int]
    p50_by_kind_ms: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        return (f"{self.requests} requests, {self.per_s:.1f} req/s, p50 {self.p50_ms:.0f} ms, p95 {self.p95_ms:.0f} ms, "
                f"failed {self.failed}, wrong {self.wrong}")


def summarise(samples: list[Sample], wall_s: float) -> Summary:
    timed = [s.latency_s for s in samples if s.kind not in UNTIMED]
    ms = np.asarray(timed or [np.nan]) * 1000
    return Summary(
        requests=len(timed),
        failed=sum(s.error is not None for s in samples),
        wrong=sum(s.wrong is not None for s in samples),
        p50_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)),
        per_s=len(timed) / wall_s if wall_s > 0 else float("nan"),
        per_user=dict(Counter(s.user for s in samples if s.kind not in UNTIMED)),
        kinds=dict(Counter(f"{s.kind}/{s.mode}" for s in samples if s.kind not in UNTIMED)),
        p50_by_kind_ms={kind: float(np.percentile([1000 * s.latency_s for s in samples if f"{s.kind}/{s.mode}" == kind],
                                                  50))
                        for kind in sorted({f"{s.kind}/{s.mode}" for s in samples if s.kind not in UNTIMED})},
    )


def by_kind(summary: Summary, baseline: Summary | None = None) -> str:
    """p50 per request kind (and its ratio to the single user's): with both modes zero-shot the second
    mode of a drawing is a re-rank from the cached embedding, the first mode a new encode, so the
    overall p50 sits between two clusters and this says which is which."""
    parts = []
    for kind, ms in summary.p50_by_kind_ms.items():
        alone = baseline.p50_by_kind_ms.get(kind) if baseline else None
        parts.append(f"{kind} {ms:.0f} ms" + (f" ({ms / alone:.1f}x)" if alone else ""))
    return "p50 by kind: " + ", ".join(parts)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one by default), from /proc; NaN where unavailable."""
    try:
        if pid is None:
            times = os.times()
            return times.user + times.system
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


@dataclass
class LiveSummary:
    p50_ms: float
    p95_ms: float
    text: str


def live_line(run, wall_s: float) -> LiveSummary:
    """A live phase (bench/load/live.py): latency of the answered requests, what was dropped, stale, wrong."""
    answered = [s for s in run.samples if s.captions is not None and s.error is None]
    ms = np.asarray([s.latency_s for s in answered] or [np.nan]) * 1000
    p50, p95 = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
    partial = sum(s.partial for s in run.samples)
    text = (f"{len(run.samples)} requests ({partial} mid-stroke) for {run.strokes} strokes of {run.drawings} drawings "
            f"= {len(run.samples) / max(run.strokes, 1):.2f} per stroke, {len(run.samples) / wall_s:.1f} req/s; "
            f"answered p50 {p50:.0f} ms, p95 {p95:.0f} ms; dropped as overtaken "
            f"{sum(s.captions is None and s.error is None and not s.shed for s in run.samples)}, shed as busy "
            f"{sum(s.shed for s in run.samples)}; failed "
            f"{sum(s.error is not None for s in run.samples)}, stale {sum(s.stale is not None for s in run.samples)}, "
            f"wrong {sum(s.wrong is not None for s in run.samples)}")
    # Where the time goes: mid-stroke against pen-up requests, and the phase's first half against its second.
    def p50_of(samples) -> str:
        return f"{np.percentile([s.latency_s for s in samples], 50) * 1000:.0f} ms" if samples else "-"

    middle = np.median([s.sent_s for s in answered]) if answered else 0.0
    text += (f"; p50 mid-stroke {p50_of([s for s in answered if s.partial])}, pen-up "
             f"{p50_of([s for s in answered if not s.partial])}; first half {p50_of([s for s in answered if s.sent_s < middle])}, "
             f"second half {p50_of([s for s in answered if s.sent_s >= middle])}")
    return LiveSummary(p50, p95, text)
