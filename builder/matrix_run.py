"""`make matrix`: for each tag asked for, in matrix order: lock check, build, size, smoke; then the report.

A tag that cannot be built here (no current lock, and why: its wheel index unreachable; too little disk) says why
and how to fix it and does not fail the run; a failing tag does not stop it. Exit 0 only when every buildable tag
built and passed. A step whose result is current is not redone:

- the image is current when <repo>:<tag> exists, its io.torchyard.context.sha256 label is the hash of the context a
  build would assemble now (Dockerfile, locks, spec, the files every image carries, smoke_tests/: builder/image/build.py),
  and its io.torchyard.base.id label is the ID of the base image there now;
- the size is current when size.json and compressed.json name the image's ID;
- the smoke report is current when smoke.json names the image's ID, says PASS, and ran as this run would (GPUs or
  the CPU, --require-gpu or not, synthetic data). A failed step is always tried again.

Progress is a line per tag and step with the elapsed time, and an estimate from the times earlier runs recorded in
reports/timings.json (the last time each step of each tag did work).
"""

from __future__ import annotations

import re
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import docker
import docker.errors

from builder import layout, records
from builder.heartbeat import Heartbeat
from builder.host import doctor, gpu, smoke
from builder.image import base, build, render, size
from builder.matrix.spec import PYPI_INDEX, ImageSpec, Matrix, MatrixError, Problem
from builder.report import page, rows
from builder.units import human
from builder.wheels import cache as wheel_cache
from builder.wheels import lock, network, serve

STEPS = ("lock", "build", "size", "smoke")
HEARTBEAT_S = 60
DEFAULT_IMAGE_BYTES = 6_500_000_000  # until this machine has measured one (a v2.6-cu124 image is 5.9 GB)
DONE, CURRENT, FAILED, REFUSED = "done", "current", "failed", "not buildable"


Step, Outcome = records.Step, records.Outcome  # reports/<tag>/run.json


def select(matrix: Matrix, value: str | None) -> list[ImageSpec]:
    """TAG=a,b,c (any order, matrix order kept) or all (the default); unknown tags are refused, each explained."""
    if value in (None, "", "all"):
        return list(matrix.specs.values())
    wanted, problems = [], []
    for tag in filter(None, (t.strip() for t in value.split(","))):
        try:
            wanted += matrix.select(tag)
        except MatrixError as e:
            problems += e.problems
    if problems or not wanted:
        raise MatrixError(problems or [Problem("TAG", "give a comma-separated list of tags, or all")])
    chosen = {s.tag for s in wanted}
    return [s for s in matrix.specs.values() if s.tag in chosen]


def check_text(check: records.Check) -> str:
    """'resnet50 amp PASS (90 images/s)': a check's status, and its figure when it has one."""
    text, value = rows.headline(check)
    return f"{check.name} {check.status}" + (f" ({text})" if value is not None else "")


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
        self.path = reports / records.TIMINGS
        try:
            self.data: records.Timings = records.read(self.path, records.Timings) or {}
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

    def record(self, step: str, tag: str, seconds: float) -> None:
        self.data.setdefault(step, {})[tag] = round(seconds, 1)
        records.write(self.path, {name: dict(sorted(times.items())) for name, times in sorted(self.data.items())})


class _Beat(Heartbeat):
    """While a long step runs: a line a minute with how long it has run and what it does now."""

    def __init__(self, run: Runner, prefix: str, estimate: float | None):
        super().__init__(HEARTBEAT_S)
        self.run, self.prefix, self.estimate, self.latest = run, prefix, estimate, ""

    def inner(self, text: str) -> None:
        """What the step itself says (build steps, the suite's output): kept for the next beat, not printed."""
        text = re.sub(r"^\[[\d.\s]+s\]\s*", "", text.strip())  # the build's own elapsed time: the beat says it
        if text:
            self.latest = text if len(text) <= 90 else text[:87] + "..."

    def beat(self) -> None:
        seconds = self.seconds()
        of = "" if not self.estimate else (f" of ~{duration(self.estimate)}" if seconds <= self.estimate else
                                           f" (past the ~{duration(self.estimate)} estimate)")
        self.run.line(self.prefix, f"... {duration(seconds)}{of}" + (f": {self.latest}" if self.latest else ""))


class _Steps:
    """One tag's steps in a run: each said as a line, kept for run.json; one that did work records its time."""

    def __init__(self, run: Runner, spec: ImageSpec, prefix: str):
        self.run, self.spec, self.prefix = run, spec, prefix
        self.done: list[Step] = []
        self.date = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def prefix_of(self, step: str) -> str:
        return f"{self.prefix} {step:<5}"

    def say(self, step: str, text: str) -> None:
        self.run.line(self.prefix_of(step), text)

    def add(self, name: str, status: str, seconds: float, note: str) -> None:
        self.done.append(Step(name=name, status=status, seconds=round(seconds, 1), note=note))
        if status == DONE and name != "lock":
            self.run.timings.record(name, self.spec.tag, seconds)
        self.say(name, note)

    def outcome(self, result: str, reason: str, fix: str | None) -> Outcome:
        return Outcome(tag=self.spec.tag, result=result, reason=reason, fix=fix, steps=tuple(self.done), date=self.date)


class Runner:
    def __init__(self, matrix: Matrix, client: docker.DockerClient, repo: str, reports: Path,
                 settings: network.NetworkSettings, say=print, images: Path = layout.IMAGES, require_gpu: bool = False):
        self.matrix, self.client, self.repo, self.reports, self.say = matrix, client, repo, reports, say
        self.images, self.require_gpu, self.settings = images, require_gpu, settings
        self.timings = Timings(reports, say)
        self.gpus = gpu.host_has_gpus(client)  # as make smoke decides: the toolkit's route, or TORCHYARD_GPUS
        self.started = time.monotonic()

    def line(self, prefix: str, text: str) -> None:
        self.say(f"[{duration(time.monotonic() - self.started):>8}] {prefix} {text}")

    # ------------------------------------------------------------ what is current

    def image(self, spec: ImageSpec):
        try:
            return self.client.images.get(f"{self.repo}:{spec.tag}")
        except docker.errors.ImageNotFound:
            return None

    def image_current(self, spec: ImageSpec) -> tuple[bool, str]:
        found = self.image(spec)
        if found is None:
            return False, "no image yet"
        labels = found.labels or {}
        if labels.get(build.CONTEXT_LABEL) != build.inputs_sha256(spec, self.images):
            return False, "its inputs changed since the image was built"
        base_id = build.base_id(self.client, spec)
        if labels.get(f"{layout.LABEL_PREFIX}.base.id") != base_id:
            return False, f"the base {spec.base.image} is not the one it was built on"
        return True, f"{found.id[7:19]}, built from these inputs"

    def _record(self, spec: ImageSpec, name: str, schema):
        """The tag's record, or None; a broken one is said and counts as none (the step that writes it runs)."""
        try:
            return records.read_report(self.reports, spec.tag, name, schema)
        except records.BrokenRecord as e:
            self.say(f"  {e.short(f'reports/{spec.tag}')}: measured again")
            return None

    def size_current(self, spec: ImageSpec, image_id: str) -> bool:
        measured = self._record(spec, records.SIZE, records.SizeReport)
        packed = self._record(spec, records.COMPRESSED, records.Compressed)
        return bool(measured and packed) and measured.image_id == image_id and packed.image_id == image_id

    def smoke_current(self, spec: ImageSpec, image_id: str) -> bool:
        found = self._record(spec, records.SMOKE, records.SmokeReport)
        return (found is not None and found.image_id == image_id and found.status == "PASS"
                and found.gpus_passed == self.gpus and found.require_gpu == self.require_gpu and found.data is None)

    # ------------------------------------------------------------ planning

    def unbuildable(self, specs: list[ImageSpec]) -> dict[str, tuple[str, str]]:
        """tag -> (why it cannot be built here, how to fix it), for tags without a current lock; the wheel index of
        each is asked once whether it answers, so the reason says which of the two it is."""
        problems = {s.tag: lock.problem(s, self.images, as_repository=True) for s in specs}
        missing = [s for s in specs if problems[s.tag]]
        indexes = {s.tag: lock.indexes(s, self.settings)[0] for s in missing}
        with ThreadPoolExecutor(8) as pool:
            down = dict(zip(set(indexes.values()), pool.map(lambda url: lock.unreachable(url, self.settings, timeout=5),
                                                            set(indexes.values()))))
        out = {}
        for s in missing:
            index = indexes[s.tag]
            fix = f"make lock TAG={s.tag}" + ("" if s.index == PYPI_INDEX else
                                               " where the PyTorch wheel index answers, or point TORCHYARD_TORCH_INDEX at a mirror")
            why = ("no current lock" if "stale" not in problems[s.tag] else "its lock is stale") + (
                f", and its wheel index {index} cannot be reached from here ({down[index]})" if down[index] else
                f" ({problems[s.tag]})")
            out[s.tag] = (why, fix)
        return out

    def plan(self, specs: list[ImageSpec], refused: dict) -> dict[str, list[str]]:
        """tag -> the steps that will do work (the rest are current)."""
        todo = {}
        for s in specs:
            if s.tag in refused:
                continue
            current, _ = self.image_current(s)
            found = self.image(s) if current else None
            steps = [] if current else ["build"]
            if not current or not self.size_current(s, found.id):
                steps.append("size")
            if not current or not self.smoke_current(s, found.id):
                steps.append("smoke")
            todo[s.tag] = steps
        return todo

    def remaining(self, todo: dict[str, list[str]], after: int) -> float | None:
        tags = list(todo)[after:]
        times = [self.timings.estimate(step, tag) for tag in tags for step in todo[tag]]
        return None if any(t is None for t in times) else sum(times)

    # ------------------------------------------------------------ one tag

    def disk_problem(self, spec: ImageSpec) -> str | None:
        """Too little free disk for a build where the engine keeps images (checked when the engine is local)."""
        root = self.client.info().get("DockerRootDir")
        if not root or not Path(root).is_dir():
            return None
        largest, _, _ = records.largest_image(self.reports)
        need = doctor.BUILD_FACTOR * (largest or DEFAULT_IMAGE_BYTES)
        free = shutil.disk_usage(root).free
        if free >= need:
            return None
        return (f"only {free / 1e9:.1f} GB free in {root}; a build needs about {need / 1e9:.1f} GB (the image, and its "
                f"wheels in the cache). Free space (make clean, docker image prune) and run make matrix again")

    def run_tag(self, spec: ImageSpec, number: str, todo: list[str]) -> Outcome:
        steps = _Steps(self, spec, f"{spec.tag:<{max(map(len, self.matrix.specs))}} {number}")
        steps.add("lock", DONE, 0, "current: " + ", ".join(f"images/{spec.tag}/{f}" for f in layout.LOCKS))
        if render.write(spec):
            steps.say("build", f"rendered images/{spec.tag}/ from matrix.yaml")
        if "build" in todo:
            if self.image(spec) is None and (problem := self.disk_problem(spec)):
                steps.add("build", REFUSED, 0, f"not buildable here: {problem}")
                return steps.outcome(rows.NOT_HERE, problem, "free disk space")
            if failure := self.build_step(spec, steps):
                return steps.outcome(rows.FAILED, failure, f"see reports/{spec.tag}/build.log")
        else:
            steps.add("build", CURRENT, 0, "current: " + self.image_current(spec)[1])
        image_id = self.image(spec).id
        failures = []
        if "size" in todo:
            failures.append(self.size_step(spec, steps))
        else:
            steps.add("size", CURRENT, 0, f"current: measured on {image_id[7:19]}")
        if "smoke" in todo:
            failures.append(self.smoke_step(spec, steps))
        else:
            steps.add("smoke", CURRENT, 0, f"current: PASS on {image_id[7:19]} (reports/{spec.tag}/{records.SMOKE})")
        if any(failures):
            return steps.outcome(rows.FAILED, "; ".join(filter(None, failures)), f"see reports/{spec.tag}/")
        return steps.outcome(rows.PASSED, "built and passed", None)

    def build_step(self, spec: ImageSpec, steps: _Steps) -> str | None:
        """Build the image; what went wrong, or None."""
        steps.say("build", "started" + self.timings.said("build", spec.tag))
        with _Beat(self, steps.prefix_of("build"), self.timings.estimate("build", spec.tag)) as beat:
            try:
                base.ensure(self.client, spec.base, say=beat.inner)
                built = build.build(self.client, spec, self.repo, self.settings, say=beat.inner, reports=self.reports)
            except (build.BuildFailed, lock.LockError, base.BaseError, wheel_cache.FetchError, serve.ServeError) as e:
                steps.add("build", FAILED, beat.seconds(), f"FAILED:\n  {e}")
                return str(e).splitlines()[0]
        steps.add("build", DONE, built.seconds, f"built {built.image} {built.image_id[7:19]} in {duration(built.seconds)} "
                                                f"({built.cached}/{built.steps} steps from cache)")
        return None

    def size_step(self, spec: ImageSpec, steps: _Steps) -> str | None:
        """Measure the image and what a push sends, against its budget; what went wrong, or None."""
        image = f"{self.repo}:{spec.tag}"
        steps.say("size", "started: layers, packages, and the bytes a push sends" + self.timings.said("size", spec.tag))
        with _Beat(self, steps.prefix_of("size"), self.timings.estimate("size", spec.tag)) as beat:
            over = None
            try:
                measured = size.check(self.client, image, spec.tag, spec.size_budget, say=beat.inner, reports=self.reports)
            except size.SizeError as e:  # the report is written all the same
                over = str(e)
                measured = records.read_report(self.reports, spec.tag, records.SIZE, records.SizeReport)
            packed = size.compressed(self.client, image, spec.tag, self.reports, say=beat.inner)
        text = f"{human(measured.total)}, {human(packed.total)} compressed (as a push sends) in {duration(beat.seconds())}"
        if over:
            steps.add("size", FAILED, beat.seconds(), f"FAILED: {text}:\n  {over}")
            return "over its size budget"
        steps.add("size", DONE, beat.seconds(), text + (f"; budget {human(spec.size_budget)}" if spec.size_budget else ""))
        return None

    def smoke_step(self, spec: ImageSpec, steps: _Steps) -> str | None:
        """Run the smoke suite in the image; what went wrong, or None."""
        steps.say("smoke", f"started on {'GPUs' if self.gpus else 'the CPU'}" + self.timings.said("smoke", spec.tag))
        with _Beat(self, steps.prefix_of("smoke"), self.timings.estimate("smoke", spec.tag)) as beat:
            try:
                result = smoke.run(self.client, spec, self.repo, self.matrix, say=beat.inner, reports=self.reports,
                                   require_gpu=self.require_gpu)
            except smoke.SmokeError as e:
                steps.add("smoke", FAILED, beat.seconds(), f"FAILED: {e}")
                return "the smoke suite wrote no report"
        checks = ", ".join(map(check_text, result.checks))
        if result.status != "PASS":
            steps.add("smoke", FAILED, result.seconds, f"FAIL in {duration(result.seconds)}: {checks}; "
                                                       f"log reports/{spec.tag}/smoke.log")
            return "smoke tests failed"
        steps.add("smoke", DONE, result.seconds, f"PASS in {duration(result.seconds)}: {checks}")
        return None

    # ------------------------------------------------------------ the run

    def run(self, specs: list[ImageSpec]) -> int:
        refused = self.unbuildable(specs)
        todo = self.plan(specs, refused)
        where = "GPUs" if self.gpus else "the CPU (no GPU runtime)"
        self.say(f"matrix: {len(specs)} of {len(self.matrix.specs)} tags; smoke tests on {where}; reports in {self.reports}/")
        for s in specs:
            if s.tag in todo:
                self.say(f"  {s.tag}: " + (", ".join(todo[s.tag]) if todo[s.tag] else "everything current"))
        if refused:
            self.say(f"  not buildable here: {len(refused)} tag(s) (said below, each with its fix)")
        estimate = self.remaining(todo, 0)
        if not todo:
            self.say("no tag asked for can be built here")
        elif not any(todo.values()):
            self.say("nothing to build or smoke-test: every buildable tag asked for is current")
        elif estimate is not None:
            self.say(f"estimate: about {duration(estimate)}, from earlier runs' times (reports/{records.TIMINGS})")
        else:
            self.say(f"estimate: not yet (a step's first run records its time in reports/{records.TIMINGS})")
        outcomes = []
        buildable = [s for s in specs if s.tag not in refused]
        width = max(map(len, self.matrix.specs))
        try:
            for s in specs:
                if s.tag in refused:
                    why, fix = refused[s.tag]
                    outcome = Outcome(tag=s.tag, result=rows.NOT_HERE, reason=why, fix=fix,
                                      steps=(Step(name="lock", status=REFUSED, seconds=0, note=why),),
                                      date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
                    self.line(f"{s.tag:<{width}} {'':>5} lock ", f"not buildable here: {why}; fix: {fix}")
                else:
                    index = buildable.index(s)
                    outcome = self.run_tag(s, f"{index + 1}/{len(buildable)}".rjust(5), todo[s.tag])
                    left = self.remaining(todo, index + 1)
                    self.line(f"{s.tag:<{width}} {'':>5} =>   ",
                              f"{outcome.result.upper()}" + ("" if outcome.result == rows.PASSED else f": {outcome.reason}")
                              + (f"; about {duration(left)} left" if left and index + 1 < len(buildable) else ""))
                outcomes.append(outcome)
                self.write_outcome(outcome)
        finally:  # interrupted too: the report shows what finished, each tag with its date
            written = page.write(rows.collect(self.matrix, self.images, self.reports), self.reports)
            self.say("report: " + ", ".join(str(p) for p in written))
        counts = {state: sum(o.result == state for o in outcomes) for state in (rows.PASSED, rows.FAILED, rows.NOT_HERE)}
        self.say(f"matrix: {counts[rows.PASSED]} passed, {counts[rows.FAILED]} failed, {counts[rows.NOT_HERE]} "
                 f"not buildable here, in {duration(time.monotonic() - self.started)}")
        return 1 if counts[rows.FAILED] else 0

    def write_outcome(self, outcome: Outcome) -> None:
        """reports/<tag>/run.json: what this run said of the tag (the report shows it with its date)."""
        records.write_report(self.reports, outcome.tag, records.RUN, outcome)


def run(matrix: Matrix, tags: str | None, repo: str, reports: Path, settings: network.NetworkSettings, say=print,
        require_gpu: bool = False) -> int:
    specs = select(matrix, tags)
    return Runner(matrix, build.connect(), repo, reports, settings, say=say, require_gpu=require_gpu).run(specs)
