"""A real PyTorch CUDA extension: a __global__ kernel and its torch binding built with torch.utils.cpp_extension
(torch's compiler flags, headers and libraries), for the GPU architectures torch itself was built for.

-devel images build it at build time (image_files/check_image.py calls build(), which needs no GPU) into BUILT and
import it there; on a GPU the smoke check `extension` runs that build and compares its kernel with torch.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from smoke_tests import verdicts
from smoke_tests.report import Result, failed, gpu, passed, skipped

NAME = "torchyard_extension"
BUILT = Path("/usr/share/torchyard/extension")  # root-owned, written by the image's build
# The binding (g++, torch's headers) and the kernel (nvcc, CUDA's headers only: nvcc parses its file once per GPU
# arch, and torch's headers would make that minutes), as an extension with a kernel of its own is usually laid out.
CPP_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

void axpb_launch(const float* x, float* y, float a, float b, int64_t n, cudaStream_t stream);

torch::Tensor axpb(torch::Tensor x, double a, double b) {
  TORCH_CHECK(x.is_cuda() && x.scalar_type() == torch::kFloat && x.is_contiguous(), "axpb: a contiguous float32 CUDA tensor");
  auto y = torch::empty_like(x);
  axpb_launch(x.data_ptr<float>(), y.data_ptr<float>(), static_cast<float>(a), static_cast<float>(b), x.numel(),
              at::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("axpb", &axpb, "y = a * x + b, by a CUDA kernel"); }
"""
CUDA_SOURCE = r"""
#include <cstdint>
#include <cuda_runtime.h>

__global__ void axpb_kernel(const float* x, float* y, float a, float b, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = a * x[i] + b;
}

void axpb_launch(const float* x, float* y, float a, float b, int64_t n, cudaStream_t stream) {
  const int threads = 256;
  axpb_kernel<<<static_cast<unsigned>((n + threads - 1) / threads), threads, 0, stream>>>(x, y, a, b, n);
}
"""
# a*x+b in one kernel may be a fused multiply-add (one rounding) where torch rounds twice: 1 ulp apart at most.
TOLERANCE = 1e-6


def arch_list(arch_flags: str) -> str:
    """torch's own GPU architectures as TORCH_CUDA_ARCH_LIST: 'sm_80 sm_90 compute_90' -> '8.0;9.0+PTX'."""
    sm = [f"{n[:-1]}.{n[-1]}" for n in re.findall(r"\bsm_(\d+)\b", arch_flags)]
    ptx = {f"{n[:-1]}.{n[-1]}" for n in re.findall(r"\bcompute_(\d+)\b", arch_flags)}
    return ";".join(f"{a}+PTX" if a in ptx else a for a in sm)


def build(directory: Path, verbose: bool = True):
    """Compile and import the extension (nvcc and the host compiler; no GPU needed); returns the module."""
    import os

    import torch
    from torch.utils.cpp_extension import load

    directory.mkdir(parents=True, exist_ok=True)
    sources = [directory / "axpb.cpp", directory / "axpb_kernel.cu"]
    for path, text in zip(sources, (CPP_SOURCE, CUDA_SOURCE)):
        path.write_text(text)
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list(torch._C._cuda_getArchFlags())
    return load(name=NAME, sources=[str(p) for p in sources], build_directory=str(directory),
                extra_cuda_cflags=["-O2"], verbose=verbose)


def load(directory: Path = BUILT):
    """The extension the image's build made (torch first: the module links against its libraries)."""
    import torch  # noqa: F401

    spec = importlib.util.spec_from_file_location(NAME, directory / f"{NAME}.so")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_extension(facts: dict) -> Result:
    import torch

    from smoke_tests.environment import no_gpu_reason

    if not facts.get("nvcc"):
        return skipped("extension", "not a -devel image: it has no CUDA compiler, so no extension was built")
    if not (BUILT / f"{NAME}.so").is_file():
        return failed("extension", f"{BUILT}/{NAME}.so is missing: the image's build compiles it (check_image.py)")
    if not torch.cuda.is_available():
        return gpu(skipped("extension", f"no GPU: {no_gpu_reason()} (the build compiled and imported it; running "
                                        "its kernel needs a GPU)"))
    module = load()
    x = torch.randn(1 << 20, device="cuda")
    y = module.axpb(x, 2.0, 0.5)
    expected = 2.0 * x + 0.5
    error = ((y - expected).norm() / expected.norm()).item()
    verdict = verdicts.close_to_reference(error, TOLERANCE, "the extension's kernel")
    figures = {"elements": x.numel(), "relative_error": error, "device": torch.cuda.get_device_name(0),
               "archs": arch_list(torch._C._cuda_getArchFlags())}
    return gpu((passed if verdict.ok else failed)("extension", verdict.reason.replace("fp32 reference", "torch's 2x+0.5"),
                                                  **figures))
