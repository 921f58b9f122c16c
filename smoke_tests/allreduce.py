"""All-reduce across processes on this node, under torchrun: NCCL with one process per visible GPU, or gloo
across 2 CPU processes. The worker is smoke_tests/distributed.py, the one that runs across nodes too.

The figures follow nccl-tests: algbw = bytes / time, busbw = algbw * 2(n-1)/n (the traffic each link
carries in a ring, so busbw is comparable across world sizes; it is 0 and meaningless for n = 1).
The arithmetic is smoke_tests/measure.py's; the judgement of the sums is smoke_tests/verdicts.py's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from smoke_tests import verdicts
from smoke_tests.report import Result, failed, gpu, passed, skipped

SIZES_MIB = (1, 4, 16, 64, 256)
ITERATIONS = {"nccl": 20, "gloo": 3}
GLOO_WORLD = 2
RUN_TIMEOUT_S = 600  # the whole all-reduce, start to report (a GPU run takes seconds)


def run(world: int, sizes: tuple[int, ...] = SIZES_MIB) -> Result:
    """The all-reduce on this one node under torchrun (--standalone: its rendezvous on localhost), with the same
    worker as across nodes (smoke_tests/distributed.py): world processes, NCCL on GPUs, gloo without."""
    with tempfile.TemporaryDirectory(prefix="torchyard-allreduce-") as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
                   "--max-restarts=0", "-m", "smoke_tests.distributed", "--json", str(report),
                   "--sizes", *map(str, sizes)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        if not report.is_file():
            tail = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("W")][-3:]
            raise RuntimeError(f"torchrun exited {done.returncode} without a report: {' | '.join(tail)}")
        check = json.loads(report.read_text())["checks"][0]
    return Result(**{k: v for k, v in check.items() if k in Result.__dataclass_fields__})


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
    result = run(torch.cuda.device_count())
    result.name = "nccl all-reduce"
    result.figures["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    return gpu(result)


def check_gloo(facts: dict) -> Result:
    import torch

    if torch.cuda.is_available():
        return skipped("gloo all-reduce", "a GPU is present: NCCL's all-reduce is the one that matters")
    result = run(GLOO_WORLD)
    result.name = "gloo all-reduce"
    return result
