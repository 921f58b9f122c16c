"""Where things are: in the repository, in a tag's folder, and inside an image. Names only, no behaviour
beyond joining them, so every module can import this one without pulling in the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# ---------------------------------------------------------------- the repository

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "matrix.yaml"
TEMPLATES = ROOT / "templates"  # Jinja templates only
IMAGE_FILES = ROOT / "image_files"  # the files every image carries, kept once (see carried())
SMOKE_TESTS = ROOT / "smoke_tests"  # the smoke suite: runs inside every image, and on any host with torch
IMAGES = ROOT / "images"  # what varies by tag: images/<tag>/
REPORTS = ROOT / "reports"
DIGESTS = ROOT / "digests"
REGISTRY_NAME = "torchyard"  # the repository name in every registry: <REGISTRY>/torchyard:<tag>


def cache_dir(env: dict[str, str] | None = None) -> Path:
    """torchyard's cache on this machine (the wheel cache, uv's resolver cache): TORCHYARD_CACHE, else the XDG cache
    folder."""
    env = os.environ if env is None else env
    if env.get("TORCHYARD_CACHE"):
        return Path(env["TORCHYARD_CACHE"])
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torchyard"

# ---------------------------------------------------------------- a tag's folder, images/<tag>/

DOCKERFILE = "Dockerfile"
SPEC = "spec.json"  # what the image claims; check_image.py verifies it at build time
REQUIREMENTS = "requirements.txt"  # torch's pip step: what `make lock` resolves
WORKSPACE_REQUIREMENTS = "requirements-workspace.txt"  # the workspace's pip step
# Written by `make lock` (builder/wheels/lock.py), never by render.
LOCK_FILE, WORKSPACE_LOCK_FILE = "requirements.lock", "requirements-workspace.lock"
LOCKS = (LOCK_FILE, WORKSPACE_LOCK_FILE)  # in install order
ARCHS_FILE = "archs.json"  # written by `make fetch` (builder/wheels/archs.py): the GPU archs read from the locked torch wheel
RECORDED = (*LOCKS, ARCHS_FILE)  # what images/<tag>/ holds that render does not write, and leaves alone


def tag_dir(tag: str, images: Path = IMAGES) -> Path:
    return images / tag


# ---------------------------------------------------------------- inside the image

VENV = "/opt/venv"
SHARE = "/usr/share/torchyard"  # spec.json, matrix.json, the locks, manifest.json, the build-time checks
CONSTRAINTS = f"{SHARE}/constraints.txt"  # the pip constraints made at build time from the locks
WORKSPACE = "/workspace"
USER, UID, GID = "torchyard", 1000, 1000  # the default non-root user; NB_UID/NB_GID change the ids at start
HOME = f"/home/{USER}"
JUPYTER_PORT, SSH_PORT = 8888, 22
ENTRYPOINT = "/usr/local/bin/torchyard-entrypoint"
# Its source: also the grammar of the settings the image checks at start that the host checks first (PUBLIC_KEY:
# builder/host/workspace.py loads this file, which imports only the standard library).
ENTRYPOINT_SOURCE = "image_files/entrypoint.py"
HEALTHCHECK = "/usr/local/bin/torchyard-healthcheck"
LABEL_PREFIX = "io.torchyard"


def site_packages(python: str) -> str:
    return f"{VENV}/lib/python{python}/site-packages"


@dataclass(frozen=True)
class Carried:
    """A file or folder every image carries, and where it goes."""

    source: str  # its path in the build context: relative to the repository root, unless generated
    target: str  # absolute path in the image
    executable: bool = False
    generated: bool = False  # made for each build (builder/image/context.py says from what), not a repository file


def carried(python: str) -> tuple[Carried, ...]:
    """The one list of what every image carries beside its tag's folder. The build context gets each at its
    source path (builder/image/context.py) with the mode given here, and the Dockerfile copies each to its target:
    no other route."""
    site = site_packages(python)
    return (
        Carried("image_files/check_image.py", f"{SHARE}/check_image.py"),
        Carried("image_files/manifest.py", f"{SHARE}/manifest.py"),
        Carried("image_files/constraints.py", f"{SHARE}/constraints.py"),
        # Every tag of the matrix, a line each (smoke_tests/startup.py names the tags that would run where this
        # one does not): the same for every tag, made from matrix.yaml for each build rather than committed.
        Carried("matrix.json", f"{SHARE}/matrix.json", generated=True),
        # pip's explanation of the constraints, loaded by a .pth at start (inert outside pip)
        Carried("image_files/pip_guard.py", f"{site}/torchyard_pip_guard.py"),
        Carried("image_files/torchyard-pip-guard.pth", f"{site}/torchyard-pip-guard.pth"),
        Carried("smoke_tests", f"{site}/smoke_tests"),  # `python -m smoke_tests`
        Carried(ENTRYPOINT_SOURCE, ENTRYPOINT, executable=True),
        Carried("image_files/healthcheck.py", HEALTHCHECK, executable=True),
        Carried("image_files/sshd_config", "/etc/ssh/sshd_config.d/torchyard.conf"),
        # login shells (SSH, tmux, bash -l): the venv back on PATH after Debian's /etc/profile resets it
        Carried("image_files/profile.sh", "/etc/profile.d/torchyard.sh"),
        Carried("image_files/jupyter_server_config.py", "/etc/jupyter/jupyter_server_config.py"),
        # JupyterLab's settings overrides: defaults a user's own settings still change (docker-stacks ships the same)
        Carried("image_files/jupyterlab_overrides.json", f"{VENV}/share/jupyter/lab/settings/overrides.json"),
    )
