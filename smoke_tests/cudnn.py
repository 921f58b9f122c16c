"""cuDNN convolution speed: ResNet-50's convolutions in channels_last, fp16 and bf16, against a bf16 matmul."""

from __future__ import annotations

from smoke_tests import measure, timers, verdicts
from smoke_tests.measure import Conv
from smoke_tests.report import Result, failed, gpu, passed, skipped


def _blocks(stage: int, blocks: range, part: str) -> tuple[str, ...]:
    return tuple(f"layer{stage}.{block}.{part}" for block in blocks)


# Every convolution of torchvision's resnet50 at 224 x 224 (v1.5: the stride sits on each stage's first 3x3),
# by shape: the 7x7/2 stem, each stage's 1x1 reduce, 3x3 and 1x1 expand, the stride-2 3x3 and the 1x1
# downsample projection of each stage's first block. 23 shapes, 53 layers; smoke_tests/test_suite.py checks
# the list against the model itself. Each shape is timed once and counted as often as the network has it,
# so the figure is ResNet-50's forward convolutions as a whole.
RESNET50_CONVS = (
    Conv(3, 64, 7, 2, 224, ("conv1",)),
    Conv(64, 64, 1, 1, 56, _blocks(1, range(1), "conv1")),
    Conv(256, 64, 1, 1, 56, _blocks(1, range(1, 3), "conv1")),
    Conv(64, 64, 3, 1, 56, _blocks(1, range(3), "conv2")),
    Conv(64, 256, 1, 1, 56, _blocks(1, range(3), "conv3") + _blocks(1, range(1), "downsample.0")),
    Conv(256, 128, 1, 1, 56, _blocks(2, range(1), "conv1")),
    Conv(128, 128, 3, 2, 56, _blocks(2, range(1), "conv2")),
    Conv(256, 512, 1, 2, 56, _blocks(2, range(1), "downsample.0")),
    Conv(512, 128, 1, 1, 28, _blocks(2, range(1, 4), "conv1")),
    Conv(128, 128, 3, 1, 28, _blocks(2, range(1, 4), "conv2")),
    Conv(128, 512, 1, 1, 28, _blocks(2, range(4), "conv3")),
    Conv(512, 256, 1, 1, 28, _blocks(3, range(1), "conv1")),
    Conv(256, 256, 3, 2, 28, _blocks(3, range(1), "conv2")),
    Conv(512, 1024, 1, 2, 28, _blocks(3, range(1), "downsample.0")),
    Conv(1024, 256, 1, 1, 14, _blocks(3, range(1, 6), "conv1")),
    Conv(256, 256, 3, 1, 14, _blocks(3, range(1, 6), "conv2")),
    Conv(256, 1024, 1, 1, 14, _blocks(3, range(6), "conv3")),
    Conv(1024, 512, 1, 1, 14, _blocks(4, range(1), "conv1")),
    Conv(512, 512, 3, 2, 14, _blocks(4, range(1), "conv2")),
    Conv(1024, 2048, 1, 2, 14, _blocks(4, range(1), "downsample.0")),
    Conv(2048, 512, 1, 1, 7, _blocks(4, range(1, 3), "conv1")),
    Conv(512, 512, 3, 1, 7, _blocks(4, range(1, 3), "conv2")),
    Conv(512, 2048, 1, 1, 7, _blocks(4, range(3), "conv3")),
)
BATCH = 128
MATMUL_N = 8192
WARMUP = 3  # with cudnn.benchmark the first calls pick the algorithm
REPEATS = 20
# fp16 keeps 10 mantissa bits, bf16 7; a conv accumulates in fp32, so the relative error stays near the
# input rounding (2^-11, 2^-8) times a small factor. A wrong algorithm is off by O(1).
TOLERANCE = {"float16": 5e-3, "bfloat16": 3e-2}


def matmul_tflops(repeats: int = REPEATS) -> float:
    import torch

    a = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.bfloat16)
    ms = measure.time_calls(lambda: a @ b, repeats, WARMUP, timers.cuda())
    return measure.tflops(measure.matmul_flops(MATMUL_N, MATMUL_N, MATMUL_N), ms)


def conv_figures(dtype_name: str, repeats: int = REPEATS) -> dict:
    """Time every conv shape in one dtype; check each against fp32 (TF32 off) on the same inputs."""
    import torch
    import torch.nn.functional as F

    dtype = getattr(torch, dtype_name)
    flops = ms_total = 0.0
    worst = 0.0
    for conv in RESNET50_CONVS:
        x = torch.randn(BATCH, conv.cin, conv.size, conv.size, device="cuda").to(memory_format=torch.channels_last)
        w = torch.randn(conv.cout, conv.cin, conv.kernel, conv.kernel, device="cuda").to(
            memory_format=torch.channels_last) / (conv.cin * conv.kernel**2) ** 0.5
        xl, wl = x.to(dtype), w.to(dtype)
        padding = conv.kernel // 2
        out = F.conv2d(xl, wl, stride=conv.stride, padding=padding)
        ref = F.conv2d(xl.float(), wl.float(), stride=conv.stride, padding=padding)  # same rounded inputs, fp32 math
        worst = max(worst, ((out.float() - ref).norm() / ref.norm()).item())
        ms = measure.time_calls(lambda: F.conv2d(xl, wl, stride=conv.stride, padding=padding), repeats, WARMUP,
                                timers.cuda())
        flops += measure.conv_flops(conv, BATCH) * len(conv.layers)
        ms_total += ms * len(conv.layers)
    return {"tflops": measure.tflops(flops, ms_total), "max_relative_error": worst, "ms": ms_total}


def check_cudnn(facts: dict) -> Result:
    import torch

    if not torch.cuda.is_available():
        return gpu(skipped("cudnn conv", "no GPU: cuDNN runs only on a CUDA device"))
    if not torch.backends.cudnn.is_available() or not torch.backends.cudnn.enabled:
        return gpu(failed("cudnn conv", "cuDNN is not available to torch (torch.backends.cudnn.is_available() is False "
                                         "or cudnn.enabled was turned off)"))
    actual = torch.backends.cudnn.version()
    version = verdicts.cudnn_version(actual, facts.get("cudnn_number"))
    figures: dict = {"cudnn": actual, "recorded": facts.get("cudnn_number"), "batch": BATCH,
                     "convs": "ResNet-50's 53 convolutions (23 shapes) at 224 x 224",
                     "device": torch.cuda.get_device_name(0)}
    if not version.ok:
        return gpu(failed("cudnn conv", version.reason, **figures))
    previous = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 reference is fp32
    try:
        figures["matmul_bf16_tflops"] = round(matmul_tflops(), 1)
        for dtype in ("float16", "bfloat16"):
            figures[dtype] = {k: round(v, 5) if k == "max_relative_error" else round(v, 2)
                              for k, v in conv_figures(dtype).items()}
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous
    for dtype, tolerance in TOLERANCE.items():
        match = verdicts.close_to_reference(figures[dtype]["max_relative_error"], tolerance, f"{dtype} conv")
        if not match.ok:
            return gpu(failed("cudnn conv", match.reason, **figures))
    conv = figures["bfloat16"]["tflops"]
    figures["ratio_to_matmul"] = round(conv / figures["matmul_bf16_tflops"], 3)
    speed = verdicts.conv_speed(conv, figures["matmul_bf16_tflops"])
    result = passed if speed.ok else failed
    return gpu(result("cudnn conv", f"cuDNN {verdicts.cudnn_name(actual)}; bf16 {speed.reason}; fp16 {figures['float16']['tflops']:.1f} "
                                     "TFLOP/s", **figures))
