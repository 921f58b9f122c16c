"""cuDNN convolution speed: ResNet-50's convolutions in channels_last, fp16 and bf16, against a bf16 matmul."""

from __future__ import annotations

from smoke_tests import verdicts
from smoke_tests.report import Result, failed, gpu, passed, skipped

# (in channels, out channels, kernel, stride, input size): the distinct convolutions of ResNet-50's stages.
RESNET50_CONVS = [
    (64, 64, 1, 1, 56), (64, 64, 3, 1, 56), (64, 256, 1, 1, 56),
    (128, 128, 3, 1, 28), (128, 512, 1, 1, 28), (256, 128, 1, 1, 28),
    (256, 256, 3, 1, 14), (256, 1024, 1, 1, 14), (512, 256, 1, 1, 14),
    (512, 512, 3, 1, 7), (512, 2048, 1, 1, 7), (1024, 512, 1, 1, 7),
]
BATCH = 128
MATMUL_N = 8192
# fp16 keeps 10 mantissa bits, bf16 7; a conv accumulates in fp32, so the relative error stays near the
# input rounding (2^-11, 2^-8) times a small factor. A wrong algorithm is off by O(1).
TOLERANCE = {"float16": 5e-3, "bfloat16": 3e-2}


def _time_ms(fn, repeats: int) -> float:
    import torch

    for _ in range(3):
        fn()  # warm-up: with cudnn.benchmark the first calls pick the algorithm
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def matmul_tflops(repeats: int = 20) -> float:
    import torch

    a = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.bfloat16)
    ms = _time_ms(lambda: a @ b, repeats)
    return 2 * MATMUL_N**3 / (ms / 1e3) / 1e12


def conv_figures(dtype_name: str, repeats: int = 20) -> dict:
    """Time every conv of the set in one dtype; check each against fp32 (TF32 off) on the same inputs."""
    import torch
    import torch.nn.functional as F

    dtype = getattr(torch, dtype_name)
    flops = ms_total = 0.0
    worst = 0.0
    for cin, cout, k, stride, size in RESNET50_CONVS:
        x = torch.randn(BATCH, cin, size, size, device="cuda").to(memory_format=torch.channels_last)
        w = torch.randn(cout, cin, k, k, device="cuda").to(memory_format=torch.channels_last) / (cin * k * k) ** 0.5
        xl, wl = x.to(dtype), w.to(dtype)
        out = F.conv2d(xl, wl, stride=stride, padding=k // 2)
        ref = F.conv2d(xl.float(), wl.float(), stride=stride, padding=k // 2)  # same rounded inputs, fp32 math
        worst = max(worst, ((out.float() - ref).norm() / ref.norm()).item())
        ms = _time_ms(lambda: F.conv2d(xl, wl, stride=stride, padding=k // 2), repeats)
        ho = out.shape[-1]
        flops += 2 * BATCH * cout * cin * k * k * ho * ho
        ms_total += ms
    return {"tflops": flops / (ms_total / 1e3) / 1e12, "max_relative_error": worst, "ms": ms_total}


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
                     "shapes": [list(s) for s in RESNET50_CONVS], "device": torch.cuda.get_device_name(0)}
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


