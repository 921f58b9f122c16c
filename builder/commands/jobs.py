"""The commands that hand a tag to other engines: Kubernetes manifests, an sbatch script, a devcontainer.json and the
CI workflow.
"""

from __future__ import annotations

import sys
from pathlib import Path

from builder import inputs, layout
from builder.commands.output import INVALID, fail, say
from builder.jobs import ci, cluster, devcontainer, k8s, slurm
from builder.matrix.types import Matrix


def cluster_jobs(matrix: Matrix, args) -> list[cluster.Job]:
    """A job per tag for k8s and slurm; TAG=all: every tag pushed to a registry."""
    tags = [spec.tag for spec in matrix.select(args.tag)]
    if args.tag == "all":
        pushed = cluster.pushed(tags, args.digests)
        left_out = [tag for tag in tags if tag not in pushed]
        if left_out:
            print(f"torchyard: left out, never pushed: {', '.join(left_out)}", file=sys.stderr)
        tags = pushed
    jobs = [cluster.job(tag, args.registry, args.digests, args.gpus, args.nodes, args.command) for tag in tags]
    if args.key:  # KEY=: nothing is printed unless each job's digest has attestations that verify with it
        from builder.attest import verify as attestations  # (imported here: see registry.cmd_sbom)
        for job in jobs:
            attestations.require(job.image.reference, job.image.digest, args.key, say=lambda line: fail(line, 0))
    return jobs


def cmd_k8s(matrix: Matrix, args) -> int:
    documents = [k8s.dump(k8s.manifests(job.tag, job.image, job.gpus, job.nodes), job.header)
                 for job in cluster_jobs(matrix, args)]
    sys.stdout.write("---\n".join(documents))
    return 0


def cmd_slurm(matrix: Matrix, args) -> int:
    if args.tag == "all":
        return fail("slurm prints one sbatch script: give one TAG, not 'all'", INVALID)
    [job] = cluster_jobs(matrix, args)
    sys.stdout.write(slurm.script(job.tag, job.image, job.gpus, job.nodes, job.header))
    return 0


def cmd_devcontainer(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    if len(specs) != 1:
        return fail("devcontainer writes one devcontainer.json: give one TAG, not 'all'", INVALID)
    tag = specs[0].tag
    path = devcontainer.target(args.devcontainer_dir, tag)
    if args.devcontainer_dir is None:
        inputs.folder(path.parent, "DEVCONTAINER_DIR")  # the default folder: nothing else may stand there
    img = devcontainer.image(tag, args.repo, args.registry, args.digests)
    changed = devcontainer.write(path, devcontainer.text(tag, img))
    say(f"{'wrote' if changed else 'unchanged:'} {path}: {tag} from {img.note}")
    where = path.absolute()
    project = where.parents[2] if where.parents[1].name == devcontainer.FOLDER else Path("<your project>")
    say(f"open it: VS Code on {project} (Reopen in Container), or "
        f"devcontainer up --workspace-folder {project} --config {path}")
    return 0


def cmd_ci(matrix: Matrix, args) -> int:
    path = ci.WORKFLOW
    if args.check:
        if not path.is_file() or path.read_text() != ci.text(matrix):
            return fail(f"{path.relative_to(layout.ROOT)} differs from a fresh `make ci` of matrix.yaml and the locks; "
                        "run `make ci` and commit", 1)
        say(f"{path.relative_to(layout.ROOT)} matches matrix.yaml and the locks")
        return 0
    changed = ci.write(matrix)
    tags = ci.buildable(matrix)
    say(f"{'wrote' if changed else 'unchanged:'} {path.relative_to(layout.ROOT)}: {len(tags)} buildable tag(s) of "
        f"{len(matrix.specs)} (those with current locks)")
    return 0
