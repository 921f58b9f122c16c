"""`make smoke NODES=2` on this CPU machine: two containers of the session's image, each a host of its own on an
internal Docker network, torchrun's c10d rendezvous on node0, gloo's all-reduce with every sum exact; a node killed
mid-run fails the run, clearly and within the stated time-out; no container or network is left behind."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from builder import layout
from builder.jobs import multinode
from tests.docker.conftest import TAG, TEST_REPO

RUN_LABEL = "io.torchyard.smoke.run"


def env(reports) -> dict:
    return {**os.environ, "TORCHYARD_REPORTS": str(reports), "TORCHYARD_GPUS": "none"}


@pytest.fixture(scope="module")
def two_nodes(built, tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    started = time.monotonic()
    done = subprocess.run(["make", "smoke", f"TAG={TAG}", f"REPO={TEST_REPO}", "NODES=2"], cwd=layout.ROOT,
                          env=env(reports), capture_output=True, text=True, timeout=600)
    return done, reports / TAG, time.monotonic() - started


@pytest.fixture(scope="module")
def report(two_nodes):
    done, folder, _ = two_nodes
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((folder / "smoke-nodes2.json").read_text())


def test_two_hosts_meet_and_every_sum_is_exact(report):
    [check] = report["checks"]
    assert report["status"] == check["status"] == "PASS", check["reason"]
    figures = check["figures"]
    assert (figures["backend"], figures["world_size"], figures["nodes"], figures["ranks_per_node"]) == ("gloo", 2, 2, 1)
    assert [row["size_mib"] for row in figures["sizes"]] == list(multinode.CPU_SIZES_MIB)
    assert all(row["min"] == row["max"] == row["expected"] == 3 for row in figures["sizes"])  # rank r adds r + 1: 1 + 2
    for row in figures["sizes"]:  # busbw = algbw * 2(n-1)/n = algbw for n = 2
        assert row["algbw_gbs"] > 0 and row["busbw_gbs"] == pytest.approx(row["algbw_gbs"], abs=0.011)


def test_each_node_is_its_own_host_with_its_own_address(report):
    nodes = report["checks"][0]["figures"]["per_node"]
    assert [n["host"] for n in nodes] == ["node0", "node1"]
    addresses = [n["address"] for n in nodes]
    assert len(set(addresses)) == 2 and not any(a.startswith("127.") for a in addresses)


def test_the_run_leaves_its_reproducer_and_every_nodes_log(two_nodes, report, built):
    done, folder, _ = two_nodes
    commands = (folder / "smoke-nodes2.cmd").read_text()
    assert commands.startswith("docker network create --internal ")
    assert commands.count("docker run ") == 2 and "TORCHYARD_NODE_INDEX=1" in commands and built.image in commands
    assert "--rdzv-backend=c10d" in commands and "--rdzv-endpoint=node0:29400" in commands
    log = (folder / "smoke-nodes2.log").read_text()
    assert "node0 | " in log and "node1 | " in log and re.search(r"# node1: container \S+, address \d", log)
    assert report["image_id"] == built.image_id and f"{built.image}: PASS" in done.stdout
    assert report["gpus_passed"] is False and report["host_toolkit"] is False  # its duration: docs/benchmarks.md


def test_a_gpu_host_whose_gpus_do_not_reach_the_nodes_fails(built, tmp_path):
    """As `make smoke` on one node (tests/docker/test_smoke.py): an H100 host's recorded NVML answer, the GPUs kept
    out by TORCHYARD_GPUS=none; gloo across the nodes would prove nothing about them, so the run FAILs."""
    recording = layout.ROOT / "tests" / "data" / "nvml" / "h100-driver-535.json"
    done = subprocess.run(["make", "smoke", f"TAG={TAG}", f"REPO={TEST_REPO}", "NODES=2"], cwd=layout.ROOT,
                          env={**env(tmp_path), "TORCHYARD_NVML_RECORD": str(recording)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "smoke tests did not pass for v2.6-cu124 (FAIL)" in done.stderr, done.stdout[-3000:]
    report = json.loads((tmp_path / TAG / "smoke-nodes2.json").read_text())
    [check] = report["checks"]
    assert report["status"] == check["status"] == "FAIL" and report["host_nvml"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert check["reason"].startswith("the host has 1 NVIDIA GPU (NVML there) but none reached this container "
                                      "(no GPU is visible on node"), check["reason"]
    assert "--host-gpus 1" in (tmp_path / TAG / "smoke-nodes2.cmd").read_text()


def test_nothing_is_left_behind(two_nodes, client):
    assert client.containers.list(all=True, filters={"label": RUN_LABEL}) == []
    assert client.networks.list(filters={"label": RUN_LABEL}) == []


@pytest.mark.parametrize("victim, survivor", [(1, 0), (0, 1)])
def test_a_node_killed_mid_run_fails_the_run_within_the_time_out(built, client, tmp_path, victim, survivor):
    # Many 64 MiB rounds, so that the kill lands while the all-reduce runs (gloo moves ~0.5 GB/s here).
    command = [sys.executable, "-m", "builder", "--repo", TEST_REPO, "smoke", "--tag", TAG, "--nodes", "2",
               "--sizes", *["64"] * 30]
    process = subprocess.Popen(command, cwd=layout.ROOT, env=env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    log = tmp_path / TAG / "smoke-nodes2.log"
    try:
        deadline = time.monotonic() + 300
        while not re.search(r"node\d \| all-reduce: 64 MiB", log.read_text() if log.exists() else ""):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.2)
        name = re.search(rf"# node{victim}: container (\S+),", log.read_text())[1]
        client.containers.get(name).kill()
        killed = time.monotonic()
        out, err = process.communicate(timeout=multinode.DEAD_PEER_GRACE_S + 60)
        took = time.monotonic() - killed
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, out[-2000:] + err[-2000:]
    assert took < multinode.DEAD_PEER_GRACE_S + 30  # the stated bound (plus removing the containers)
    assert f"node{victim} ({name}) stopped first, exit 137 (killed by SIGKILL)" in err
    # the survivor's torchrun noticed the dead peer and failed by itself; torchyard did not have to stop it
    assert re.search(rf"node{survivor}: exit 1 \+[\d.]+s later, on its own: ", err), err
    assert not (tmp_path / TAG / "smoke-nodes2.json").exists()
    assert client.containers.list(all=True, filters={"label": RUN_LABEL}) == []
    assert client.networks.list(filters={"label": RUN_LABEL}) == []


def test_the_suites_report_is_the_last_line_of_a_jobs_log(built, run):
    # What a Kubernetes or Slurm job's log ends with (`--json -`): read it back as the clusters' users would.
    out = run(built.image, "python", "-m", "smoke_tests", "--only", "environment", "--json", "-")
    document = json.loads(out.strip().splitlines()[-1])
    assert document["status"] == "PASS" and [c["name"] for c in document["checks"]] == ["environment"]
