"""`make smoke NODES=n`: n containers of the image as n hosts on this machine, torchrun's all-reduce across them.

Each container is a host of its own: its own host name (node0, node1, …) and address on a Docker network made
for this run and removed after it. The network is internal: no route leaves this machine, the traffic stays in
the engine's bridge. Every node runs the one-line script the Kubernetes and Slurm jobs run (builder/jobs/cluster.py),
its index in TORCHYARD_NODE_INDEX; c10d's rendezvous meets on node0. With the NVIDIA toolkit the host's GPUs are
shared out, each node its own; without, each node is one CPU process (gloo).

A node that stops with an error ends the run: the others get DEAD_PEER_GRACE_S to fail by themselves (their
collective notices the dead peer: gloo at once, NCCL at the process group's time-out), then they are stopped;
the error names the node that stopped first and how each ended. Containers and network go whatever happens.
reports/<tag>/smoke-nodes<n>.json (node 0's report), .log (every node's output, prefixed), .cmd (the docker lines).
"""

from __future__ import annotations

import secrets
import shlex
import signal
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.types

from builder import layout, records
from builder.files import open_fresh, write_atomic
from builder.host import gpu, smoke
from builder.image import engine
from builder.jobs.cluster import RENDEZVOUS_PORT, Torchrun
from builder.matrix.types import ImageSpec
from builder.records import runs
from smoke_tests import distributed, nvml

MAX_LOCAL_NODES = 8  # containers on one machine: enough to prove the path, few enough for a laptop
JOIN_TIMEOUT_S = 60  # the containers start within seconds of each other here
# After a node dies, the others' collective fails within the process group's time-out (gloo notices a closed
# connection at once); past this they are stopped.
DEAD_PEER_GRACE_S = distributed.COLLECTIVE_TIMEOUT_S + 15
INDEX_VARIABLE = "TORCHYARD_NODE_INDEX"
CONTAINER_JSON = "/tmp/torchyard-smoke-nodes.json"
CPU_SIZES_MIB = (1, 4, 16)  # gloo on a 2-core machine: seconds, not minutes
POLL_S = 0.2


@dataclass(frozen=True)
class Node:
    index: int
    container: object  # docker Container
    name: str


@dataclass(frozen=True)
class NodesRun:
    tag: str
    status: str
    seconds: float
    report: Path
    log: Path
    command: Path


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def _gpu_shares(options: dict, answer: nvml.Nvml, nodes: int) -> list[dict] | None:
    """Each node's run options: its own GPUs when the host has them, else None (the CPU path)."""
    if "device_requests" not in options:
        return None
    count = len(answer.gpus)
    if count < nodes:
        raise smoke.SmokeError(f"NODES={nodes} needs at least one GPU per node, and NVML sees {count} on this host; "
                               f"use NODES={max(count, 1)} or TORCHYARD_GPUS=none for the CPU path")
    share = count // nodes  # the rest, if any, stay idle: every node gets the same number
    return [{**options, "device_requests": [docker.types.DeviceRequest(
        device_ids=[str(i) for i in range(n * share, (n + 1) * share)], capabilities=[["gpu"]])]}
        for n in range(nodes)]


def _reproducer(image: str, network: str, names: list[str], scripts: list[str], shares: list[dict] | None) -> str:
    lines = [shlex.join(["docker", "network", "create", "--internal", network])]
    for index, (name, script) in enumerate(zip(names, scripts)):
        flags = ["--shm-size", gpu.SHM_SIZE]
        if shares:
            ids = shares[index]["device_requests"][0]["DeviceIDs"]
            flags = ["--gpus", f'"device={",".join(ids)}"', *flags, "--ulimit", "memlock=-1:-1"]
        lines.append(shlex.join(["docker", "run", "-d", "--name", name, "--network", network, "--network-alias",
                                 f"node{index}", "--hostname", f"node{index}", "-e", f"{INDEX_VARIABLE}={index}",
                                 *flags, image, "/bin/sh", "-c", script]))
    return "\n".join(lines) + "\n"


def _ended(code: int) -> str:
    if code > 128:
        try:
            return f"exit {code} (killed by {signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"exit {code}"


def _last_error(lines: list[str]) -> str:
    """The line that says why a node failed: the suite's own, else torch's, else the last one."""
    for marker in ("smoke_tests.distributed:", "Error", "error"):
        found = [line for line in lines if marker in line]
        if found:
            return found[-1].strip()[:300]
    return lines[-1].strip()[:300] if lines else "(no output)"


def run(client: docker.DockerClient, spec: ImageSpec, repo: str, nodes: int, say=print, reports: Path = layout.REPORTS,
        require_gpu: bool = False, sizes: tuple[int, ...] | None = None) -> NodesRun:
    image = f"{repo}:{spec.tag}"
    out = reports / spec.tag
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / runs.nodes_name(nodes)
    command_path, log_path = report_path.with_suffix(".cmd"), report_path.with_suffix(".log")
    report_path.unlink(missing_ok=True)  # never an older run's report beside this run's log
    options, answer, toolkit = gpu.run_options(client), nvml.read(), gpu.toolkit_configured(client)
    host = smoke.host_gpus(answer, toolkit)  # a host with GPUs is judged as one: no GPU in a node FAILs
    shares = _gpu_shares(options, answer, nodes)
    procs = len(shares[0]["device_requests"][0]["DeviceIDs"]) if shares else 1
    sizes = sizes or (None if shares else CPU_SIZES_MIB)
    run_id = f"{_safe(repo)}-smoke-{_safe(spec.tag)}-{secrets.token_hex(3)}"
    worker = ("--json", CONTAINER_JSON, *(("--require-gpu",) if require_gpu else ()), *(("--host-gpus", host) if host else ()),
              *(("--sizes", *map(str, sizes)) if sizes else ()))
    torchrun = Torchrun(nodes=nodes, gpus=procs, endpoint=f"node0:{RENDEZVOUS_PORT}", rendezvous_id=run_id,
                        join_timeout_s=JOIN_TIMEOUT_S, worker_args=worker)
    script = torchrun.script(INDEX_VARIABLE)
    names = [f"{run_id}-node{i}" for i in range(nodes)]
    write_atomic(command_path, _reproducer(image, run_id, names, [script] * nodes, shares))
    labels = {"io.torchyard.smoke.run": run_id}
    where = f"GPUs: {procs} each" if shares else f"one process each on {smoke.describe(options, answer, host)}"
    say(f"smoke-testing {image} on {nodes} nodes ({where}), "
        f"network {run_id} (internal) (log: {log_path})")
    started = time.monotonic()
    network = client.networks.create(run_id, driver="bridge", internal=True, labels=labels)
    started_nodes: list[Node] = []
    outputs: dict[int, list[str]] = {i: [] for i in range(nodes)}
    try:
        ends = _start_and_watch(client, image, names, script, labels, run_id, shares, command_path, log_path,
                                started_nodes, outputs, started, say)
        raw = engine.read_file(started_nodes[0].container, CONTAINER_JSON)
    finally:
        for node in started_nodes:
            with suppress(engine.EngineError), engine.translated():
                node.container.remove(force=True)
        network.remove()
    seconds = time.monotonic() - started
    # Exit 1 is torchrun's when a worker failed, or the suite's verdict FAIL (then with a report); anything else
    # (a signal, the engine's kill) or a node stopped by us means a node died.
    if raw is None or any(code not in (0, 1) or ours for code, _, ours in ends.values()):
        raise smoke.SmokeError(_failure(nodes, names, ends, outputs, log_path))
    try:
        report = runs.smoke_from_suite(
            raw, Path(f"{names[0]}:{CONTAINER_JSON}"), image=image, image_id=client.images.get(image).id,
            reproducer=command_path.read_text().strip(), host_nvml={**nvml.record(answer), "source": answer.source},
            host_toolkit=toolkit, gpus_passed=shares is not None)
    except records.BrokenRecord as e:
        raise smoke.SmokeError(f"{e}; log: {log_path}") from None
    records.write(report_path, report)
    return NodesRun(spec.tag, report.status, seconds, report_path, log_path, command_path)


def _start_and_watch(client: docker.DockerClient, image: str, names: list[str], script: str, labels: dict, run_id: str,
                     shares: list[dict] | None, command_path: Path, log_path: Path, started_nodes: list[Node],
                     outputs: dict[int, list[str]], started: float, say) -> dict[int, tuple[int, float, bool]]:
    """Start every node (each joins started_nodes as it starts, so the caller removes whatever there is), follow
    their output into the log, and wait for them: how each ended."""
    with open_fresh(log_path) as log:
        log.write(command_path.read_text())
        lock = threading.Lock()
        for index, name in enumerate(names):
            started_nodes.append(_start(client, image, index, name, script, labels, run_id,
                                        shares[index] if shares else {"shm_size": gpu.SHM_SIZE}, command_path))
            address = started_nodes[-1].container.attrs["NetworkSettings"]["Networks"][run_id]["IPAddress"]
            log.write(f"# node{index}: container {name}, address {address}\n")
            log.flush()
        readers = [threading.Thread(target=_follow, args=(node, log, lock, outputs[node.index], say), daemon=True)
                   for node in started_nodes]
        for reader in readers:
            reader.start()
        ends = _watch(started_nodes, started, say)
        for reader in readers:
            reader.join(timeout=10)
    return ends


def _start(client: docker.DockerClient, image: str, index: int, name: str, script: str, labels: dict, network: str,
           options: dict, command_path: Path) -> Node:
    endpoint = client.api.create_endpoint_config(aliases=[f"node{index}"])  # node0 resolves on this network only
    try:
        with engine.translated():
            container = client.containers.create(
                image, ["/bin/sh", "-c", script], name=name, hostname=f"node{index}", labels=labels,
                environment={INDEX_VARIABLE: str(index)}, network=network, networking_config={network: endpoint},
                **options)
    except engine.EngineError as e:
        raise smoke.SmokeError(f"the engine refused to create node {index} of {image}: {e}\n"
                               f"  the same run by hand: {command_path}") from None
    try:
        with engine.translated():
            container.start()
    except engine.EngineError as e:
        container.remove(force=True)
        raise smoke.SmokeError(f"the engine refused to start node {index} of {image}: {e}\n"
                               f"  the same run by hand: {command_path}") from None
    container.reload()
    return Node(index, container, name)


def _follow(node: Node, log, lock: threading.Lock, lines: list[str], say) -> None:
    for chunk in node.container.logs(stream=True, follow=True):
        for line in chunk.decode(errors="replace").splitlines():
            lines.append(line)
            with lock:
                log.write(f"node{node.index} | {line}\n")
                log.flush()
            say(f"node{node.index} | {line}")


def _watch(nodes: list[Node], started: float, say) -> dict[int, tuple[int, float, bool]]:
    """Wait for every node: index -> (exit code, seconds into the run, stopped by us)."""
    ends: dict[int, tuple[int, float, bool]] = {}
    stop_at = started + smoke.TIMEOUT_S
    while len(ends) < len(nodes):
        now = time.monotonic()
        for node in nodes:
            if node.index in ends:
                continue
            node.container.reload()
            if node.container.status in ("exited", "dead"):
                ends[node.index] = (node.container.attrs["State"]["ExitCode"], now - started, False)
        failures = [end[1] for end in ends.values() if end[0] != 0]
        if failures and stop_at > min(failures) + started + DEAD_PEER_GRACE_S:
            stop_at = min(failures) + started + DEAD_PEER_GRACE_S
        if now >= stop_at and len(ends) < len(nodes):
            for node in nodes:
                if node.index not in ends:
                    say(f"node{node.index}: still running {now - started:.0f}s into the run; stopping it")
                    with suppress(engine.EngineError), engine.translated():
                        node.container.kill()  # it may have ended by itself meanwhile
                    node.container.wait(timeout=30)
                    node.container.reload()
                    ends[node.index] = (node.container.attrs["State"]["ExitCode"], time.monotonic() - started, True)
        time.sleep(POLL_S)
    return ends


def _failure(nodes: int, names: list[str], ends: dict, outputs: dict[int, list[str]], log_path: Path) -> str:
    if all(code == 0 for code, _, _ in ends.values()):
        return f"every node exited 0, but node0 wrote no report ({CONTAINER_JSON}); log of every node: {log_path}"
    order = sorted(ends, key=lambda i: (ends[i][0] == 0, ends[i][1]))
    first = order[0]
    lines = [f"the all-reduce across {nodes} nodes failed: node{first} ({names[first]}) stopped first, "
             f"{_ended(ends[first][0])} {ends[first][1]:.1f}s into the run"]
    for i in order[1:]:
        code, at, ours = ends[i]
        how = (f"still running after {DEAD_PEER_GRACE_S}s: stopped by torchyard" if ours else
               f"{_ended(code)} {at - ends[first][1]:+.1f}s later" + (", on its own" if code else ""))
        lines.append(f"node{i}: {how}: {_last_error(outputs[i])}")
    lines.append(f"log of every node: {log_path}")
    return "\n  ".join(lines)
