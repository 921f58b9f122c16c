"""ImageSpec -> images/<tag>/: what varies by tag (the Dockerfile, the requirement inputs, spec.json).

The files every image carries are not copied here: builder/image/context.py adds them to each build context from
layout.carried(), and the Dockerfile copies each from there. Decisions live here and in builder/image/steps.py (each
RUN of the final stage); templates/Dockerfile.j2 only loops over what context() gives it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import jinja2

from builder import files, layout
from builder.files import write_atomic
from builder.image import steps
from builder.image.base import SOURCE_DATE_EPOCH
from builder.inputs import InputError
from builder.layout import SHARE, VENV, WORKSPACE, site_packages
from builder.matrix.compat import cudnn_number
from builder.matrix.types import PYPI_INDEX, ImageSpec
from builder.wheels import serve

MAX_RENDERED_BYTES = 2**20  # the largest rendered file, the Dockerfile, is ~10 KB
BASE_ID_ARG = "TORCHYARD_BASE_ID"  # the base image's ID, for the manifest; builder/image/build.py passes it
# What the smoke suite needs beside torch: NVML, to read the driver version even where CUDA cannot start.
SMOKE_REQUIREMENTS = ["nvidia-ml-py==13.615.71"]
# The workspace: JupyterLab with a kernel and the common scientific libraries, from the configured index
# (PyPI or the user's mirror), never from the PyTorch wheel index. Installed in a step after torch's, so
# changing them reuses the cached torch step. Every pin has a cp311 manylinux x86_64 wheel. numpy is torch's step's
# (torchvision needs it): its lock holds the newest for the image's Python, which the workspace's lock is held to.
WORKSPACE_REQUIREMENTS = [
    "jupyterlab==4.6.6",
    "ipykernel==7.4.0",
    "pandas==3.1.1",
    "matplotlib==3.11.2",
]
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(layout.TEMPLATES),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def requirements(spec: ImageSpec) -> list[str]:
    # Wheels on the PyTorch index carry the variant as a local version (2.6.0+cu118); PyPI's carry none.
    local = "" if spec.index == PYPI_INDEX else f"+{spec.cuda_variant}"
    reqs = [f"torch=={spec.torch}{local}", f"torchvision=={spec.torchvision}{local}"]
    if spec.torchaudio:
        reqs.append(f"torchaudio=={spec.torchaudio}{local}")  # from the same index as torch: a build for its CUDA
    if spec.nvcc and spec.nvcc.source == "pypi":
        reqs += [f"{package}=={version}" for package, version in spec.nvcc.packages]
    return reqs + SMOKE_REQUIREMENTS + list(spec.extra_packages)


def constrained(spec: ImageSpec) -> list[str]:
    """The roots of the pip constraints: what the torch stack is. image_files/constraints.py adds, transitively,
    every package these pin with == (triton, the nvidia-* CUDA wheels, sympy) at the locked versions."""
    roots = ["torch", "torchvision"] + (["torchaudio"] if spec.torchaudio else [])
    if spec.nvcc and spec.nvcc.source == "pypi":
        roots += [package for package, _ in spec.nvcc.packages]
    return roots


def workspace_requirements(spec: ImageSpec) -> list[str]:
    return list(WORKSPACE_REQUIREMENTS)


def env(spec: ImageSpec) -> list[tuple[str, str]]:
    path = f"{VENV}/bin:$PATH"
    values = [("VIRTUAL_ENV", VENV)]
    if spec.nvcc and spec.nvcc.source == "pypi":
        cuda_home = f"{site_packages(spec.python)}/{spec.nvcc.home}"
        values.append(("CUDA_HOME", cuda_home))
        path = f"{VENV}/bin:{cuda_home}/bin:$PATH"
    elif spec.nvcc:
        values.append(("CUDA_HOME", spec.nvcc.home))  # nvcc is /usr/bin/nvcc, already on PATH
    return values + [
        ("PATH", path),
        # pip (and uv) keep the torch stack as locked; see image_files/constraints.py and pip_guard.py.
        ("PIP_CONSTRAINT", layout.CONSTRAINTS),
        ("UV_CONSTRAINT", layout.CONSTRAINTS),
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
        "torchaudio": spec.torchaudio,  # null: the tag carries none
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
        "constrained": constrained(spec),
        "base": spec.base.ref,
        "index": spec.index,
        # the everyday tools and who runs them: check_image.py runs each tool's command as that user
        "user": layout.USER,
        "tools": {package: list(command) for package, command in steps.TOOLS.items()},
    }


def siblings(spec: ImageSpec) -> str:
    """matrix.json: every tag of the matrix with what decides where it runs, one line each (the image cannot know
    the rest of its matrix; smoke_tests/startup.py names the tags that would run where this one does not). The same
    for every tag, so it is not committed 31 times: builder/image/context.py makes it for each build context
    (layout.carried names it)."""
    entries = [json.dumps({**asdict(s), "archs": list(s.archs) if s.archs else None}) for s in spec.siblings]
    return "[\n" + ",\n".join(f"  {entry}" for entry in entries) + "\n]\n"


def labels(spec: ImageSpec) -> list[tuple[str, str]]:
    unknown = "not recorded"
    return [
        ("org.opencontainers.image.title", "torchyard"),
        ("org.opencontainers.image.version", spec.tag),
        ("org.opencontainers.image.description", f"PyTorch {spec.torch} with CUDA {spec.cuda}, Python {spec.python}"),
        (f"{layout.LABEL_PREFIX}.torch", spec.torch),
        (f"{layout.LABEL_PREFIX}.torchvision", spec.torchvision),
        *([(f"{layout.LABEL_PREFIX}.torchaudio", spec.torchaudio)] if spec.torchaudio else []),
        (f"{layout.LABEL_PREFIX}.cuda", spec.cuda),
        (f"{layout.LABEL_PREFIX}.cudnn", spec.cudnn or unknown),
        (f"{layout.LABEL_PREFIX}.nccl", spec.nccl or unknown),
        (f"{layout.LABEL_PREFIX}.python", spec.python),
        (f"{layout.LABEL_PREFIX}.driver.min", spec.min_driver),
        (f"{layout.LABEL_PREFIX}.archs", " ".join(spec.archs) if spec.archs else unknown),
        (f"{layout.LABEL_PREFIX}.base", spec.base.ref),
    ]


def context(spec: ImageSpec, images: Path = layout.IMAGES) -> dict:
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
        "epoch": SOURCE_DATE_EPOCH,
        "wheels": serve.URL,
        "locks": list(layout.LOCKS),
        "rootfs": steps.ROOTFS,
        "install_steps": steps.install_steps(spec, images),
        "env": env(spec),
        "user_step": steps.user_step(spec),
        "check_step": steps.Step("Build-time facts that need no GPU: a wrong image fails here instead of at its user.",
                                 steps.stamped(f"python {SHARE}/check_image.py {SHARE}/{layout.SPEC}"),
                                 copies=("image",)),
        "workspace": WORKSPACE,
        "ports": [layout.JUPYTER_PORT, layout.SSH_PORT],
        "healthcheck": ["--interval=5s", "--timeout=3s", "--start-period=60s", "--retries=3"],
        "healthcheck_command": [layout.HEALTHCHECK],
        "base_id_arg": BASE_ID_ARG,
        "manifest_step": steps.Step(f"What the image is made of (packages with versions, lock hashes, base): "
                                    f"{SHARE}/manifest.json, and the pip constraints made from the locks "
                                    f"(PIP_CONSTRAINT, UV_CONSTRAINT): {layout.CONSTRAINTS}.",
                                    steps.stamped(f"python {SHARE}/manifest.py {SHARE}",
                                                  f"python {SHARE}/constraints.py {SHARE}")),
        "labels": labels(spec),
        # tini -g: a signal goes to the whole process group (Jupyter and the sshd the entrypoint started).
        # By absolute path: Docker looks a bare name up on the image's PATH.
        "entrypoint": ["/usr/bin/tini", "-g", "--", layout.ENTRYPOINT],
        "command": ["jupyter", "lab"],
    }


def render(spec: ImageSpec, images: Path = layout.IMAGES) -> dict[str, str]:
    """Relative path -> content of what is the tag's own in images/<tag>/ (the locks aside: `make lock`; the
    Dockerfile's layers follow torch's lock, so it is rendered again after a lock changes)."""
    return {
        layout.DOCKERFILE: _env.get_template("Dockerfile.j2").render(context(spec, images)),
        layout.REQUIREMENTS: "".join(f"{r}\n" for r in requirements(spec)),
        layout.WORKSPACE_REQUIREMENTS: "".join(f"{r}\n" for r in workspace_requirements(spec)),
        layout.SPEC: json.dumps(facts(spec), indent=2) + "\n",
        **steps.devel_files(spec),
    }


def write(spec: ImageSpec, images: Path = layout.IMAGES) -> bool:
    """Write images/<tag>/ exactly as rendered; True when anything changed. Nothing is written through a symlink:
    one standing in the folder where a rendered file or folder goes is replaced (images/<tag>/ itself being one is
    refused), so a committed link cannot make render write outside images/<tag>/."""
    rendered = render(spec, images)
    target = images / spec.tag
    changed = diff(spec, images) != []
    if changed:
        if target.is_symlink():
            raise InputError(f"{target} is a symlink; render writes images/<tag>/ as a folder of its own: "
                             "remove the link and render again")
        for path in sorted(target.rglob("*"), reverse=True) if target.exists() else []:
            rel = str(path.relative_to(target))
            if rel not in layout.RECORDED and (path.is_symlink() or (path.is_file() and rel not in rendered)):
                path.unlink()  # a link is never render's own: removed, whatever it points at
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        for rel, content in rendered.items():
            write_atomic(target / rel, content)
    return changed


def _text(path: Path) -> str | None:
    """A rendered file's text as it is on disk; None where no regular file of its own stands (a symlink, a FIFO)."""
    try:
        return files.read_bounded(path, MAX_RENDERED_BYTES, follow_symlinks=False).decode("utf-8")
    except (OSError, ValueError):  # missing, refused, not UTF-8: it differs from what render makes
        return None


def diff(spec: ImageSpec, images: Path = layout.IMAGES) -> list[str]:
    """Files of images/<tag>/ that differ from a fresh render (missing, changed or extra)."""
    target = images / spec.tag
    rendered = render(spec, images)
    on_disk = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file() or p.is_symlink()} \
        if target.exists() else set()
    on_disk -= set(layout.RECORDED)
    problems = [f"{spec.tag}/{rel}" for rel, text in rendered.items()
                if rel not in on_disk or _text(target / rel) != text]
    return problems + [f"{spec.tag}/{rel} (not rendered)" for rel in sorted(on_disk - rendered.keys())]


def stale(tags: list[str], images: Path = layout.IMAGES) -> list[Path]:
    """Folders under images/ for tags no longer in the matrix."""
    if not images.exists():
        return []
    return sorted(p for p in images.iterdir() if p.is_dir() and p.name not in tags)
