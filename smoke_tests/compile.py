"""torch.compile (default Inductor backend, fullgraph) of a small conv net and a transformer block, forward and
backward, against eager on the same weights and inputs, both measured against an fp64 eager run.

On the CPU Inductor writes C++ kernels (g++, OpenMP, Python.h); on a GPU, Triton kernels (whose launcher gcc
compiles against Python.h and links with the driver's libcuda). The check reads the code Inductor generated, so a
run that never compiled a kernel cannot pass. Runs on the CPU always and on the first GPU when there is one.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass

from smoke_tests import verdicts
from smoke_tests.report import Result, failed, passed

# How Inductor's generated wrapper code loads each kernel it compiled (torch 2.4 and later).
KERNEL_CALLS = {"cpp": re.compile(r"async_compile\.cpp(?:_pybinding)?\("), "triton": re.compile(r"async_compile\.triton\(")}
TIMED_STEPS, WARMUP_STEPS = 10, 2


@dataclass(frozen=True)
class Sizes:
    batch: int
    image: int  # conv net: image side
    channels: int
    tokens: int  # transformer block: sequence length
    width: int
    heads: int


CPU_SIZES = Sizes(batch=8, image=32, channels=16, tokens=64, width=64, heads=4)
GPU_SIZES = Sizes(batch=32, image=64, channels=64, tokens=256, width=256, heads=8)


def conv_net(sizes: Sizes):
    """Conv, BatchNorm, ReLU, a strided conv and a linear head on the whole map. No global average pool: its uniform
    gradient through a BatchNorm makes the BatchNorm's gradients sums of nearly cancelling terms, which any change
    of summation order (Inductor's) moves by 1e-3 of their size: a test of rounding, not of the kernels."""
    import torch.nn as nn

    c, side = sizes.channels, sizes.image // 2
    return nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(c * side * side, 10),
    )


def transformer_block(sizes: Sizes):
    """Pre-norm attention and MLP with residuals: the shape of a ViT or GPT block, written out so that the graph
    holds no Python branches (nn.TransformerEncoderLayer's fast-path checks would be traced too)."""
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self, width: int, heads: int):
            super().__init__()
            self.heads = heads
            self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

        def forward(self, x):
            b, t, w = x.shape
            q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
            attention = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(attention.transpose(1, 2).reshape(b, t, w))
            return x + self.mlp(self.norm2(x))

    return Block(sizes.width, sizes.heads)


def inputs(name: str, sizes: Sizes, device):
    import torch

    if name == "conv net":
        return torch.randn(sizes.batch, 3, sizes.image, sizes.image, device=device)
    return torch.randn(sizes.batch, sizes.tokens, sizes.width, device=device)


MODELS = {"conv net": conv_net, "transformer block": transformer_block}
SHAPE = {"conv net": ("batch", "image", "channels"), "transformer block": ("batch", "tokens", "width", "heads")}


def step(model, x):
    """One forward and backward; the output and every gradient (parameters, then the input)."""
    for p in model.parameters():
        p.grad = None
    x = x.detach().requires_grad_()
    out = model(x)
    out.float().square().mean().backward()
    return [out.detach(), *(p.grad for p in model.parameters()), x.grad]


def relative_error(got, expected) -> float:
    return ((got.double() - expected.double()).norm() / expected.double().norm().clamp_min(1e-30)).item()


def kernel_counts(codes: list[str]) -> dict[str, int]:
    return {kind: sum(len(pattern.findall(code)) for code in codes) for kind, pattern in KERNEL_CALLS.items()}


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ms_per_step(model, x, device) -> float:
    for _ in range(WARMUP_STEPS):
        step(model, x)
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(TIMED_STEPS):
        step(model, x)
    _synchronize(device)
    return (time.perf_counter() - started) / TIMED_STEPS * 1e3


def compile_one(name: str, device_name: str) -> dict:
    """Compile one model on one device; its figures: errors against fp64, kernels generated, times."""
    import torch
    from torch._inductor.utils import run_and_get_code

    device = torch.device(device_name)
    sizes = GPU_SIZES if device.type == "cuda" else CPU_SIZES
    torch.manual_seed(0)
    eager = MODELS[name](sizes).to(device).train()
    model, exact = copy.deepcopy(eager), copy.deepcopy(eager).double()
    x = inputs(name, sizes, device)
    compiled = torch.compile(model, fullgraph=True)  # the default backend: Inductor
    _synchronize(device)
    started = time.perf_counter()
    # run_and_get_code collects the wrapper code of every graph Inductor compiles (forward and backward).
    got, codes = run_and_get_code(step, compiled, x)
    _synchronize(device)
    compile_s = time.perf_counter() - started
    expected, reference = step(eager, x), step(exact, x.double())
    names = ["output", *(f"grad {n}" for n, _ in eager.named_parameters()), "grad input"]
    errors = {n: (relative_error(g, r), relative_error(e, r), r.numel())
              for n, g, e, r in zip(names, got, expected, reference)}
    eager_ms, compiled_ms = _ms_per_step(eager, x, device), _ms_per_step(compiled, x, device)
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "sizes": {k: getattr(sizes, k) for k in SHAPE[name]},
        "graphs": len(codes),
        "kernels": kernel_counts(codes),
        "errors_vs_fp64": {n: {"compiled": c, "eager": e, "numel": k} for n, (c, e, k) in errors.items()},
        "compile_s": round(compile_s, 2),
        "eager_ms": round(eager_ms, 3),
        "compiled_ms": round(compiled_ms, 3),
        "compiled_over_eager": round(compiled_ms / eager_ms, 3),
    }


def _judge(device_type: str, figures: dict) -> verdicts.Verdict:
    made = verdicts.generated_kernels(device_type, figures["kernels"], figures["graphs"])
    if not made.ok:
        return made
    errors = {n: (e["compiled"], e["eager"], e["numel"]) for n, e in figures["errors_vs_fp64"].items()}
    return verdicts.matches_eager(errors)


def check_compile(facts: dict) -> Result:
    import torch
    import torch._dynamo
    import torch._inductor.config as inductor_config

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    figures: dict = {"torch": torch.__version__, "tolerance_floor": verdicts.COMPILE_TOLERANCE}
    settings = {"fx_graph_cache": False}  # compile for real: a cached graph generates no code to inspect
    previous = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch._dynamo.config.suppress_errors)
    # Both sides in true fp32, so the tolerance speaks of kernel order only; a failure must raise, not run eager.
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch._dynamo.config.suppress_errors = False
    summary = []
    try:
        with inductor_config.patch({k: v for k, v in settings.items() if hasattr(inductor_config, k)}):
            for device in devices:
                for name in MODELS:
                    key = f"{device} {name}"
                    try:
                        figures[key] = compile_one(name, device)
                    except Exception as e:  # noqa: BLE001 - the compiler's complaint is the finding
                        text = f"{type(e).__name__}: {e}"
                        return failed("compile", f"{key}: " + (verdicts.compiler_problem(text, device) or text[:2000]),
                                      **figures)
                    verdict = _judge(device, figures[key])
                    if not verdict.ok:
                        return failed("compile", f"{key}: {verdict.reason}", **figures)
                    f = figures[key]
                    summary.append(f"{key} {f['compile_s']:.0f}s to compile, x{f['compiled_over_eager']:.2f} of eager")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch._dynamo.config.suppress_errors = previous
        torch._dynamo.reset()
    code = "C++ and Triton" if "cuda" in devices else "C++"
    return passed("compile", f"Inductor generated {code} kernels; forward and backward as close to an fp64 run as "
                             "eager; " + "; ".join(summary), **figures)
