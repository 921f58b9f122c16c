"""All-reduce across processes: NCCL with one process per visible GPU, or gloo across 2 CPU processes.

The figures follow nccl-tests: algbw = bytes / time, busbw = algbw * 2(n-1)/n (the traffic each link
carries in a ring, so busbw is comparable across world sizes; it is 0 and meaningless for n = 1).
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path

from smoke_tests import verdicts
from smoke_tests.report import Result, failed, gpu, passed, skipped

SIZES_MIB = (1, 4, 16, 64, 256)
ITERATIONS = {"nccl": 20, "gloo": 3}
GLOO_WORLD = 2


def bus_factor(world: int) -> float:
    return 2 * (world - 1) / world


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

    def sync():
        if backend == "nccl":
            torch.cuda.synchronize()

    rows = []
    expected = world * (world + 1) / 2  # rank r contributes r + 1; small integers are exact in fp32
    for mib in sizes:
        x = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=device)
        x.fill_(rank + 1)
        dist.all_reduce(x)
        wrong = (x != expected).nonzero()
        got = x[wrong[0]].item() if len(wrong) else expected
        dist.all_reduce(x)  # a second warm-up
        iterations = ITERATIONS[backend]
        sync()
        dist.barrier(**({"device_ids": [rank]} if backend == "nccl" else {}))
        started = time.perf_counter()
        for _ in range(iterations):
            dist.all_reduce(x)
        sync()
        seconds = torch.tensor([(time.perf_counter() - started) / iterations], device=device)
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
        algbw = mib * 2**20 / seconds.item() / 1e9
        rows.append({"size_mib": mib, "time_us": round(seconds.item() * 1e6, 1), "algbw_gbs": round(algbw, 2),
                     "busbw_gbs": round(algbw * bus_factor(world), 2) if world > 1 else None,
                     "got": got, "expected": expected})
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
        exact = verdicts.exact_sum(row["got"], row["expected"], f"{row['size_mib']} MiB")
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

