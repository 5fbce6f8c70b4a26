"""Which stroke JSON the canvas sent mid-stroke (sketchlvm/webapp/query_inputs.is_partial)."""

from __future__ import annotations

import json

import pytest

from sketchlvm.preprocess.strokes import MAX_STROKE_BYTES, StrokeFormatError, parse_strokes
from sketchlvm.webapp import query_inputs
from sketchlvm.webapp.query_inputs import is_partial

STROKE = [[10, 50, 90], [10, 40, 10], [0, 16, 32]]


def test_the_drawing_so_far_is_partial_and_a_finished_one_is_not():
    assert is_partial(json.dumps({"drawing": [STROKE], "partial": True}))
    assert is_partial(json.dumps({"partial": True, "drawing": [STROKE]}))
    assert not is_partial(json.dumps([STROKE]))
    assert not is_partial(json.dumps({"drawing": [STROKE]}))
    assert not is_partial(json.dumps({"drawing": [STROKE], "partial": "yes"}))
    assert not is_partial("{not json")
    assert not is_partial(None)


def test_stroke_data_over_the_limit_is_not_parsed_twice(monkeypatch):
    """A body past MAX_STROKE_BYTES is refused by parse_strokes unparsed; is_partial does not parse it either."""
    huge = json.dumps({"drawing": [STROKE] * (MAX_STROKE_BYTES // 40), "partial": True})
    assert len(huge) > MAX_STROKE_BYTES

    def no_parse(*args, **kwargs):
        raise AssertionError("parsed")

    monkeypatch.setattr(query_inputs.json, "loads", no_parse)
    assert not is_partial(huge)
    with pytest.raises(StrokeFormatError, match="over 1,000,000 bytes"):
        parse_strokes(huge)
