"""The demo gallery: a Space with no gallery of its owner's searches it; locally only when asked for.

It is fetched through the ``hf://`` path, here from a Hugging Face cache laid out as huggingface_hub lays
it out at the pinned revision, offline (``HF_HUB_OFFLINE=1``): a small parquet file of the dataset's
schema (image + ClassLabel), written by the test from real Sketchy photos, stands in for its data file.
"""

from __future__ import annotations

import pytest
from conftest import write_image_parquet
from test_hub import _cache_repo, hf_cache  # noqa: F401  (hf_cache is a fixture)

from sketchlvm.config import TINY_ARCH
from sketchlvm.gallery.demo import DEMO, DEMO_REVISION
from sketchlvm.hub import _parse
from sketchlvm.webapp import cli as app_main

TINY = ["--model", TINY_ARCH, "--pretrained", "none", "--device", "cpu", "--runtime", "torch"]
CLASSES = ("cup", "chair", "umbrella")  # demo classes; "airplane" is in the dataset but not in the demo
NAMES = ["airplane", "chair", "cup", "umbrella"]


@pytest.fixture
def demo_in_cache(hf_cache, sketchy_root, tmp_path, monkeypatch):  # noqa: F811
    """The demo dataset in the cache, as a download (or preload_from_hub) of its pinned revision leaves it."""
    pytest.importorskip("pyarrow")
    uri = _parse(DEMO.uri, "hf://datasets/USER/REPO")
    assert uri.revision == DEMO_REVISION and set(CLASSES) <= set(DEMO.classes) and "airplane" not in DEMO.classes
    rows = []
    for name in (*CLASSES, "airplane"):
        photos = sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:3]
        if not photos:
            pytest.skip(f"no Sketchy photos of {name!r} in {sketchy_root}")
        rows += [(p, NAMES.index(name)) for p in photos]
    parquet = write_image_parquet(tmp_path / "train.parquet", rows, NAMES)
    snapshot = _cache_repo(hf_cache, uri.type, uri.id, {"data/train-00000-of-00001.parquet": parquet},
                           commit=DEMO_REVISION)
    for variable in ("SKETCHLVM_GALLERY", "SKETCHLVM_DEMO", "SPACE_ID", "SPACES_ZERO_GPU",
                     "SKETCHLVM_GALLERY_CLASSES", "SKETCHLVM_GALLERY_SPLIT"):
        monkeypatch.delenv(variable, raising=False)
    return snapshot, 3 * len(CLASSES)


def _prepare(argv: list[str]):
    return app_main.prepare(app_main.build_parser().parse_args(argv))


def test_a_space_without_a_gallery_indexes_the_demo_at_once_and_names_its_source(demo_in_cache, monkeypatch):
    from sketchlvm.gallery.parquet import photos_dir

    snapshot, n = demo_in_cache
    monkeypatch.setenv("SPACE_ID", "alice/sketchlvm")  # what Hugging Face sets in a Space
    state = _prepare(TINY)
    try:
        assert state.gallery_dir == photos_dir(snapshot).resolve()
        assert state.indexer is not None and state.indexer.wait(60).state == "done"  # started at once
        assert len(state.searcher) == n  # the demo's classes only
        assert {p.label for p in state.searcher.index.photos} == set(CLASSES)
        assert DEMO.source in state.credit and DEMO.licence in state.credit and DEMO.page_url in state.credit
        assert "SKETCHLVM" not in state.credit and "--" not in state.credit  # visitors read it
        assert state.watcher is None  # nobody adds photos to the demo
    finally:
        state.indexer.stop(10)


def test_locally_the_app_still_starts_empty_and_says_how_to_add_a_gallery(demo_in_cache):
    state = _prepare(TINY)
    assert state.gallery_dir is None and state.indexer is None and state.credit is None


def test_the_demo_flag_and_variable_ask_for_it_locally(demo_in_cache, monkeypatch):
    from sketchlvm.gallery.parquet import photos_dir

    snapshot, _ = demo_in_cache
    for argv, env in ((["--demo", *TINY], None), (TINY, "1")):
        if env:
            monkeypatch.setenv("SKETCHLVM_DEMO", env)
        state = _prepare(argv)
        try:
            assert state.gallery_dir == photos_dir(snapshot).resolve() and state.credit
        finally:
            state.indexer.stop(10)


def test_an_owners_gallery_wins_over_the_demo(demo_in_cache, tmp_path, sketchy_root, monkeypatch):
    import shutil

    own = tmp_path / "own" / "cat"
    own.mkdir(parents=True)
    shutil.copy(min((sketchy_root / "photo" / "cat").glob("*.jpg")), own)
    monkeypatch.setenv("SPACE_ID", "alice/sketchlvm")
    monkeypatch.setenv("SKETCHLVM_GALLERY", str(own.parent))
    state = _prepare(TINY)
    try:
        assert state.gallery_dir == own.parent.resolve() and state.credit is None
    finally:
        state.indexer.stop(10)


def test_a_demo_that_cannot_be_had_leaves_a_space_empty_but_stops_an_explicit_request(hf_cache, capsys,  # noqa: F811
                                                                                       monkeypatch):
    monkeypatch.delenv("SKETCHLVM_GALLERY", raising=False)
    monkeypatch.setenv("SPACE_ID", "alice/sketchlvm")
    state = _prepare(TINY)  # nothing cached, offline: the Space still comes up, and says how to add a gallery
    assert state.gallery_dir is None and state.credit is None
    warning = capsys.readouterr().err
    assert warning.startswith("warning: the demo gallery could not be fetched") and "hf download" in warning
    monkeypatch.delenv("SPACE_ID")
    code = app_main.main(["--demo", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "not in the Hugging Face cache" in err


OWNER_WORDS = ("--gallery", "SKETCHLVM_", "python app.py", "galleries")


def test_a_visitor_reads_one_line_and_the_owner_reads_the_instructions_in_the_log(hf_cache, capsys,  # noqa: F811
                                                                                 monkeypatch):
    from sketchlvm.webapp import access as access_module
    from sketchlvm.webapp.access import make_access
    from sketchlvm.webapp.app_state import VISITOR_NO_PHOTOS, banner_markdown, no_gallery_help, status_markdown

    monkeypatch.delenv("SKETCHLVM_GALLERY", raising=False)
    monkeypatch.setenv("SPACE_ID", "alice/sketchlvm")
    state = _prepare(TINY)  # the demo cannot be fetched (nothing cached, offline)
    log = capsys.readouterr()
    assert "SKETCHLVM_GALLERY" in log.err + log.out  # the owner's instructions: in the log
    banner = banner_markdown(state)
    assert VISITOR_NO_PHOTOS in banner and not any(word in banner for word in OWNER_WORDS)
    assert "--checkpoint" not in banner  # the zero-shot warning without its flag
    assert not any(word in status_markdown(state) for word in OWNER_WORDS)
    # With sign-in on, the Space's owner signed in reads how to add a gallery; another user does not.
    state.access = make_access("alice:pw,bob:pw", "alice", False, None)
    for user, owner in (("alice", True), ("bob", False)):
        monkeypatch.setattr(access_module, "current_user", lambda user=user: user)
        text = no_gallery_help(state)
        assert ("--gallery" in text) is owner and (text == VISITOR_NO_PHOTOS) is (not owner)
    # Off a Space, the one who runs the app is its owner.
    monkeypatch.delenv("SPACE_ID")
    state.access = None
    assert "--gallery" in banner_markdown(state)
