"""All-reduce across processes: NCCL with one process per visible GPU, or gloo across 2 CPU processes.

The figures follow nccl-tests: algbw = bytes / time, busbw = algbw * 2(n-1)/n (the traffic each link
carries in a ring, so busbw is comparable across world sizes; it is 0 and meaningless for n = 1).
The arithmetic is smoke_tests/measure.py's; the judgement of the sums is smoke_tests/verdicts.py's.
"""

from __future__ import annotations

import json
import socket
import tempfile
from dataclasses import replace
from pathlib import Path

from smoke_tests import measure, timers, verdicts
from smoke_tests.report import Result, failed, gpu, passed, skipped

SIZES_MIB = (1, 4, 16, 64, 256)
ITERATIONS = {"nccl": 20, "gloo": 3}
GLOO_WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, backend: str, port: int, sizes: tuple[int, ...], out: str) -> None:
    import torch
    import torch.distributed as dist

    device = torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)

    def device_sync() -> None:
        if backend == "nccl":
            torch.cuda.synchronize()

    def all_ranks_ready() -> None:  # every rank starts its clock together
        device_sync()
        dist.barrier(**({"device_ids": [rank]} if backend == "nccl" else {}))

    timer = replace(timers.host(device_sync), sync=all_ranks_ready)
    rows = []
    for mib in sizes:
        x = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=device)
        x.fill_(rank + 1)  # small integers: their sum is exact in fp32
        dist.all_reduce(x)
        lowest, highest = x.min().item(), x.max().item()  # both the exact sum, or some element is not
        ms = measure.time_calls(lambda: dist.all_reduce(x), ITERATIONS[backend], 1, timer)
        seconds = torch.tensor([ms / 1e3], device=device)
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
        algbw = measure.algbw_gbs(mib * 2**20, seconds.item())
        rows.append({"size_mib": mib, "time_us": round(seconds.item() * 1e6, 1), "algbw_gbs": round(algbw, 2),
                     "busbw_gbs": round(measure.busbw_gbs(algbw, world), 2) if world > 1 else None,
                     "min": lowest, "max": highest, "expected": measure.allreduce_sum(world)})
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.destroy_process_group()


def run(backend: str, world: int, sizes: tuple[int, ...] = SIZES_MIB) -> list[dict]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="torchyard-allreduce-") as tmp:
        out = f"{tmp}/rows.json"
        mp.start_processes(_worker, args=(world, backend, _free_port(), sizes, out), nprocs=world, join=True,
                           start_method="spawn")
        return json.loads(Path(out).read_text())


def _judge(name: str, backend: str, world: int, rows: list[dict]) -> Result:
    figures = {"backend": backend, "world_size": world, "sizes": rows}
    for row in rows:
        exact = verdicts.exact_sum(row["min"], row["max"], row["expected"], f"{row['size_mib']} MiB")
        if not exact.ok:
            return failed(name, exact.reason, **figures)
    top = rows[-1]
    if world == 1:
        speed = (f"with one rank the in-place collective moves no data ({top['time_us']:.0f} us at {top['size_mib']} MiB): "
                 "algbw and busbw are not meaningful")
    else:
        speed = f"{top['size_mib']} MiB: algbw {top['algbw_gbs']:.1f} GB/s, busbw {top['busbw_gbs']:.1f} GB/s"
    return passed(name, f"{world} rank(s) ({backend}), sums exact from {rows[0]['size_mib']} to {top['size_mib']} MiB; "
                        + speed, **figures)


def check_nccl(facts: dict) -> Result:
    import torch
    import torch.distributed as dist

    if not torch.cuda.is_available():
        return gpu(skipped("nccl all-reduce", "no GPU: NCCL needs CUDA devices (gloo all-reduce runs instead)"))
    if not dist.is_nccl_available():
        return gpu(failed("nccl all-reduce", "this torch was built without NCCL"))
    world = torch.cuda.device_count()
    result = _judge("nccl all-reduce", "nccl", world, run("nccl", world))
    result.figures["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    return gpu(result)


def check_gloo(facts: dict) -> Result:
    import torch

    if torch.cuda.is_available():
        return skipped("gloo all-reduce", "a GPU is present: NCCL's all-reduce is the one that matters")
    return _judge("gloo all-reduce", "gloo", GLOO_WORLD, run("gloo", GLOO_WORLD))

