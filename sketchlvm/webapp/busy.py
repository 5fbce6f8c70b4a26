"""Live results give way when the server is busy: a drawing sent mid-stroke is not searched while other
searches already hold the encoder, so that finished drawings (pen-up), words and uploads are answered
as fast as without live results.

Why: a mid-stroke search is a preview. One page alone never waits for one (the canvas sends the next
only once the last is answered), but many pages drawing at once on a CPU Space queued them in front
of each other's pen-up searches: bench_load, 16 pages drawing on 2 cores with ViT-B/32 fp32, waited
1.40-1.56x what the same pages wait searching at pen-up only; with mid-stroke searches shed at
``SHED_AT`` searches in progress, 1.04-1.14x. A shed search's page keeps the results it has, says after
a second that they are behind, and gets the drawing's own results at pen-up (docs/app.md has the figures).

Every search of the one query path counts while it runs (``query.run``), from the page or the API.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

# Other searches in progress at which a mid-stroke search is shed. 1: any other search holds the encoder
# (or waits for it), so a preview never delays someone else's finished drawing.
SHED_AT = 1


class Busy:
    """How many searches are in progress now, and the mid-stroke searches shed for it."""

    def __init__(self, shed_at: int = SHED_AT):
        self.shed_at = shed_at
        self._running = 0
        self._lock = threading.Lock()
        self.shed = 0  # mid-stroke searches shed so far (benchmarks and tests read it)

    @contextlib.contextmanager
    def searching(self) -> Iterator[None]:
        """Count one search while it runs."""
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1

    @property
    def running(self) -> int:
        with self._lock:
            return self._running

    def sheds(self, partial: bool) -> bool:
        """Whether to shed this search: a drawing in progress while ``shed_at`` others are in progress."""
        if not partial:
            return False
        with self._lock:
            if self._running < self.shed_at:
                return False
            self.shed += 1
            return True
