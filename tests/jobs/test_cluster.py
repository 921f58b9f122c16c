"""What every cluster engine gets: bounded counts, the image by digest, and one torchrun line whose shell part
really picks the first node as the rendezvous host (run by sh, with torchrun replaced by printf)."""

import json
import shlex
import subprocess

import pytest

from builder import inputs
from builder.inputs import InputError
from builder.jobs import cluster

DIGEST = "sha256:" + "0123456789abcdef" * 4


def record(digests, tag, ref, digest=DIGEST):
    path = digests / f"{tag}.json"
    entries = json.loads(path.read_text()) if path.is_file() else {}
    entries[ref] = {"digest": digest, "image_id": "sha256:" + "f" * 64}
    path.write_text(json.dumps(entries))


def run_script(script: str, **env) -> list[str]:
    """Run a node's script with sh as a node would, torchrun swapped for printf: the argv torchrun would get."""
    assert script.startswith(f"exec {cluster.TORCHRUN} ")
    probe = script.replace(f"exec {cluster.TORCHRUN} ", "exec printf '%s\\n' ", 1)
    done = subprocess.run(["sh", "-c", probe], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("value, upper, expected", [("1", 16, 1), ("8", 16, 8), ("16", 16, 16), (" 2 ", 512, 2), (512, 512, 512)])
def test_counts_within_bounds(value, upper, expected):
    assert inputs.count(value, "GPUS", upper, "GPUs") == expected


@pytest.mark.parametrize("value", ["0", "17", "-1", "1.5", "", "eight", "２", "2;touch /tmp/x", "0x10", "1e1", "+3", "99999999999999999999"])
def test_counts_refused_with_the_range(value):
    with pytest.raises(InputError) as e:
        inputs.count(value, "GPUS", 16, "the GPUs per node")
    assert f"GPUS={inputs.shown(value)}: give the GPUs per node as a whole number from 1 to 16, e.g. GPUS=2" == str(e.value)


def test_job_names_are_dns_labels_for_every_tag(shipped):
    for tag in shipped.specs:
        for nodes in (1, 2, cluster.MAX_NODES):
            name = cluster.job_name(tag, nodes)
            pod = f"{name}-{nodes - 1}"  # an indexed pod's host name
            assert len(pod) <= 63 and name[0].isalpha() and all(c.isalnum() or c == "-" for c in name), name
    assert cluster.job_name("v2.6-cu124", 1) == "torchyard-smoke-v2-6-cu124"
    assert cluster.job_name("v2.15-cu132-devel", 4) == "torchyard-smoke-v2-15-cu132-devel-4nodes"


def test_the_image_is_pinned_by_the_recorded_digest(tmp_path):
    record(tmp_path, "v2.6-cu124", "registry.example.com:5000/ml/torchyard:v2.6-cu124")
    image = cluster.image("v2.6-cu124", None, tmp_path)
    assert image.pinned == f"registry.example.com:5000/ml/torchyard:v2.6-cu124@{DIGEST}"
    assert image.enroot == f"registry.example.com:5000#ml/torchyard:{DIGEST}"
    assert cluster.image("v2.6-cu124", "registry.example.com:5000/ml", tmp_path) == image


def test_an_unrecorded_registry_gives_the_tag_unpinned(tmp_path):
    record(tmp_path, "v2.6-cu124", "registry.example.com/ml/torchyard:v2.6-cu124")
    image = cluster.image("v2.6-cu124", "127.0.0.1:5000", tmp_path)
    assert image.digest is None and image.pinned == "127.0.0.1:5000/torchyard:v2.6-cu124"
    assert image.enroot == "127.0.0.1:5000#torchyard:v2.6-cu124"


def test_which_registry_is_asked_when_it_is_not_clear(tmp_path):
    with pytest.raises(InputError, match="records none: push it first"):
        cluster.image("v2.6-cu124", None, tmp_path)
    record(tmp_path, "v2.6-cu124", "a.example.com/torchyard:v2.6-cu124")
    record(tmp_path, "v2.6-cu124", "b.example.com/torchyard:v2.6-cu124")
    with pytest.raises(InputError, match="records 2 registries .*a.example.com.*b.example.com.*REGISTRY="):
        cluster.image("v2.6-cu124", None, tmp_path)


@pytest.mark.parametrize("bad", ["https://registry.example.com", "registry.example.com/ML", "registry.example.com/ml:v1",
                                 "reg istry.example.com", "registry.example.com/ml;rm", "'$(id)'.example.com"])
def test_a_registry_outside_the_grammar_is_refused(tmp_path, bad):
    with pytest.raises(InputError, match="host\\[:port\\]"):
        cluster.image("v2.6-cu124", bad, tmp_path)


def test_torchrun_argv_without_a_shell():
    run = cluster.Torchrun(nodes=2, gpus=1, endpoint="node0:29400", rendezvous_id="run-1", join_timeout_s=60,
                           worker_args=("--json", "-"))
    assert run.argv(is_host=True) == [
        cluster.TORCHRUN, "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", "--rdzv-endpoint=node0:29400",
        "--rdzv-id=run-1", "--rdzv-conf=is_host=1,join_timeout=60,read_timeout=60", "--max-restarts=0",
        "-m", cluster.ALLREDUCE_MODULE, "--json", "-"]
    assert "--rdzv-conf=is_host=0,join_timeout=60,read_timeout=60" in run.argv(is_host=False)
    with pytest.raises(ValueError):
        cluster.Torchrun(2, 1, cluster.Shell("$HOST"), "x").argv(True)


@pytest.mark.parametrize("index, is_host", [("0", "1"), ("1", "0"), ("7", "0")])
def test_the_script_makes_only_the_first_node_the_host(index, is_host):
    run = cluster.Torchrun(nodes=8, gpus=4, endpoint=cluster.Shell("$FIRST"), rendezvous_id=cluster.Shell("$JOB"))
    argv = run_script(run.script("NODE"), NODE=index, FIRST="gpu-a01:29400", JOB="42")
    assert argv[:3] == ["--nnodes=8", "--nproc-per-node=4", "--rdzv-backend=c10d"]
    assert "--rdzv-endpoint=gpu-a01:29400" in argv and "--rdzv-id=42" in argv
    assert f"--rdzv-conf=is_host={is_host},join_timeout=900,read_timeout=900" in argv


def test_the_script_stops_when_the_node_index_is_missing():
    script = cluster.Torchrun(2, 1, "h:1", "x").script("NODE")
    done = subprocess.run(["sh", "-c", script], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert done.returncode != 0 and "NODE" in done.stderr  # never every node a host


def test_plain_values_in_the_script_are_quoted():
    run = cluster.Torchrun(2, 1, "h:1", "x", worker_args=("--json", "a b;$(touch /tmp/x)"))
    assert shlex.quote("a b;$(touch /tmp/x)") in run.script("NODE")

