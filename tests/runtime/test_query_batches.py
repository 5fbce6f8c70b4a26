"""Query encodes that queue behind a running one go through together (sketchlvm/runtime/query_batches.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import class_images

from sketchlvm.runtime.query_batches import QueryBatches


@pytest.fixture(scope="module")
def real_sketches(sketchy_root):
    return class_images(sketchy_root, "sketch", ("airplane", "cat", "fish"), per_class=2)


class GatedEncoder:
    """An encoder whose first run waits for ``release``: the queries sent meanwhile queue behind it."""

    def __init__(self, fail_when_negative: bool = False):
        self.release = threading.Event()
        self.started = threading.Event()
        self.batches: list[int] = []
        self.fail_when_negative = fail_when_negative

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        x = inputs["x"]
        self.batches.append(len(x))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(60)
        if self.fail_when_negative and (x < 0).any():
            raise ValueError("a negative input")
        return x.reshape(len(x), -1) * 2.0


def send_while_busy(batches: QueryBatches, encoder: GatedEncoder, queued: list[np.ndarray]) -> list:
    """One query runs (held by the encoder), ``queued`` arrive meanwhile, then it is let go: their answers
    (an array, or the exception raised) in order."""
    answers: list = [None] * (len(queued) + 1)

    def ask(i: int, x: np.ndarray) -> None:
        try:
            answers[i] = batches.run("graph", {"x": x}, encoder)
        except Exception as error:  # noqa: BLE001 (compared by the test)
            answers[i] = error

    first = threading.Thread(target=ask, args=(0, np.full((1, 3), 7.0, np.float32)))
    first.start()
    assert encoder.started.wait(10)
    threads = [threading.Thread(target=ask, args=(i + 1, x)) for i, x in enumerate(queued)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(batches._waiting) < len(queued) and time.monotonic() < deadline:  # all of them queued
        time.sleep(0.005)
    encoder.release.set()
    for thread in [first, *threads]:
        thread.join(10)
    return answers


def test_a_query_alone_runs_at_once_by_itself():
    batches, encoder = QueryBatches(max_batch=8), GatedEncoder()
    encoder.release.set()
    out = batches.run("graph", {"x": np.ones((1, 3), np.float32)}, encoder)
    assert encoder.batches == [1] and batches.runs == 1
    np.testing.assert_array_equal(out, np.full((1, 3), 2.0))


def test_queries_queued_behind_a_run_go_through_the_next_run_together_each_getting_its_own_rows():
    batches, encoder = QueryBatches(max_batch=8), GatedEncoder()
    queued = [np.full((1, 3), float(i), np.float32) for i in range(5)]
    answers = send_while_busy(batches, encoder, queued)
    assert encoder.batches == [1, 5]  # the first alone, then the five that waited, in one run
    assert batches.runs == 2 and batches.largest == 5
    for x, got in zip(queued, answers[1:]):
        np.testing.assert_array_equal(got, x * 2)
    np.testing.assert_array_equal(answers[0], np.full((1, 3), 14.0))


def test_a_batch_holds_at_most_max_batch_and_only_inputs_of_one_shape():
    batches, encoder = QueryBatches(max_batch=2), GatedEncoder()
    queued = [np.full((1, 3), 1.0, np.float32), np.full((1, 3), 2.0, np.float32), np.full((1, 3), 3.0, np.float32),
              np.full((1, 4), 4.0, np.float32)]  # another shape: never stacked with the others
    answers = send_while_busy(batches, encoder, queued)
    assert encoder.batches[0] == 1 and sorted(encoder.batches[1:]) == [1, 1, 2]
    assert batches.largest == 2
    for x, got in zip(queued, answers[1:]):
        np.testing.assert_array_equal(got, x * 2)


def test_one_query_that_fails_fails_alone():
    batches, encoder = QueryBatches(max_batch=8), GatedEncoder(fail_when_negative=True)
    queued = [np.full((1, 3), 1.0, np.float32), np.full((1, 3), -1.0, np.float32), np.full((1, 3), 3.0, np.float32)]
    answers = send_while_busy(batches, encoder, queued)
    assert isinstance(answers[2], ValueError)
    np.testing.assert_array_equal(answers[1], queued[0] * 2)
    np.testing.assert_array_equal(answers[3], queued[2] * 2)
    assert encoder.batches == [1, 3, 1, 1, 1]  # the batch failed, then each of its queries ran alone


@pytest.mark.usefixtures("isolated_runtime")
@pytest.mark.parametrize(("runtime", "max_batch", "batched"), [("onnx", 8, True), ("onnx", 1, False),
                                                               ("onnx-int8", 8, False)])
def test_concurrent_sketch_searches_get_the_vectors_they_get_alone(runtime, max_batch, batched, real_sketches):
    """A real ONNX graph (the tiny model): sketches encoded while another search holds the encoder come back
    exactly as each does alone, batched (fp32) or one at a time (query_batch=1; and always on int8, whose
    dynamic quantisation scales a batch as a whole: batched, one sketch would move another's vector)."""
    pytest.importorskip("onnxruntime")
    from sketchlvm.config import TINY_ARCH, RuntimeConfig
    from sketchlvm.model.factory import create_sketchlvm

    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime=runtime, check_images=real_sketches,
                             runtime_config=RuntimeConfig(query_batch=max_batch))
    assert model.runtime.name == runtime
    alone = [model.encode_sketches([sketch], "category") for sketch in real_sketches[:6]]
    sessions = model.runtime._onnx
    real_session = sessions.session
    gate = GatedEncoder()

    class Held:  # the first query run waits for the gate: the other searches queue behind it
        def __init__(self, session):
            self.session = session

        def run(self, names, inputs):
            gate({"x": np.zeros((len(next(iter(inputs.values()))), 1))})
            return self.session.run(names, inputs)

    sessions.session = lambda path, role: Held(real_session(path, role))
    before = sessions.query_batches.runs
    got: list = [None] * 6

    def search(i: int) -> None:
        got[i] = model.encode_sketches([real_sketches[i]], "category")

    try:
        threads = [threading.Thread(target=search, args=(0,))]
        threads[0].start()
        assert gate.started.wait(30)
        threads += [threading.Thread(target=search, args=(i,)) for i in range(1, 6)]
        for thread in threads[1:]:
            thread.start()
        if runtime == "onnx":  # they queue in the batcher; int8 runs wait for the turn itself, unseen
            deadline = time.monotonic() + 30
            while len(sessions.query_batches._waiting) < 5 and time.monotonic() < deadline:
                time.sleep(0.005)
        else:
            time.sleep(0.5)
        gate.release.set()
        for thread in threads:
            thread.join(60)
    finally:
        sessions.session = real_session
    for mine, theirs in zip(got, alone):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
    assert gate.batches == ([1, 5] if batched else [1] * 6)
    assert sessions.query_batches.runs - before == (2 if batched else 6 if max_batch == 1 else 0)
