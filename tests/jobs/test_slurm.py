"""`make slurm`: an sbatch script that shellcheck passes, whose #SBATCH lines sbatch reads as meant, and whose shell
logic (first node of the allocation, is_host per node, pyxis's image) holds when it runs.

No Slurm or pyxis can run here: `srun` and `scontrol` are stand-ins on PATH that record what they were given
(scontrol answers like Slurm's `show hostnames`), so the script itself runs in bash for real."""

import os
import shlex
import shutil
import stat
import subprocess

import pytest

from builder.host import smoke
from builder.jobs import cluster, slurm
from tests.conftest import ROOT
from tests.jobs.test_cluster import DIGEST, run_script

IMAGE = cluster.Image("registry.example.com:5000/ml/torchyard:v2.6-cu124", DIGEST)
SHELLCHECK = shutil.which("shellcheck")
needs_shellcheck = pytest.mark.skipif(SHELLCHECK is None and os.environ.get("CI") != "true",
                                      reason="shellcheck is not installed (apt-get install shellcheck; CI installs it)")


def script(gpus: int, nodes: int, image: cluster.Image = IMAGE) -> str:
    return slurm.script("v2.6-cu124", image, gpus, nodes, "header line one\nheader line two")


def sbatch_options(text: str) -> dict[str, str]:
    """The #SBATCH lines as sbatch reads them: only before the first line that is neither blank nor a comment."""
    options = {}
    for line in text.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break
        if line.startswith("#SBATCH "):
            [word] = shlex.split(line[len("#SBATCH "):])
            key, _, value = word.partition("=")
            assert key.startswith("--") and key not in options, line
            options[key[2:]] = value
    return options


@needs_shellcheck
@pytest.mark.parametrize("gpus, nodes", [(1, 1), (8, 1), (8, 2), (4, 64)])
def test_shellcheck_passes(gpus, nodes, tmp_path):
    path = tmp_path / "smoke.sbatch"
    path.write_text(script(gpus, nodes))
    done = subprocess.run([SHELLCHECK, "--severity=style", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


@needs_shellcheck
def test_shellcheck_passes_the_script_each_node_runs(tmp_path):
    inner = cluster.Torchrun(8, 8, cluster.Shell(f"${slurm.RENDEZVOUS_VARIABLE}"), cluster.Shell("$SLURM_JOB_ID"))
    path = tmp_path / "node.sh"
    path.write_text("#!/bin/sh\n" + inner.script("SLURM_NODEID") + "\n")
    done = subprocess.run([SHELLCHECK, "--severity=style", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("gpus, nodes", [(1, 1), (8, 2)])
def test_sbatch_reads_every_option(gpus, nodes):
    text = script(gpus, nodes)
    assert text.startswith("#!/bin/bash\n")
    assert sbatch_options(text) == {
        "job-name": cluster.job_name("v2.6-cu124", nodes), "nodes": str(nodes), "ntasks-per-node": "1",
        "gpus-per-node": str(gpus), "time": "00:30:00", "output": f"{cluster.job_name('v2.6-cu124', nodes)}-%j.out"}
    assert smoke.TIMEOUT_S == 30 * 60  # --time above is the same limit `make smoke` gives a run


def test_no_sbatch_line_hides_after_a_command():
    text = script(8, 2)
    first_command = next(i for i, line in enumerate(text.splitlines()[1:]) if line.strip() and not line.startswith("#"))
    later = [line for line in text.splitlines()[1 + first_command:] if line.startswith("#SBATCH")]
    assert later == []  # sbatch would ignore them


def run_batch(text: str, tmp_path, nodes: list[str], pause: bool = False) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Run the batch script with stand-in srun/scontrol; returns the result and every srun argv. pause: scontrol
    waits after the first name, as a long list written in pieces does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "srun.calls"
    stubs = {
        "scontrol": '[ "$1 $2" = "show hostnames" ] && [ "$3" = "$SLURM_JOB_NODELIST" ] || exit 9\n'
                    + "".join(f"echo {n}\n" + ("sleep 0.3\n" if pause and i == 0 else "") for i, n in enumerate(nodes)),
        "srun": f'printf "%s\\0" "$@" >> {shlex.quote(str(calls))}; printf "\\n" >> {shlex.quote(str(calls))}\n'
                'echo "TORCHYARD_RENDEZVOUS=${TORCHYARD_RENDEZVOUS:-}"\n',
    }
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    batch = tmp_path / "smoke.sbatch"
    batch.write_text(text)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_NODELIST": "gpu-a[01-02]", "SLURM_JOB_ID": "4242"}
    done = subprocess.run(["bash", str(batch)], env=env, capture_output=True, text=True, timeout=30)
    argvs = [line.split("\0")[:-1] for line in calls.read_text().splitlines()] if calls.exists() else []
    return done, argvs


def test_one_node_runs_the_suite_in_the_pinned_image(tmp_path):
    done, [argv] = run_batch(script(8, 1), tmp_path, ["gpu-a01"])
    assert done.returncode == 0, done.stderr
    assert argv == [f"--container-image=registry.example.com:5000#ml/torchyard:{DIGEST}", "--no-container-mount-home",
                    *cluster.suite_command()]


def test_several_nodes_meet_on_the_first_node_of_the_allocation(tmp_path):
    done, [argv] = run_batch(script(8, 2), tmp_path, ["gpu-a01", "gpu-a02"])
    assert done.returncode == 0, done.stderr
    assert "TORCHYARD_RENDEZVOUS=gpu-a01:29400" in done.stdout  # exported for the tasks
    assert argv[:3] == ["--kill-on-bad-exit=1", f"--container-image=registry.example.com:5000#ml/torchyard:{DIGEST}",
                        "--no-container-mount-home"]
    assert argv[3:5] == ["/bin/sh", "-c"]
    for node_id, is_host in (("0", "1"), ("1", "0")):
        node = run_script(argv[5], SLURM_NODEID=node_id, SLURM_JOB_ID="4242", TORCHYARD_RENDEZVOUS="gpu-a01:29400")
        assert "--rdzv-endpoint=gpu-a01:29400" in node and "--rdzv-id=4242" in node
        assert f"--rdzv-conf=is_host={is_host},join_timeout=900,read_timeout=900" in node
        assert "--nnodes=2" in node and "--nproc-per-node=8" in node


def test_the_whole_node_list_is_read_before_the_first_is_taken(tmp_path):
    # `| head -n 1` would exit after the first name; scontrol's next write then dies of SIGPIPE and, under
    # pipefail, the whole job with it
    done, [argv] = run_batch(script(8, 2), tmp_path, ["gpu-a01", "gpu-a02", "gpu-a03"], pause=True)
    assert done.returncode == 0, done.stderr
    assert "TORCHYARD_RENDEZVOUS=gpu-a01:29400" in done.stdout


def test_a_failing_scontrol_stops_the_script(tmp_path):
    text = script(8, 2).replace("show hostnames", "show hostnamez")  # the stand-in fails as scontrol would
    done, argvs = run_batch(text, tmp_path, ["gpu-a01"])
    assert done.returncode != 0 and argvs == []  # set -euo pipefail: no srun with an empty rendezvous


def make_slurm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "slurm", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_make_slurm_prints_the_script():
    done = make_slurm("GPUS=4", "NODES=2", "REGISTRY=127.0.0.1:5000")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("#!/bin/bash\n#SBATCH --job-name=torchyard-smoke-v2-6-cu124-2nodes\n")
    [image_line] = [line for line in done.stdout.splitlines() if line.startswith("image=")]
    assert shlex.split(image_line) == ["image=127.0.0.1:5000#torchyard:v2.6-cu124"] and "NOT pinned" in done.stdout


@pytest.mark.parametrize("args, says", [
    (["TAG=all"], "one TAG, not 'all'"),
    (["GPUS=1.5"], "GPUS='1.5'"),
    (["NODES=513"], "from 1 to 512"),
])
def test_bad_requests_are_refused_with_nothing_on_stdout(args, says):
    done = make_slurm(*args, "REGISTRY=127.0.0.1:5000")
    assert done.returncode == 2 and done.stdout == "" and says in done.stderr
