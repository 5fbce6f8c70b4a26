"""Image datasets stored as parquet (the Hub's layout) as galleries: local folders and a Hugging Face cache
laid out as ``hf download`` leaves it, with and without labels, with split and class filters; identities
stable across restarts; unchanged parquet files not read again. Real Sketchy photos are the rows."""

from __future__ import annotations

import os

import pytest
from conftest import write_image_parquet
from test_hub import _cache_repo, hf_cache  # noqa: F401  (hf_cache is a fixture)

from sketchlvm.config import TINY_ARCH
from sketchlvm.gallery.parquet import (
    STATE_FILE,
    card_label_names,
    extract_parquet_gallery,
    parse_classes,
    photo_folder,
    photos_dir,
    split_of,
)
from sketchlvm.webapp import cli as app_main

pytest.importorskip("pyarrow")
pytestmark = pytest.mark.usefixtures("galleries_in_tmp")
TINY = ["--model", TINY_ARCH, "--pretrained", "none", "--device", "cpu", "--runtime", "torch", "--watch", "off"]
NAMES = ["airplane", "chair", "cup", "umbrella"]  # a ClassLabel's names; the rows use 1..3


def _rows(sketchy_root, classes=("chair", "cup", "umbrella"), per_class=2):
    rows = []
    for name in classes:
        photos = sorted((sketchy_root / "photo" / name).glob("*.jpg"))[:per_class]
        if len(photos) < per_class:
            pytest.skip(f"too few Sketchy photos of {name!r}")
        rows += [(p, NAMES.index(name)) for p in photos]
    return rows


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                  and not p.name.startswith("."))


def test_rows_become_photos_named_by_their_class_label_from_the_schema(tmp_path, sketchy_root):
    rows = _rows(sketchy_root)
    source = tmp_path / "dataset"
    write_image_parquet(source / "data" / "train-00000-of-00001.parquet", rows, NAMES, row_group_size=4)
    out = tmp_path / "rows"
    report = extract_parquet_gallery(source, out)
    files = _files(out)
    assert len(files) == len(rows) and report.written == len(rows)
    assert sorted({f.split("/")[0] for f in files}) == ["chair", "cup", "umbrella"]
    # The bytes are the row's, unchanged: thumbnails and originals come from them.
    by_content = {(out / f).read_bytes() for f in files}
    assert by_content == {p.read_bytes() for p, _ in rows}
    assert all(f.endswith(".jpg") for f in files)


def test_identities_are_stable_and_unchanged_parquet_files_are_not_read_again(tmp_path, sketchy_root):
    rows = _rows(sketchy_root)
    source = tmp_path / "dataset"
    write_image_parquet(source / "data" / "train-00000-of-00001.parquet", rows[:3], NAMES)
    write_image_parquet(source / "data" / "train-00001-of-00002.parquet", rows[3:], NAMES)
    out = tmp_path / "rows"
    extract_parquet_gallery(source, out)
    before = {f: os.stat(out / f).st_mtime_ns for f in _files(out)}
    again = extract_parquet_gallery(source, out)  # a restart
    assert again.files_read == [] and len(again.files_unchanged) == 2 and again.written == 0
    assert {f: os.stat(out / f).st_mtime_ns for f in _files(out)} == before  # same names, never rewritten
    # One file changes (its last row dropped): only it is read; its other rows keep their files.
    write_image_parquet(source / "data" / "train-00001-of-00002.parquet", rows[3:-1], NAMES)
    changed = extract_parquet_gallery(source, out)
    assert changed.files_read == ["data/train-00001-of-00002.parquet"] and changed.written == 0
    assert changed.removed == 1 and len(_files(out)) == len(rows) - 1
    assert all(before[f] == os.stat(out / f).st_mtime_ns for f in _files(out))


def test_split_and_class_filters_narrow_the_rows_and_drop_the_rest(tmp_path, sketchy_root):
    rows = _rows(sketchy_root)
    source = tmp_path / "dataset"
    write_image_parquet(source / "data" / "train-00000-of-00001.parquet", rows[:4], NAMES)
    write_image_parquet(source / "data" / "test-00000-of-00001.parquet", rows[4:], NAMES)
    assert split_of("data/train-00000-of-00001.parquet") == "train"
    assert split_of("default/test/0000.parquet") == "test"
    out = tmp_path / "rows"
    extract_parquet_gallery(source, out, split="train")
    assert len(_files(out)) == 4
    extract_parquet_gallery(source, out, split="train", classes=parse_classes("cup, umbrella"))
    assert {f.split("/")[0] for f in _files(out)} == {"cup"}  # train holds chair and cup; umbrella is in test
    extract_parquet_gallery(source, out, classes=parse_classes("umbrella,chair"))
    assert {f.split("/")[0] for f in _files(out)} == {"umbrella", "chair"} and len(_files(out)) == 4
    with pytest.raises(ValueError, match="splits: test, train"):
        extract_parquet_gallery(source, out, split="validation")


def test_without_labels_rows_are_photos_with_no_category_and_a_card_can_name_the_classes(tmp_path, sketchy_root):
    rows = _rows(sketchy_root, per_class=1)
    plain = tmp_path / "plain"
    write_image_parquet(plain / "train.parquet", [(p, None) for p, _ in rows])
    out = extract_parquet_gallery(plain, tmp_path / "plain-rows")
    assert out.labels == set() and all("/" not in f for f in _files(tmp_path / "plain-rows"))
    # Integer labels without features: the names come from the card's dataset_info, as the Hub keeps them.
    carded = tmp_path / "carded"
    write_image_parquet(carded / "data" / "train-00000-of-00001.parquet", rows, NAMES, features=False)
    (carded / "README.md").write_text(
        "---\ndataset_info:\n  features:\n  - name: image\n    dtype: image\n  - name: label\n    dtype:\n"
        "      class_label:\n        names:\n" + "".join(f"          '{i}': {n}\n" for i, n in enumerate(NAMES))
        + "---\n# A card\n")
    assert card_label_names(carded / "data") == {"label": NAMES}  # found above a downloaded subfolder
    report = extract_parquet_gallery(carded, tmp_path / "carded-rows")
    assert report.labels == {"chair", "cup", "umbrella"}


def test_filters_on_a_folder_of_photos_are_refused_and_it_stays_as_it_is(tmp_path, sketchy_root):
    folder = tmp_path / "photos"
    folder.mkdir()
    assert photo_folder(folder) == folder
    with pytest.raises(ValueError, match="parquet"):
        photo_folder(folder, classes=parse_classes("cup"))


def test_the_app_searches_a_local_parquet_folder_with_its_labels(tmp_path, sketchy_root):
    rows = _rows(sketchy_root)
    source = tmp_path / "download"  # what `hf download USER/REPO --repo-type dataset --local-dir` writes
    write_image_parquet(source / "data" / "train-00000-of-00001.parquet", rows, NAMES)
    state = app_main.prepare(app_main.build_parser().parse_args(
        ["--gallery", str(source), "--gallery-classes", "chair,cup", *TINY]))
    try:
        assert state.gallery_dir == photos_dir(source).resolve() and (state.gallery_dir / STATE_FILE).is_file()
        assert state.indexer.wait(60).state == "done" and state.watcher is None
        assert sorted(p.label for p in state.searcher.index.photos) == ["chair", "chair", "cup", "cup"]
        results = state.searcher.search_like(state.searcher.index.photos[0].relpath, "category", k=2)
        assert results[0].path.is_file()  # served from the app's own folder, as other photos are
    finally:
        state.indexer.stop(10)


def test_a_hub_dataset_of_parquet_files_from_the_cache_offline(hf_cache, tmp_path, sketchy_root):  # noqa: F811
    rows = _rows(sketchy_root)
    parquet = write_image_parquet(tmp_path / "train.parquet", rows, NAMES)
    _cache_repo(hf_cache, "dataset", "alice/objects", {"data/train-00000-of-00001.parquet": parquet})
    args = app_main.build_parser().parse_args(
        ["--gallery", "hf://datasets/alice/objects", "--gallery-classes", "umbrella", *TINY])
    state = app_main.prepare(args)
    try:
        assert state.indexer.wait(60).state == "done"
        assert [p.label for p in state.searcher.index.photos] == ["umbrella", "umbrella"]
    finally:
        state.indexer.stop(10)


def test_sketchlvm_index_build_indexes_a_parquet_dataset_and_the_app_reuses_the_index(tmp_path, sketchy_root):
    from sketchlvm.gallery.cli import main as index_main

    rows = _rows(sketchy_root)
    source = tmp_path / "download"
    write_image_parquet(source / "data" / "train-00000-of-00001.parquet", rows, NAMES)
    with pytest.raises(SystemExit) as done:
        index_main(["build", str(source), "--classes", "cup,umbrella", "--model", TINY_ARCH, "--pretrained", "none",
                    "--device", "cpu", "--runtime", "torch", "--quiet"])
    assert done.value.code == 0
    state = app_main.prepare(app_main.build_parser().parse_args(
        ["--gallery", str(source), "--gallery-classes", "umbrella,cup", *TINY]))
    try:
        assert state.indexer.wait(60).state == "done"
        assert state.indexer.report.unchanged == 4 and state.indexer.report.added == 0  # nothing embedded again
    finally:
        state.indexer.stop(10)
