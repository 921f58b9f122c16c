"""Horizontal bar charts as inline SVG, for reports/index.html: drawn here, so the page fetches nothing.

A chart is rows (a label each) of bars, one per series; a row may carry a marker (a budget). Values are drawn to a
shared linear scale with round ticks; each bar says its value at its end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

LABEL_W, BAR_W, VALUE_W = 150, 430, 92
BAR_H, BAR_GAP, ROW_GAP, AXIS_H, LEGEND_H = 14, 3, 10, 24, 22


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # the class that colours its bars (defined in the page's style)


@dataclass(frozen=True)
class Row:
    label: str
    values: tuple[float | None, ...]  # one per series; None: no bar
    marker: float | None = None  # a limit drawn as a tick across the row
    note: str = ""  # said after the label when the row has no bars


def nice_step(top: float, ticks: int = 5) -> float:
    """A round tick spacing (1, 2 or 5 times a power of ten) giving about `ticks` ticks up to `top`."""
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def bar_chart(rows: Sequence[Row], series: Sequence[Series], fmt: Callable[[float], str], unit: str,
              title: str) -> str:
    """The SVG markup (its text escaped); the caller marks it safe for the page."""
    top = max([v for r in rows for v in r.values if v is not None] + [r.marker for r in rows if r.marker] + [0])
    step = nice_step(top) if top > 0 else 1
    axis_top = step * math.ceil(top / step) if top > 0 else 1
    scale = BAR_W / axis_top
    row_h = len(series) * (BAR_H + BAR_GAP) - BAR_GAP + ROW_GAP
    height = LEGEND_H + len(rows) * row_h + AXIS_H
    width = LABEL_W + BAR_W + VALUE_W
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">', f"<title>{escape(title)}</title>"]
    x = LABEL_W
    for s in series:  # legend
        out.append(f'<rect class="{s.css}" x="{x}" y="4" width="12" height="12" rx="2"/>'
                   f'<text class="legend" x="{x + 16}" y="14">{escape(s.name)}</text>')
        x += 24 + 7 * len(s.name)
    out.append(f'<text class="unit" x="{width - 4}" y="14" text-anchor="end">{escape(unit)}</text>')
    grid_bottom = height - AXIS_H + 4
    tick = 0.0
    while tick <= axis_top + step / 2:
        tx = LABEL_W + tick * scale
        out.append(f'<line class="grid" x1="{tx:.1f}" y1="{LEGEND_H}" x2="{tx:.1f}" y2="{grid_bottom}"/>'
                   f'<text class="tick" x="{tx:.1f}" y="{height - 6}" text-anchor="middle">{escape(fmt(tick))}</text>')
        tick += step
    y = LEGEND_H + ROW_GAP / 2
    for row in rows:
        out.append(f'<text class="label" x="{LABEL_W - 8}" y="{y + row_h / 2 - ROW_GAP / 2 + 4:.1f}" '
                   f'text-anchor="end">{escape(row.label)}</text>')
        if all(v is None for v in row.values) and row.note:
            out.append(f'<text class="note" x="{LABEL_W + 6}" y="{y + row_h / 2 - ROW_GAP / 2 + 4:.1f}">{escape(row.note)}</text>')
        for i, (s, value) in enumerate(zip(series, row.values)):
            if value is None:
                continue
            by = y + i * (BAR_H + BAR_GAP)
            w = max(value * scale, 1.0)
            tx = LABEL_W + w + 4
            if row.marker and 0 <= row.marker * scale - w < 40:  # the value after the marker, not under it
                tx = LABEL_W + row.marker * scale + 5
            out.append(f'<rect class="{s.css}" x="{LABEL_W}" y="{by:.1f}" width="{w:.1f}" height="{BAR_H}" rx="2">'
                       f'<title>{escape(f"{row.label}, {s.name}: {fmt(value)} {unit}")}</title></rect>'
                       f'<text class="value" x="{tx:.1f}" y="{by + BAR_H - 3:.1f}">{escape(fmt(value))}</text>')
        if row.marker:
            mx = LABEL_W + row.marker * scale
            out.append(f'<line class="marker" x1="{mx:.1f}" y1="{y - 3:.1f}" x2="{mx:.1f}" y2="{y + row_h - ROW_GAP + 3:.1f}">'
                       f'<title>{escape(f"budget {fmt(row.marker)} {unit}")}</title></line>')
        y += row_h
    out.append("</svg>")
    return "".join(out)
