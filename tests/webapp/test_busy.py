"""Live results give way when the server is busy (sketchlvm/webapp/busy.py): a drawing sent mid-stroke is
shed while other searches are in progress; finished drawings never are; the count follows searches that
end, fail or run at once."""

from __future__ import annotations

import threading

import pytest

from sketchlvm.webapp.busy import Busy


def test_a_mid_stroke_search_is_shed_only_while_another_search_runs():
    busy = Busy(shed_at=1)
    assert not busy.sheds(True)  # nothing else running: one page alone is always answered
    with busy.searching():
        assert busy.sheds(True)
        assert not busy.sheds(False)  # a finished drawing (pen-up), words, an upload: never shed
    assert busy.running == 0 and not busy.sheds(True)
    assert busy.shed == 1


def test_the_threshold_counts_searches_in_progress():
    busy = Busy(shed_at=2)
    with busy.searching():
        assert not busy.sheds(True)
        with busy.searching():
            assert busy.running == 2 and busy.sheds(True)
    assert busy.shed == 1


def test_a_failing_search_stops_counting():
    busy = Busy()
    with pytest.raises(RuntimeError), busy.searching():
        raise RuntimeError("the encoder failed")
    assert busy.running == 0 and not busy.sheds(True)


def test_concurrent_searches_are_counted_exactly():
    busy = Busy()
    inside = threading.Barrier(9)
    leave = threading.Event()

    def search():
        with busy.searching():
            inside.wait(timeout=10)
            leave.wait(timeout=10)

    threads = [threading.Thread(target=search) for _ in range(8)]
    for thread in threads:
        thread.start()
    inside.wait(timeout=10)
    assert busy.running == 8
    leave.set()
    for thread in threads:
        thread.join(timeout=10)
    assert busy.running == 0
