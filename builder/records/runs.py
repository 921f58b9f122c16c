"""Records of what ran: the smoke suite's reports (reports/<tag>/smoke.json, smoke-nodes<N>.json), the last
`make matrix` verdict of a tag (reports/<tag>/run.json) and how long each step took (reports/timings.json). Read
and written through builder/records/ (its __init__ says how a record is read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from builder.records import BrokenRecord, Record, Sha256, at, parsed, read

SMOKE, RUN, TIMINGS = "smoke.json", "run.json", "timings.json"


def nodes_name(nodes: int) -> str:
    """The report of a run across `nodes` containers: node 0's (builder/jobs/multinode.py)."""
    return f"smoke-nodes{nodes}.json"


# ---------------------------------------------------------------- reports/<tag>/smoke.json, smoke-nodes<N>.json


class Check(Record, kw_only=True):
    name: str
    status: Literal["PASS", "FAIL", "SKIPPED"]
    reason: str = ""
    figures: dict[str, Any] = {}  # every figure the check measured, kept whole; Figures is what is read of them
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    gpu: bool = False


class SmokeReport(Record, kw_only=True):
    suite: str = ""
    started: str = ""
    host: str | None = None
    image: str | None = None
    require_gpu: bool = False
    host_gpus: str | None = None
    gpus: str | None = None  # older reports' name for host_gpus
    seconds: float | None = None
    status: Literal["PASS", "FAIL"]
    checks: tuple[Check, ...]
    # written on the host after the run (builder/host/smoke.py): how it ran, so `make matrix` can tell if it is current
    image_id: Sha256 | None = None
    reproducer: str | None = None
    host_nvml: dict[str, Any] | None = None
    host_toolkit: bool | None = None
    gpus_passed: bool | None = None
    data: str | None = None

    def checked(self, path: Path, fix: str) -> SmokeReport:
        """Each check's figures as Figures reads them (read() and parsed() ask this of every report)."""
        for i, check in enumerate(self.checks):
            try:
                figures(check)
            except msgspec.ValidationError as e:
                raise BrokenRecord(path, at(str(e), f"$.checks[{i}].figures"), fix) from None
        return self


class Device(Record, kw_only=True):
    index: int = 0
    name: str
    capability: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,3}\.[0-9]{1,3}$")]  # '9.0'


class Tflops(Record, kw_only=True):
    tflops: float


class Transfer(Record, kw_only=True):
    busbw_gbs: float | None = None


class AudioRun(Record, kw_only=True):
    resample_ms: float
    spectrogram_ms: float


class Figures(Record, kw_only=True):
    """The figures of a check that the report, the doctor and `make matrix` read, typed: other keys are kept in
    the record but not read."""
    torch: str | None = None  # environment
    cpus: int | None = None
    devices: tuple[Device, ...] = ()  # cuda
    driver: str | None = None
    arch_list: tuple[str, ...] = ()
    bfloat16: Tflops | None = None  # cudnn conv
    ratio_to_matmul: float | None = None
    sizes: tuple[Transfer, ...] = ()  # the all-reduces
    world_size: int = 1
    images_per_s: float | None = None  # the fine-tunes
    audio: dict[str, AudioRun] = {}  # torchaudio: per device (cpu, cuda)


def figures(check: Check) -> Figures:
    """check's figures as a read report has had them checked (a check built in memory is checked here)."""
    return msgspec.convert(check.figures, Figures)


def read_smoke(path: Path) -> SmokeReport | None:
    """The smoke report at path, its figures checked too (None when there is none)."""
    return read(path, SmokeReport)


def smoke_from_suite(raw: bytes, origin: Path, **written) -> SmokeReport:
    """The suite's JSON as it left the container (origin: where it came from), with what the host adds (written):
    BrokenRecord when it is not a report (the suite runs in the image: its output is input too)."""
    report = parsed(raw, SmokeReport, origin, "the suite wrote no report this toolkit reads; see the run's log")
    return msgspec.structs.replace(report, **written)


# ---------------------------------------------------------------- reports/<tag>/run.json


class Step(Record, kw_only=True):
    name: str
    status: str  # matrix_run's DONE, CURRENT (not redone), FAILED, REFUSED
    seconds: float
    note: str


class Outcome(Record, kw_only=True):
    tag: str
    result: str  # report.PASSED, report.FAILED or report.NOT_HERE
    reason: str
    fix: str | None
    steps: tuple[Step, ...]
    date: str


# ---------------------------------------------------------------- reports/timings.json

Timings = dict[str, dict[str, float]]  # step -> tag -> seconds it took the last time it did work
