"""`make -s slurm TAG=… [GPUS=n] [NODES=m]`: the smoke test as an sbatch script on stdout (`| sbatch`).

Containers through pyxis/enroot (`srun --container-image=…`). One node: the whole suite on the node's GPUs.
Several nodes: one task per node running torchrun, whose c10d rendezvous meets on the first node of the
allocation (`scontrol show hostnames "$SLURM_JOB_NODELIST"`). Every value written into the script is shell-quoted.
"""

from __future__ import annotations

import shlex

from builder.host import smoke
from builder.jobs.cluster import RENDEZVOUS_PORT, Image, Shell, Torchrun, job_name, suite_command

RENDEZVOUS_VARIABLE = "TORCHYARD_RENDEZVOUS"  # first node:port, worked out by the batch script, read by each task


def _time(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def sbatch_options(tag: str, gpus: int, nodes: int) -> list[tuple[str, str]]:
    name = job_name(tag, nodes)
    return [
        ("job-name", name),
        ("nodes", str(nodes)),
        ("ntasks-per-node", "1"),  # one task per node: the suite, or torchrun (which starts a process per GPU)
        ("gpus-per-node", str(gpus)),
        ("time", _time(smoke.TIMEOUT_S)),  # a hung run is ended instead of holding the nodes
        ("output", f"{name}-%j.out"),
    ]


def script(tag: str, image: Image, gpus: int, nodes: int, header: str) -> str:
    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH --{key}={shlex.quote(value)}" for key, value in sbatch_options(tag, gpus, nodes)]
    lines += [f"# {line}" for line in header.splitlines()]
    lines += ["set -euo pipefail", "", f"image={shlex.quote(image.enroot)}"]
    # Not the home folder: the image's own environment only (a user's ~/.local would shadow its packages).
    srun = ['srun', '--container-image="$image"', "--no-container-mount-home"]
    if nodes == 1:
        lines.append(" ".join(srun + [shlex.join(suite_command())]))
        return "\n".join(lines) + "\n"
    run = Torchrun(nodes=nodes, gpus=gpus, endpoint=Shell(f"${RENDEZVOUS_VARIABLE}"),
                   rendezvous_id=Shell("$SLURM_JOB_ID"))
    lines += [
        # sed reads the whole list: `head -n 1` may exit before scontrol has written it all, and under pipefail
        # scontrol's SIGPIPE would then fail the job
        'first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)',
        f'export {RENDEZVOUS_VARIABLE}="$first_node:{RENDEZVOUS_PORT}"',
        "# --kill-on-bad-exit: a node that fails ends the others at once rather than leaving them waiting.",
        "# The single-quoted script is expanded by each node's shell (its own SLURM_NODEID), not here:",
        "# shellcheck disable=SC2016",
        " ".join(srun[:1] + ["--kill-on-bad-exit=1"] + srun[1:]) + " \\",
        "  /bin/sh -c " + shlex.quote(run.script("SLURM_NODEID")),
    ]
    return "\n".join(lines) + "\n"
