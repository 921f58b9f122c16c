"""`python -m builder <command>`: what every Make target calls. This module is the table of commands and the exit
status; the commands themselves are in builder/commands/, by what they act on (matrix.py, wheels.py, image.py,
host.py, registry.py, jobs.py).

Exit status: 0 done; 1 a build, engine or registry failure; 2 an invalid request: a malformed matrix, option,
setting or record, refused before any work (before the engine is contacted), with nothing written. The options
and the settings they read from the environment are declared in builder/options.py.
"""

from __future__ import annotations

import argparse

from builder import options
from builder.attest import AttestError
from builder.commands.host import cmd_doctor, cmd_run, cmd_smoke
from builder.commands.image import cmd_base, cmd_build, cmd_clean, cmd_size, cmd_verify
from builder.commands.jobs import cmd_ci, cmd_devcontainer, cmd_k8s, cmd_slurm
from builder.commands.matrix import cmd_list, cmd_matrix, cmd_render, cmd_report, cmd_validate
from builder.commands.output import INVALID, fail
from builder.commands.registry import cmd_pull, cmd_push, cmd_sbom, cmd_verify_image
from builder.commands.wheels import cmd_fetch, cmd_lock
from builder.host import gpu
from builder.image import base, engine, registry
from builder.inputs import InputError
from builder.matrix import compat
from builder.matrix.load import load
from builder.matrix.types import MatrixError
from smoke_tests import nvml

COMMANDS = {
    "list": (cmd_list, "every tag in the matrix with its derived versions"),
    "validate": (cmd_validate, "check matrix.yaml (and TAG) against the compatibility facts"),
    "render": (cmd_render, "regenerate images/<tag>/ for every tag (--check: only compare)"),
    "fetch": (cmd_fetch, "download every artifact TAG=a,b,… (or all)'s locks name into the wheel cache, sha256 checked (builds read it)"),
    "base": (cmd_base, "make or pull the base image(s) TAG needs"),
    "build": (cmd_build, "validate, render and build TAG (default: the matrix's default; 'all': every tag)"),
    "smoke": (cmd_smoke, "run the smoke suite inside <repo>:TAG (built first when missing); report in reports/<tag>/"),
    "run": (cmd_run, "start TAG's workspace: JupyterLab on 8888, SSH on 2222 with your key, ./workspace mounted"),
    "lock": (cmd_lock, "resolve TAG=a,b,… (or all)'s Python packages with uv to images/<tag>/requirements*.lock (versions, wheel, sha256)"),
    "size": (cmd_size, "size report of <repo>:TAG (total, layers, largest packages) in reports/<tag>/; checks size_budget"),
    "verify": (cmd_verify, "rebuild TAG without cache and compare package sets and file contents with <repo>:TAG"),
    "push": (cmd_push, "push <repo>:TAG to REGISTRY as <REGISTRY>/torchyard:TAG; record its digest in digests/<tag>.json"),
    "pull": (cmd_pull, "pull <REGISTRY>/torchyard:TAG when its digest is the one digests/<tag>.json records"),
    "sbom": (cmd_sbom, "write <repo>:TAG's CycloneDX 1.6 SBOM to reports/<tag>/sbom.cdx.json"),
    "verify-image": (cmd_verify_image, "check TAG's attestations in REGISTRY with KEY (a public key); say what they say"),
    "clean": (cmd_clean, "remove the <repo>:* images"),
    "matrix": (cmd_matrix, "for TAG=a,b (default: all): lock check, build, size, smoke; then the report (resumes)"),
    "report": (cmd_report, "reports/matrix.json, matrix.md and index.html from what reports/ holds"),
    "doctor": (cmd_doctor, "which tags run on this host and why not: driver, GPUs, Docker's GPU runtime, /dev/shm, disk"),
    "k8s": (cmd_k8s, "print Kubernetes manifests that smoke-test TAG on GPUS per node and NODES nodes (| kubectl apply -f -)"),
    "slurm": (cmd_slurm, "print an sbatch script (pyxis/enroot) that smoke-tests TAG on GPUS per node and NODES nodes"),
    "devcontainer": (cmd_devcontainer, "write .devcontainer/<tag>/devcontainer.json (or DEVCONTAINER_DIR=): TAG's image "
                                       "in VS Code or the Dev Containers CLI, as make run starts it"),
    "ci": (cmd_ci, "write .github/workflows/images.yml: a job per buildable tag (--check: only compare)"),
}


def parser() -> argparse.ArgumentParser:
    return options.parser({name: help_ for name, (_, help_) in COMMANDS.items()})


def main(argv: list[str] | None = None) -> int:
    """One command, and its exit status (builder/__main__.py adds what ends the process: SIGTERM, its output's
    failures)."""
    args = parser().parse_args(argv)
    try:
        matrix = load(args.matrix, compat.load())
        args = options.settings(args)
        return COMMANDS[args.command][0](matrix, args)
    except MatrixError as e:
        count = len(e.problems)
        return fail(f"refused: {count} problem{'s' if count > 1 else ''}; nothing was rendered or built.\n"
                    + "\n".join(f"  {line}" for line in e.lines()), INVALID)
    except (InputError, gpu.GpuSettingError, nvml.RecordingError) as e:
        return fail(f"refused: {e}; nothing was done.", INVALID)
    except (registry.RegistryError, engine.EngineError, base.BaseError, AttestError) as e:
        return fail(str(e), 1)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
