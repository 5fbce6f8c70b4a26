"""Under load: 16 people drawing and searching at once get their own answers, and every request succeeds.

The app is launched in this process on a free port (as in tests/webapp/test_app.py) over a gallery of real
Sketchy photos (8 classes x 3); each simulated user is its own gradio_client session drawing its own real
Quick, Draw! drawing (its strokes sent as JSON in 4 steps, searched in both modes, then the drawing uploaded
as a PNG in both modes) in a loop for
``SKETCHLVM_LOAD_SECONDS`` (default 60). Every answer must equal the ranking computed beforehand in this
process by the app's own Searcher for that request's sketch, mode and k (all 24 photos, captions with
scores to 3 decimals): an answer meant for another session, mode or drawing step fails the test. The
workload, the client and the report live in bench/load/ (bench/bench_load.py runs the same load as a
script, with a single-user baseline); this test asserts, the script measures.
"""

from __future__ import annotations

import os

import pytest

gradio_client = pytest.importorskip("gradio_client")

import app as app_module  # noqa: E402
from bench.load import MODES, REQUEST_TIMEOUT_S  # noqa: E402
from bench.load.client import free_port, run_load  # noqa: E402
from bench.load.report import summarise  # noqa: E402
from bench.load.workload import build_scripts, load_model, prepare, torch_threads  # noqa: E402
from sketchlvm.gallery import build_gallery_index  # noqa: E402
from sketchlvm.search import Searcher  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning"),
]

USERS = 16
CLASSES = 8
PER_CLASS = 3
STAGES = 4
SECONDS = float(os.environ.get("SKETCHLVM_LOAD_SECONDS", "60"))


@pytest.fixture(scope="module")
def workload(tmp_path_factory, sketchy_root):
    work = tmp_path_factory.mktemp("load")
    return prepare(work, sketchy_root, CLASSES, PER_CLASS, USERS)


@pytest.fixture(scope="module")
def served(workload):
    """(url, state, scripts): the app over the workload's gallery, and each user's requests with answers."""
    model = load_model(workload.checkpoint)
    index = build_gallery_index(workload.gallery, model, cache_dir=workload.cache, show_progress_bar=False)
    k = len(index)
    searcher = Searcher(model, index, default_k=k)
    # Expected answers from the very Searcher the app will use; then its cache is emptied, so the load
    # exercises the encoder rather than replaying what this computed.
    # One torch thread for this part only (fast on a busy machine, same vectors); the app then runs as deployed.
    with torch_threads(1):
        scripts = build_scripts(searcher, workload.sketches, workload.gallery.parent / "users", STAGES, k)
    searcher.clear_cache()
    state = app_module.AppState(searcher, gallery_dir=workload.gallery, cache_dir=index.cache_dir)
    demo = app_module.build_demo(state)
    kwargs = app_module.launch_kwargs(state, "127.0.0.1", free_port())
    # The 16 gradio_client users all come from 127.0.0.1, one address to the per-client allowance
    # (sketchlvm.webapp.fair_use): allow them as many requests as 16 people would have.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKETCHLVM_CLIENT_REQUESTS", str(4 * USERS))
        patch.setenv("SKETCHLVM_CLIENT_COST", str(16 * USERS))
        _, url, _ = app_module.launch(demo, **kwargs, prevent_thread_lock=True, quiet=True)
    yield url, state, scripts
    demo.close()


def test_workload_can_see_cross_talk(workload, served):
    """Precondition of the load test: every user's sketch is its own, and no two users share an answer."""
    _, _, scripts = served
    assert len(set(workload.sketches)) == USERS
    assert len({p.stem.split("-", 1)[1] for p in workload.sketches}) == USERS  # 16 Quick, Draw! words
    for ops in scripts:
        assert {op.mode for op in ops} == set(MODES) and {op.kind for op in ops} == {"search", "upload"}
        assert all(len(op.expected) == CLASSES * PER_CLASS for op in ops)
    answers = [{op.expected for op in ops} for ops in scripts]
    for i in range(USERS):
        for j in range(i + 1, USERS):
            assert not answers[i] & answers[j], (i, j)  # build_scripts checks this too
        # Within one user, the two modes and the drawing steps answer differently as well.
        assert len({op.expected for op in scripts[i] if op.kind == "search"}) == STAGES * len(MODES)


def test_sixteen_users_drawing_and_searching_get_their_own_answers(served, capsys):
    url, state, scripts = served
    encodes_before = state.searcher.encode_calls
    samples, wall = run_load(url, scripts, SECONDS, warmup=0, client="gradio_client")
    summary = summarise(samples, wall)
    with capsys.disabled():
        print(f"\n[load] {USERS} users, {SECONDS:.0f} s, in-process server: {summary.line()}; "
              f"encoder runs {state.searcher.encode_calls - encodes_before}; by kind {summary.kinds}")

    problems = [s.error or s.wrong for s in samples if s.error or s.wrong]
    assert summary.failed == 0, problems[:5]
    assert summary.wrong == 0, problems[:5]  # no session got another's (or another mode's) results
    assert set(summary.per_user) == set(range(USERS)), "every user was served"
    counts = sorted(summary.per_user.values())
    assert counts[0] * 3 >= counts[-1] - 1, summary.per_user  # the queue is fair: nobody starved
    assert {kind.split("/")[0] for kind in summary.kinds} == {"search", "upload"}
    assert {kind.split("/")[1] for kind in summary.kinds} == set(MODES)
    assert state.searcher.encode_calls > encodes_before  # the encoder ran under load, not only the cache
    assert wall < SECONDS + REQUEST_TIMEOUT_S + 5


def test_pages_with_live_results_see_only_their_newest_drawing(workload, served):
    """Pages drawing at their own pace with live results (bench/load/live.py: what canvas.js sends,
    mid-stroke and at pen-up, through the page's own search event): every answer is the ranking of the
    drawing its request sent, none is shown after a newer one's, and each drawing ends on its own."""
    import json

    from bench.load.live import check_answers, run_live

    url, state, _ = served
    drawings = [json.loads(p.read_text())["drawing"] for p in workload.sketches]
    run, _ = run_live(url, drawings, 4, min(SECONDS, 20.0), MODES[0], CLASSES * PER_CLASS)
    with torch_threads(1):
        check_answers(run.samples, state.searcher, MODES[0], CLASSES * PER_CLASS)
    answered = [s for s in run.samples if s.captions is not None]
    assert run.drawings >= 4 and answered
    assert any(s.partial for s in answered), "some answers were to a drawing in progress"
    assert not [s.error for s in run.samples if s.error]
    assert not [s.wrong for s in run.samples if s.wrong]
    assert not [s.stale for s in run.samples if s.stale]
