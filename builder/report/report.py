"""reports/ -> reports/matrix.json, matrix.md and index.html: the whole matrix at once.

One row per tag of matrix.yaml: its facts (builder/matrix/compat.yaml), the last build (reports/<tag>/build.json), its
size (size.json, compressed.json), pushed digests (digests/<tag>.json), the smoke suite's checks (smoke.json) and
the last `make matrix` verdict (run.json). Every result keeps its date, and a result measured on an earlier image
than the last build says so. Made from files alone: the same recorded results always give the same report.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jinja2
from markupsafe import Markup

from builder import layout, records
from builder.files import write_atomic
from builder.image import build, size
from builder.inputs import printable
from builder.matrix.compat import version_key
from builder.matrix.spec import PYPI_INDEX, ImageSpec, Matrix
from builder.records import DIGESTS
from builder.report import charts
from builder.units import human
from builder.wheels import lock

# A tag's state, from best to worst news; the page colours and filters by these.
PASSED, FAILED, UNTESTED, NOT_HERE, NOT_RUN = "passed", "failed", "not smoke-tested", "not built here", "not run"
STATES = (PASSED, FAILED, UNTESTED, NOT_HERE, NOT_RUN)
# The smoke checks with a column each, in the suite's order; a check the suite adds later gets one too.
CHECK_ORDER = ("environment", "cuda", "cudnn conv", "nccl all-reduce", "gloo all-reduce", "resnet50 amp", "deit-s amp")


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
    last_run: records.Outcome | None = None
    broken: tuple[str, ...] = ()  # the tag's records that do not parse, each with its field and what was expected
    order: int = 0  # the tag's place in matrix.yaml


@dataclass(frozen=True)
class Report:
    generated: str
    commit: str | None
    rows: tuple[Row, ...] = field(default_factory=tuple)


def headline(check: records.Check) -> tuple[str, float | None]:
    """The figure a person looks for in one smoke check (and its number), or the reason in short."""
    name, status, figures = check.name, check.status, records.figures(check)
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
    reason = check.reason  # an older or partial report: the reason in short
    return (reason if len(reason) <= 60 else reason[:57] + "..."), None


def _device(report: records.SmokeReport) -> tuple[str, str | None]:
    """Where the figures were measured: the GPUs the cuda check saw, else the CPU."""
    checks = {c.name: records.figures(c) for c in report.checks}
    cuda = checks.get("cuda") or records.Figures()
    if cuda.devices:
        names = sorted({d.name for d in cuda.devices})
        count = len(cuda.devices)
        return (f"{count}× " if count > 1 else "") + ", ".join(names), cuda.driver
    cpus = (checks.get("environment") or records.Figures()).cpus
    return (f"CPU, {cpus} cores" if cpus else "CPU"), None


def _smoke(report: records.SmokeReport | None, last_image: str | None) -> Smoke | None:
    if not report:
        return None
    device, driver = _device(report)
    checks = tuple(Check(c.name, c.status, *headline(c), c.reason) for c in report.checks)
    return Smoke(report.status, report.started, report.seconds, report.image_id,
                 bool(report.image_id) and report.image_id == last_image, device, driver, checks)


def _build(record: records.BuildRecord | None) -> Build | None:
    if not record:
        return None
    return Build(record.status, record.started, record.seconds, record.steps, record.cached, record.image_id,
                 record.error)


def lock_problem(spec: ImageSpec, images: Path) -> str | None:
    """Why the tag cannot be built here for want of a current lock (lock.problem), naming paths as images/<tag>/…,
    never as this machine's folders; None when its locks are current."""
    problem = lock.problem(spec, images)
    return problem.replace(f"{images}/", "images/") if problem else None


def lock_sha256(spec: ImageSpec, images: Path) -> str | None:
    paths = [images / spec.tag / lock.LOCK_FILE, images / spec.tag / lock.WORKSPACE_LOCK_FILE]
    return build.locks_sha256(paths) if all(p.is_file() for p in paths) else None


def wheel_source(spec: ImageSpec) -> str:
    return "PyPI" if spec.index == PYPI_INDEX else f"PyTorch index ({spec.cuda_variant})"


def _state(spec: ImageSpec, lock_problem: str | None, built: Build | None, total: int | None,
           smoke: Smoke | None, last_run: records.Outcome | None) -> tuple[str, str]:
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

    built = _build(read(records.BUILD, records.BuildRecord))
    last_image = built.image_id if built and built.status == "built" else None
    size_report = read(records.SIZE, records.SizeReport)
    packed = read(records.COMPRESSED, records.Compressed)
    smoke = _smoke(read(records.SMOKE, records.SmokeReport), last_image)
    last_run = read(records.RUN, records.Outcome)
    pushed = _pushed(spec.tag, digests, last_image, broken)
    problem = lock_problem(spec, images)
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
        pushed=pushed, smoke=smoke, last_run=last_run, broken=tuple(broken), order=order)


def _pushed(tag: str, digests: Path, last_image: str | None, broken: list[str]) -> tuple[dict, ...]:
    """digests/<tag>.json's references, each saying whether it is the last build's image. A broken record is said
    in the row (make pull says what is wrong with it); it must not stop the report."""
    try:
        entries = records.read_digests(tag, digests)
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


def collect(matrix: Matrix, images: Path = layout.IMAGES, reports: Path = build.REPORTS, digests: Path = DIGESTS,
            now: datetime | None = None) -> Report:
    rows = tuple(row(spec, i, images, reports, digests) for i, spec in enumerate(matrix.specs.values()))
    when = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    return Report(when, _commit(), rows)


# ---------------------------------------------------------------- rendering


def short_date(iso: str | None) -> str:
    """'2026-11-25T21:04:05+00:00' -> '2026-11-25 21:04'."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso[:16]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = round(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def check_names(rows: tuple[Row, ...]) -> list[str]:
    seen = {c.name for r in rows if r.smoke for c in r.smoke.checks}
    return [n for n in CHECK_ORDER if n in seen] + sorted(seen - set(CHECK_ORDER))


def _cell(text: str, sort=None, css: str = "", title: str = "", pill: bool = False) -> dict:
    return {"text": text, "sort": "" if sort is None else sort, "css": css, "title": title, "pill": pill}


def _archs_text(archs: tuple[str, ...] | None) -> str:
    if not archs:
        return "not recorded"
    return f"{archs[0]}…{archs[-1]} ({len(archs)})" if len(archs) > 3 else " ".join(archs)


def groups(columns: list[dict]) -> list[tuple[str, int]]:
    """The header's column groups with their spans, in order."""
    spans: list[tuple[str, int]] = []
    for column in columns:
        if spans and spans[-1][0] == column["group"]:
            spans[-1] = (column["group"], spans[-1][1] + 1)
        else:
            spans.append((column["group"], 1))
    return spans


def table(report: Report) -> tuple[list[dict], list[dict]]:
    """The page's columns and, per row, its cells (text, sort key, class, tooltip): every decision made here."""
    checks = check_names(report.rows)
    def group(name: str, *keys_titles: tuple[str, str]) -> list[dict]:
        return [{"key": key, "title": title, "group": name} for key, title in keys_titles]

    # What a person looks for first comes first: the tag, its state and versions, then what happened to it;
    # the facts behind it (driver, archs, inputs) further right.
    columns = (group("image", ("tag", "tag"), ("state", "state"))
               + group("versions", ("torch", "torch"), ("torchvision", "vision"), ("cuda", "CUDA"), ("cudnn", "cuDNN"),
                       ("nccl", "NCCL"), ("python", "Python"))
               + group("build", ("build", "build"), ("size", "size"), ("compressed", "compressed"))
               + group("smoke", *((f"check-{i}", name.replace(" all-reduce", "").replace(" amp", ""))
                                  for i, name in enumerate(checks)), ("measured", "measured on"))
               + group("runs on", ("driver", "min driver"), ("archs", "GPU archs"))
               + group("inputs", ("base", "base"), ("wheel", "wheel"), ("lock", "lock sha256"), ("pushed", "pushed")))
    rows = []
    for r in report.rows:
        b, s = r.build, r.smoke
        cells = {
            "tag": _cell(r.tag, r.order, "tag"),
            "state": _cell(r.state, STATES.index(r.state), f"state state-{r.state.replace(' ', '-')}", r.note, pill=True),
            "torch": _cell(r.torch, ".".join(f"{n:04d}" for n in version_key(r.torch))),
            "torchvision": _cell(r.torchvision, ".".join(f"{n:04d}" for n in version_key(r.torchvision))),
            "cuda": _cell(r.cuda, ".".join(f"{n:04d}" for n in version_key(r.cuda))),
            "cudnn": _cell(r.cudnn or "not recorded", ".".join(f"{n:04d}" for n in version_key(r.cudnn)) if r.cudnn else "",
                           "" if r.cudnn else "unknown"),
            "nccl": _cell(r.nccl or "not recorded", ".".join(f"{n:04d}" for n in version_key(r.nccl)) if r.nccl else "",
                          "" if r.nccl else "unknown"),
            "python": _cell(r.python, ".".join(f"{n:04d}" for n in version_key(r.python))),
            "base": _cell(r.base if len(r.base) < 24 else r.base[:21] + "…", r.base, title=r.base),
            "driver": _cell(f"≥ {r.min_driver}", ".".join(f"{n:04d}" for n in version_key(r.min_driver))),
            "archs": _cell(_archs_text(r.archs), len(r.archs) if r.archs else -1, "" if r.archs else "unknown",
                           " ".join(r.archs or ())),
            "wheel": _cell(r.wheel),
            "lock": _cell(r.lock_sha256[:12] if r.lock_sha256 else "no lock", r.lock_sha256 or "",
                          "mono" if r.lock_sha256 else "unknown", r.lock_problem or r.lock_sha256 or ""),
            "build": _cell(f"{b.status} {_duration(b.seconds)}" if b else "", b.seconds if b else -1,
                           f"status status-{'PASS' if b and b.status == 'built' else 'FAIL'}" if b else "",
                           (f"{short_date(b.started)}, {b.cached}/{b.steps} steps from cache" + (f"; {b.error}" if b.error else ""))
                           if b else ""),
            "size": _cell(human(r.size) if r.size else "", r.size or -1, "" if r.sizes_of_last_build else "stale",
                          ("" if r.sizes_of_last_build else "measured on an earlier image; ")
                          + (f"budget {human(r.size_budget)}" if r.size_budget else "")),
            "compressed": _cell(human(r.compressed) if r.compressed else "", r.compressed or -1,
                                title=f"gzip -{size.GZIP_LEVEL} per layer, as docker push sends"),
            "pushed": _cell(", ".join(p["reference"].split("/")[0] for p in r.pushed), len(r.pushed),
                            title="; ".join(f"{p['reference']}@{p['digest']}" + ("" if p["of_last_build"] else " (an earlier image)")
                                            for p in r.pushed)),
            "measured": _cell(f"{s.device}" + (f" · driver {s.driver}" if s.driver else "") + f" · {short_date(s.started)}"
                              if s else "", s.started if s else "", "" if not s or s.of_last_build else "stale",
                              "" if not s or s.of_last_build else "measured on an earlier image than the last build"),
        }
        by_name = {c.name: c for c in s.checks} if s else {}
        for i, name in enumerate(checks):
            c = by_name.get(name)
            cells[f"check-{i}"] = (_cell(f"{c.status} · {c.headline}" if c.headline else c.status,
                                         c.value if c.value is not None else {"PASS": 0, "SKIPPED": -1, "FAIL": -2}.get(c.status, -3),
                                         f"status status-{c.status}" + ("" if s.of_last_build else " stale"), c.reason)
                                   if c else _cell("", -4))
        rows.append({"tag": r.tag, "state": r.state.replace(" ", "-"), "cells": [cells[c["key"]] for c in columns]})
    return columns, rows


def size_chart(report: Report) -> str:
    rows = [charts.Row(r.tag, (r.size / 1e9 if r.size else None, r.compressed / 1e9 if r.compressed else None),
                       r.size_budget / 1e9 if r.size_budget else None)
            for r in report.rows if r.size]
    if not rows:
        return ""
    return charts.bar_chart(rows, [charts.Series("image", "bar-size"), charts.Series("compressed (push)", "bar-packed")],
                            lambda v: f"{v:.2f}".rstrip("0").rstrip(".") if v else "0", "GB", "Image size per tag")


def throughput_charts(report: Report) -> list[tuple[str, str]]:
    """images/s per tag, one chart per device the figures came from (a CPU and an H100 do not share a scale)."""
    by_device: dict[str, list[charts.Row]] = {}
    for r in report.rows:
        if not r.smoke:
            continue
        values = {c.name: c.value for c in r.smoke.checks}
        pair = (values.get("resnet50 amp"), values.get("deit-s amp"))
        if any(v is not None for v in pair):
            by_device.setdefault(r.smoke.device, []).append(charts.Row(r.tag, pair))
    series = [charts.Series("ResNet-50", "bar-resnet"), charts.Series("DeiT-S", "bar-deit")]
    return [(device, charts.bar_chart(rows, series, lambda v: f"{v:.0f}", "images/s", f"Fine-tune throughput on {device}"))
            for device, rows in by_device.items()]


def summary(report: Report) -> dict[str, int]:
    return {state: sum(r.state == state for r in report.rows) for state in STATES}


_env = jinja2.Environment(loader=jinja2.FileSystemLoader(layout.TEMPLATES), undefined=jinja2.StrictUndefined,
                          autoescape=True, trim_blocks=True, lstrip_blocks=True)


def html(report: Report) -> str:
    columns, rows = table(report)
    return _env.get_template("report.html.j2").render(
        generated=report.generated, commit=report.commit or "unknown", total=len(report.rows),
        summary=summary(report), columns=columns, groups=groups(columns), rows=rows, states=[s.replace(" ", "-") for s in STATES],
        state_names=STATES, size_chart=Markup(size_chart(report)),
        throughput=[(device, Markup(svg)) for device, svg in throughput_charts(report)],
    )


_MARKDOWN_RE = re.compile(r"[\\`*\[\]<>|~]")


def _md(text: str) -> str:
    """A table cell's text shown as it is: control characters escaped, no line break, and no character that ends
    the cell (|), opens HTML (<) or makes a link, code or emphasis (markdown's own backslash escapes)."""
    text = printable(" ".join(text.splitlines())).replace("&", "&amp;")
    return _MARKDOWN_RE.sub(lambda m: "\\" + m[0], text)


def markdown(report: Report) -> str:
    checks = check_names(report.rows)
    lines = [f"# torchyard matrix: {len(report.rows)} tags", "",
             f"Generated {report.generated} at commit {report.commit or 'unknown'}. "
             + ", ".join(f"{n} {state}" for state, n in summary(report).items() if n) + ".", "",
             "| tag | state | torch | CUDA | cuDNN | NCCL | Python | min driver | wheel | build | size (compressed) | "
             + "".join(f"{name} | " for name in checks) + "measured on |",
             "| --- " * (11 + len(checks) + 1) + "|"]
    for r in report.rows:
        b, s = r.build, r.smoke
        by_name = {c.name: c for c in s.checks} if s else {}
        smoke_cells = [(f"{c.status} {c.headline}" if c.headline and c.value is not None else c.status) if (c := by_name.get(n)) else ""
                       for n in checks]
        lines.append("| " + " | ".join(_md(cell) for cell in [
            r.tag, r.state + ("" if r.state == PASSED and not r.broken else f": {r.note}"), r.torch, r.cuda, r.cudnn or "not recorded",
            r.nccl or "not recorded", r.python, r.min_driver, r.wheel,
            f"{b.status} in {_duration(b.seconds)} ({short_date(b.started)})" if b else "",
            f"{human(r.size)} ({human(r.compressed)})" if r.size and r.compressed else human(r.size) if r.size else "",
            *smoke_cells,
            f"{s.device}{' · driver ' + s.driver if s.driver else ''} · {short_date(s.started)}" if s else "",
        ]) + " |")
    return "\n".join(lines) + "\n"


def write(report: Report, reports: Path = build.REPORTS) -> list[Path]:
    """reports/matrix.json, matrix.md, index.html; each replaced whole (a reader never sees half of one)."""
    outputs = {"matrix.json": records.encode(report), "matrix.md": markdown(report),
               "index.html": html(report)}
    return [write_atomic(reports / name, text) for name, text in outputs.items()]
