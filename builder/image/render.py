"""ImageSpec -> images/<tag>/: what varies by tag (the Dockerfile, the requirement inputs, spec.json).

The files every image carries are not copied here: builder/image/context.py adds them to each build context from
layout.carried(), and the Dockerfile copies each from there. Decisions live here; templates/Dockerfile.j2 only
loops over what context() gives it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

import jinja2

from builder import files, layout
from builder.files import write_atomic
from builder.image import layers
from builder.image.base import SOURCE_DATE_EPOCH
from builder.inputs import InputError
from builder.layout import GID, HOME, SHARE, UID, USER, VENV, WORKSPACE, site_packages
from builder.matrix.compat import cudnn_number
from builder.matrix.spec import PYPI_INDEX, ImageSpec
from builder.wheels import lock, serve

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
# tini: PID 1 that forwards signals and reaps; openssh-server: key-only SSH (host keys made at first start).
WORKSPACE_APT_PACKAGES = ["tini", "openssh-server"]

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(layout.TEMPLATES),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def apt_packages(spec: ImageSpec) -> list[str]:
    return ["ca-certificates", "python3", "python3-venv"]


# Every RUN ends by setting what it made or changed to this one time, so that two builds of one commit make the
# same bytes: a layer's tar holds each file's mtime. Files a step did not touch keep theirs (a package's own, or this
# one from an earlier step). The window starts 2 s before the step: file times lag the clock. What Docker mounts into
# every container (/etc/hosts, resolv.conf, /.dockerenv, …) is left alone, or the step would copy it into its layer.
STAMP = ("find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /.dockerenv -o -path /etc/mtab "
         "-o -path /etc/hosts -o -path /etc/hostname -o -path /etc/resolv.conf \\) -prune "
         f'-o -newermt "@$((start - 2))" -exec touch -h -d @{SOURCE_DATE_EPOCH} {{}} +')
# The build context's folder of trees, one per COPY: each copied to / as a whole, so every folder on the way to a
# file comes with the context's fixed time too (a COPY of a single file stamps the folders it creates with the
# build's time). builder/image/context.py lays them out from trees().
ROOTFS = "rootfs"


def stamped(*commands: str) -> tuple[str, ...]:
    """A RUN's commands, then the stamp of what they made (see STAMP)."""
    return ("start=$(date +%s)", *commands, STAMP)


@dataclass(frozen=True)
class Step:
    """One RUN of the final stage, after the trees it needs are copied in; `why` becomes its comment."""

    why: str
    commands: tuple[str, ...]  # stamped
    copies: tuple[str, ...] = ()  # names of trees (see trees()), each copied to /


def apt_install(packages: list[str], *then: str) -> tuple[str, ...]:
    return ("apt-get update", f"apt-get install -y --no-install-recommends {' '.join(packages)}", *then,
            f"rm -rf {' '.join(APT_LEFTOVERS)}")


# torch.compile: Inductor's CPU kernels are C++ built with g++ -fopenmp (libgomp comes with gcc) and include Python.h;
# Triton's GPU kernel launcher is C built with gcc against Python.h. libpython3-dev is the headers of the base's
# Python whatever its version (python3-dev would add python3.X-dev's config scripts and docs). libc6-dev comes with
# g++; it is named because Inductor needs the C library headers too.
COMPILE_APT_PACKAGES = ["g++", "libc6-dev", "libpython3-dev"]
# -devel: make and friends, and ninja, which torch.utils.cpp_extension needs for load()/load_inline() and uses to
# build setup.py extensions in parallel.
DEVEL_APT_PACKAGES = ["build-essential", "ninja-build"]
HOST_DRIVER_PACKAGE = "torchyard-host-driver"  # the placeholder for the driver libraries the host mounts
# Debian's CUDA toolkit ships the static CUDA libraries (~2 GB: cuBLAS, cuFFT, cuSPARSE, NPP, …), which extensions
# never link (torch.utils.cpp_extension links the shared ones). dpkg leaves them out; nvcc's default -cudart static
# needs libcudart_static.a, which stays (as does libcudadevrt.a, for -rdc device linking: not matched).
CUDA_STATIC_EXCLUDES = ["path-exclude=/usr/lib/x86_64-linux-gnu/lib*_static*.a",
                        "path-include=/usr/lib/x86_64-linux-gnu/libcudart_static.a"]
DPKG_EXCLUDES = "/etc/dpkg/dpkg.cfg.d/torchyard-cuda-static"
HOST_DRIVER_DIR = f"{SHARE}/devel/{HOST_DRIVER_PACKAGE}"  # the placeholder's package folder (DEBIAN/control)


def host_driver_control(spec: ImageSpec) -> str:
    """A Debian package that only Provides the driver libraries Debian's CUDA packages depend on (libcuda,
    libnvidia-ml): the NVIDIA container toolkit mounts the host's at run time, and a driver in the image would
    shadow it. The versions are the toolkit's own driver floor."""
    floor = spec.toolkit_driver or spec.min_driver
    provides = [name if name.startswith("libcuda-") else f"{name} (= {floor})" for name in spec.nvcc.host_driver_provides]
    return (f"Package: {HOST_DRIVER_PACKAGE}\nVersion: 1\nArchitecture: amd64\nMaintainer: torchyard\n"
            f"Provides: {', '.join(provides)}\n"
            "Description: the host's NVIDIA driver libraries, mounted at run time by the NVIDIA container toolkit\n")


def toolchain_steps(spec: ImageSpec) -> list[Step]:
    """torch.compile's compiler: the same for every tag of a base, so it comes before the Python environment."""
    return [Step("torch.compile: a C/C++ compiler with OpenMP and the C and Python headers (Inductor on the CPU, "
                 "Triton on a GPU)", stamped(*apt_install(COMPILE_APT_PACKAGES)))]


def devel_steps(spec: ImageSpec) -> list[Step]:
    """-devel's build tools, after torch's layers: a -devel tag shares every layer below with its runtime tag."""
    if not spec.nvcc:
        return []
    if spec.nvcc.source == "pypi":
        return [Step("-devel: build tools for CUDA extensions (nvcc is in the venv, from the "
                     f"{spec.nvcc.packages[0][0]} wheel)", stamped(*apt_install(DEVEL_APT_PACKAGES)))]
    package, version = spec.nvcc.packages[0]
    deb = f"/tmp/{HOST_DRIVER_PACKAGE}.deb"
    # the package's folder stays in the image (a few bytes): deleting what an earlier layer holds leaves a whiteout
    # stamped with the time of the deletion in the layer
    return [Step(
        f"-devel: nvcc {version} from Debian {spec.nvcc.suite}'s {spec.nvcc.component} {package}, without its static "
        "libraries, and the placeholder for the driver libraries the host mounts",
        stamped(f"dpkg-deb --build {HOST_DRIVER_DIR} {deb}",
                *apt_install([*DEVEL_APT_PACKAGES, deb, package], f"rm -f {deb}")),
        copies=("devel",))]


def devel_files(spec: ImageSpec) -> dict[str, str]:
    if not spec.nvcc or spec.nvcc.source != "debian":
        return {}
    return {f"devel/{HOST_DRIVER_PACKAGE}/DEBIAN/control": host_driver_control(spec),
            "devel/dpkg-cuda-static": "# torchyard: the static CUDA libraries are left out (see the Dockerfile)\n"
                                      + "".join(f"{line}\n" for line in CUDA_STATIC_EXCLUDES)}


def requirements(spec: ImageSpec) -> list[str]:
    # Wheels on the PyTorch index carry the variant as a local version (2.6.0+cu118); PyPI's carry none.
    local = "" if spec.index == PYPI_INDEX else f"+{spec.cuda_variant}"
    reqs = [f"torch=={spec.torch}{local}", f"torchvision=={spec.torchvision}{local}"]
    if spec.nvcc and spec.nvcc.source == "pypi":
        reqs += [f"{package}=={version}" for package, version in spec.nvcc.packages]
    return reqs + SMOKE_REQUIREMENTS + list(spec.extra_packages)


def constrained(spec: ImageSpec) -> list[str]:
    """The roots of the pip constraints: what the torch stack is. image_files/constraints.py adds, transitively,
    every package these pin with == (triton, the nvidia-* CUDA wheels, sympy) at the locked versions."""
    roots = ["torch", "torchvision"]
    if spec.nvcc and spec.nvcc.source == "pypi":
        roots += [package for package, _ in spec.nvcc.packages]
    return roots


def workspace_requirements(spec: ImageSpec) -> list[str]:
    return list(WORKSPACE_REQUIREMENTS)


# What apt and dpkg leave behind that differs from one build to the next (logs with times, ldconfig's cache of file
# times) or is useless in an image (package lists, apt's caches). Only what the step itself made: removing a file an
# earlier layer holds (the base's /var/lib/apt/lists/lock, /var/log/apt, the -old backups of dpkg's status and
# debconf's files, which come out the same for the same packages) leaves a whiteout with the deletion's time.
APT_LEFTOVERS = ["/var/lib/apt/lists/*_*", "/var/lib/apt/lists/partial/*", "/var/cache/apt/*.bin", "/var/log/apt/*",
                 "/var/log/dpkg.log", "/var/log/alternatives.log", "/var/cache/ldconfig/aux-cache"]


def user_dirs(spec: ImageSpec) -> list[str]:
    """Folders the user owns from the start: /workspace, and ~/.local's bin and site, where the user's `pip install`
    goes (the venv is root's); the site exists before Python starts, so a running kernel sees what it adds."""
    local = f"{HOME}/.local"
    return [WORKSPACE, local, f"{local}/bin", f"{local}/lib", f"{local}/lib/python{spec.python}",
            f"{local}/lib/python{spec.python}/site-packages"]


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
        (f"{layout.LABEL_PREFIX}.cuda", spec.cuda),
        (f"{layout.LABEL_PREFIX}.cudnn", spec.cudnn or unknown),
        (f"{layout.LABEL_PREFIX}.nccl", spec.nccl or unknown),
        (f"{layout.LABEL_PREFIX}.python", spec.python),
        (f"{layout.LABEL_PREFIX}.driver.min", spec.min_driver),
        (f"{layout.LABEL_PREFIX}.archs", " ".join(spec.archs) if spec.archs else unknown),
        (f"{layout.LABEL_PREFIX}.base", spec.base.ref),
    ]


def compile_pycs(only_new: bool) -> list[str]:
    """Byte-compile the venv with hash-based .pyc: pip's would embed each source's mtime (the time of extraction),
    so two builds would differ in every .pyc; unchecked-hash ones do not, and a fixed hash seed keeps set constants
    in one order. torch's step compiles everything (pip's own files too); the workspace's step only what has no .pyc
    yet, so its layer holds no second copy of torch's. A source this Python cannot compile stays without .pyc, as pip
    leaves it (torch 2.15 ships torch/testing/_internal/py312_intrinsics.py in Python 3.12 syntax)."""
    lib = json.dumps(f"{VENV}/lib")
    mode = "invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH"
    if only_new:
        code = ("import compileall, importlib.util, os, pathlib, py_compile; "
                f"[compileall.compile_file(str(p), quiet=2, force=True, {mode}) for p in sorted(pathlib.Path({lib}).rglob(\"*.py\")) "
                "if not os.path.exists(importlib.util.cache_from_source(str(p)))]")
    else:
        code = f"import compileall, py_compile; compileall.compile_dir({lib}, quiet=1, force=True, workers=0, {mode})"
    return ["PYTHONHASHSEED=0", f"{VENV}/bin/python", "-c", shlex.quote(code)]


PIP_INSTALL = [f"{VENV}/bin/pip", "install", "--no-cache-dir", "--disable-pip-version-check",
               # the host's wheel cache, on loopback for the build (builder/wheels/serve.py); plain HTTP, every sha256 checked
               "--no-index", "--find-links", serve.URL, "--trusted-host", serve.HOST,
               "--no-compile", *lock.INSTALL_OPTIONS]  # the options the lock's header names too


def venv_step(spec: ImageSpec) -> Step:
    return Step("The Python environment: root's, and it sees the system's and the user's site-packages (~/.local, where "
                "the user's `pip install` goes). pip's own .pyc made anew with hash-based invalidation.",
                stamped(f"python3 -m venv --system-site-packages {VENV}", " ".join(compile_pycs(only_new=False))))


def wheel_steps(spec: ImageSpec, images: Path = layout.IMAGES) -> list[Step]:
    """torch's lock in the layers builder/image/layers.py plans: each RUN installs its lines of the lock, given on the
    command line (a COPY of a file per layer would be a layer more each), and compiles what it added."""
    path = layout.tag_dir(spec.tag, images) / layout.LOCK_FILE
    try:
        planned = layers.plan(spec, lock.read(path), where=f"images/{spec.tag}/{layout.LOCK_FILE}")
    except (OSError, lock.LockError) as e:
        # rendered before `make lock` (or with a broken lock): the build is refused before it starts (lock.problem);
        # should it start anyway, this step says why it cannot. The Dockerfile is committed: the lock is named as
        # images/<tag>/…, never by this machine's folder (lock.read's message holds the path it was given)
        shown = f"images/{spec.tag}/{layout.LOCK_FILE}"
        problem = str(e).replace(str(path), shown) if isinstance(e, lock.LockError) else f"{shown} is missing"
        return [Step("torch's layers: not known before `make lock` writes torch's lock",
                     (f"echo {shlex.quote(problem + f'; run make lock TAG={spec.tag}, then make render')} >&2", "false"))]
    compile_new = " ".join(compile_pycs(only_new=True))
    return [Step(f"{layer.what}: {'a layer of its own' if len(layer.packages) == 1 else f'{len(layer.packages)} packages'}"
                 f" ({', '.join(f'{p.name} {p.version}' for p in layer.packages[:4])}"
                 f"{', …' if len(layer.packages) > 4 else ''})",
                 stamped(f"printf '%s\\n' {' '.join(shlex.quote(line) for line in layer.requirements())} "
                         f"| {' '.join(PIP_INSTALL)} -r /dev/stdin", compile_new))
            for layer in planned]


def workspace_step(spec: ImageSpec) -> Step:
    return Step("The workspace's packages: a layer of their own (their own lock), so changing them leaves torch's "
                "layers as they were.",
                stamped(f"{' '.join(PIP_INSTALL)} -r {SHARE}/{layout.WORKSPACE_LOCK_FILE}",
                        " ".join(compile_pycs(only_new=True))),
                copies=("workspace",))


def install_steps(spec: ImageSpec, images: Path = layout.IMAGES) -> list[Step]:
    """Every RUN before the image's environment is set (ENV), bottom to top: what every tag of a base shares first,
    then torch's layers, then what only this tag has."""
    os_packages = Step("The OS packages: Python, and the workspace's (tini, sshd). SSH host keys are deleted in the "
                       "step that makes them, so no layer holds one.",
                       stamped(*apt_install(apt_packages(spec) + WORKSPACE_APT_PACKAGES, "rm -f /etc/ssh/ssh_host_*")))
    return [os_packages, *toolchain_steps(spec), venv_step(spec), *wheel_steps(spec, images), *devel_steps(spec),
            workspace_step(spec)]


def user_step(spec: ImageSpec) -> Step:
    # SOURCE_DATE_EPOCH: useradd writes the day of the last password change into /etc/shadow from it
    return Step("The workspace: a non-root user and its folders (/workspace, ~/.local's bin and site).", stamped(
        f"groupadd --gid {GID} {USER}",
        f"SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH} useradd --uid {UID} --gid {GID} --create-home --home-dir {HOME} "
        f"--shell /bin/bash --password '*' {USER}",
        f"install -d -o {UID} -g {GID} {' '.join(user_dirs(spec))}"))


def trees(spec: ImageSpec) -> dict[str, list[tuple[str, str]]]:
    """Tree name -> (source, target) of each file or folder it holds: the source a file of images/<tag>/ by its path
    there, or a carried one by layout.carried's source; the target its absolute path in the image."""
    found = {
        "workspace": [(layout.WORKSPACE_LOCK_FILE, f"{SHARE}/{layout.WORKSPACE_LOCK_FILE}")],
        # what every image carries (layout.carried, the one list), its spec and torch's lock, in one layer
        "image": [(item.source, item.target) for item in layout.carried(spec.python)]
                 + [(layout.SPEC, f"{SHARE}/{layout.SPEC}"), (layout.LOCK_FILE, f"{SHARE}/{layout.LOCK_FILE}")],
    }
    if spec.nvcc and spec.nvcc.source == "debian":
        found["devel"] = [(f"devel/{HOST_DRIVER_PACKAGE}", HOST_DRIVER_DIR), ("devel/dpkg-cuda-static", DPKG_EXCLUDES)]
    return found


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
        "rootfs": ROOTFS,
        "install_steps": install_steps(spec, images),
        "env": env(spec),
        "user_step": user_step(spec),
        "check_step": Step("Build-time facts that need no GPU: a wrong image fails here instead of at its user.",
                           stamped(f"python {SHARE}/check_image.py {SHARE}/{layout.SPEC}"), copies=("image",)),
        "workspace": WORKSPACE,
        "ports": [layout.JUPYTER_PORT, layout.SSH_PORT],
        "healthcheck": ["--interval=5s", "--timeout=3s", "--start-period=60s", "--retries=3"],
        "healthcheck_command": [layout.HEALTHCHECK],
        "base_id_arg": BASE_ID_ARG,
        "constraints": layout.CONSTRAINTS,
        "share_dir": SHARE,
        "manifest_step": Step(f"What the image is made of (packages with versions, lock hashes, base): {SHARE}/manifest.json, "
                              f"and the pip constraints made from the locks (PIP_CONSTRAINT, UV_CONSTRAINT): "
                              f"{layout.CONSTRAINTS}.",
                              stamped(f"python {SHARE}/manifest.py {SHARE}", f"python {SHARE}/constraints.py {SHARE}")),
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
        **devel_files(spec),
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
