"""`make doctor`: which tags of the matrix run on this host, and why not, before anyone pulls 6 GB.

The driver and GPUs come from NVML (smoke_tests/nvml.py: no Docker engine needed), the verdict per tag from
smoke_tests/fit.py (the smoke suite's own driver and arch verdicts, so the doctor and the suite agree). The
engine is asked whether containers can get GPUs; /dev/shm and free disk are set against measured image sizes.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import docker

from builder.host import gpu
from builder.image import size
from builder.image.engine import EngineError, connect, translated  # by name: `engine` here is an Engine
from builder.inputs import printable
from builder.matrix.compat import version_key
from builder.matrix.types import ImageSpec, Matrix
from builder.records import builds
from builder.units import human
from builder.wheels import archs as wheel_archs
from builder.wheels import lockfile
from smoke_tests import fit, nvml, verdicts
from smoke_tests.environment import shm_bytes

# Verdicts per tag, in the words the table shows.
RUNS, DOES_NOT_RUN, UNKNOWN, CPU_ONLY, NO_RUNTIME = "runs", "does not run", "cannot tell", "CPU only", "no GPU runtime"


@dataclass(frozen=True)
class Engine:
    problem: str | None  # why no engine answers; None when one does
    version: str | None = None
    gpu_route: str | None = None  # how `--gpus` reaches the GPUs (builder/host/gpu.py), None when it cannot
    cdi_specs: tuple[str, ...] = ()  # CDI specs naming nvidia.com/gpu in folders the engine reads
    root: str | None = None  # DockerRootDir: where images take disk space

    @property
    def gives_gpus(self) -> bool:
        return bool(self.gpu_route or self.cdi_specs)


@dataclass(frozen=True)
class Disk:
    path: str
    free: int
    image: int | None  # the largest image size measured here (reports/<tag>/size.json), bytes
    image_tag: str | None
    broken: tuple[str, ...] = ()  # size records that do not parse (left out of the largest)


@dataclass(frozen=True)
class TagVerdict:
    spec: ImageSpec
    verdict: str  # RUNS, DOES_NOT_RUN, UNKNOWN, CPU_ONLY, NO_RUNTIME
    why: str
    reasons: tuple[str, ...]
    lock_problem: str | None  # why it cannot be built here, None when it can

    @property
    def buildable(self) -> bool:
        return self.lock_problem is None


def engine_facts(client: docker.DockerClient | None = None) -> Engine:
    try:
        client = client or connect()
        with translated():
            info = client.info()
    except (EngineError, OSError) as e:
        return Engine(str(e))
    return Engine(None, info.get("ServerVersion"), gpu.gpu_route(info), tuple(map(str, gpu.cdi_gpu_specs(info))),
                  info.get("DockerRootDir"))


def disk_facts(engine: Engine, reports: Path) -> Disk:
    """Free space where the engine keeps images (when it is this machine's folder), else here."""
    path = engine.root if engine.root and os.path.isdir(engine.root) else str(reports.parent)
    size, tag, broken = builds.largest_image(reports)
    return Disk(path, shutil.disk_usage(path).free, size, tag, broken)


def judge(spec: ImageSpec, host: nvml.Nvml, engine: Engine, images: Path) -> TagVerdict:
    # The list read from the locked wheel itself (make fetch) wins over compat.yaml's, taken from build scripts.
    spec = dataclasses.replace(spec, archs=wheel_archs.recorded(spec.tag, images) or spec.archs)
    result = fit.judge(host, spec.cuda, spec.min_driver, spec.archs)
    problem = lockfile.problem(spec, images, as_repository=True)
    if result.status == fit.NO_GPU:
        needs = f"for GPUs: driver >= {spec.min_driver}, " + (
            f"a GPU of {spec.archs[0]}…{spec.archs[-1]}" if spec.archs else "a GPU its torch has kernels for (archs not recorded)")
        return TagVerdict(spec, CPU_ONLY, needs, result.reasons, problem)
    if result.status == fit.RUNS and engine.problem is None and not engine.gives_gpus:
        return TagVerdict(spec, NO_RUNTIME, f"{result.short}, but the engine cannot give containers GPUs",
                          result.reasons, problem)
    verdict = {fit.RUNS: RUNS, fit.DOES_NOT_RUN: DOES_NOT_RUN, fit.UNKNOWN: UNKNOWN}[result.status]
    return TagVerdict(spec, verdict, result.short, result.reasons, problem)


def newest(verdicts_: list[TagVerdict], verdict: str, buildable: bool | None = None) -> TagVerdict | None:
    """The newest tag (torch, then CUDA; the runtime image before -devel) with this verdict."""
    found = [v for v in verdicts_ if v.verdict == verdict and (buildable is None or v.buildable == buildable)]
    return max(found, key=lambda v: (version_key(v.spec.torch), version_key(v.spec.cuda), not v.spec.devel), default=None)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def host_lines(host: nvml.Nvml, engine: Engine, shm: int, disk: Disk) -> list[str]:
    lines = []
    if host.problem or not host.driver:
        lines.append(f"NVIDIA driver   none: {host.problem or 'NVML gave no driver version'}")
    else:
        lines.append(f"NVIDIA driver   {host.driver}, supports CUDA up to {host.cuda} (NVML)")
        for g in host.gpus:
            lines.append(f"GPU {g.index:<11} {g.name}: {g.sm} (compute capability {g.capability[0]}.{g.capability[1]}), "
                         f"{_gib(g.memory_bytes)}")
        if not host.gpus:
            lines.append("GPUs            none: the driver is loaded but NVML sees no GPU")
    if host.source != "nvml":
        lines.append(f"                (NVML answer replayed from {host.source})")
    if engine.problem:
        lines.append(f"Docker engine   {engine.problem}")
        lines.append("GPU runtime     unknown: no engine to ask (the verdicts below are the host's)")
    else:
        lines.append(f"Docker engine   {engine.version} answers")
        routes = [r for r in (engine.gpu_route and f"--gpus works: {engine.gpu_route}",
                              engine.cdi_specs and f"CDI: {', '.join(engine.cdi_specs)} (docker run --device "
                                                   "nvidia.com/gpu=all; make run and make smoke ask with --gpus)") if r]
        lines.append("GPU runtime     " + ("; ".join(routes) if routes else
                                          "none: no nvidia runtime registered, no NVIDIA container toolkit hook, no CDI "
                                          "spec for nvidia.com/gpu; containers get no GPU"))
    shm_verdict = verdicts.shm(shm)
    lines.append(f"/dev/shm        {_gib(shm)} here" + ("" if shm_verdict.ok else " (too small for the smoke suite run "
                                                      "on the host; containers of make run and make smoke get 8 GiB)"))
    if disk.image:
        need = size.BUILD_FACTOR * disk.image
        lines.append(f"disk            {human(disk.free)} free in {disk.path}; a build needs about {human(need)} "
                     f"(twice the largest image measured here, {disk.image_tag} {human(disk.image)}): room for "
                     f"{disk.free // need} build(s)")
    else:
        lines.append(f"disk            {human(disk.free)} free in {disk.path}; no image measured here yet "
                     "(an image is about 6 GB, a build needs about twice that)")
    lines += [f"                {broken}: left out (remove it; make matrix measures the tag again)" for broken in disk.broken]
    return lines


def report(matrix: Matrix, host: nvml.Nvml, engine: Engine, shm: int, disk: Disk, images: Path) -> list[str]:
    """Everything `make doctor` prints."""
    lines = [f"torchyard doctor: this host, for the {len(matrix.specs)} tags of {matrix.path.name}", ""]
    lines += host_lines(host, engine, shm, disk)
    judged = [judge(spec, host, engine, images) for spec in matrix.specs.values()]
    width = max(len(tag) for tag in matrix.specs)
    lines += ["", f"{'tag':<{width}}  {'here':<14}  {'build here':<10}  why"]
    for v in judged:
        lines.append(f"{v.spec.tag:<{width}}  {v.verdict:<14}  {'yes' if v.buildable else 'no lock':<10}  {v.why}")
    reasons = list(dict.fromkeys(r for v in judged if v.verdict in (DOES_NOT_RUN, UNKNOWN) for r in v.reasons))
    if reasons:
        lines += ["", "why, in full:"] + [f"  - {r}" for r in reasons]
    unbuildable = [v.spec.tag for v in judged if not v.buildable]
    if unbuildable:
        lines += ["", f"build here 'no lock': {len(unbuildable)} tag(s) have no current lock here (their torch comes from "
                      "the PyTorch wheel index): `make lock TAG=<tag>` where download.pytorch.org or a mirror "
                      "(TORCHYARD_TORCH_INDEX) answers"]
    lines += [""] + conclusion(judged, host, engine)
    return lines


def conclusion(judged: list[TagVerdict], host: nvml.Nvml, engine: Engine) -> list[str]:
    if judged and all(v.verdict == CPU_ONLY for v in judged):
        floors = sorted({(v.spec.cuda.split(".")[0], v.spec.min_driver) for v in judged}, key=lambda f: version_key(f[0]))
        lines = ["No NVIDIA GPU here: every image runs on the CPU only (the smoke suite's GPU checks say SKIPPED). "
                 "For GPUs this host needs an NVIDIA GPU, its driver ("
                 + ", ".join(f">= {d} for CUDA {c} images" for c, d in floors)
                 + ") and the NVIDIA container toolkit (the nvidia runtime, or CDI) for Docker."]
        best = newest(judged, CPU_ONLY, buildable=True)
        return lines + ([f"newest tag for CPU work here: make build TAG={best.spec.tag}"] if best else
                        ["no tag can be built here: every lock is missing (make lock)"])
    if engine.problem is None and not engine.gives_gpus and newest(judged, NO_RUNTIME):
        lines = ["The driver and GPUs would run these images, but Docker cannot give containers GPUs: install the "
                 "NVIDIA container toolkit and `nvidia-ctk runtime configure --runtime=docker`, then restart dockerd "
                 "(or generate a CDI spec: `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`)."]
        best = newest(judged, NO_RUNTIME, buildable=True)
        return lines + _unbuildable(judged, NO_RUNTIME, best) + (
            [f"newest tag that runs here once containers get GPUs: make build TAG={best.spec.tag}"] if best else [])
    best = newest(judged, RUNS, buildable=True)
    lines = _unbuildable(judged, RUNS, best)
    maybe = newest(judged, UNKNOWN)
    if maybe and (best is None or version_key(maybe.spec.torch) > version_key(best.spec.torch)):
        lines.append(f"newer tags may run but their GPU architectures are not recorded (e.g. {maybe.spec.tag}): "
                     "`make smoke` on this host tells")
    if best:
        return lines + [f"newest tag that runs here: make build TAG={best.spec.tag}"]
    return lines + ["no tag of the matrix is known to run on this host's GPUs: see 'why, in full' above "
                    "(a newer driver widens the choice most)"]


def _unbuildable(judged: list[TagVerdict], verdict: str, best: TagVerdict | None) -> list[str]:
    """The newest tag with this verdict when it is newer than the newest one that can be built here (no lock)."""
    newer = newest(judged, verdict)
    if newer and (best is None or newer.spec.tag != best.spec.tag):
        return [f"{newer.spec.tag} would run here too but cannot be built here: {newer.lock_problem}"]
    return []


def run(matrix: Matrix, images: Path, reports: Path, say=print) -> int:
    host = nvml.read()
    engine = engine_facts()
    for line in report(matrix, host, engine, shm_bytes(), disk_facts(engine, reports), images):
        say(printable(line))  # a device name, an engine's answer, a path: what the terminal shows, never what it obeys
    return 0
