"""The all-reduce as torchrun runs it: one process per GPU (or per CPU process) on every node, one process group.

    torchrun --nnodes=M --nproc-per-node=G --rdzv-backend=c10d --rdzv-endpoint=FIRST_NODE:29400 \\
        --rdzv-id=RUN -m smoke_tests.distributed [--json PATH|-] [--sizes MIB ...] [--require-gpu] [--host-gpus N]

NCCL when CUDA devices are visible, gloo otherwise. For each size it times the all-reduce over the whole world
and, with several ranks per node, over each node's own ranks, so the report tells the node's figures from the
fabric's (busbw = algbw * 2(n-1)/n, as nccl-tests defines it). Every rank checks that every element of its
result is the exact sum; the first process of every node judges the gathered picture, prints the table and
writes the report (with `-`: one JSON line last on stdout, for a cluster's log). A collective that waits on a dead peer raises after --timeout seconds instead of
hanging; the process then exits 1 and torchrun with it.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from smoke_tests import allreduce, measure, timers, verdicts
from smoke_tests.report import Result, expect_gpu, failed, gpu, host_gpus, skipped, table, write_json

NAME = "all-reduce across nodes"
MAX_SIZE_MIB = 4096  # a buffer per rank; more would test the host's memory, not the fabric
COLLECTIVE_TIMEOUT_S = 120  # one all-reduce of 256 MiB takes well under a second on any fabric worth testing


def torchrun_env() -> dict[str, int]:
    """Where this process sits, as torchrun says it (every launcher of torchrun sets these)."""
    names = {"rank": "RANK", "world": "WORLD_SIZE", "local_rank": "LOCAL_RANK", "local_world": "LOCAL_WORLD_SIZE",
             "node": "GROUP_RANK"}
    missing = [v for v in names.values() if v not in os.environ]
    if missing:
        raise SystemExit(f"smoke_tests.distributed: {', '.join(missing)} not set: start it with torchrun "
                         f"(torchrun --nproc-per-node=2 -m smoke_tests.distributed), which sets them")
    return {key: int(os.environ[var]) for key, var in names.items()}


def _row(mib: int, seconds: float, ranks: int, lowest: float, highest: float, expected: int) -> dict:
    """One size's figures (measure.py's arithmetic) and this rank's smallest and largest element."""
    algbw = measure.algbw_gbs(mib * 2**20, seconds)
    return {"size_mib": mib, "time_us": round(seconds * 1e6, 1), "algbw_gbs": round(algbw, 2),
            "busbw_gbs": round(measure.busbw_gbs(algbw, ranks), 2) if ranks > 1 else None,
            "min": lowest, "max": highest, "expected": expected}


def measure_sizes(where: dict[str, int], backend: str, sizes: tuple[int, ...], timeout_s: int) -> dict:
    """Every rank measures, and every rank gets the whole picture."""
    import torch
    import torch.distributed as dist

    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", where["local_rank"])
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    try:
        world, local_world = where["world"], where["local_world"]
        # torchrun numbers ranks node by node, so consecutive blocks of local_world ranks are the nodes.
        node_group, _ = dist.new_subgroups(group_size=local_world) if 1 < local_world < world else (None, None)
        node_first = where["node"] * local_world

        def device_sync() -> None:
            if backend == "nccl":
                torch.cuda.synchronize()

        def timed(x, group, ranks: int, first_rank: int, mib: int) -> dict:
            """Fill, all-reduce once and read the extremes (the exact sum, or some element is not), then time it."""
            x.fill_(where["rank"] + 1)  # rank r adds r + 1: small integers, so the sum is exact in fp32
            dist.all_reduce(x, group=group)
            lowest, highest = x.min().item(), x.max().item()

            def all_ranks_ready() -> None:  # every rank of the group starts its clock together
                device_sync()
                dist.barrier(group=group, **({"device_ids": [where["local_rank"]]} if backend == "nccl" else {}))

            timer = replace(timers.host(device_sync), sync=all_ranks_ready)
            ms = measure.time_calls(lambda: dist.all_reduce(x, group=group), allreduce.ITERATIONS[backend], 1, timer)
            seconds = torch.tensor([ms / 1e3], device=device)
            dist.all_reduce(seconds, op=dist.ReduceOp.MAX, group=group)  # the slowest rank sets the pace
            return _row(mib, seconds.item(), ranks, lowest, highest, measure.allreduce_sum(ranks, first_rank))

        world_rows, node_rows = [], []
        for mib in sizes:
            if where["local_rank"] == 0:
                print(f"all-reduce: {mib} MiB across {world} ranks", file=sys.stderr, flush=True)
            x = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=device)
            world_rows.append(timed(x, None, world, 0, mib))
            if node_group is not None:
                node_rows.append(timed(x, node_group, local_world, node_first, mib))
        mine = {"rank": where["rank"], "node": where["node"], "host": socket.gethostname(),
                "address": _address(), "world": world_rows, "node_rows": node_rows}
        everyone: list = [None] * world
        dist.all_gather_object(everyone, mine)
    finally:
        # NCCL's communicators are torn down as its documentation asks. gloo's are left to the process exit: with
        # torch 2.6, destroy_process_group() hung in 3 of 6 two-container runs here (the rank that destroyed last
        # waited forever on its peer's closed pairs), and in none of 13 runs without it.
        if backend == "nccl":
            dist.destroy_process_group()
    return _assemble(everyone, backend, local_world)


def _address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "?"


def _merge(rows: list[dict]) -> dict:
    """One size as every rank of a group saw it: the first rank whose elements are not all the exact sum, else any."""
    wrong = [r for r in rows if not verdicts.exact_sum(r["min"], r["max"], r["expected"], "").ok]
    return {**rows[0], "min": (wrong or rows)[0]["min"], "max": (wrong or rows)[0]["max"]}


def _assemble(everyone: list[dict], backend: str, local_world: int) -> dict:
    """The whole picture: the world's rows and each node's, each size merged over the ranks that ran it."""
    world_rows = [_merge([r["world"][i] for r in everyone]) for i in range(len(everyone[0]["world"]))]
    nodes = []
    for node in sorted({r["node"] for r in everyone}):
        ranks = [r for r in everyone if r["node"] == node]
        rows = [_merge([r["node_rows"][i] for r in ranks]) for i in range(len(ranks[0]["node_rows"]))]
        nodes.append({"node": node, "host": ranks[0]["host"], "address": ranks[0]["address"], "ranks": len(ranks),
                      "sizes": rows})
    return {"backend": backend, "world_size": len(everyone), "nodes": len(nodes), "ranks_per_node": local_world,
            "sizes": world_rows, "per_node": nodes}


def judge(picture: dict) -> Result:
    """The world's sums and figures as the suite judges them, with every node's sums and figures beside them."""
    result = allreduce._judge(NAME, picture["backend"], picture["world_size"], picture["sizes"])
    result.figures.update(nodes=picture["nodes"], ranks_per_node=picture["ranks_per_node"],
                          per_node=picture["per_node"])
    for node in picture["per_node"]:
        for row in node["sizes"]:
            exact = verdicts.exact_sum(row["min"], row["max"], row["expected"],
                                       f"node {node['node']} ({node['host']}): {row['size_mib']} MiB within the node")
            if not exact.ok:
                result.status, result.reason = "FAIL", exact.reason
    if picture["nodes"] > 1:
        hosts = ", ".join(f"{n['host']} ({n['address']})" for n in picture["per_node"])
        result.reason = f"{picture['nodes']} nodes [{hosts}], " + result.reason
    if picture["ranks_per_node"] == 1 and picture["nodes"] > 1:
        result.warnings.append("one rank per node: nothing moves within a node, so the figures are the fabric's")
    return result if picture["backend"] == "gloo" else gpu(result)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchrun … -m smoke_tests.distributed", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="PATH", help="write the report here (every node's first process); '-': one JSON line last on stdout")
    p.add_argument("--sizes", type=int, nargs="+", default=list(allreduce.SIZES_MIB), metavar="MIB",
                   help=f"all-reduce sizes in MiB (default: {' '.join(map(str, allreduce.SIZES_MIB))})")
    p.add_argument("--require-gpu", action="store_true", help="without a visible GPU, FAIL instead of running gloo")
    p.add_argument("--host-gpus", type=host_gpus, metavar="N",
                   help="the host has N NVIDIA GPUs (or 'toolkit'): without a visible GPU, FAIL instead of running gloo")
    p.add_argument("--timeout", type=int, default=COLLECTIVE_TIMEOUT_S,
                   help=f"seconds a collective may wait for a peer before it fails (default: {COLLECTIVE_TIMEOUT_S})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if any(not 1 <= mib <= MAX_SIZE_MIB for mib in args.sizes) or args.timeout < 1:
        print(f"smoke_tests.distributed: --sizes from 1 to {MAX_SIZE_MIB} MiB, --timeout at least 1 s", file=sys.stderr)
        return 2
    where = torchrun_env()
    import torch

    started = time.monotonic()
    context = {"suite": "torchyard smoke_tests (torchrun)", "host": socket.gethostname(),
               "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "require_gpu": args.require_gpu,
               "host_gpus": args.host_gpus}
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "gloo" and (args.require_gpu or args.host_gpus):
        # a GPU was expected: gloo on the CPU would prove nothing about it (verdicts.missing_gpu says why)
        missing = gpu(skipped(NAME, f"no GPU is visible on {socket.gethostname()} (rank {where['rank']})"))
        result = expect_gpu(missing, args.require_gpu, args.host_gpus)
    elif backend == "nccl" and where["local_world"] > torch.cuda.device_count():
        result = gpu(failed(NAME, f"torchrun started {where['local_world']} processes per node, but "
                                  f"{socket.gethostname()} has {torch.cuda.device_count()} GPU(s): give one per GPU"))
    else:
        try:
            picture = measure_sizes(where, backend, tuple(args.sizes), args.timeout)
        except Exception as e:  # noqa: BLE001 - a peer that died: say where, then fail
            print(f"smoke_tests.distributed: rank {where['rank']} on {socket.gethostname()} (node {where['node']}): "
                  f"the all-reduce failed: {e.__class__.__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}",
                  file=sys.stderr, flush=True)
            return 1
        result = judge(picture)
    # Every node reports (its first process): which node c10d made rank 0 depends on who joined first, and a
    # cluster's log of any one node (Kubernetes' pod 0, the Docker run's node0) must end with the report.
    if where["local_rank"] != 0:
        return 1 if result.status == "FAIL" else 0
    result.seconds = round(time.monotonic() - started, 2)
    context.update(seconds=result.seconds, status=result.status)
    print(table([result]), flush=True)
    if args.json:
        write_json(Path(args.json), [result], context)
    return 1 if result.status == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
