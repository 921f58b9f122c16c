"""The warning at container start (smoke_tests/startup.py), fed recorded NVML answers and the shipped tags' facts."""

import json
import os
import subprocess
import sys

import pytest

from builder.image import render
from smoke_tests import nvml, startup
from tests.conftest import ROOT

RECORDINGS = ROOT / "tests" / "data" / "nvml"


def host(name: str) -> nvml.Nvml:
    return nvml.read({nvml.RECORD_VARIABLE: str(RECORDINGS / f"{name}.json")})


@pytest.fixture(scope="module")
def files_of(shipped):
    """A tag's spec.json and matrix.json, as the image carries them."""
    def files(tag):
        spec = shipped.specs[tag]
        return {"spec.json": render.facts(spec), startup.MATRIX_FILE: json.loads(render.siblings(spec))}
    return files


@pytest.fixture(scope="module")
def warn(files_of):
    def warning(recording, tag):
        files = files_of(tag)
        return startup.warning(host(recording), files["spec.json"], files[startup.MATRIX_FILE])
    return warning


def test_a_driver_below_the_images_minimum_is_one_warning_naming_the_tags_that_run(warn):
    message = warn("h100-driver-535", "v2.15-cu132")
    assert message.startswith("WARNING: this image (v2.15-cu132, CUDA 13.2) will not run on this host's GPU: "
                              "driver 535.129.03 is older than 580.65.06")
    assert message.endswith("Tags of its matrix that run on this host: v2.4-cu118, v2.4-cu121, v2.4-cu124, v2.5-cu118, "
                            "v2.5-cu121, v2.5-cu124, v2.6-cu118, v2.6-cu124, v2.6-cu124-devel, v2.6-cu126, v2.7-cu118, "
                            "v2.7-cu126, v2.7-cu128, v2.8-cu126, v2.8-cu128, "
                            "v2.8-cu129, v2.9-cu126, v2.9-cu128, v2.10-cu126, v2.10-cu128, v2.11-cu126, v2.11-cu128, "
                            "v2.12-cu126, v2.13-cu126, v2.14-cu126.")
    assert "\n" not in message


def test_an_uncovered_gpu_is_named_with_its_arch(warn):
    message = warn("rtx5090-driver-570", "v2.6-cu124")
    assert "this GPU is sm_120" in message and "no kernel image is available" in message
    # the CUDA 12.8/12.9 builds carry sm_120 cubins; 2.4's cu124 build carries compute_90 PTX, JIT-compiled by driver 570
    assert message.endswith("Tags of its matrix that run on this host: v2.4-cu124, v2.7-cu128, v2.8-cu128, v2.8-cu129, "
                            "v2.9-cu128, v2.10-cu128, v2.11-cu128.")


def test_p100_on_the_cuda_13_image_hears_both_reasons(warn):
    message = warn("p100-driver-535", "v2.15-cu132")
    assert "older than 580.65.06" in message and "this GPU is sm_60" in message
    assert "v2.6-cu124" in message


@pytest.mark.parametrize("name, tag", [("h100-driver-580", "v2.15-cu132"), ("h100-driver-535", "v2.6-cu124"),
                                       ("no-gpu", "v2.15-cu132"), ("rtx5090-driver-570", "v2.8-cu128")])
def test_silent_when_it_runs_without_a_gpu_or_when_it_cannot_tell(warn, name, tag):
    assert warn(name, tag) is None


def test_the_module_prints_one_line_and_never_fails(tmp_path, files_of):
    for name, data in files_of("v2.15-cu132").items():
        (tmp_path / name).write_text(json.dumps(data))
    spec = tmp_path / "spec.json"
    env = {**os.environ, nvml.RECORD_VARIABLE: str(RECORDINGS / "h100-driver-535.json")}
    done = subprocess.run([sys.executable, "-I", "-m", "smoke_tests.startup", str(spec)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("torchyard: WARNING: this image (v2.15-cu132")
    broken = subprocess.run([sys.executable, "-I", "-m", "smoke_tests.startup", str(tmp_path / "missing.json")],
                            cwd=ROOT, env={**env, nvml.RECORD_VARIABLE: str(tmp_path / "nope.json")},
                            capture_output=True, text=True, timeout=30)
    assert broken.returncode == 0 and broken.stderr.startswith("torchyard: the GPU start check could not run")
