"""The compile and extension smoke checks' judgements, fed what torch, Inductor and Triton really say (no torch here)."""

import pytest

from smoke_tests import verdicts
from smoke_tests.compile import kernel_counts
from smoke_tests.extension import arch_list

# Inductor's wrapper code as torch 2.6 writes it (abridged): the kernels it compiled, and a library call.
CPU_WRAPPER = """
cpp_fused_native_batch_norm_backward_relu_threshold_backward_0 = async_compile.cpp_pybinding(['float*', 'const float*'], '''
#include "/tmp/torchinductor_torchyard/2r/c2rx.h"
extern "C"  void kernel(float* in_out_ptr0, const float* in_ptr0)
''')
cpp_fused_convolution_backward_1 = async_compile.cpp_pybinding(['const float*', 'float*'], '''...''')
async_compile.wait(globals())
buf0 = extern_kernels.convolution(primals_2, primals_1, stride=(1, 1), padding=(1, 1))
"""
GPU_WRAPPER = """
triton_per_fused__native_batch_norm_legit_functional_0 = async_compile.triton('triton_per_fused_0', '''
import triton
@triton.jit
def triton_per_fused_0(in_out_ptr0, xnumel, rnumel, XBLOCK : tl.constexpr):
''', device_str='cuda')
extern_kernels.mm(buf3, permute_1, out=buf4)
"""


def test_kernels_are_counted_by_how_the_wrapper_loads_them():
    assert kernel_counts([CPU_WRAPPER]) == {"cpp": 2, "triton": 0}
    assert kernel_counts([GPU_WRAPPER, CPU_WRAPPER]) == {"cpp": 2, "triton": 1}
    assert kernel_counts(["buf0 = extern_kernels.convolution(x, w)"]) == {"cpp": 0, "triton": 0}


def test_c_plus_plus_kernels_prove_the_cpu_path_and_triton_kernels_the_gpu_path():
    assert verdicts.generated_kernels("cpu", {"cpp": 5, "triton": 0}, graphs=2).ok
    assert verdicts.generated_kernels("cuda", {"cpp": 0, "triton": 7}, graphs=2).ok
    on_gpu_without_triton = verdicts.generated_kernels("cuda", {"cpp": 5, "triton": 0}, graphs=2)
    assert not on_gpu_without_triton.ok and "without a single triton kernel" in on_gpu_without_triton.reason
    eager = verdicts.generated_kernels("cpu", {"cpp": 0, "triton": 0}, graphs=0)
    assert not eager.ok and "ran eager" in eager.reason


def test_compiled_must_be_as_close_to_fp64_as_eager_is():
    # (compiled, eager, elements), relative to an fp64 run: what the CPU check measured for the conv net
    measured = {"output": (8.81e-07, 4.54e-07, 80), "grad 1.bias": (1.39e-06, 3.07e-07, 16),
                "grad 3.weight": (1.13e-06, 4.43e-07, 2304), "grad input": (1.21e-06, 5.17e-07, 24576)}
    verdict = verdicts.matches_eager(measured)
    assert verdict.ok and "4 tensors" in verdict.reason
    # a sum of nearly cancelling terms that Inductor orders differently: worse than eager, still within the floor
    assert verdicts.matches_eager({"grad bn.bias": (9e-5, 2e-7, 16)}).ok
    wrong = verdicts.matches_eager({**measured, "grad 3.weight": (2.5e-2, 4.43e-07, 2304)})
    assert not wrong.ok and "grad 3.weight is 2.50e-02 from the fp64 result where eager is 4.43e-07" in wrong.reason
    assert not verdicts.matches_eager({"output": (float("nan"), 1e-7, 80)}).ok


def test_the_allowance_is_torchs_own_multiplier_larger_for_tiny_tensors():
    assert [verdicts.compile_multiplier(n) for n in (10, 11, 500, 501)] == [10.0, 5.0, 5.0, 2.0]
    assert verdicts.matches_eager({"big": (2.9e-4, 1e-4, 4096)}).ok  # 2 x 1e-4 + 1e-4
    assert not verdicts.matches_eager({"big": (3.1e-4, 1e-4, 4096)}).ok


@pytest.mark.parametrize("error, device, what", [
    # the failure this check exists for (the report on torchyard:v2.6-cu124 before compilers were added)
    ("BackendCompilerFailed: backend='inductor' raised:\nInvalidCxxCompiler: No working C++ compiler found in "
     "torch._inductor.config.cpp.cxx: (None, 'g++')", "cpu", "no working C++ compiler"),
    # g++ present, libpython3-dev missing (probed in the same image with only g++ and libc6-dev added)
    ("BackendCompilerFailed: backend='inductor' raised:\nCppCompileError: C++ compile error\n\nOutput:\n"
     "/tmp/torchinductor_root/pi/cpi.cpp:1:10: fatal error: Python.h: No such file or directory", "cpu",
     "no Python headers"),
    ("BackendCompilerFailed: backend='inductor' raised:\nRuntimeError: Failed to find C compiler. Please specify via "
     "CC environment variable.", "cuda", "no C compiler"),
    ("CalledProcessError: ... /usr/bin/ld: cannot find -lcuda: No such file or directory", "cuda", "the driver's libcuda.so is not visible"),
])
def test_a_missing_compiler_part_fails_with_the_explanation_and_the_fix(error, device, what):
    explanation = verdicts.compiler_problem(error, device)
    assert explanation.startswith(f"torch.compile cannot work on {device}: {what}")
    assert "Fix:" in explanation
    assert f"(torch said: {error.splitlines()[-1]})" in explanation  # the line that names the cause
    assert ("--gpus all" in explanation) if "libcuda" in what else ("apt-get install g++ libpython3-dev" in explanation)


def test_other_compile_failures_are_not_blamed_on_the_compiler():
    assert verdicts.compiler_problem("Unsupported: torch.* op returned non-Tensor", "cpu") is None


def test_the_extension_is_built_for_torchs_own_archs():
    assert arch_list("sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90") == "5.0;6.0;7.0;7.5;8.0;8.6;9.0"
    assert arch_list("sm_75 sm_80 sm_90 sm_100 sm_120 compute_120") == "7.5;8.0;9.0;10.0;12.0+PTX"


def test_the_kernel_verdicts_are_plain_booleans_with_the_sentence_a_person_acts_on():
    """The verdict's ok is what the report writes as JSON true/false; the reasons are the whole sentences shown."""
    eager = verdicts.generated_kernels("cpu", {"cpp": 0}, graphs=0)
    assert eager == verdicts.Verdict(False, "Inductor compiled no graph (torch.compile ran eager: a cached or disabled "
                                            "compile, e.g. TORCH_COMPILE_DISABLE or a non-Inductor backend)")
    assert verdicts.generated_kernels("cpu", {"cpp": 1}, graphs=1) == verdicts.Verdict(
        True, "Inductor generated 1 cpp kernel(s) in 1 graph(s)")  # one kernel is proof enough
    # the device's kind missing from the counts altogether: none of it, not an error
    assert verdicts.generated_kernels("cuda", {"cpp": 3}, graphs=2) == verdicts.Verdict(
        False, "Inductor compiled 2 graph(s) on cuda without a single triton kernel (found {'cpp': 3}): the generated "
               "code calls only library kernels, so compilation was not proven")


def test_the_closest_tensor_to_its_limit_is_named_and_the_limit_itself_passes():
    # allowed = 2 x eager + floor for tensors of more than 500 elements; values exact in binary
    at_limit = verdicts.matches_eager({"w": (0.75, 0.125, 1000)}, floor=0.5)
    assert at_limit == verdicts.Verdict(True, "compiled is as close to fp64 as eager (1 tensors; closest to the limit: "
                                              "w, 100% of it)")
    over = verdicts.matches_eager({"w": (0.75 + 2**-20, 0.125, 1000)}, floor=0.5)
    assert over.ok is False
    mixed = verdicts.matches_eager({"a": (0.125, 0.0, 1000), "b": (0.375, 0.0, 1000), "c": (0.25, 0.0, 1000)}, floor=0.5)
    assert mixed.reason.endswith("closest to the limit: b, 75% of it)")
    exact = verdicts.matches_eager({"output": (0.0, 0.0, 80)})  # no error at all: still named, at 0 %
    assert exact.reason.endswith("closest to the limit: output, 0% of it)")


def test_a_compiler_failure_quotes_at_most_300_characters_of_what_torch_said():
    line = "InvalidCxxCompiler: No working C++ compiler found " + "x" * 1000
    said = verdicts.compiler_problem(line, "cpu")
    assert said.endswith(f"(torch said: {line[:300]})")
