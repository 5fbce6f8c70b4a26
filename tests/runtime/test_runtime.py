"""The ONNX Runtime encoder: export with prompts, agreement with torch on real images, the export cache,
int8 agreement and refusal, fallbacks, and the gallery index across runtimes.

Random-weight towers say nothing about retrieval quality; these tests check numerics and plumbing:
every exported path must reproduce the torch encoder on real Sketchy images within the tolerances
the runtime itself enforces (cosine >= 0.99999, max abs diff <= 1e-4).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import class_images, copy_class_photos
from PIL import Image

ort = pytest.importorskip("onnxruntime")

from sketchlvm.runtime import onnx_export  # noqa: E402
from sketchlvm.model.checkpoint import learned_state, save_checkpoint  # noqa: E402
from sketchlvm.config import TINY_ARCH, RuntimeConfig  # noqa: E402
from sketchlvm.model.encoder import trainable_parameter_names  # noqa: E402
from sketchlvm.gallery import StaleIndexError, build_gallery_index, open_gallery_index  # noqa: E402
from sketchlvm.model.factory import build_prompted_encoder, create_sketchlvm  # noqa: E402
from sketchlvm.runtime.int8 import check_int8, measure_int8_agreement, top_k_agreement  # noqa: E402
from sketchlvm.runtime.engine import Int8RefusedError, requested_runtime  # noqa: E402
from sketchlvm.preprocess.transforms import load_photo  # noqa: E402
from sketchlvm.model.weights import load_clip  # noqa: E402

MIN_COSINE, MAX_ABS = 0.99999, 1e-4
CLASSES = ("airplane", "cat", "fish", "umbrella")
pytestmark = pytest.mark.usefixtures("isolated_runtime")


@pytest.fixture(scope="module")
def real_sketches(sketchy_root) -> list[Image.Image]:
    return class_images(sketchy_root, "sketch", CLASSES, per_class=2)


@pytest.fixture(scope="module")
def real_photos(sketchy_root) -> list[Image.Image]:
    return class_images(sketchy_root, "photo", CLASSES, per_class=2)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, sketchy_root) -> Path:
    return copy_class_photos(sketchy_root, tmp_path_factory.mktemp("runtime") / "gallery", CLASSES, per_class=4)


def make_checkpoint(path: Path, arch: str, modes=("category", "fine_grained"), seed: int = 0) -> Path:
    """A checkpoint with learned prompts and perturbed LayerNorms for ``modes`` on random weights."""
    clip, weights = load_clip(arch, "none")
    states = {}
    generator = torch.Generator().manual_seed(seed)
    for mode in modes:
        encoder = build_prompted_encoder(clip.visual, mode, 3)
        names = trainable_parameter_names(encoder, "paper")
        with torch.no_grad():
            for name, param in encoder.named_parameters():
                if name in names and not name.startswith("prompts."):
                    param.add_(0.05 * torch.randn(param.shape, generator=generator))
        states[mode] = learned_state(encoder, names)
    return save_checkpoint(path, states, {"arch": arch, "pretrained": weights.identity(), "n_prompts": 3,
                                          "trainable": "paper"})


def onnx_tiny(arch, pretrained, checkpoint, device, runtime, check_images):
    """A model on the onnx runtime, its graphs prepared (exported or reused, and checked) now."""
    model = create_sketchlvm(arch, pretrained, checkpoint, device, runtime=runtime, check_images=check_images)
    assert model.runtime.name == "onnx"
    return model


def assert_agrees(model, images, modality, mode, batch_sizes=(1, len)):
    """The runtime's output equals the torch encoder's within tolerance, at batch 1 and the full batch."""
    transform = model.sketch_transform if modality == "sketch" else model.photo_transform
    batch = torch.stack([transform(im) for im in images])
    reference = model.runtime._torch(batch, modality, mode)
    for size in (1, len(images)):
        got = np.concatenate([model.encode_tensors(batch[i:i + size], modality, mode)
                              for i in range(0, len(images), size)])
        found = onnx_export.agreement(reference, got)
        assert found.within(MIN_COSINE, MAX_ABS), f"{mode} {modality} batch {size}: {found}"
    return reference


def test_runtime_names_and_environment(monkeypatch):
    assert requested_runtime(None) == "auto"
    monkeypatch.setenv("SKETCHLVM_RUNTIME", "onnx-int8")
    assert requested_runtime(None) == "onnx-int8"
    assert requested_runtime("Torch") == "torch"  # an explicit choice wins over the variable
    with pytest.raises(ValueError, match="auto, torch, onnx, onnx-int8"):
        requested_runtime("openvino")


def test_tiny_export_with_prompts_agrees_with_torch_on_real_images(tmp_path, real_sketches, real_photos):
    ckpt = make_checkpoint(tmp_path / "both.safetensors", TINY_ARCH)
    model = create_sketchlvm(TINY_ARCH, "none", ckpt, "cpu", runtime="onnx", check_images=real_sketches)
    assert model.runtime.name == "onnx" and not model.runtime.fallbacks
    graphs = {key: g.spec.name for key, g in model.runtime._graphs.items()}
    assert graphs == {("category", "sketch"): "category-sketch", ("category", "photo"): "category-photo",
                      ("fine_grained", "sketch"): "fine_grained-shared", ("fine_grained", "photo"): "fine_grained-shared"}
    # Four paths, three files: fine-grained's shared prompt is one graph.
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 3
    outputs = {}
    for mode in ("category", "fine_grained"):
        outputs[mode, "sketch"] = assert_agrees(model, real_sketches, "sketch", mode)
        outputs[mode, "photo"] = assert_agrees(model, real_photos, "photo", mode)
    # The prompts are baked in: category's sketch and photo graphs differ on the same images.
    batch = torch.stack([model.photo_transform(im) for im in real_photos])
    as_sketch = model.encode_tensors(batch, "sketch", "category")
    as_photo = model.encode_tensors(batch, "photo", "category")
    assert np.abs(as_sketch - as_photo).max() > 1e-3
    assert "onnx: ONNX Runtime" in model.describe()["runtime"]


def _overlaps(model, calls) -> int:
    """Run ``calls`` (a list of thunks) at once, each in its own thread; the most ONNX runs seen at once."""
    import threading
    import time

    sessions = model.runtime._onnx  # the ONNX sessions (runtime/onnx_sessions.py), shared with the serving runtime
    real_session = sessions.session
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    class Watched:
        def __init__(self, session):
            self.session = session

        def run(self, *args):
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            time.sleep(0.05)  # long enough for the other thread to arrive
            try:
                return self.session.run(*args)
            finally:
                with lock:
                    state["now"] -= 1

    sessions.session = lambda path, role: Watched(real_session(path, role))
    try:
        threads = [threading.Thread(target=call) for call in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sessions.session = real_session
    return state["most"]


def test_query_runs_take_turns_and_index_runs_do_not_wait_for_them(real_sketches, real_photos):
    """Each query run uses every core: two searches' encoder runs take turns (serial_queries), while a
    photo batch of the index build neither waits for a search nor holds one up."""
    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="onnx", check_images=real_sketches)
    assert model.runtime.name == "onnx"
    model.encode_photos(real_photos[:2], "category")  # the first photos are rechecked against torch: done now
    sketch = [lambda: model.encode_sketches(real_sketches[:1], "category") for _ in range(3)]
    photo = [lambda: model.encode_photos(real_photos[:2], "category")]
    assert model.runtime.config.serial_queries
    assert _overlaps(model, sketch) == 1
    assert _overlaps(model, sketch[:1] + photo) == 2
    model.runtime.config.serial_queries = False  # the check can fail: without turns, runs overlap
    assert _overlaps(model, sketch) > 1


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_photo_batches_run_in_slices_of_index_run_batch(runtime, real_sketches, real_photos):
    """On the CPU, index batches reach the encoder in slices of RuntimeConfig.index_run_batch
    (cache-sized; see its comment), reassembled in order; a query batch runs whole."""
    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime=runtime, check_images=real_sketches,
                             runtime_config=RuntimeConfig(index_run_batch=3))
    assert model.runtime.name == runtime
    model.encode_photos(real_photos[:2], "category")  # the first photos are rechecked against torch: done now
    photos = torch.stack([model.photo_transform(im) for im in real_photos[:8]])
    whole = model.runtime._torch(photos, "photo", "category")  # the reference, in one batch
    runs = []
    if runtime == "onnx":
        real_run = model.runtime._run

        def counting_run(path, role, inputs, batchable=True):
            runs.append(len(inputs["images"]))
            return real_run(path, role, inputs, batchable)

        model.runtime._run = counting_run
        hook = None
    else:
        hook = model.encoders["category"].register_forward_pre_hook(lambda module, args: runs.append(len(args[0])))
    try:
        got = model.encode_tensors(photos, "photo", "category")
        assert runs == [3, 3, 2]
        assert onnx_export.agreement(whole, got).within(MIN_COSINE, MAX_ABS)
        runs.clear()
        model.encode_tensors(torch.stack([model.sketch_transform(im) for im in real_sketches[:5]]), "sketch",
                             "category")
        assert runs == [5]
    finally:
        if hook is not None:
            hook.remove()


def test_torch_query_encodes_take_turns_too(real_sketches):
    """The app lets several searches in at once; on torch (no ONNX Runtime, or CUDA) their encodes take
    turns as ONNX runs do, instead of each running every core at once."""
    import threading
    import time

    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="torch")
    assert model.runtime.name == "torch"
    encoder = model.encoders["category"]
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def arrive(module, args):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)  # long enough for the other threads to arrive

    def leave(module, args, output):
        with lock:
            state["now"] -= 1

    hooks = [encoder.register_forward_pre_hook(arrive), encoder.register_forward_hook(leave)]

    def most_at_once() -> int:
        state["most"] = 0
        threads = [threading.Thread(target=model.encode_sketches, args=(real_sketches[:1], "category"))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return state["most"]

    try:
        assert most_at_once() == 1
        model.runtime.config.serial_queries = False  # the check can fail: without turns, encodes overlap
        assert most_at_once() > 1
    finally:
        for hook in hooks:
            hook.remove()


def test_vit_b32_random_weights_export_with_prompts_agrees(tmp_path, real_sketches, real_photos):
    arch = "ViT-B-32-quickgelu"
    ckpt = make_checkpoint(tmp_path / "b32.safetensors", arch, modes=("category",))
    model = create_sketchlvm(arch, "none", ckpt, "cpu", runtime="onnx", check_images=real_sketches[:4])
    assert model.runtime.name == "onnx" and not model.runtime.fallbacks
    assert model.runtime._graphs["category", "sketch"].spec.name == "category-sketch"
    assert model.runtime._graphs["fine_grained", "sketch"].spec.name == "plain"  # zero-shot mode
    assert_agrees(model, real_sketches[:4], "sketch", "category")
    assert_agrees(model, real_photos[:4], "photo", "category")
    assert_agrees(model, real_photos[:4], "photo", "fine_grained")


def test_export_cache_is_reused_and_invalidated_by_checkpoint_and_weights(tmp_path, monkeypatch, real_sketches):
    exported: list[str] = []
    real_export = onnx_export.export_graph

    def counting_export(encoder, modality, image_size, path):
        exported.append(path.name.rsplit("-", 1)[0])
        real_export(encoder, modality, image_size, path)

    monkeypatch.setattr(onnx_export, "export_graph", counting_export)
    first = make_checkpoint(tmp_path / "a.safetensors", TINY_ARCH, modes=("category",), seed=1)
    onnx_tiny(TINY_ARCH, "none", first, "cpu", runtime="onnx", check_images=real_sketches)
    assert sorted(exported) == ["category-photo", "category-sketch", "plain"]

    exported.clear()
    again = create_sketchlvm(TINY_ARCH, "none", first, "cpu", runtime="onnx", check_images=real_sketches)
    assert again.runtime.name == "onnx" and exported == []  # all three reused, and still checked

    exported.clear()
    second = make_checkpoint(tmp_path / "b.safetensors", TINY_ARCH, modes=("category",), seed=2)
    onnx_tiny(TINY_ARCH, "none", second, "cpu", runtime="onnx", check_images=real_sketches)
    assert sorted(exported) == ["category-photo", "category-sketch"]  # the plain tower did not change

    # A weights file: its size and mtime are part of the identity, so touching it re-exports.
    clip, _ = load_clip(TINY_ARCH, "none")
    weights = tmp_path / "tiny.pt"
    torch.save(clip.state_dict(), weights)
    exported.clear()
    onnx_tiny(TINY_ARCH, str(weights), None, "cpu", runtime="onnx", check_images=real_sketches)
    assert exported == ["plain"]
    exported.clear()
    onnx_tiny(TINY_ARCH, str(weights), None, "cpu", runtime="onnx", check_images=real_sketches)
    assert exported == []
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    exported.clear()
    onnx_tiny(TINY_ARCH, str(weights), None, "cpu", runtime="onnx", check_images=real_sketches)
    assert exported == ["plain"]
    # Nothing half-written is left behind: every graph has its sidecar, no temporary files.
    files = sorted(p.name for p in (tmp_path / "onnx").iterdir())
    assert not [f for f in files if f.endswith(".tmp")]
    assert {f[:-5] for f in files if f.endswith(".onnx")} == {f[:-5] for f in files if f.endswith(".json")}


def test_fallback_to_torch_when_onnxruntime_is_missing(monkeypatch, caplog, real_sketches):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with caplog.at_level(logging.WARNING, logger="sketchlvm.runtime.engine"):
        model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="auto")
        assert model.runtime.name  # graphs are prepared on first use
    assert model.runtime.name == "torch"
    assert "onnxruntime is not installed" in model.describe()["runtime"]
    assert "onnxruntime is not installed" in caplog.text
    batch = torch.stack([model.sketch_transform(s) for s in real_sketches])
    expected = model.encoders["category"](batch, "sketch").numpy()
    np.testing.assert_allclose(model.encode_sketches(real_sketches, "category"), expected, atol=1e-6)


def test_fallback_to_torch_when_export_fails(monkeypatch, caplog, real_sketches):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_export.torch.onnx, "export", broken)
    with caplog.at_level(logging.WARNING, logger="sketchlvm.runtime.engine"):
        model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="onnx", check_images=real_sketches)
        assert model.runtime.name  # graphs are prepared on first use
    assert model.runtime.name == "torch"
    assert "export of the plain graph failed: RuntimeError: exporter exploded" in model.describe()["runtime"]
    assert "exporter exploded" in caplog.text
    assert model.encode_sketches(real_sketches[:1], "category").shape == (1, 64)


def test_a_graph_that_disagrees_with_torch_is_refused(monkeypatch, caplog, tmp_path, real_sketches, real_photos):
    ckpt = make_checkpoint(tmp_path / "cat.safetensors", TINY_ARCH, modes=("category",))
    real_forward = onnx_export._Graph.forward

    def wrong_for_photos(self, images):  # an export bug that only the photo graph has
        out = real_forward(self, images)
        return torch.nn.functional.normalize(out + 0.05, dim=-1) if self.modality == "photo" else out

    monkeypatch.setattr(onnx_export._Graph, "forward", wrong_for_photos)
    with caplog.at_level(logging.WARNING, logger="sketchlvm.runtime.engine"):
        model = create_sketchlvm(TINY_ARCH, "none", ckpt, "cpu", runtime="onnx", check_images=real_sketches)
        assert model.runtime.name  # graphs are prepared on first use
    runtime = model.runtime
    assert runtime.name == "onnx"
    assert runtime.uses_onnx("category", "sketch") and not runtime.uses_onnx("category", "photo")
    assert "disagrees with torch" in runtime.fallbacks["category", "photo"]
    assert "torch for category photo" in model.describe()["runtime"] and "disagrees with torch" in caplog.text
    batch = torch.stack([model.photo_transform(p) for p in real_photos])
    np.testing.assert_allclose(model.encode_photos(real_photos, "category"),
                               model.encoders["category"](batch, "photo").numpy(), atol=1e-6)


def test_top_k_agreement_on_hand_computed_rankings():
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    b = np.array([[4, 3, 2, 1], [5, 6, 9, 10]])
    assert top_k_agreement(a, b) == pytest.approx((1.0 + 0.5) / 2)
    with pytest.raises(ValueError):
        top_k_agreement(a, b[:, :3])


def test_int8_agreement_is_measured_on_the_gallery(gallery, tmp_path, real_sketches):
    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="onnx-int8", check_images=real_sketches)
    assert model.runtime.name == "onnx-int8" and model.runtime.uses_int8("category")
    assert "not measured yet" in model.describe()["runtime"]
    index = build_gallery_index(gallery, model, cache_dir=tmp_path / "cache", show_progress_bar=False)
    found = measure_int8_agreement(model, index, real_sketches)
    # Oracle: the int8 and fp32 graphs run directly, brute-force top-10 over the stored vectors.
    graph = model.runtime._graphs["category", "sketch"]
    batch = np.stack([model.sketch_transform(s).numpy() for s in real_sketches])
    run = {p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": batch})[0]
           for p in (graph.path, graph.int8_path)}
    vectors = index.vectors("category")
    top = {p: np.argsort(-(q @ vectors.T), axis=1, kind="stable")[:, :10] for p, q in run.items()}
    oracle = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top[graph.path], top[graph.int8_path])])
    assert found["category"] == pytest.approx(oracle, abs=1 / 80)  # ties may order differently
    assert np.abs(run[graph.path] - run[graph.int8_path]).max() > 0  # int8 really is another computation
    status = check_int8(model, index, real_sketches)
    assert status.startswith(f"int8: top-10 agreement {min(found.values()):.2f}")
    assert status in model.describe()["runtime"]
    # Photos (the index) are never int8: the photo path is the fp32 graph.
    assert model.runtime._graphs["category", "photo"].int8_path is None


def test_int8_is_refused_below_the_threshold_with_how_to_run_without(gallery, tmp_path, monkeypatch, real_sketches):
    # Top-3 of 16: random towers rank a small gallery almost the same for every query, so a top-10 of
    # 16 would agree whatever int8 did.
    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="onnx-int8", check_images=real_sketches,
                             runtime_config=RuntimeConfig(int8_top_k=3))
    index = build_gallery_index(gallery, model, cache_dir=tmp_path / "cache", show_progress_bar=False)
    real_encode = model.runtime.encode

    def badly_quantised(batch, modality, mode, int8=True):  # as if int8 had flipped every sketch vector
        out = real_encode(batch, modality, mode, int8=int8)
        return -out if int8 and modality == "sketch" else out

    monkeypatch.setattr(model.runtime, "encode", badly_quantised)
    found = measure_int8_agreement(model, index, real_sketches)
    assert min(found.values()) < RuntimeConfig().int8_min_agreement
    with pytest.raises(Int8RefusedError, match=r"--runtime onnx .*SKETCHLVM_RUNTIME=onnx"):
        check_int8(model, index, real_sketches)
    assert "refused" in model.describe()["runtime"]


def test_index_is_shared_by_agreeing_runtimes_and_rebuilt_for_others(gallery, tmp_path, real_sketches):
    cache = tmp_path / "cache"
    torch_model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="torch")
    built = build_gallery_index(gallery, torch_model, cache_dir=cache, show_progress_bar=False)
    onnx_model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="onnx", check_images=real_sketches)
    assert onnx_model.runtime.uses_onnx("category", "photo")
    # Same numerics contract, so the same identity: the ONNX model opens the torch-built index...
    opened = open_gallery_index(cache, onnx_model)
    assert len(opened) == len(built) == 16
    # ...and that is true to the numbers: ONNX embeds every gallery photo within tolerance of the index.
    photos = [onnx_model.photo_transform.to_image(load_photo(opened.path_of(i), draft_size=onnx_model.image_size))
              for i in range(len(opened))]  # decoded as the index build decodes them
    found = onnx_export.agreement(opened.vectors("category"), onnx_model.encode_photos(photos, "category"))
    assert found.within(MIN_COSINE, MAX_ABS), found
    assert build_gallery_index(gallery, onnx_model, cache_dir=cache, show_progress_bar=False).report.unchanged == 16

    # A runtime held to another tolerance has another identity: refused on open, re-embedded on build.
    loose = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="onnx", check_images=real_sketches,
                             runtime_config=RuntimeConfig(max_abs_diff=1e-2))
    with pytest.raises(StaleIndexError, match="photo_encoder"):
        open_gallery_index(cache, loose)
    rebuilt = build_gallery_index(gallery, loose, cache_dir=cache, show_progress_bar=False)
    assert rebuilt.report.updated == 16 and rebuilt.report.unchanged == 0
    with pytest.raises(StaleIndexError):
        open_gallery_index(cache, torch_model)


def test_a_photo_graph_is_rechecked_on_the_first_real_gallery_photos(gallery, tmp_path, monkeypatch, real_sketches):
    model = create_sketchlvm(TINY_ARCH, "none", None, "cpu", runtime="onnx", check_images=real_sketches)
    runtime = model.runtime
    assert runtime.name == "onnx"  # exported and checked on the example sketches first
    real_check = runtime._check
    seen = []

    def spy(path, batch, mode, modality, name):
        seen.append((modality, len(batch)))
        return real_check(path, batch, mode, modality, name)

    monkeypatch.setattr(runtime, "_check", spy)
    build_gallery_index(gallery, model, cache_dir=tmp_path / "cache", show_progress_bar=False)
    assert seen == [("photo", 4)]  # once, on the first batch; zero-shot modes share the plain graph
    assert runtime.uses_onnx("category", "photo") and not runtime.fallbacks
