"""Rows -> reports/matrix.json, matrix.md and index.html: the whole matrix at once, drawn from builder/report/rows.py.

Every decision about what a cell shows, how it sorts and how it is coloured is made here, in a named function per
column; the template (templates/report.html.j2) only loops.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import jinja2
from markupsafe import Markup

from builder import layout, records
from builder.files import write_atomic
from builder.image import size
from builder.inputs import printable
from builder.matrix.compat import version_key
from builder.report import charts
from builder.report.rows import PASSED, STATES, Build, Report, Row, Smoke
from builder.units import human

# The smoke checks with a column each, in the suite's order; a check the suite adds later gets one too.
CHECK_ORDER = ("environment", "cuda", "cudnn conv", "nccl all-reduce", "gloo all-reduce", "resnet50 amp", "deit-s amp")


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


def _cell(text: str, sort=None, css: str = "", title: str = "", pill: bool = False, href: str = "") -> dict:
    """href: a file beside the page (reports/<tag>/…), opened only when clicked."""
    return {"text": text, "sort": "" if sort is None else sort, "css": css, "title": title, "pill": pill, "href": href}


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



def _version_sort(version: str) -> str:
    """version_key as text the page's script sorts: '2.10' -> '0002.0010', after '0002.0009'."""
    return ".".join(f"{n:04d}" for n in version_key(version))


def _version_cell(version: str | None) -> dict:
    """A version sorts as numbers (2.10 after 2.9); one not recorded says so."""
    if not version:
        return _cell("not recorded", "", "unknown")
    return _cell(version, _version_sort(version))


def _state_cell(r: Row) -> dict:
    return _cell(r.state, STATES.index(r.state), f"state state-{r.state.replace(' ', '-')}", r.note, pill=True)


def _base_cell(base: str) -> dict:
    return _cell(base if len(base) < 24 else base[:21] + "…", base, title=base)


def _archs_cell(archs: tuple[str, ...] | None) -> dict:
    return _cell(_archs_text(archs), len(archs) if archs else -1, "" if archs else "unknown", " ".join(archs or ()))


def _lock_cell(r: Row) -> dict:
    sha = r.lock_sha256
    return _cell(sha[:12] if sha else "no lock", sha or "", "mono" if sha else "unknown", r.lock_problem or sha or "")


def _build_cell(b: Build | None) -> dict:
    if not b:
        return _cell("", -1)
    title = f"{short_date(b.started)}, {b.cached}/{b.steps} steps from cache" + (f"; {b.error}" if b.error else "")
    return _cell(f"{b.status} {_duration(b.seconds)}", b.seconds,
                 f"status status-{'PASS' if b.status == 'built' else 'FAIL'}", title)


def _size_cell(r: Row) -> dict:
    title = (("" if r.sizes_of_last_build else "measured on an earlier image; ")
             + (f"budget {human(r.size_budget)}" if r.size_budget else ""))
    return _cell(human(r.size) if r.size else "", r.size or -1, "" if r.sizes_of_last_build else "stale", title)


def _compressed_cell(r: Row) -> dict:
    return _cell(human(r.compressed) if r.compressed else "", r.compressed or -1,
                 title=f"gzip -{size.GZIP_LEVEL} per layer, as docker push sends")


def _pushed_cell(pushed: tuple[dict, ...]) -> dict:
    title = "; ".join(f"{p['reference']}@{p['digest']}" + ("" if p["of_last_build"] else " (an earlier image)")
                      for p in pushed)
    return _cell(", ".join(p["reference"].split("/")[0] for p in pushed), len(pushed), title=title)


def _measured_cell(s: Smoke | None) -> dict:
    if not s:
        return _cell("", "")
    stale = not s.of_last_build
    return _cell(f"{s.device}" + (f" · driver {s.driver}" if s.driver else "") + f" · {short_date(s.started)}",
                 s.started, "stale" if stale else "", "measured on an earlier image than the last build" if stale else "")


def _attested_cell(r: Row) -> dict:
    """The smoke verdict signed beside the pushed digest(s), next to the local one: what a puller can verify."""
    verdicts = [a for a in r.attested if a["smoke"]]
    if not verdicts:
        return _cell("", "")
    status = verdicts[0]["smoke"].split(" ", 1)[0]
    title = "; ".join(f"{a['reference']}@{a['digest'][:19]}…: {a['smoke']}, signed {short_date(a['date'])}"
                      for a in verdicts)
    return _cell(f"{status} · signed", status, f"status status-{status}", title)


def _sbom_cell(r: Row) -> dict:
    return _cell("CycloneDX", 1, title=r.sbom, href=r.sbom) if r.sbom else _cell("", 0)


def _check_cell(s: Smoke | None, name: str) -> dict:
    """One smoke check: its figure sorts first, then PASS, SKIPPED, FAIL; a check the tag never ran sorts last."""
    c = {c.name: c for c in s.checks}.get(name) if s else None
    if not c:
        return _cell("", -4)
    sort = c.value if c.value is not None else {"PASS": 0, "SKIPPED": -1, "FAIL": -2}.get(c.status, -3)
    return _cell(f"{c.status} · {c.headline}" if c.headline else c.status, sort,
                 f"status status-{c.status}" + ("" if s.of_last_build else " stale"), c.reason)


def cells(r: Row, checks: list[str]) -> dict[str, dict]:
    """One row's cells by column key."""
    found = {
        "tag": _cell(r.tag, r.order, "tag"), "state": _state_cell(r),
        "torch": _version_cell(r.torch), "torchvision": _version_cell(r.torchvision), "cuda": _version_cell(r.cuda),
        "cudnn": _version_cell(r.cudnn), "nccl": _version_cell(r.nccl), "python": _version_cell(r.python),
        "base": _base_cell(r.base), "driver": _cell(f"≥ {r.min_driver}", _version_sort(r.min_driver)),
        "archs": _archs_cell(r.archs), "wheel": _cell(r.wheel), "lock": _lock_cell(r),
        "build": _build_cell(r.build), "size": _size_cell(r), "compressed": _compressed_cell(r),
        "pushed": _pushed_cell(r.pushed), "measured": _measured_cell(r.smoke), "attested": _attested_cell(r),
        "sbom": _sbom_cell(r),
    }
    return found | {f"check-{i}": _check_cell(r.smoke, name) for i, name in enumerate(checks)}


def columns(checks: list[str]) -> list[dict]:
    """What a person looks for first comes first: the tag, its state and versions, then what happened to it; the
    facts behind it (driver, archs, inputs) further right."""
    def group(name: str, *keys_titles: tuple[str, str]) -> list[dict]:
        return [{"key": key, "title": title, "group": name} for key, title in keys_titles]

    return (group("image", ("tag", "tag"), ("state", "state"))
            + group("versions", ("torch", "torch"), ("torchvision", "vision"), ("cuda", "CUDA"), ("cudnn", "cuDNN"),
                    ("nccl", "NCCL"), ("python", "Python"))
            + group("build", ("build", "build"), ("size", "size"), ("compressed", "compressed"))
            + group("smoke", *((f"check-{i}", name.replace(" all-reduce", "").replace(" amp", ""))
                               for i, name in enumerate(checks)), ("measured", "measured on"), ("attested", "attested"))
            + group("runs on", ("driver", "min driver"), ("archs", "GPU archs"))
            + group("inputs", ("base", "base"), ("wheel", "wheel"), ("lock", "lock sha256"), ("pushed", "pushed"),
                    ("sbom", "SBOM")))


def table(report: Report) -> tuple[list[dict], list[dict]]:
    """The page's columns and, per row, its cells (text, sort key, class, tooltip)."""
    checks = check_names(report.rows)
    header = columns(checks)
    rows = []
    for r in report.rows:
        by_key = cells(r, checks)
        rows.append({"tag": r.tag, "state": r.state.replace(" ", "-"), "cells": [by_key[c["key"]] for c in header]})
    return header, rows

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
             + "".join(f"{name} | " for name in checks) + "measured on | attested smoke | SBOM |",
             "| --- " * (11 + len(checks) + 3) + "|"]
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
            "; ".join(a["smoke"] for a in r.attested if a["smoke"]),
        ]) + f" | {f'[CycloneDX]({r.sbom})' if r.sbom else ''} |")  # the path is <tag>/sbom.cdx.json: nothing to escape
    return "\n".join(lines) + "\n"


def write(report: Report, reports: Path = layout.REPORTS) -> list[Path]:
    """reports/matrix.json, matrix.md, index.html; each replaced whole (a reader never sees half of one)."""
    outputs = {"matrix.json": records.encode(report), "matrix.md": markdown(report),
               "index.html": html(report)}
    return [write_atomic(reports / name, text) for name, text in outputs.items()]
