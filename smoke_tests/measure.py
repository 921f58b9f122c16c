"""The suite's measurements as plain arithmetic (no torch, no GPU), and the two timing loops.

Every figure a report shows is computed here from plain values: FLOPs of a convolution and a matmul,
all-reduce bandwidths as nccl-tests defines them, steady-state images/s, the loss of a model that knows
only the class frequencies. The loops take a Timer (CUDA events, the host clock, or a test's recorder),
so the same code that times a GPU is proven on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Conv:
    """One convolution shape (square input, padding kernel // 2) and the layers of a network that have it."""

    cin: int
    cout: int
    kernel: int
    stride: int
    size: int  # input height = width
    layers: tuple[str, ...]

    @property
    def out_size(self) -> int:
        return (self.size + 2 * (self.kernel // 2) - self.kernel) // self.stride + 1


def conv_flops(conv: Conv, batch: int) -> int:
    """Forward FLOPs of one layer of this shape: a multiply and an add per weight per output pixel."""
    return 2 * batch * conv.cout * conv.cin * conv.kernel**2 * conv.out_size**2


def matmul_flops(m: int, n: int, k: int) -> int:
    """(m x k) @ (k x n): m * n outputs, k multiply-adds each."""
    return 2 * m * n * k


def tflops(flops: float, ms: float) -> float:
    return flops / (ms / 1e3) / 1e12


def algbw_gbs(size_bytes: int, seconds: float) -> float:
    """nccl-tests' algorithm bandwidth: the buffer's bytes over the time of one collective, in GB/s (1e9)."""
    return size_bytes / seconds / 1e9


def allreduce_bus_factor(world: int) -> float:
    """nccl-tests' busbw / algbw for all-reduce: each rank sends and receives 2(n-1)/n of the buffer in a ring."""
    return 2 * (world - 1) / world


def busbw_gbs(algbw: float, world: int) -> float:
    return algbw * allreduce_bus_factor(world)


def allreduce_sum(world: int, first_rank: int = 0) -> int:
    """What every element holds after a sum all-reduce in which rank r contributes r + 1: 1 + 2 + … + n for the
    world; for a group of `world` consecutive ranks from first_rank (one node's): (first_rank + 1) + … + (first_rank + world)."""
    return world * (world + 1) // 2 + first_rank * world


def images_per_s(step_ms: list[float], batch: int, warmup: int) -> float | None:
    """Steady-state throughput: the steps after the first `warmup` (autotuning, allocator growth, worker start)."""
    steady = step_ms[warmup:]
    if not steady:
        return None
    return batch * len(steady) / (sum(steady) / 1e3)


def chance_loss(class_counts: Iterable[int]) -> float:
    """Cross-entropy of a model that knows only the class frequencies: their entropy (ln C when balanced)."""
    counts = [c for c in class_counts if c > 0]
    total = sum(counts)
    return -sum(c / total * math.log(c / total) for c in counts)


@dataclass(frozen=True)
class Timer:
    """A clock: mark() takes a time stamp (a recorded CUDA event, or the host clock after a device sync),
    elapsed_ms(a, b) reads the time between two marks, sync() waits for the device."""

    mark: Callable[[], Any]
    elapsed_ms: Callable[[Any, Any], float]
    sync: Callable[[], None]


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int, timer: Timer) -> float:
    """Milliseconds per call of fn: warm-up calls untimed (algorithm choice, caches), the device idle before
    the first mark, and waited for after the last, so the marks enclose exactly the timed calls."""
    for _ in range(warmup):
        fn()
    timer.sync()
    start = timer.mark()
    for _ in range(repeats):
        fn()
    end = timer.mark()
    timer.sync()
    return timer.elapsed_ms(start, end) / repeats


def time_steps(step: Callable[[], Any], steps: int, timer: Timer) -> list[float]:
    """Milliseconds of each of `steps` calls of step, from one mark between consecutive steps (no sync inside
    the loop, so the device keeps its queue full), read after one final sync."""
    marks = [timer.mark()]
    for _ in range(steps):
        step()
        marks.append(timer.mark())
    timer.sync()
    return [timer.elapsed_ms(a, b) for a, b in zip(marks, marks[1:])]
