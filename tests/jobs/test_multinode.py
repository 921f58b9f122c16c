"""`make smoke NODES=…`'s pieces that need no engine: refusals before any Docker call, the reproducer, the failure
message a person reads when a node dies."""

import os
import subprocess
import sys

import pytest

from builder.jobs import multinode
from tests.conftest import ROOT


def smoke(*args):
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}  # a refusal comes before any engine call
    return subprocess.run([sys.executable, "-m", "builder", "smoke", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.mark.parametrize("args, says", [
    (["--nodes", "0"], "NODES='0': give the number of containers (nodes) as a whole number from 1 to 8"),
    (["--nodes", "9"], "from 1 to 8"),
    (["--nodes", "2", "--sizes", "0"], "--sizes='0'"),
    (["--nodes", "2", "--sizes", "4097"], "from 1 to 4096"),
    (["--nodes", "2", "--data", "."], "NODES>1 runs the all-reduce across the nodes, which reads no DATA"),
])
def test_bad_requests_are_refused_before_the_engine(args, says):
    done = smoke(*args)
    assert done.returncode == 2 and says in done.stderr, done.stderr


def test_the_reproducer_names_every_node_and_the_internal_network():
    text = multinode._reproducer("torchyard:v2.6-cu124", "net-1", ["n-0", "n-1"], ["exec a", "exec b"], None)
    lines = text.splitlines()
    assert lines[0] == "docker network create --internal net-1"
    assert lines[1] == ("docker run -d --name n-0 --network net-1 --network-alias node0 --hostname node0 "
                        "-e TORCHYARD_NODE_INDEX=0 --shm-size 8g torchyard:v2.6-cu124 /bin/sh -c 'exec a'")
    assert "--network-alias node1" in lines[2] and "TORCHYARD_NODE_INDEX=1" in lines[2]


def test_gpu_shares_in_the_reproducer():
    shares = [{"device_requests": [{"DeviceIDs": ["0", "1"]}]}, {"device_requests": [{"DeviceIDs": ["2", "3"]}]}]
    text = multinode._reproducer("i", "net", ["a", "b"], ["s", "s"], shares)
    assert "--gpus '\"device=2,3\"'" in text.splitlines()[2] and "memlock=-1:-1" in text


def test_the_failure_names_the_node_that_died_first_and_how_the_others_ended(tmp_path):
    ends = {0: (1, 12.9, False), 1: (137, 12.3, False), 2: (137, 150.0, True)}
    outputs = {0: ["all-reduce: 64 MiB across 3 ranks",
                   "smoke_tests.distributed: rank 0 on node0 (node 0): the all-reduce failed: RuntimeError: Connection closed by peer",
                   "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:"],
               1: [], 2: ["all-reduce: 64 MiB across 3 ranks"]}
    text = multinode._failure(3, ["c0", "c1", "c2"], ends, outputs, tmp_path / "x.log")
    assert text.startswith("the all-reduce across 3 nodes failed: node1 (c1) stopped first, exit 137 (killed by SIGKILL) "
                           "12.3s into the run")
    assert "node0: exit 1 +0.6s later, on its own: smoke_tests.distributed: rank 0 on node0" in text
    assert f"node2: still running after {multinode.DEAD_PEER_GRACE_S}s: stopped by torchyard" in text
    assert str(tmp_path / "x.log") in text


def test_no_report_without_a_failure_is_said_as_such(tmp_path):
    text = multinode._failure(2, ["c0", "c1"], {0: (0, 5.0, False), 1: (0, 5.1, False)}, {0: [], 1: []}, tmp_path / "l")
    assert text.startswith("every node exited 0, but node0 wrote no report")
