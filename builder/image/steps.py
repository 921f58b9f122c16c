"""The final stage's RUN steps and what decides them: the apt packages, torch.compile's toolchain, the everyday tools,
the venv, torch's layers and the workspace's, -devel's nvcc and its files, the user, the stamp that gives every file one
time, and the trees each COPY brings in from the build context.

builder/image/render.py hands them to templates/Dockerfile.j2, which only loops over them.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from builder import layout
from builder.image import layers
from builder.image.base import SOURCE_DATE_EPOCH
from builder.layout import GID, HOME, SHARE, UID, USER, VENV, WORKSPACE
from builder.matrix.types import ImageSpec
from builder.wheels import lockfile, serve

# tini: PID 1 that forwards signals and reaps; openssh-server: key-only SSH (host keys made at first start).
WORKSPACE_APT_PACKAGES = ["tini", "openssh-server"]


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


# The everyday tools of a person working in the container: clone and version their work (git, git-lfs for the large
# files model repositories keep), fetch a file (curl), page a log (less), see and stop processes (procps: ps, top,
# kill), unpack an archive (unzip), edit a file (nano, also Debian's `editor`, which git opens), and keep a run alive
# over a dropped SSH connection (tmux). Package -> the command that shows it runs: image_files/check_image.py runs
# each as the user at build time (spec.json's "tools").
TOOLS = {
    "git": ("git", "--version"),
    "git-lfs": ("git", "lfs", "version"),  # through git, as `git lfs pull` finds it
    "curl": ("curl", "--version"),
    "less": ("less", "--version"),
    "procps": ("ps", "--version"),
    "unzip": ("unzip", "-v"),
    "nano": ("nano", "--version"),
    "tmux": ("tmux", "-V"),
}
# git-lfs's filters in root's /etc/gitconfig (the user cannot write it), so a clone of a repository with LFS files
# fetches them without a `git lfs install` of the user's own: the settings `git lfs install --system` makes, written
# with git config in one order. git-lfs writes them in Go's map order, a different file in each build, and its
# Debian postinst already runs it: git config would keep that file's order, so the file (only those settings) goes first.
GIT_LFS_FILTER = (("clean", "git-lfs clean -- %f"), ("smudge", "git-lfs smudge -- %f"),
                  ("process", "git-lfs filter-process"), ("required", "true"))
GIT_LFS_SYSTEM = " && ".join(["rm -f /etc/gitconfig", *(f"git config --system filter.lfs.{key} {shlex.quote(value)}"
                                                           for key, value in GIT_LFS_FILTER)])
# tmux's libutempter0 installs its helper setgid utmp (so that panes show in `who`), which a container has no use for:
# the helper stays, without the bit, so the tools bring no program that gains a group or user (dpkg-statoverride:
# dpkg keeps the mode through an upgrade).
UTEMPTER = "/usr/lib/x86_64-linux-gnu/utempter/utempter"
NO_SETGID = f"dpkg-statoverride --update --add root root 0755 {UTEMPTER}"


def tools_steps(spec: ImageSpec) -> list[Step]:
    """The everyday tools: the same for every tag of a base, in a layer of their own below the Python environment, so
    every tag shares it and changing the list leaves the OS and compiler layers as they were."""
    return [Step(f"Everyday tools, run as the user: {', '.join(TOOLS)}; none setuid or setgid.",
                 stamped(*apt_install(list(TOOLS), GIT_LFS_SYSTEM, NO_SETGID)))]


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


# What apt and dpkg leave behind that differs from one build to the next (logs with times, ldconfig's cache of file
# times) or is useless in an image (package lists, apt's caches, and the .deb files apt-get downloaded: a base made
# by mmdebstrap has no docker-clean setting, so apt-get keeps them, ~100 MB over the OS, compiler and tools steps).
# Only what the step itself made: removing a file an earlier layer holds (the base's /var/lib/apt/lists/lock,
# /var/log/apt, the -old backups of dpkg's status and debconf's files, which come out the same for the same packages)
# leaves a whiteout with the deletion's time.
APT_LEFTOVERS = ["/var/lib/apt/lists/*_*", "/var/lib/apt/lists/partial/*", "/var/cache/apt/*.bin",
                 "/var/cache/apt/archives/*.deb", "/var/log/apt/*", "/var/log/dpkg.log", "/var/log/alternatives.log",
                 "/var/cache/ldconfig/aux-cache"]


def user_dirs(spec: ImageSpec) -> list[str]:
    """Folders the user owns from the start: /workspace, and ~/.local's bin and site, where the user's `pip install`
    goes (the venv is root's); the site exists before Python starts, so a running kernel sees what it adds."""
    local = f"{HOME}/.local"
    return [WORKSPACE, local, f"{local}/bin", f"{local}/lib", f"{local}/lib/python{spec.python}",
            f"{local}/lib/python{spec.python}/site-packages"]


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
               "--no-compile", *lockfile.INSTALL_OPTIONS]  # the options the lock's header names too


def venv_step(spec: ImageSpec) -> Step:
    return Step("The Python environment: root's, and it sees the system's and the user's site-packages (~/.local, where "
                "the user's `pip install` goes). pip's own .pyc made anew with hash-based invalidation.",
                stamped(f"python3 -m venv --system-site-packages {VENV}", " ".join(compile_pycs(only_new=False))))


def wheel_steps(spec: ImageSpec, images: Path = layout.IMAGES) -> list[Step]:
    """torch's lock in the layers builder/image/layers.py plans: each RUN installs its lines of the lock, given on the
    command line (a COPY of a file per layer would be a layer more each), and compiles what it added."""
    path = layout.tag_dir(spec.tag, images) / layout.LOCK_FILE
    where = f"images/{spec.tag}/{layout.LOCK_FILE}"
    try:
        planned = layers.plan(spec, lockfile.read(path), where=where)
    except (OSError, lockfile.LockError) as e:
        # rendered before `make lock` (or with a broken lock): the build is refused before it starts
        # (lockfile.problem); should it start anyway, this step says why it cannot, naming the lock as the repository
        # does (the Dockerfile is committed: no checkout's own path belongs in it)
        problem = str(e).replace(str(path), where) if isinstance(e, lockfile.LockError) else f"{where} is missing"
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
    return [os_packages, *toolchain_steps(spec), *tools_steps(spec), venv_step(spec), *wheel_steps(spec, images), *devel_steps(spec),
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
