"""The demo gallery: a Space with no gallery of its owner's searches it; locally only when asked for.

It is fetched through the ``hf://`` path, here from a Hugging Face cache laid out as huggingface_hub lays
it out, offline (``HF_HUB_OFFLINE=1``), with real Sketchy photos standing in for the dataset's files.
"""

from __future__ import annotations

import pytest
from test_hub import _cache_repo, hf_cache  # noqa: F401  (hf_cache is a fixture)

from sketchlvm.config import TINY_ARCH
from sketchlvm.gallery.demo import DEMO
from sketchlvm.hub import _parse
from sketchlvm.webapp import cli as app_main

TINY = ["--model", TINY_ARCH, "--pretrained", "none", "--device", "cpu", "--runtime", "torch"]
CLASSES = ("cup", "chair", "umbrella")


@pytest.fixture
def demo_in_cache(hf_cache, sketchy_root, monkeypatch):  # noqa: F811
    """The demo dataset's photos folder in the cache, as a download (or preload_from_hub) leaves it."""
    uri = _parse(DEMO.uri, "hf://datasets/USER/REPO/SUBDIR")
    subdir = uri.path_in_repo.strip("/")
    files = {}
    for name in CLASSES:
        photos = sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:3]
        if not photos:
            pytest.skip(f"no Sketchy photos of {name!r} in {sketchy_root}")
        files.update({f"{subdir}/{name}/{p.name}": p for p in photos})
    snapshot = _cache_repo(hf_cache, uri.type, uri.id, files)
    for variable in ("SKETCHLVM_GALLERY", "SKETCHLVM_DEMO", "SPACE_ID", "SPACES_ZERO_GPU"):
        monkeypatch.delenv(variable, raising=False)
    return snapshot / subdir, len(files)


def _prepare(argv: list[str]):
    return app_main.prepare(app_main.build_parser().parse_args(argv))


def test_a_space_without_a_gallery_indexes_the_demo_at_once_and_names_its_source(demo_in_cache, monkeypatch):
    folder, n = demo_in_cache
    monkeypatch.setenv("SPACE_ID", "alice/sketchlvm")  # what Hugging Face sets in a Space
    state = _prepare(TINY)
    try:
        assert state.gallery_dir == folder.resolve()
        assert state.indexer is not None and state.indexer.wait(60).state == "done"  # started at once
        assert len(state.searcher) == n
        assert {p.label for p in state.searcher.index.photos} == set(CLASSES)
        assert DEMO.source in state.credit and DEMO.licence in state.credit and DEMO.page_url in state.credit
    finally:
        state.indexer.stop(10)


def test_locally_the_app_still_starts_empty_and_says_how_to_add_a_gallery(demo_in_cache):
    state = _prepare(TINY)
    assert state.gallery_dir is None and state.indexer is None and state.credit is None


def test_the_demo_flag_and_variable_ask_for_it_locally(demo_in_cache, monkeypatch):
    folder, _ = demo_in_cache
    for argv, env in ((["--demo", *TINY], None), (TINY, "1")):
        if env:
            monkeypatch.setenv("SKETCHLVM_DEMO", env)
        state = _prepare(argv)
        try:
            assert state.gallery_dir == folder.resolve() and state.credit
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
