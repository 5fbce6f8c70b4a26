"""Both runtimes implement ``EncoderRuntime``: every member, with the Protocol's parameters, on real instances."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("onnxruntime")

from sketchlvm.config import TINY_ARCH  # noqa: E402
from sketchlvm.model.factory import create_sketchlvm  # noqa: E402
from sketchlvm.model.folder_model import load_export  # noqa: E402
from sketchlvm.runtime.engine import Runtime  # noqa: E402
from sketchlvm.runtime.folder_runtime import ExportedRuntime  # noqa: E402
from sketchlvm.runtime.interface import EncoderRuntime  # noqa: E402

MEMBERS = [name for name in dir(EncoderRuntime) if not name.startswith("_")] + ["config"]
pytestmark = pytest.mark.usefixtures("isolated_runtime")


def parameters(function) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("runtime_class", [Runtime, ExportedRuntime])
def test_each_method_takes_the_protocols_parameters(runtime_class):
    for name in MEMBERS:
        member = inspect.getattr_static(EncoderRuntime, name, None)
        if callable(member) and not isinstance(member, property):
            assert callable(getattr(runtime_class, name, None)), f"{runtime_class.__name__} has no {name}()"
            assert parameters(getattr(runtime_class, name)) == parameters(member), (runtime_class.__name__, name)


def test_both_installs_runtimes_are_encoder_runtimes(tmp_path):
    from serving_export import make_export

    model = create_sketchlvm(TINY_ARCH, "none", device="cpu", runtime="onnx")
    served = load_export(make_export(tmp_path / "export"))
    for runtime in (model.runtime, served.runtime):
        assert isinstance(runtime, EncoderRuntime)
        assert all(hasattr(runtime, name) for name in MEMBERS)
        assert runtime.name == "onnx" and "ONNX Runtime" in runtime.describe()
        assert runtime.photo_identity()["numerics"] == "fp32"
