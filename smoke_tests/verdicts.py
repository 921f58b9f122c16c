"""The judgements the smoke suite makes, as plain functions of plain values (no torch, no GPU).

Each returns a Verdict: ok or not, and a sentence a person can act on. The checks gather the values
(NVML, torch, statvfs, a training loop); these functions decide. Unit tests feed them real inputs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

GIB = 1024**3
SHM_FLOOR = 1 * GIB  # below this DataLoader workers and NCCL's shm transport fail ("Bus error", "unable to allocate")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def version_tuple(version: str) -> tuple[int, ...]:
    """'525.60.13' -> (525, 60, 13); '12.4' -> (12, 4)."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def driver(driver_version: str, min_driver: str | None, cuda: str, driver_cuda: str | None = None) -> Verdict:
    """Is the host driver new enough for the image's CUDA runtime?

    min_driver is the image's recorded floor (CUDA minor-version compatibility: any driver of the CUDA
    major's first release runs every later minor). Without a record (a host run outside an image), the
    CUDA version the driver itself reports (NVML) must be of the same major or newer.
    """
    if min_driver is not None:
        if version_tuple(driver_version) >= version_tuple(min_driver):
            return Verdict(True, f"driver {driver_version} >= {min_driver}, the minimum for CUDA {cuda}")
        return Verdict(False, f"driver {driver_version} is older than {min_driver}, the minimum for CUDA {cuda}: "
                              f"CUDA calls fail with 'the NVIDIA driver on your system is too old'. Upgrade the "
                              f"host driver to {min_driver} or newer, or use an image built for an older CUDA"
                              + (f" (this driver supports CUDA up to {driver_cuda})" if driver_cuda else ""))
    if driver_cuda is None:
        return Verdict(False, f"driver {driver_version}: neither a recorded minimum nor the driver's CUDA version is "
                              "known, so the driver cannot be judged")
    if version_tuple(driver_cuda)[:1] >= version_tuple(cuda)[:1]:
        return Verdict(True, f"driver {driver_version} supports CUDA {driver_cuda}; torch's CUDA {cuda} runs on it "
                             "(same major or newer: minor-version compatibility)")
    return Verdict(False, f"driver {driver_version} supports CUDA up to {driver_cuda}, older than the major of torch's "
                          f"CUDA {cuda}: upgrade the host driver, or use an image built for CUDA {driver_cuda} or older")


def _arch_number(arch: str) -> int | None:
    """'sm_90' -> 90, 'compute_90' -> 90; arch-specific 'sm_90a' -> None (runs only on exactly sm_90)."""
    match = re.fullmatch(r"(?:sm|compute)_(\d+)", arch)
    return int(match[1]) if match else None


def arch(capability: tuple[int, int], arch_list: list[str], covering_tags: list[str] | None = None) -> Verdict:
    """Can this torch run kernels on a GPU of this compute capability?

    Cubins run on the GPU they were built for and on later GPUs of the same major (sm_80 runs on sm_86);
    PTX (compute_XY) is compiled by the driver for any GPU of capability >= XY, slowly at first use.
    """
    major, minor = capability
    gpu = major * 10 + minor
    sm = f"sm_{gpu}"
    numbers = [(a, _arch_number(a)) for a in arch_list]
    if sm in arch_list or f"{sm}a" in arch_list:
        return Verdict(True, f"{sm} is in torch's arch list")
    same_major = [a for a, n in numbers if a.startswith("sm_") and n is not None and n // 10 == major and n <= gpu]
    if same_major:
        return Verdict(True, f"{sm} runs the {same_major[-1]} kernels (same major, binary compatible)")
    ptx = [a for a, n in numbers if a.startswith("compute_") and n is not None and n <= gpu]
    if ptx:
        return Verdict(True, f"{sm} runs through PTX ({ptx[-1]}), JIT-compiled by the driver at first use (slow start)")
    tags = f" Tags in the matrix that cover {sm}: {', '.join(covering_tags)}." if covering_tags else ""
    return Verdict(False, f"this GPU is {sm}, and this torch has kernels for {' '.join(arch_list) or 'no arch'} only: "
                          f"every CUDA op fails with 'no kernel image is available for execution on the device'. "
                          f"Use an image whose torch was built for {sm}.{tags}")


def shm(size_bytes: int) -> Verdict:
    if size_bytes >= SHM_FLOOR:
        return Verdict(True, f"/dev/shm is {size_bytes / GIB:.1f} GiB")
    return Verdict(False, f"/dev/shm is only {size_bytes / 2**20:.0f} MiB (Docker's default is 64 MB): DataLoader "
                          "workers and NCCL run out of shared memory ('Bus error', 'unable to allocate shared memory'). "
                          "Start the container with --shm-size=8g, or --ipc=host")


def cudnn_name(number: int) -> str:
    """torch.backends.cudnn.version()'s number as a release: 90100 -> 9.1.0 (cuDNN 9), 8902 -> 8.9.2 (cuDNN 8)."""
    if number >= 90000:
        return f"{number // 10000}.{number % 10000 // 100}.{number % 100}"
    return f"{number // 1000}.{number % 1000 // 100}.{number % 100}"


def cudnn_version(actual: int, expected: int | None) -> Verdict:
    if expected is None:
        return Verdict(True, f"cuDNN {cudnn_name(actual)} (no recorded version to compare with)")
    if actual == expected:
        return Verdict(True, f"cuDNN {cudnn_name(actual)} as the image records")
    return Verdict(False, f"cuDNN {cudnn_name(actual)} is loaded but the image records {cudnn_name(expected)}: another "
                          "libcudnn is ahead on the library path (LD_LIBRARY_PATH, a mounted CUDA install)")


# A ResNet-50 conv set on tensor cores reaches roughly 0.3-0.7 of a large bf16 GEMM on the same GPU (its small
# 7x7 and 14x14 layers cannot fill the GPU as well as an 8192^3 GEMM). Kernels that miss the tensor cores (an
# NCHW fallback, fp32 CUDA-core math) reach at most ~0.07 (fp32 FMA throughput / bf16 tensor throughput on
# A100 and H100). 0.15 sits between the two: under it, cuDNN did not use the tensor cores.
CONV_RATIO_FLOOR = 0.15


def conv_speed(conv_tflops: float, matmul_tflops: float) -> Verdict:
    ratio = conv_tflops / matmul_tflops
    if ratio >= CONV_RATIO_FLOOR:
        return Verdict(True, f"conv {conv_tflops:.1f} TFLOP/s = {ratio:.2f} of bf16 matmul ({matmul_tflops:.1f})")
    return Verdict(False, f"conv {conv_tflops:.1f} TFLOP/s is only {ratio:.2f} of the bf16 matmul's {matmul_tflops:.1f} "
                          f"(floor {CONV_RATIO_FLOOR}): cuDNN is not using tensor-core kernels")


def close_to_reference(max_error: float, tolerance: float, what: str) -> Verdict:
    if math.isfinite(max_error) and max_error <= tolerance:
        return Verdict(True, f"{what} matches the fp32 reference (relative error {max_error:.2e} <= {tolerance:.0e})")
    return Verdict(False, f"{what} differs from the fp32 reference: relative error {max_error:.2e} > {tolerance:.0e}")


def exact_sum(lowest: float, highest: float, expected: float, size: str) -> Verdict:
    """Every element of an all-reduced buffer is the exact sum when its smallest and largest are (NaN is neither)."""
    if lowest == highest == expected:
        return Verdict(True, f"{size}: every element is {expected:g}")
    wrong = lowest if lowest != expected else highest
    return Verdict(False, f"{size}: all-reduce gave {wrong:g} where the exact sum is {expected:g} "
                          f"(elements from {lowest:g} to {highest:g})")


# Mean of the last steps against the first ones: at least this share of the starting loss must be gone.
LOSS_DROP = 0.25
WINDOW = 5
# And the end must lie clearly below chance, the loss of a model that learned only the class frequencies
# (their entropy: ln 10 = 2.30 for the synthetic set). Such a model sits at chance to within a few per cent
# (batch composition); at 0.75 of it the model has learned something about the images. Real runs end far
# lower: 0.25 and 0.49 of chance on the CPU, under 0.05 on a GPU (docs/benchmarks.md).
CHANCE_SHARE = 0.75


def loss_falls(losses: list[float], chance: float, drop: float = LOSS_DROP, window: int = WINDOW) -> Verdict:
    """Did training learn? Judged on means of `window` steps (single batches are noisy), against the start and
    against chance."""
    for step, loss in enumerate(losses):
        if not math.isfinite(loss):
            return Verdict(False, f"loss is {loss} at step {step}: training diverged (check the AMP dtype, the "
                                  "GradScaler, the learning rate)")
    if len(losses) < 2 * window:
        return Verdict(False, f"only {len(losses)} steps ran; {2 * window} are needed to judge the loss")
    first = sum(losses[:window]) / window
    last = sum(losses[-window:]) / window
    fell = f"loss went from {first:.3f} to {last:.3f} ({1 - last / first:.0%} down)"
    if last > first * (1 - drop):
        return Verdict(False, f"{fell}; at least {drop:.0%} is required: the model is not learning")
    if last > chance * CHANCE_SHARE:
        return Verdict(False, f"{fell}, but {last:.3f} is not clearly below chance ({chance:.3f}, the loss of "
                              f"guessing by class frequency; at most {CHANCE_SHARE:.0%} of it is required): the model "
                              "learned the class frequencies, not the images")
    return Verdict(True, f"{fell}, {last / chance:.0%} of chance ({chance:.3f}); {drop:.0%} fall and at most "
                         f"{CHANCE_SHARE:.0%} of chance required")


def missing_gpu(reason: str, require_gpu: bool, host_gpus: str | None) -> Verdict:
    """A GPU check found no GPU (reason says why). SKIPPED is honest (ok) only where no GPU was expected: not
    under --require-gpu, and not on a host that has GPUs (host_gpus: their count, as NVML there saw it, or
    'toolkit' when only the engine's NVIDIA container toolkit says so)."""
    if host_gpus:
        host = ("the host's Docker engine has the NVIDIA container toolkit" if host_gpus == "toolkit" else
                f"the host has {host_gpus} NVIDIA GPU{'s' if host_gpus != '1' else ''} (NVML there)")
        return Verdict(False, f"{host} but none reached this container ({reason}): a CPU run proves nothing about "
                              "them. Fix: run it with --gpus all (make smoke does so when the toolkit is configured; "
                              "unset TORCHYARD_GPUS=none), and check the toolkit: "
                              "`docker run --rm --gpus all <image> nvidia-smi` must list the GPUs")
    if require_gpu:
        return Verdict(False, f"--require-gpu: {reason}")
    return Verdict(True, reason)


# torch.compile against eager, both in fp32 (TF32 off), each measured against the same model run eagerly in fp64.
# Inductor fuses ops and reorders their sums, so it does not reproduce eager's rounding; what is stable is each one's
# distance from the fp64 result. Compiled passes when its error is at most a small multiple of eager's (the rule
# torch's own accuracy checks apply to compiled models, torch._dynamo.utils.same with an fp64 reference: 2x, more
# for tiny tensors, whose errors are noisier) plus a floor: eager's CPU reductions sum pairwise (error ~log2(N)
# ulps) where Inductor's generated loops sum in sequence (~sqrt(N) ulps typical, N ulps at worst: 5e-4 for the
# 8192-element sums of a BatchNorm here). 1e-4 of the tensor's norm is above the typical sequential error and far
# below what a wrong kernel (a dropped term, a wrong index or stride) gives: O(1).
COMPILE_TOLERANCE = 1e-4  # the floor, relative to the fp64 result's norm


def compile_multiplier(numel: int) -> float:
    return 10.0 if numel <= 10 else 5.0 if numel <= 500 else 2.0


def matches_eager(errors: dict[str, tuple[float, float, int]], floor: float = COMPILE_TOLERANCE) -> Verdict:
    """errors: tensor name -> (compiled's and eager's error relative to fp64, number of elements)."""
    worst, ratio = None, 0.0
    for name, (compiled, eager, numel) in errors.items():
        allowed = compile_multiplier(numel) * eager + floor
        if not math.isfinite(compiled) or compiled > allowed:
            return Verdict(False, f"compiled differs from eager: {name} is {compiled:.2e} from the fp64 result where "
                                  f"eager is {eager:.2e} (allowed {allowed:.2e}): Inductor generated a wrong kernel")
        if compiled / allowed >= ratio:
            worst, ratio = name, compiled / allowed
    return Verdict(True, f"compiled is as close to fp64 as eager ({len(errors)} tensors; closest to the limit: {worst}, "
                         f"{ratio:.0%} of it)")


KERNEL_KIND = {"cpu": "cpp", "cuda": "triton"}


def generated_kernels(device: str, kernels: dict[str, int], graphs: int) -> Verdict:
    """Did Inductor compile kernels of the device's kind (C++ on the CPU, Triton on a GPU)?"""
    kind = KERNEL_KIND[device]
    if graphs == 0:
        return Verdict(False, "Inductor compiled no graph (torch.compile ran eager: a cached or disabled compile, "
                              "e.g. TORCH_COMPILE_DISABLE or a non-Inductor backend)")
    if kernels.get(kind, 0) > 0:
        return Verdict(True, f"Inductor generated {kernels[kind]} {kind} kernel(s) in {graphs} graph(s)")
    return Verdict(False, f"Inductor compiled {graphs} graph(s) on {device} without a single {kind} kernel "
                          f"(found {kernels}): the generated code calls only library kernels, so compilation "
                          "was not proven")


# What a torch.compile failure says when the image lacks what Inductor and Triton compile with, and the fix.
_COMPILER_PROBLEMS = [
    (re.compile(r"InvalidCxxCompiler|No working C\+\+ compiler|g\+\+: not found|No such file or directory: 'g\+\+'"),
     "no working C++ compiler: Inductor compiles its CPU kernels with g++ (torch._inductor.config.cpp.cxx, or $CXX)"),
    (re.compile(r"Python\.h: No such file|Can't find Python\.h"),
     "no Python headers: Inductor's CPU kernels and Triton's GPU launcher include Python.h"),
    (re.compile(r"omp\.h: No such file|cannot find -lgomp"),
     "no OpenMP: Inductor's CPU kernels are built with -fopenmp (libgomp comes with gcc)"),
    (re.compile(r"Failed to find C compiler|gcc: not found"),
     "no C compiler: Triton compiles its GPU kernel launcher with gcc (or $CC)"),
    (re.compile(r"cannot find -lcuda|libcuda\.so.*(?:not found|cannot)"),
     "the driver's libcuda.so is not visible: Triton links its launcher with -lcuda"),
]
COMPILER_FIX = ("torchyard images carry g++, libc6-dev and libpython3-dev for this; an image built without them "
                "(or a derived one that removed them) needs `apt-get install g++ libpython3-dev` as root in its Dockerfile")
LIBCUDA_FIX = ("start the container with `--gpus all` on a host with the NVIDIA container toolkit, which mounts "
               "libcuda.so; or point TRITON_LIBCUDA_PATH at the folder that holds it")


def compiler_problem(error: str, device: str) -> str | None:
    """The explanation and fix of a torch.compile failure caused by a missing compiler part; None for other failures."""
    for pattern, what in _COMPILER_PROBLEMS:
        said = next((line.strip() for line in error.splitlines() if pattern.search(line)), None)
        if said:
            fix = LIBCUDA_FIX if "libcuda" in what else COMPILER_FIX
            return f"torch.compile cannot work on {device}: {what}. Fix: {fix}. (torch said: {said[:300]})"
    return None


# torchaudio (smoke check `torchaudio`): a pure tone, whose resampling and spectrum are known without torchaudio.
# RESAMPLE_TOLERANCE: torchaudio's default resampler (a Hann-windowed sinc, 6 zero crossings, roll-off 0.99) passes a
# 1 kHz tone at 48 -> 16 kHz with a relative error of 4.0e-4 (2.2e-4 at 440 Hz, 5.1e-4 at 3 kHz; torchaudio 2.6.0 on
# the CPU, docs/benchmarks.md); resampling as if the source were 44.1 kHz gives 1.41, one sample of delay 0.39, a
# filter of one zero crossing 0.19. TONE_SHARE_FLOOR: with a Hann window and the tone on a bin's centre, its energy
# lies within one bin of the peak, in the frames that see no padding; 0.99 within two leaves room for the resampler's
# error, and white noise holds 0.012 there. DEVICE_TOLERANCE: the GPU's kernels (cuFFT, a conv1d) against the CPU's,
# both in float32.
RESAMPLE_TOLERANCE = 1e-2
TONE_SHARE_FLOOR = 0.99
DEVICE_TOLERANCE = 1e-4


def tone_resampled(error: float, source_rate: int, target_rate: int, tolerance: float = RESAMPLE_TOLERANCE) -> Verdict:
    """Is the resampled tone the tone sampled at the new rate? error: relative to it, away from the ends."""
    if math.isfinite(error) and error <= tolerance:
        return Verdict(True, f"resampled {source_rate} -> {target_rate} Hz, the tone itself (relative error "
                             f"{error:.1e} <= {tolerance:.0e})")
    return Verdict(False, f"resampling {source_rate} -> {target_rate} Hz does not give the tone at the new rate: "
                          f"relative error {error:.2e} > {tolerance:.0e}")


def tone_peak(peak_hz: float, tone_hz: float, bin_hz: float, share: float, floor: float = TONE_SHARE_FLOOR) -> Verdict:
    """Does the spectrogram put the tone's energy where the tone is? share: the energy within two bins of the peak."""
    if abs(peak_hz - tone_hz) > bin_hz / 2:
        return Verdict(False, f"the spectrogram peaks at {peak_hz:.1f} Hz, not at the tone's {tone_hz:g} Hz "
                              f"(bins of {bin_hz:g} Hz)")
    if not (math.isfinite(share) and share >= floor):
        return Verdict(False, f"the spectrogram peaks at {peak_hz:.1f} Hz but holds only {share:.3f} of the energy "
                              f"there (at least {floor} for a pure tone): the rest is spread where there is no signal")
    return Verdict(True, f"spectrogram peak at {peak_hz:.1f} Hz with {share:.4f} of the energy")


def same_on_both(errors: dict[str, float], tolerance: float = DEVICE_TOLERANCE) -> Verdict:
    """Do the GPU's results equal the CPU's (errors: each result's relative difference)?"""
    for what, error in errors.items():
        if not (math.isfinite(error) and error <= tolerance):
            return Verdict(False, f"the GPU's {what} differs from the CPU's: relative difference {error:.2e} > "
                                  f"{tolerance:.0e}")
    return Verdict(True, "the GPU's results are the CPU's (" + ", ".join(f"{what} {error:.1e}"
                                                                          for what, error in errors.items()) + ")")
