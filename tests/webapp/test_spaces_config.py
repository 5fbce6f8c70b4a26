"""The Space's configuration against what ZeroGPU runs: the README's front matter and requirements.txt.

A Space installs requirements.txt and reads the front matter; ZeroGPU (hub-docs, August 2026) runs only
the Gradio SDK, torch 2.8.0 / 2.9.1 / 2.10.0 / 2.11.0 and Python 3.12.12 / 3.10.13. A pin that drifts
off those lists makes the Space fail to start there, so this reads both files and checks them.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from sketchlvm.runtime.zerogpu import ZEROGPU_PYTHON, ZEROGPU_TORCH

ROOT = Path(__file__).resolve().parents[2]
# torchvision's release for each torch release on ZeroGPU's list (pytorch/vision's compatibility table).
TORCHVISION_FOR = {"2.8.0": "0.23.0", "2.9.1": "0.24.1", "2.10.0": "0.25.0", "2.11.0": "0.26.0"}


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"\A---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md must start with the Space's YAML front matter between --- lines"
    return yaml.safe_load(match.group(1))


def pins(path: Path = ROOT / "requirements.txt") -> dict[str, str]:
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def test_the_front_matter_is_a_gradio_space_on_a_python_zerogpu_runs():
    config = front_matter()
    assert config["sdk"] == "gradio" and config["app_file"] == "app.py"
    assert str(config["python_version"]) in ZEROGPU_PYTHON  # quoted in the YAML: 3.10 would read as 3.1
    assert str(config["sdk_version"]) == pins()["gradio"]  # the Space's Gradio is the one tested here


def test_the_suggested_hardware_is_zerogpu():
    from huggingface_hub import SpaceHardware

    assert front_matter()["suggested_hardware"] == SpaceHardware.ZERO_A10G.value


def test_torch_and_torchvision_are_pinned_to_a_zerogpu_release():
    found = pins()
    assert found["torch"] in ZEROGPU_TORCH, f"torch {found['torch']} is not on ZeroGPU's list {ZEROGPU_TORCH}"
    assert found["torchvision"] == TORCHVISION_FOR[found["torch"]]
    assert "spaces" in found  # @spaces.GPU: the Space needs the package, and it is a no-op elsewhere


def test_the_weights_are_preloaded_when_the_space_is_built():
    from sketchlvm.config import ModelConfig

    preload = front_matter().get("preload_from_hub") or []
    assert ModelConfig().arch == "ViT-B-32-quickgelu" and ModelConfig().pretrained == "openai"
    assert any(item.split()[0] == "timm/vit_base_patch32_clip_224.openai" for item in preload)
