"""ImageSpec -> images/<tag>/ (the Dockerfile and every file its build context needs).

Decisions live here; templates/Dockerfile.j2 only loops over what context() gives it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import jinja2

from builder.compat import cudnn_number
from builder.matrix import PYPI_INDEX, ImageSpec
from builder.network import TORCH_INDEX

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
IMAGES = ROOT / "images"
VENV = "/opt/venv"
SHARE = "/usr/share/torchyard"
BUILD_INPUTS = "/etc/torchyard-build"  # exists in the install stage only
TORCH_INDEX_ARG = "TORCH_INDEX_URL"
BASE_ID_ARG = "TORCHYARD_BASE_ID"  # the base image's ID, for the manifest; builder/build.py passes it
LABEL_PREFIX = "io.torchyard"
SMOKE_TESTS = ROOT / "smoke_tests"  # shipped in every image; build.prepare_context adds it to the context
# Written by `make lock` (builder/lock.py) and `make push`, not by render: render leaves them alone.
LOCK_FILE, WORKSPACE_LOCK_FILE = "requirements.lock", "requirements-workspace.lock"
NOT_RENDERED = (LOCK_FILE, WORKSPACE_LOCK_FILE)
# What the smoke suite needs beside torch: NVML, to read the driver version even where CUDA cannot start.
SMOKE_REQUIREMENTS = ["nvidia-ml-py==13.615.71"]
# The workspace: JupyterLab with a kernel and the common scientific libraries, from the configured index
# (PyPI or the user's mirror), never from the PyTorch wheel index. Installed in a step after torch's, so
# changing them reuses the cached torch step. Every pin has a cp311 manylinux x86_64 wheel; numpy 2.x is
# what torch >= 2.3 is built against (torchvision pulls numpy anyway: pinning it here makes it one version).
WORKSPACE_REQUIREMENTS = [
    "jupyterlab==4.6.6",
    "ipykernel==7.4.0",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "matplotlib==3.11.2",
]
# tini: PID 1 that forwards signals and reaps; openssh-server: key-only SSH (host keys made at first start).
WORKSPACE_APT_PACKAGES = ["tini", "openssh-server"]
USER, UID, GID = "torchyard", 1000, 1000  # the default non-root user; NB_UID/NB_GID change the ids at start
HOME = f"/home/{USER}"
WORKSPACE = "/workspace"
JUPYTER_PORT, SSH_PORT = 8888, 22
# Files the image carries: template file -> path in the image.
WORKSPACE_FILES = {
    "entrypoint.py": "/usr/local/bin/torchyard-entrypoint",
    "healthcheck.py": "/usr/local/bin/torchyard-healthcheck",
    "sshd_config": "/etc/ssh/sshd_config.d/torchyard.conf",
    "jupyter_server_config.py": "/etc/jupyter/jupyter_server_config.py",
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def apt_packages(spec: ImageSpec) -> list[str]:
    packages = ["ca-certificates", "python3", "python3-venv"]
    if spec.devel:
        packages += ["build-essential", "python3-dev"]  # nvcc's host compiler and Python headers
    return packages


def requirements(spec: ImageSpec) -> list[str]:
    # Wheels on the PyTorch index carry the variant as a local version (2.6.0+cu118); PyPI's carry none.
    local = "" if spec.index == PYPI_INDEX else f"+{spec.cuda_variant}"
    reqs = [f"torch=={spec.torch}{local}", f"torchvision=={spec.torchvision}{local}"]
    if spec.nvcc:
        reqs += [f"{package}=={version}" for package, version in spec.nvcc.packages]
    return reqs + SMOKE_REQUIREMENTS + list(spec.extra_packages)


def workspace_requirements(spec: ImageSpec) -> list[str]:
    return list(WORKSPACE_REQUIREMENTS)


# What apt and dpkg leave behind that differs from one build to the next (logs with times, backups of
# the status file, ldconfig's cache of file times) or is useless in an image (package lists).
APT_LEFTOVERS = ["/var/lib/apt/lists/*", "/var/cache/apt/*.bin", "/var/log/apt", "/var/log/dpkg.log", "/var/log/alternatives.log",
                 "/var/cache/ldconfig/aux-cache", "/var/cache/debconf/*-old", "/var/lib/dpkg/*-old"]


def site_packages(spec: ImageSpec) -> str:
    return f"{VENV}/lib/python{spec.python}/site-packages"


def env(spec: ImageSpec) -> list[tuple[str, str]]:
    path = f"{VENV}/bin:$PATH"
    values = [("VIRTUAL_ENV", VENV)]
    if spec.nvcc:
        cuda_home = f"{site_packages(spec)}/{spec.nvcc.home}"
        values.append(("CUDA_HOME", cuda_home))
        path = f"{VENV}/bin:{cuda_home}/bin:$PATH"
    return values + [
        ("PATH", path),
        ("PYTHONUNBUFFERED", "1"),
        # Downloaded weights land in the workspace volume, so they outlive the container.
        ("TORCH_HOME", f"{WORKSPACE}/.cache/torch"),
        ("HF_HOME", f"{WORKSPACE}/.cache/huggingface"),
        # Ask the NVIDIA container runtime for the driver's compute libraries and nvidia-smi.
        ("NVIDIA_VISIBLE_DEVICES", "all"),
        ("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"),
    ]


def facts(spec: ImageSpec) -> dict:
    """What the image claims (labels) and check_image.py verifies at build time."""
    return {
        "tag": spec.tag,
        "torch": spec.torch,
        "torchvision": spec.torchvision,
        "cuda": spec.cuda,
        "cuda_runtime": spec.cuda_runtime,
        "cudnn": spec.cudnn,
        "cudnn_number": cudnn_number(spec.cudnn) if spec.cudnn else None,  # as torch.backends.cudnn.version() says it
        "nccl": spec.nccl,
        "python": spec.python,
        "archs": list(spec.archs) if spec.archs else None,
        "min_driver": spec.min_driver,
        "toolkit_driver": spec.toolkit_driver,
        "nvcc": asdict(spec.nvcc) if spec.nvcc else None,
        "base": spec.base.ref,
        "index": spec.index,
    }


def labels(spec: ImageSpec) -> list[tuple[str, str]]:
    unknown = "not recorded"
    return [
        ("org.opencontainers.image.title", "torchyard"),
        ("org.opencontainers.image.version", spec.tag),
        ("org.opencontainers.image.description", f"PyTorch {spec.torch} with CUDA {spec.cuda}, Python {spec.python}"),
        (f"{LABEL_PREFIX}.torch", spec.torch),
        (f"{LABEL_PREFIX}.torchvision", spec.torchvision),
        (f"{LABEL_PREFIX}.cuda", spec.cuda),
        (f"{LABEL_PREFIX}.cudnn", spec.cudnn or unknown),
        (f"{LABEL_PREFIX}.nccl", spec.nccl or unknown),
        (f"{LABEL_PREFIX}.python", spec.python),
        (f"{LABEL_PREFIX}.driver.min", spec.min_driver),
        (f"{LABEL_PREFIX}.archs", " ".join(spec.archs) if spec.archs else unknown),
        (f"{LABEL_PREFIX}.base", spec.base.ref),
    ]


def context(spec: ImageSpec) -> dict:
    build_args, index = [], []
    if spec.index != PYPI_INDEX:
        build_args.append({"name": TORCH_INDEX_ARG, "default": f"{TORCH_INDEX}/{spec.cuda_variant}"})
        index = ["--index-url", f'"${TORCH_INDEX_ARG}"']
    pip = [f"{VENV}/bin/pip", "install", "--no-cache-dir", "--disable-pip-version-check"]
    locked = ["--no-compile", "--require-hashes", "--no-deps", "--only-binary=:all:"]
    index_note = "PyPI wheel" if spec.index == PYPI_INDEX else f"PyTorch wheel index, {spec.cuda_variant}"
    base_note = f"Debian {spec.base.suite}" + ("" if spec.base.is_local else f" ({spec.base.ref})")
    return {
        "tag": spec.tag,
        "torch": spec.torch,
        "cuda": spec.cuda,
        "python": spec.python,
        "index_note": index_note,
        "base_note": base_note,
        "base_image": spec.base.image,
        "apt_packages": apt_packages(spec),
        "apt_leftovers": APT_LEFTOVERS,
        "build_args": build_args,
        "build_inputs_dir": BUILD_INPUTS,
        # Both steps install exactly their lock (images/<tag>/requirements*.lock, made by `make lock`), each
        # artifact's sha256 checked. --no-compile, then compileall once after the second step with hash-based
        # .pyc: pip's .pyc embed each source's mtime (the time of extraction), so two builds would differ in
        # every .pyc; unchecked-hash ones do not, and a fixed hash seed keeps set constants in one order.
        "pip_install": [*pip, *locked, *index, "-r", f"/tmp/{LOCK_FILE}"],
        "workspace_pip_install": [*pip, *locked, "-r", f"/tmp/{WORKSPACE_LOCK_FILE}"],
        "compile": ["PYTHONHASHSEED=0", f"{VENV}/bin/python", "-m", "compileall", "-q", "-f", "-j", "0",
                    "--invalidation-mode", "unchecked-hash", f"{VENV}/lib"],
        "workspace_apt_packages": list(WORKSPACE_APT_PACKAGES),
        # Made at first start by the entrypoint, so no two containers share one and no layer holds one.
        "ssh_host_keys": "/etc/ssh/ssh_host_*",
        "user": USER, "uid": UID, "gid": GID, "home": HOME,
        "workspace": WORKSPACE,
        "workspace_files": [{"source": f"workspace/{name}", "target": target} for name, target in WORKSPACE_FILES.items()],
        "executables": [WORKSPACE_FILES["entrypoint.py"], WORKSPACE_FILES["healthcheck.py"]],
        "ports": [JUPYTER_PORT, SSH_PORT],
        "healthcheck": ["--interval=5s", "--timeout=3s", "--start-period=60s", "--retries=3"],
        "healthcheck_command": [WORKSPACE_FILES["healthcheck.py"]],
        # tini -g: a signal goes to the whole process group (Jupyter and the sshd the entrypoint started).
        "entrypoint": ["tini", "-g", "--", WORKSPACE_FILES["entrypoint.py"]],
        "command": ["jupyter", "lab"],
        "venv": VENV,
        "env": env(spec),
        "share_dir": SHARE,
        "base_id_arg": BASE_ID_ARG,
        "smoke_tests_dir": f"{site_packages(spec)}/smoke_tests",
        "labels": labels(spec),
    }


def render(spec: ImageSpec) -> dict[str, str]:
    """Relative path -> file content of the tag's build context."""
    return {
        "Dockerfile": _env.get_template("Dockerfile.j2").render(context(spec)),
        "requirements.txt": "".join(f"{r}\n" for r in requirements(spec)),
        "requirements-workspace.txt": "".join(f"{r}\n" for r in workspace_requirements(spec)),
        **{f"workspace/{name}": (TEMPLATES / name).read_text() for name in WORKSPACE_FILES},
        "torchyard/spec.json": json.dumps(facts(spec), indent=2) + "\n",
        "torchyard/check_image.py": (TEMPLATES / "check_image.py").read_text(),
        "torchyard/manifest.py": (TEMPLATES / "manifest.py").read_text(),
    }


def write(spec: ImageSpec, images: Path = IMAGES) -> bool:
    """Write images/<tag>/ exactly as rendered; True when anything changed."""
    files = render(spec)
    target = images / spec.tag
    changed = diff(spec, images) != []
    if changed:
        for path in sorted(target.rglob("*"), reverse=True) if target.exists() else []:
            rel = str(path.relative_to(target))
            if path.is_file() and rel not in files and rel not in NOT_RENDERED:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        for rel, content in files.items():
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    return changed


def diff(spec: ImageSpec, images: Path = IMAGES) -> list[str]:
    """Files of images/<tag>/ that differ from a fresh render (missing, changed or extra)."""
    target = images / spec.tag
    files = render(spec)
    on_disk = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()} if target.exists() else set()
    on_disk -= set(NOT_RENDERED)
    problems = [f"{spec.tag}/{rel}" for rel, text in files.items()
                if rel not in on_disk or (target / rel).read_text() != text]
    return problems + [f"{spec.tag}/{rel} (not rendered)" for rel in sorted(on_disk - files.keys())]


def stale(tags: list[str], images: Path = IMAGES) -> list[Path]:
    """Folders under images/ for tags no longer in the matrix."""
    if not images.exists():
        return []
    return sorted(p for p in images.iterdir() if p.is_dir() and p.name not in tags)
