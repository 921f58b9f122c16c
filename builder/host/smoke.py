"""`make smoke`: run the smoke suite inside <repo>:<tag> through the Docker SDK.

All GPUs when the host has the NVIDIA toolkit, else the CPU; shared memory sized (builder/host/gpu.py).
A host with GPUs is judged as one: when NVML here sees GPUs (or the engine has the toolkit), the suite is
told so (--host-gpus), and a GPU check that finds no GPU in the container FAILs instead of SKIPPED.
reports/<tag>/ gets smoke.json (every figure), smoke.log (what the container printed) and smoke.cmd
(the equivalent `docker run` line, to reproduce the run by hand).
"""

from __future__ import annotations

import os
import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import msgspec

from builder import layout, records
from builder.files import open_fresh, write_atomic
from builder.host import gpu
from builder.image import engine
from builder.matrix.types import ImageSpec, Matrix
from builder.records import runs
from smoke_tests import nvml, verdicts

CONTAINER_JSON = "/tmp/torchyard-smoke.json"
DATA_MOUNT = "/data"
TIMEOUT_S = 1800  # far above a whole run (docs/benchmarks.md): only a hung collective gets near it


class SmokeError(Exception):
    pass


@dataclass(frozen=True)
class SmokeRun:
    tag: str
    status: str  # PASS or FAIL, as the suite judged
    exit_code: int
    seconds: float
    report: Path
    log: Path
    command: Path
    checks: tuple[runs.Check, ...]


def device(report: runs.SmokeReport) -> tuple[str, str | None]:
    """Where the figures were measured: the GPUs the cuda check saw, else the CPU."""
    checks = {c.name: runs.figures(c) for c in report.checks}
    cuda = checks.get("cuda") or runs.Figures()
    if cuda.devices:
        names = sorted({d.name for d in cuda.devices})
        count = len(cuda.devices)
        return (f"{count}× " if count > 1 else "") + ", ".join(names), cuda.driver
    cpus = (checks.get("environment") or runs.Figures()).cpus
    return (f"CPU, {cpus} cores" if cpus else "CPU"), None


def host_gpus(answer: nvml.Nvml, toolkit: bool) -> str | None:
    """What says this host has NVIDIA GPUs, as the suite's --host-gpus takes it: their count when NVML here sees
    them, else 'toolkit' when the engine has the NVIDIA container toolkit; None when nothing does."""
    if answer.gpus:
        return str(len(answer.gpus))
    return "toolkit" if toolkit else None


def suite_args(require_gpu: bool, data: Path | None, host: str | None = None) -> list[str]:
    args = ["python", "-m", "smoke_tests", "--json", CONTAINER_JSON]
    if require_gpu:
        args.append("--require-gpu")
    if data:
        args += ["--data", DATA_MOUNT]
    if host:
        args += ["--host-gpus", host]
    return args


def describe(options: dict, answer: nvml.Nvml, host: str | None) -> str:
    """Where the suite runs, in a line: the GPUs it gets, or why not and what that means on this host."""
    if "device_requests" in options:
        return "all GPUs"
    overridden = os.environ.get("TORCHYARD_GPUS", "").strip().lower() == "none"
    why = "TORCHYARD_GPUS=none" if overridden else "no NVIDIA container toolkit"
    if not host:
        return f"the CPU ({why})"
    if answer.gpus:
        names = ", ".join(sorted({g.name for g in answer.gpus}))
        claim = f"NVML here sees {len(answer.gpus)} GPU(s) ({names}, driver {answer.driver})"
    else:
        claim = "the engine has the NVIDIA container toolkit"
    return f"the CPU ({why}), although {claim}: the GPU checks will FAIL"


def reproducer(image: str, options: dict, args: list[str], data: Path | None) -> str:
    mount = ["-v", f"{data.resolve()}:{DATA_MOUNT}:ro"] if data else []
    return shlex.join(["docker", "run", "--rm", *gpu.docker_run_flags(options), *mount, image, *args])


def covering_tags(matrix: Matrix, capability: str) -> list[str]:
    """Tags of the matrix whose torch has kernels (or PTX) for a GPU of this compute capability."""
    major, minor = (int(part) for part in capability.split("."))
    return [s.tag for s in matrix.specs.values() if s.archs and verdicts.arch((major, minor), list(s.archs)).ok]


def explain_arch(report: runs.SmokeReport, matrix: Matrix) -> runs.SmokeReport:
    """An uncovered GPU: the image cannot know the rest of the matrix, so name the tags that cover it here."""
    checks = []
    for check in report.checks:
        figures = runs.figures(check)
        reasons = []
        for device in figures.devices if check.name == "cuda" and check.status == "FAIL" else ():
            capability = tuple(int(p) for p in device.capability.split("."))
            verdict = verdicts.arch(capability, list(figures.arch_list), covering_tags(matrix, device.capability))
            if not verdict.ok:
                reasons.append(f"GPU {device.index} ({device.name}): {verdict.reason}")
        checks.append(msgspec.structs.replace(check, reason="; ".join(reasons)) if reasons else check)
    return msgspec.structs.replace(report, checks=tuple(checks))


def _contained(client: docker.DockerClient, image: str, args: list[str], volumes: dict, options: dict,
               command_path: Path, log_path: Path, say) -> tuple[int, bytes | None]:
    """Run the suite in a container of the image, its output to the log and to say; (its exit code, the report it
    wrote or None). The container is removed; one that runs past TIMEOUT_S is killed."""
    try:
        with engine.translated():
            container = client.containers.create(image, args, volumes=volumes, **options)
    except engine.EngineError as e:
        raise SmokeError(f"the engine refused to create a container of {image}: {e}") from None
    killed = threading.Event()

    def kill() -> None:  # a hung collective must not hang make
        killed.set()
        container.kill()

    watchdog = threading.Timer(TIMEOUT_S, kill)
    try:
        try:
            with engine.translated():
                container.start()
        except engine.EngineError as e:
            raise SmokeError(f"the engine refused to start {image}: {e}\n  the same run by hand: "
                             f"{command_path.read_text().strip()}") from None
        watchdog.start()
        with open_fresh(log_path) as log:
            log.write(f"$ {command_path.read_text()}")
            for chunk in container.logs(stream=True, follow=True):
                text = chunk.decode(errors="replace")
                log.write(text)
                say(text.rstrip("\n"))
        exit_code = container.wait()["StatusCode"]
        if killed.is_set():
            raise SmokeError(f"the smoke suite in {image} did not finish in {TIMEOUT_S}s and was killed; log: {log_path}")
        raw = engine.read_file(container, CONTAINER_JSON)
    finally:
        watchdog.cancel()
        container.remove(force=True)
    return exit_code, raw


def run(client: docker.DockerClient, spec: ImageSpec, repo: str, matrix: Matrix, say=print,
        reports: Path = layout.REPORTS, require_gpu: bool = False, data: Path | None = None) -> SmokeRun:
    image = f"{repo}:{spec.tag}"
    out = reports / spec.tag
    out.mkdir(parents=True, exist_ok=True)
    options = gpu.run_options(client)
    answer = nvml.read()
    toolkit = gpu.toolkit_configured(client)
    host = host_gpus(answer, toolkit)
    args = suite_args(require_gpu, data, host)
    volumes = {str(data.resolve()): {"bind": DATA_MOUNT, "mode": "ro"}} if data else {}
    command_path, log_path, report_path = out / "smoke.cmd", out / "smoke.log", out / runs.SMOKE
    write_atomic(command_path, reproducer(image, options, args, data) + "\n")
    report_path.unlink(missing_ok=True)  # never leave an older run's report beside this run's log
    say(f"smoke-testing {image} on {describe(options, answer, host)} (log: {log_path})")
    started = time.monotonic()
    exit_code, raw = _contained(client, image, args, volumes, options, command_path, log_path, say)
    seconds = time.monotonic() - started
    if raw is None:
        raise SmokeError(f"the smoke suite in {image} exited with {exit_code} and wrote no report; log: {log_path}")
    try:
        # How it ran (GPUs passed, data), so `make matrix` can tell whether this report answers for the run it would
        # make now.
        report = runs.smoke_from_suite(
            raw, Path(f"{image}:{CONTAINER_JSON}"), image=image, image_id=client.images.get(image).id,
            reproducer=command_path.read_text().strip(), host_nvml={**nvml.record(answer), "source": answer.source},
            host_toolkit=toolkit, gpus_passed="device_requests" in options, data=str(data.resolve()) if data else None)
    except records.BrokenRecord as e:
        raise SmokeError(f"{e}; log: {log_path}") from None
    report = explain_arch(report, matrix)
    records.write(report_path, report)
    return SmokeRun(spec.tag, report.status, exit_code, seconds, report_path, log_path, command_path, report.checks)
