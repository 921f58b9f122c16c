"""reports/ -> one Row per tag of matrix.yaml: what was recorded of it, and its state. builder/report/page.py draws them.

A row holds the tag's facts (builder/matrix/compat.yaml), the last build (reports/<tag>/build.json), its size
(size.json, compressed.json), pushed digests (digests/<tag>.json), the smoke suite's checks (smoke.json), the
last `make matrix` verdict (run.json), its SBOM (sbom.cdx.json) and what was attested beside its digests
(attested.json: the attested smoke verdict, shown beside the local one). Every result keeps its date, and a result measured on an earlier image than
the last build says so. Made from files alone: the same recorded results always give the same rows.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from builder import layout, records
from builder.host.smoke import device as smoke_device
from builder.image import build, size
from builder.matrix.types import PYPI_INDEX, ImageSpec, Matrix
from builder.records import builds, published, runs
from builder.units import human
from builder.wheels import lockfile

# A tag's state, from best to worst news; the page colours and filters by these.
PASSED, FAILED, UNTESTED, NOT_HERE, NOT_RUN = "passed", "failed", "not smoke-tested", "not built here", "not run"
STATES = (PASSED, FAILED, UNTESTED, NOT_HERE, NOT_RUN)



@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS, FAIL, SKIPPED
    headline: str  # the figure that matters, or the reason in short
    value: float | None  # the headline's number, for sorting and charts
    reason: str


@dataclass(frozen=True)
class Smoke:
    status: str
    started: str
    seconds: float | None
    image_id: str | None
    of_last_build: bool  # measured on the image the last build made
    device: str  # "CPU, 2 cores" or "NVIDIA H100 80GB HBM3"
    driver: str | None
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Build:
    status: str  # built, failed
    started: str
    seconds: float
    steps: int
    cached: int
    image_id: str | None
    error: str | None


@dataclass(frozen=True)
class Row:
    tag: str
    torch: str
    torchvision: str
    cuda: str
    cudnn: str | None
    nccl: str | None
    python: str
    base: str
    min_driver: str
    archs: tuple[str, ...] | None
    wheel: str
    lock_sha256: str | None  # both locks, as the image's io.torchyard.lock.sha256 label
    lock_problem: str | None
    state: str
    note: str
    build: Build | None = None
    size: int | None = None
    compressed: int | None = None
    size_budget: int | None = None
    sizes_of_last_build: bool = True
    pushed: tuple[dict, ...] = ()
    smoke: Smoke | None = None
    last_run: runs.Outcome | None = None
    broken: tuple[str, ...] = ()  # the tag's records that do not parse, each with its field and what was expected
    sbom: str | None = None  # reports/<tag>/sbom.cdx.json as the page links it (relative to reports/), when there is one
    attested: tuple[dict, ...] = ()  # per registry reference: the digest, the attested smoke verdict, when attached
    order: int = 0  # the tag's place in matrix.yaml


@dataclass(frozen=True)
class Report:
    generated: str
    commit: str | None
    rows: tuple[Row, ...] = field(default_factory=tuple)


def headline(check: runs.Check) -> tuple[str, float | None]:
    """The figure a person looks for in one smoke check (and its number), or the reason in short."""
    name, status, figures = check.name, check.status, runs.figures(check)
    if status == "SKIPPED":
        return ("no GPU" if "no GPU" in check.reason else "skipped"), None
    if name == "environment" and figures.torch:
        return f"torch {figures.torch}", None
    if name == "cuda" and figures.devices:
        names = sorted({d.name for d in figures.devices})
        return f"{len(figures.devices)}× {', '.join(names)} sm_{figures.devices[0].capability.replace('.', '')}", None
    if name == "cudnn conv" and figures.bfloat16:
        tflops, ratio = figures.bfloat16.tflops, figures.ratio_to_matmul
        return f"bf16 {tflops:.0f} TFLOP/s" + (f", {ratio:.2f}× matmul" if ratio is not None else ""), tflops
    if name.endswith("all-reduce") and figures.sizes:
        top = figures.sizes[-1].busbw_gbs
        if top is None:
            return f"{figures.world_size} rank: no traffic", None
        return f"busbw {top:.1f} GB/s", top
    if name.endswith(" amp") and figures.images_per_s is not None:
        return f"{figures.images_per_s:.0f} images/s", figures.images_per_s
    if name == "torchaudio" and figures.audio:
        device = "cuda" if "cuda" in figures.audio else next(iter(figures.audio))
        run = figures.audio[device]
        return f"{device}: resample {run.resample_ms:.1f} ms, spectrogram {run.spectrogram_ms:.1f} ms", run.resample_ms
    reason = check.reason  # an older or partial report: the reason in short
    return (reason if len(reason) <= 60 else reason[:57] + "..."), None


def _smoke(report: runs.SmokeReport | None, last_image: str | None) -> Smoke | None:
    if not report:
        return None
    device, driver = smoke_device(report)
    checks = tuple(Check(c.name, c.status, *headline(c), c.reason) for c in report.checks)
    return Smoke(report.status, report.started, report.seconds, report.image_id,
                 bool(report.image_id) and report.image_id == last_image, device, driver, checks)


def _build(record: builds.BuildRecord | None) -> Build | None:
    if not record:
        return None
    return Build(record.status, record.started, record.seconds, record.steps, record.cached, record.image_id,
                 record.error)


def lock_sha256(spec: ImageSpec, images: Path) -> str | None:
    paths = [layout.tag_dir(spec.tag, images) / name for name in layout.LOCKS]
    return build.locks_sha256(paths) if all(p.is_file() for p in paths) else None


def wheel_source(spec: ImageSpec) -> str:
    return "PyPI" if spec.index == PYPI_INDEX else f"PyTorch index ({spec.cuda_variant})"


def _state(spec: ImageSpec, lock_problem: str | None, built: Build | None, total: int | None,
           smoke: Smoke | None, last_run: runs.Outcome | None) -> tuple[str, str]:
    """The tag's state and the sentence behind it."""
    if built and built.status == "failed":
        return FAILED, f"build failed: {built.error or 'see reports/' + spec.tag + '/build.log'}"
    if lock_problem:
        return NOT_HERE, lock_problem
    if last_run and last_run.result == NOT_HERE and (not built or last_run.date > built.started):
        return NOT_HERE, last_run.reason
    if not built:
        return NOT_RUN, "no build recorded here yet: make matrix TAG=" + spec.tag
    if total and spec.size_budget and total > spec.size_budget * (1 + size.BUDGET_SLACK):
        return FAILED, f"{human(total)} is more than {size.BUDGET_SLACK:.0%} over its size budget of {human(spec.size_budget)}"
    if not smoke or not smoke.of_last_build:
        return UNTESTED, ("the last smoke test ran on an earlier image" if smoke else "built, never smoke-tested")
    if smoke.status != "PASS":
        failed = [c.name for c in smoke.checks if c.status == "FAIL"]
        return FAILED, f"smoke: {', '.join(failed) or smoke.status} failed"
    return PASSED, "built, and every smoke check passed or was skipped with its reason"


def row(spec: ImageSpec, order: int, images: Path, reports: Path, digests: Path) -> Row:
    broken: list[str] = []

    def read(name: str, schema):  # a broken record is said in the row and read as none: the report goes on
        try:
            return records.read_report(reports, spec.tag, name, schema)
        except records.BrokenRecord as e:
            broken.append(e.short(f"reports/{spec.tag}"))
            return None

    built = _build(read(builds.BUILD, builds.BuildRecord))
    last_image = built.image_id if built and built.status == "built" else None
    size_report = read(builds.SIZE, builds.SizeReport)
    packed = read(builds.COMPRESSED, builds.Compressed)
    smoke = _smoke(read(runs.SMOKE, runs.SmokeReport), last_image)
    last_run = read(runs.RUN, runs.Outcome)
    pushed = _pushed(spec.tag, digests, last_image, broken)
    try:
        attested = tuple({"reference": ref, "digest": a.digest, "smoke": a.smoke, "date": a.date}
                         for ref, a in published.read_attested(spec.tag, reports).items())
    except records.BrokenRecord as e:
        broken.append(e.short(f"reports/{spec.tag}"))
        attested = ()
    sbom = f"{spec.tag}/{published.SBOM}" if records.report_path(reports, spec.tag, published.SBOM).is_file() else None
    problem = lockfile.problem(spec, images, as_repository=True)
    total = size_report.total if size_report else None
    sizes_current = bool(size_report) and size_report.image_id == last_image
    compressed = packed.total if packed and size_report and packed.image_id == size_report.image_id else None
    state, note = _state(spec, problem, built, total if sizes_current else None, smoke, last_run)
    if broken:
        note = "; ".join(broken) + f" (remove it, or make matrix TAG={spec.tag} writes it again); " + note
    return Row(
        tag=spec.tag, torch=spec.torch, torchvision=spec.torchvision, cuda=spec.cuda, cudnn=spec.cudnn, nccl=spec.nccl,
        python=spec.python, base=spec.base.ref, min_driver=spec.min_driver, archs=spec.archs, wheel=wheel_source(spec),
        lock_sha256=lock_sha256(spec, images), lock_problem=problem, state=state, note=note, build=built,
        size=total, compressed=compressed, size_budget=spec.size_budget, sizes_of_last_build=sizes_current or total is None,
        pushed=pushed, smoke=smoke, last_run=last_run, broken=tuple(broken), order=order, sbom=sbom, attested=attested)


def _pushed(tag: str, digests: Path, last_image: str | None, broken: list[str]) -> tuple[dict, ...]:
    """digests/<tag>.json's references, each saying whether it is the last build's image. A broken record is said
    in the row (make pull says what is wrong with it); it must not stop the report."""
    try:
        entries = published.read_digests(tag, digests)
    except records.BrokenRecord as e:
        broken.append(e.short(digests.name))
        return ()
    return tuple({"reference": ref, "digest": entry.digest, "of_last_build": entry.image_id == last_image}
                 for ref, entry in entries.items())


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(layout.ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def collect(matrix: Matrix, images: Path = layout.IMAGES, reports: Path = layout.REPORTS, digests: Path = layout.DIGESTS,
            now: datetime | None = None) -> Report:
    rows = tuple(row(spec, i, images, reports, digests) for i, spec in enumerate(matrix.specs.values()))
    when = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    return Report(when, _commit(), rows)
