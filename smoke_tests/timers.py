"""The clocks measure.time_calls and measure.time_steps run on: CUDA events on a GPU, the host clock elsewhere."""

from __future__ import annotations

import time

from smoke_tests.measure import Timer


def cuda(device=None) -> Timer:
    """CUDA events: recorded on the stream between kernels, so a mark costs no sync; read after a sync."""
    import torch

    def mark():
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    return Timer(mark, lambda start, end: start.elapsed_time(end), lambda: torch.cuda.synchronize(device))


def host(sync=lambda: None) -> Timer:
    """The host's clock; each mark first waits for the device (sync), so it never stamps work still queued."""

    def mark() -> float:
        sync()
        return time.perf_counter()

    return Timer(mark, lambda start, end: (end - start) * 1e3, sync)
