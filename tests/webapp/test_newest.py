"""Newest query wins, per session (sketchlvm/webapp/newest.py): a request overtaken by a newer one of
its session is dropped, other sessions and API calls (no number) are untouched, and the table is bounded."""

from __future__ import annotations

import threading

from sketchlvm.webapp.newest import Newest


def test_an_overtaken_request_is_dropped_and_the_newest_goes_on():
    newest = Newest()
    assert newest.claim("a", 1)
    assert newest.claim("a", 3)  # 2 never arrived in time
    assert not newest.claim("a", 2)  # overtaken before it started: dropped
    assert newest.is_newest("a", 3)
    assert newest.claim("a", 4)
    assert not newest.is_newest("a", 3)  # overtaken while it ran: dropped before the encoder
    assert newest.dropped == 2


def test_sessions_and_api_calls_are_apart():
    newest = Newest()
    assert newest.claim("a", 5)
    assert newest.claim("b", 1)  # another page's numbers are its own
    assert newest.claim(None, 0) and newest.claim("", 0) and newest.claim("a", 0)  # no number: an API call
    assert newest.is_newest("b", 1) and newest.is_newest(None, 0)


def test_the_table_forgets_the_oldest_sessions_first():
    newest = Newest(max_sessions=3)
    for i, session in enumerate("abcd"):
        newest.claim(session, 10 + i)
    assert newest.claim("a", 1)  # "a" was forgotten: a low number is taken as new
    assert not newest.claim("d", 1)  # "d" is remembered


def test_concurrent_claims_leave_exactly_one_newest():
    newest = Newest()
    started = threading.Barrier(8)
    results = {}

    def claim(seq):
        started.wait()
        results[seq] = newest.claim("s", seq)

    threads = [threading.Thread(target=claim, args=(seq,)) for seq in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [seq for seq in range(1, 9) if newest.is_newest("s", seq)] == [8]
    assert results[8]


def test_the_pages_search_drops_an_overtaken_request_before_encoding(sketchy_root, tmp_path):
    """The page's search event (page_events.answer): a request that a newer one of its page has overtaken
    returns nothing and the encoder never runs for it; the newest is answered."""
    import json
    from types import SimpleNamespace

    from conftest import copy_class_photos

    from sketchlvm.gallery import build_gallery_index
    from sketchlvm.model.factory import create_sketchlvm
    from sketchlvm.search import Searcher
    from sketchlvm.webapp import AppState, build_demo

    gallery = copy_class_photos(sketchy_root, tmp_path / "gallery", ("cat", "fish"), 2)
    model = create_sketchlvm(arch="SketchLVM-Tiny", pretrained="none", device="cpu")
    index = build_gallery_index(gallery, model, cache_dir=tmp_path / "cache", show_progress_bar=False)
    state = AppState(Searcher(model, index, default_k=3), gallery_dir=gallery, cache_dir=index.cache_dir)
    demo = build_demo(state)
    answer = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "answer")
    page = SimpleNamespace(session_hash="page-1")
    strokes = json.dumps([[[10, 200, 400], [10, 300, 100]]])

    state.newest.claim("page-1", 7)  # request 7 of this page has started
    before = state.searcher.encode_calls
    out = answer("6", None, strokes, "category", 3, "", 0.5, None, request=page)
    assert all(isinstance(o, dict) and o.get("__type__") == "update" and len(o) == 1 for o in out)  # all skips
    assert state.searcher.encode_calls == before  # dropped before it was encoded

    out = answer("8", None, strokes, "category", 3, "", 0.5, None, request=page)
    assert state.searcher.encode_calls == before + 1 and len(out[2]) == 3  # the newest: encoded and answered
    assert json.loads(out[4])["seq"] == 8
