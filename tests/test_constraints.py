"""The pip constraints an image is given (image_files/constraints.py) and the explanation pip prints with them
(image_files/pip_guard.py), as plain functions; tests/docker/test_pip_guard.py runs both in a real image."""

import importlib
import sys

import pytest

from builder import layout

# torch 2.6.0's Requires-Dist (its wheel's METADATA on PyPI, cu124) and torchvision 0.21.0's, as importlib.metadata
# returns them.
REQUIRES = {
    "torch": ["filelock", "typing-extensions>=4.10.0", "networkx", "jinja2", "fsspec",
              'nvidia-cuda-nvrtc-cu12==12.4.127; platform_system == "Linux" and platform_machine == "x86_64"',
              'nvidia-cudnn-cu12==9.1.0.70; platform_system == "Linux" and platform_machine == "x86_64"',
              'nvidia-cublas-cu12==12.4.5.8; platform_system == "Linux" and platform_machine == "x86_64"',
              'triton==3.2.0; platform_system == "Linux" and platform_machine == "x86_64"',
              'setuptools; python_version >= "3.12"', 'sympy==1.13.1; python_version >= "3.9"',
              'opt-einsum>=3.3; extra == "opt-einsum"', 'optree>=0.13.0; extra == "optree"'],
    "torchvision": ["numpy", "torch==2.6.0", "pillow!=8.3.*,>=5.3.0", 'gdown>=4.7.3; extra == "gdown"'],
    "nvidia-cudnn-cu12": ["nvidia-cublas-cu12"],
    "sympy": ["mpmath<1.4,>=1.1.0"],
}
LOCKED = {"torch": "2.6.0", "torchvision": "0.21.0", "triton": "3.2.0", "sympy": "1.13.1", "mpmath": "1.3.0",
          "nvidia-cuda-nvrtc-cu12": "12.4.127", "nvidia-cudnn-cu12": "9.1.0.70", "nvidia-cublas-cu12": "12.4.5.8",
          "numpy": "2.4.6", "pillow": "12.0.0", "jinja2": "3.1.6", "filelock": "3.20.0", "networkx": "3.5",
          "fsspec": "2025.10.0", "typing-extensions": "4.15.0", "nvidia-ml-py": "13.615.71"}


@pytest.fixture
def templates(monkeypatch):
    monkeypatch.syspath_prepend(str(layout.IMAGE_FILES))
    yield
    for name in ("constraints", "manifest", "pip_guard"):
        sys.modules.pop(name, None)


def test_the_torch_stack_is_torch_torchvision_and_what_they_pin_exactly(templates, monkeypatch):
    constraints = importlib.import_module("constraints")
    monkeypatch.setattr(constraints.importlib.metadata, "requires", lambda name: REQUIRES.get(name, []))
    assert constraints.closure(["torch", "torchvision"], LOCKED) == [
        "nvidia-cublas-cu12", "nvidia-cuda-nvrtc-cu12", "nvidia-cudnn-cu12", "sympy", "torch", "torchvision", "triton"]


@pytest.mark.parametrize("requirement, pinned", [
    ('triton==3.2.0; platform_system == "Linux"', "triton"),
    ("torch (==2.6.0)", "torch"),  # the older Requires-Dist spelling
    ("nvidia-cudnn-cu12[extra]==9.1.0.70", "nvidia-cudnn-cu12"),
    ("numpy>=1.26", None), ("torch==2.6.0,<3", None), ("sympy===1.13.1", "sympy"), ("jinja2", None),
])
def test_only_a_single_exact_pin_counts(templates, requirement, pinned):
    found = importlib.import_module("constraints").EXACT_PIN.match(requirement)
    assert (found[1] if found else None) == pinned


def test_the_explanation_names_the_images_torch_and_tag_and_both_ways_out(templates):
    guard = importlib.import_module("pip_guard")  # imported outside pip: it wraps nothing
    text = guard.explanation(["torch==2.7.1"], {"torch": "2.6.0", "torchvision": "0.21.0", "triton": "3.2.0"},
                             {"tag": "v2.6-cu124", "cuda": "12.4"})
    assert "this image (v2.6-cu124) is built around torch 2.6.0, torchvision 0.21.0 with CUDA 12.4" in text
    assert "The request needs torch==2.7.1" in text and "Nothing was installed or removed" in text
    assert "tag v2.7-cu<CUDA>" in text
    assert "as root, `docker exec CONTAINER env PIP_CONSTRAINT= pip install ...`" in text
    assert "python -m venv /workspace/env" in text
    audio = guard.explanation(["torchaudio==2.7.1"], {"torch": "2.6.0", "torchvision": "0.21.0", "torchaudio": "2.6.0"},
                              {"tag": "v2.6-cu124", "cuda": "12.4"})  # a tag with torchaudio: the stack names it
    assert "built around torch 2.6.0, torchvision 0.21.0, torchaudio 2.6.0 with CUDA 12.4" in audio
    assert "The request needs torchaudio==2.7.1" in audio
    other = guard.explanation(["nvidia-cudnn-cu12==9.5.1.17"], {"torch": "2.6.0"}, {"tag": "v2.6-cu124", "cuda": "12.4"})
    assert "needs nvidia-cudnn-cu12==9.5.1.17" in other and "tag v<torch major.minor>-cu<CUDA>" in other


def test_the_guard_acts_only_in_a_pip_install(templates, monkeypatch):
    guard = importlib.import_module("pip_guard")
    for argv, acts in [(["/opt/venv/bin/python", "-m", "pip", "install", "einops"], True),
                       (["/opt/venv/bin/python3", "/opt/venv/bin/pip", "install", "x"], True),
                       (["/opt/venv/bin/python", "-m", "pip", "list"], False),
                       (["/opt/venv/bin/python", "-c", "import torch"], False),
                       (["/opt/venv/bin/python", "train.py", "install"], False)]:
        monkeypatch.setattr(sys, "orig_argv", argv)
        monkeypatch.setattr(sys, "argv", [argv[1]] if argv[1] != "-m" else ["-m", *argv[3:]])
        assert guard._pip_command() is acts, argv
