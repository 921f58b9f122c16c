"""Which locked artifacts go in which layer (builder/image/layers.py), over the committed locks of the whole matrix: every
entry once, the CUDA wheels each alone, and the tags of one CUDA family sharing the chain the plan promises."""

import dataclasses

import pytest

from builder import layout
from builder.image import layers, render
from builder.wheels import lockfile
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def locked(shipped):
    """tag -> (spec, the committed torch lock's entries) for every tag with a lock."""
    return {tag: (spec, lockfile.read(ROOT / "images" / tag / layout.LOCK_FILE)) for tag, spec in shipped.specs.items()
            if (ROOT / "images" / tag / layout.LOCK_FILE).is_file()}


def plan(locked, tag):
    return layers.plan(*locked[tag])


def shared(first: list, second: list) -> int:
    return next((i for i, (a, b) in enumerate(zip(first, second)) if a != b), min(len(first), len(second)))


def test_every_entry_of_every_lock_is_in_exactly_one_layer_and_each_cuda_wheel_alone(locked):
    assert len(locked) >= 14
    for tag, (spec, packages) in locked.items():
        planned = layers.plan(spec, packages)
        assert sorted((p for layer in planned for p in layer.packages), key=str) == sorted(packages, key=str), tag
        cuda = [layer for layer in planned if any(layers.is_cuda_library(p) for p in layer.packages)
                and layer.what != "-devel: the CUDA compiler's wheels"]
        assert cuda and all(len(layer.packages) == 1 for layer in cuda), tag
        assert planned[len(cuda)].what.startswith("torch") and any(p.name == "torch" for p in planned[len(cuda)].packages)
        assert not any(p.name == "nvidia-ml-py" for layer in cuda for p in layer.packages)  # NVML's binding: tiny
        # far below Docker's 127 layers: the whole image stays under 50
        assert len(planned) < 25, tag


def test_the_order_is_the_fixed_one_whatever_the_suffix(locked):
    planned = [layer.what for layer in plan(locked, "v2.6-cu124")]
    assert planned[:4] == ["nvidia-cuda-runtime-cu12", "nvidia-cuda-nvrtc-cu12", "nvidia-cuda-cupti-cu12", "nvidia-nvtx-cu12"]
    torch = planned.index("torch, torchvision and the rest of torch's lock")
    assert planned[torch - 3:torch] == ["nvidia-nccl-cu12", "nvidia-nvjitlink-cu12", "nvidia-cusparselt-cu12"]
    assert planned[torch + 1:] == ["torchaudio"]  # the tag's optional torchaudio, alone above torch's
    cu13 = [layer.what for layer in plan(locked, "v2.13-cu130")]
    assert [layers.family_name(n) for n in cu13[:4]] == [layers.family_name(n) for n in planned[:4]]


def test_the_cu124_family_shares_every_cuda_layer_v2_5_has(locked):
    """v2.5-cu124's 12 CUDA wheels are the same artifacts as v2.6-cu124's; v2.6 adds cuSPARSELt, on top."""
    v25, v26 = plan(locked, "v2.5-cu124"), plan(locked, "v2.6-cu124")
    assert shared(v25, v26) == 12 == len(v25) - 1


def test_the_cu130_family_shares_up_to_what_moved(locked):
    v211, v212, v213, v214 = (plan(locked, f"v2.{n}-cu130") for n in (11, 12, 13, 14))
    assert shared(v212, v213) == 12 and v213[12].what == "nvidia-nvjitlink"  # nvJitLink moved; all below it shared
    assert shared(v213, v214) == 10 and v214[10].what == "nvidia-cudnn-cu13"
    assert shared(v211, v212) == 9 and v212[9].what == "nvidia-cublas"


def test_a_devel_tag_is_its_runtime_tag_plus_the_compilers_layers(locked, shipped):
    runtime, devel = plan(locked, "v2.15-cu132"), plan(locked, "v2.15-cu132-devel")
    assert devel[:len(runtime)] == runtime  # every CUDA layer and torch's
    assert [p.name for p in devel[-1].packages] == ["nvidia-cuda-crt", "nvidia-cuda-nvcc", "nvidia-nvvm"]
    # ... and so their Dockerfiles are the same instructions up to torch's step: the same layers, built either way
    steps = [render.render(shipped.specs[tag])["Dockerfile"].split("\nCOPY ")[0] for tag in ("v2.15-cu132", "v2.15-cu132-devel")]
    first, second = (s.split("\n", 2)[2] for s in steps)  # past the two header lines that name the tag
    torch_step = first.index("'torch==")
    assert second[:torch_step] == first[:torch_step]


def test_adding_a_tag_changes_no_other_tags_layers(locked):
    """The plan is a function of the tag's own lock: a new family member, with a CUDA package no lock has had yet,
    leaves the others' plans as they were, and its new package goes on top of the known ones."""
    spec, packages = locked["v2.6-cu124"]
    before = {tag: layers.plan(*value) for tag, value in locked.items()}
    newcomer = lockfile.Locked("nvidia-cuquantum-cu12", "25.3.0", "a" * 64, "https://example.invalid/q.whl", 1)
    newer = layers.plan(dataclasses.replace(spec, tag="v2.7-cu124"), (*packages, newcomer))
    assert {tag: layers.plan(*value) for tag, value in locked.items()} == before
    cuda = [layer.what for layer in newer if layer.what.startswith("nvidia")]
    assert cuda[-1] == "nvidia-cuquantum-cu12" and newer[:len(cuda) - 1] == before["v2.6-cu124"][:len(cuda) - 1]


def test_torchaudio_is_a_layer_of_its_own_above_torchs_and_below_the_compilers(locked):
    """torch's layer is the same artifacts with or without torchaudio, so a tag that adds it shares every layer below;
    a -devel tag's compiler wheels still come last."""
    spec, packages = locked["v2.6-cu124"]
    without = layers.plan(spec, tuple(p for p in packages if p.name != "torchaudio"))
    assert layers.plan(spec, packages) == [*without, layers.Layer("torchaudio", tuple(p for p in packages
                                                                                     if p.name == "torchaudio"))]
    devel_spec, devel_packages = locked["v2.15-cu132-devel"]
    torchaudio = lockfile.Locked("torchaudio", "2.11.0", "b" * 64, "https://example.invalid/torchaudio.whl", 1)
    planned = [layer.what for layer in layers.plan(devel_spec, (torchaudio, *devel_packages))]
    assert planned[-3:] == ["torch, torchvision and the rest of torch's lock", "torchaudio",
                            "-devel: the CUDA compiler's wheels"]


@pytest.mark.parametrize("field,value", [("sha256", "2fc8';touch x;'"), ("version", "1.0 --index-url=http://x"),
                                         ("name", "-e.")])
def test_an_entry_that_is_not_name_version_and_sha256_is_refused(locked, field, value):
    spec, packages = locked["v2.6-cu124"]
    broken = (dataclasses.replace(packages[0], **{field: value}), *packages[1:])
    with pytest.raises(lockfile.LockError, match="images/v2.6-cu124/requirements.lock: the entry"):
        layers.plan(spec, broken, where="images/v2.6-cu124/requirements.lock")
