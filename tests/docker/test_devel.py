"""The CUDA 12.4 -devel image (v2.6-cu124-devel: trixie, Debian's nvcc 12.4), built here: nvcc and CUDA_HOME, the
extension its build compiled and imported, a local package with a CUDA extension installed with
`pip install --no-build-isolation`, and no NVIDIA driver in the image (the host's is mounted at run time)."""

import os
import re
from pathlib import Path

import pytest

from builder.image import base, build
from builder.wheels import network
from tests.docker.conftest import TEST_REPO
from tests.docker.test_compile import smoke

DEVEL_TAG = "v2.6-cu124-devel"
PACKAGE = Path(__file__).with_name("cuda_package")

# Building this image from scratch takes ~10 minutes here (a trixie base, torch for Python 3.13, Debian's CUDA toolkit,
# the extension compiled for seven GPU archs; 622 s with its tests, docs/benchmarks.md): more than CI's budget leaves,
# so it runs when asked.
pytestmark = pytest.mark.skipif(os.environ.get("TORCHYARD_TEST_DEVEL") != "1",
                                reason=f"builds {DEVEL_TAG} (~10 min here); TORCHYARD_TEST_DEVEL=1 runs it")


@pytest.fixture(scope="module")
def devel(client, shipped, tmp_path_factory):
    """v2.6-cu124-devel built once for this module (from scratch unless TORCHYARD_TEST_KEEP=1), removed after it."""
    spec = shipped.specs[DEVEL_TAG]
    keep = os.environ.get("TORCHYARD_TEST_KEEP") == "1"
    base.ensure(client, spec.base)
    result = build.build(client, spec, TEST_REPO, network.host_settings(), reports=tmp_path_factory.mktemp("reports"),
                         nocache=not keep)
    yield result
    if not keep:
        build.remove(client, result)


def test_nvcc_is_release_12_4_on_path_and_cuda_home_is_set(devel, run):
    out = run(devel.image, "sh", "-c", 'nvcc --version; command -v nvcc; echo "CUDA_HOME=$CUDA_HOME"; '
              'python -c "from torch.utils.cpp_extension import CUDA_HOME; print(\'torch sees\', CUDA_HOME)"')
    assert "Cuda compilation tools, release 12.4, V12.4.131" in out
    assert "/usr/bin/nvcc" in out.splitlines() and "CUDA_HOME=/usr" in out and "torch sees /usr" in out


def test_the_build_compiled_and_imported_a_pytorch_cuda_extension(devel):
    log = devel.log.read_text()
    assert re.search(r"\[1/3\] /usr/bin/nvcc .* -c /usr/share/torchyard/extension/axpb_kernel\.cu -o axpb_kernel\.cuda\.o",
                     log), log[-3000:]
    assert "-ltorch_cuda" in log and "-o torchyard_extension.so" in log  # linked against torch's libraries
    assert "-gencode=arch=compute_90,code=sm_90" in log and "-gencode=arch=compute_50,code=sm_50" in log  # torch's archs
    assert re.search(r"ok\s+a CUDA extension builds\s+yes", log)
    assert re.search(r"ok\s+nvcc\s+12\.4", log) and f"check_image: {DEVEL_TAG} matches its spec" in log


def test_a_local_package_with_a_cuda_extension_installs_without_build_isolation(devel, run):
    out = run(devel.image, "sh", "-c",
              "cp -r /src /tmp/pkg && cd /tmp && pip install --no-cache-dir --no-build-isolation ./pkg 2>&1 | tail -3 && "
              "python -c 'import torchyard_cuda_package as p, torch; print(\"imported\", p.scale.__doc__)' && "
              "pip list --format=freeze | grep -i torch",
              volumes={str(PACKAGE): {"bind": "/src", "mode": "ro"}},
              environment={"TORCH_CUDA_ARCH_LIST": "8.0", "MAX_JOBS": "2"})  # no GPU to ask; build for one arch
    assert "Successfully installed torchyard-cuda-package-0.1" in out, out
    assert "imported scale(arg0: torch.Tensor, arg1: float) -> torch.Tensor" in out and "y = factor * x on the GPU" in out
    assert "torch==2.6.0" in out  # the image's torch, untouched by the build


def test_the_image_carries_no_driver_and_no_static_cuda_libraries(devel, run):
    out = run(devel.image, "sh", "-c", "ldconfig -p | grep -c 'libcuda.so.1 ' ; dpkg -s torchyard-host-driver | grep Provides; "
              "ls /usr/lib/x86_64-linux-gnu/ | grep -c '_static.*\\.a$'; ls /usr/lib/x86_64-linux-gnu/libcudart_static.a")
    lines = out.splitlines()
    assert lines[0] == "0"  # no libcuda: the NVIDIA container toolkit mounts the host's
    assert lines[1].startswith("Provides: libcuda-12.4-1, libcuda.so.1 (= 550.54.14)")
    assert lines[2] == "1" and lines[3] == "/usr/lib/x86_64-linux-gnu/libcudart_static.a"  # nvcc's default -cudart static


def test_the_smoke_suite_compiles_and_skips_the_extension_run_without_a_gpu(client, devel):
    status, out, report = smoke(client, devel.image, "compile", "extension")
    assert status == 0, out
    compile_, extension = report["checks"]
    assert compile_["status"] == "PASS", compile_["reason"]
    assert extension["status"] == "SKIPPED" and extension["reason"].startswith("no GPU: ")
    assert "the build compiled and imported it" in extension["reason"]
