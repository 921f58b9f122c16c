"""`make matrix`'s progress: durations as people say them, a line a minute while a step runs, and estimates from
the times earlier runs recorded in reports/timings.json (the last time each step of each tag did work)."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Callable

from builder import records
from builder.heartbeat import Heartbeat
from builder.records import runs

HEARTBEAT_S = 60


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Timings:
    """reports/timings.json: step -> tag -> seconds the step took the last time it did work on that tag."""

    def __init__(self, reports: Path, say=print):
        self.path = reports / runs.TIMINGS
        try:
            self.data: runs.Timings = records.read(self.path, runs.Timings) or {}
        except records.BrokenRecord as e:  # estimates are a convenience: start afresh, and the next step rewrites it
            say(f"{e.short(reports.name)}: estimates start afresh")
            self.data = {}

    def estimate(self, step: str, tag: str) -> float | None:
        """This tag's last time, else the median of the other tags' (the same step costs about the same)."""
        times = self.data.get(step, {})
        if tag in times:
            return times[tag]
        return statistics.median(times.values()) if times else None

    def said(self, step: str, tag: str) -> str:
        """The estimate in words, with where it comes from."""
        estimate = self.estimate(step, tag)
        if estimate is None:
            return ""
        if tag in self.data.get(step, {}):
            return f"; ~{duration(estimate)} last time"
        return f"; ~{duration(estimate)} as other tags took"

    def remaining(self, todo: dict[str, list[str]], after: int) -> float | None:
        """The time the steps of the tags after the first `after` will take, when every one has an estimate."""
        times = [self.estimate(step, tag) for tag in list(todo)[after:] for step in todo[tag]]
        return None if any(t is None for t in times) else sum(times)

    def record(self, step: str, tag: str, seconds: float) -> None:
        self.data.setdefault(step, {})[tag] = round(seconds, 1)
        records.write(self.path, {name: dict(sorted(times.items())) for name, times in sorted(self.data.items())})


class Beat(Heartbeat):
    """While a long step runs: a line a minute with how long it has run and what it does now."""

    def __init__(self, line: Callable[[str, str], None], prefix: str, estimate: float | None):
        super().__init__(HEARTBEAT_S)
        self.line, self.prefix, self.estimate, self.latest = line, prefix, estimate, ""

    def inner(self, text: str) -> None:
        """What the step itself says (build steps, the suite's output): kept for the next beat, not printed."""
        text = re.sub(r"^\[[\d.\s]+s\]\s*", "", text.strip())  # the build's own elapsed time: the beat says it
        if text:
            self.latest = text if len(text) <= 90 else text[:87] + "..."

    def beat(self) -> None:
        seconds = self.seconds()
        of = "" if not self.estimate else (f" of ~{duration(self.estimate)}" if seconds <= self.estimate else
                                           f" (past the ~{duration(self.estimate)} estimate)")
        self.line(self.prefix, f"... {duration(seconds)}{of}" + (f": {self.latest}" if self.latest else ""))
