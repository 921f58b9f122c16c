"""`make matrix`: for each tag asked for, in matrix order: lock check, build, size, smoke; then the report.

A tag that cannot be built here (no current lock, and why: its wheel index unreachable; too little disk) says why
and how to fix it and does not fail the run; a failing tag does not stop it. Exit 0 only when every buildable tag
built and passed. A step whose result is current (builder/matrix_run/plan.py) is not redone.

Progress is a line per tag and step with the elapsed time, and an estimate from the times earlier runs recorded in
reports/timings.json (builder/matrix_run/progress.py).
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import docker

from builder import layout, records
from builder.host import gpu, smoke
from builder.image import base, build, engine, render, size
from builder.matrix.types import ImageSpec, Matrix
from builder.matrix_run import plan as planning
from builder.matrix_run.progress import Beat, Timings, duration
from builder.records import builds, runs
from builder.report import page, rows
from builder.units import human
from builder.wheels import cache as wheel_cache
from builder.wheels import lockfile, network, serve

DEFAULT_IMAGE_BYTES = 6_500_000_000  # until this machine has measured one (a v2.6-cu124 image is 5.9 GB)
DONE, CURRENT, FAILED, REFUSED = "done", "current", "failed", "not buildable"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_text(check: runs.Check) -> str:
    """'resnet50 amp PASS (90 images/s)': a check's status, and its figure when it has one."""
    text, value = rows.headline(check)
    return f"{check.name} {check.status}" + (f" ({text})" if value is not None else "")


class _Steps:
    """One tag's steps in a run: each said as a line, kept for run.json; one that did work records its time."""

    def __init__(self, run: Runner, spec: ImageSpec, prefix: str):
        self.run, self.spec, self.prefix = run, spec, prefix
        self.done: list[runs.Step] = []
        self.date = now()

    def prefix_of(self, step: str) -> str:
        return f"{self.prefix} {step:<5}"

    def say(self, step: str, text: str) -> None:
        self.run.line(self.prefix_of(step), text)

    def beat(self, step: str) -> Beat:
        return Beat(self.run.line, self.prefix_of(step), self.run.timings.estimate(step, self.spec.tag))

    def add(self, name: str, status: str, seconds: float, note: str) -> None:
        self.done.append(runs.Step(name=name, status=status, seconds=round(seconds, 1), note=note))
        if status == DONE and name != "lock":
            self.run.timings.record(name, self.spec.tag, seconds)
        self.say(name, note)

    def outcome(self, result: str, reason: str, fix: str | None) -> runs.Outcome:
        return runs.Outcome(tag=self.spec.tag, result=result, reason=reason, fix=fix, steps=tuple(self.done),
                               date=self.date)


class Runner:
    def __init__(self, matrix: Matrix, client: docker.DockerClient, repo: str, reports: Path,
                 settings: network.NetworkSettings, say=print, images: Path = layout.IMAGES, require_gpu: bool = False):
        self.matrix, self.client, self.repo, self.reports, self.say = matrix, client, repo, reports, say
        self.images, self.require_gpu, self.settings = images, require_gpu, settings
        self.timings = Timings(reports, say)
        self.gpus = gpu.host_has_gpus(client)  # as make smoke decides: the toolkit's route, or TORCHYARD_GPUS
        self.started = time.monotonic()
        self.width = max(map(len, matrix.specs))

    def line(self, prefix: str, text: str) -> None:
        self.say(f"[{duration(time.monotonic() - self.started):>8}] {prefix} {text}")

    def plan(self, specs: list[ImageSpec]) -> planning.Plan:
        refused = planning.unbuildable(specs, self.images, self.settings)
        return planning.plan(self.client, self.repo, specs, refused, self.images, self.reports, self.gpus,
                             self.require_gpu, self.say)

    # ------------------------------------------------------------ one tag

    def disk_problem(self) -> str | None:
        """Too little free disk for a build where the engine keeps images (checked when the engine is local)."""
        root = self.client.info().get("DockerRootDir")
        if not root or not Path(root).is_dir():
            return None
        largest, _, _ = builds.largest_image(self.reports)
        need = size.BUILD_FACTOR * (largest or DEFAULT_IMAGE_BYTES)
        free = shutil.disk_usage(root).free
        if free >= need:
            return None
        return (f"only {free / 1e9:.1f} GB free in {root}; a build needs about {need / 1e9:.1f} GB (the image, and its "
                f"wheels in the cache). Free space (make clean, docker image prune) and run make matrix again")

    def run_tag(self, spec: ImageSpec, number: str, todo: list[str], why_current: str) -> runs.Outcome:
        steps = _Steps(self, spec, f"{spec.tag:<{self.width}} {number}")
        steps.add("lock", DONE, 0, "current: " + ", ".join(f"images/{spec.tag}/{f}" for f in layout.LOCKS))
        if render.write(spec):
            steps.say("build", f"rendered images/{spec.tag}/ from matrix.yaml")
        if "build" in todo:
            if engine.find_image(self.client, f"{self.repo}:{spec.tag}") is None and (problem := self.disk_problem()):
                steps.add("build", REFUSED, 0, f"not buildable here: {problem}")
                return steps.outcome(rows.NOT_HERE, problem, "free disk space")
            if failure := self.build_step(spec, steps):
                return steps.outcome(rows.FAILED, failure, f"see reports/{spec.tag}/build.log")
        else:
            steps.add("build", CURRENT, 0, "current: " + why_current)
        image_id = engine.find_image(self.client, f"{self.repo}:{spec.tag}").id
        failures = []
        if "size" in todo:
            failures.append(self.size_step(spec, steps))
        else:
            steps.add("size", CURRENT, 0, f"current: measured on {image_id[7:19]}")
        if "smoke" in todo:
            failures.append(self.smoke_step(spec, steps))
        else:
            steps.add("smoke", CURRENT, 0, f"current: PASS on {image_id[7:19]} (reports/{spec.tag}/{runs.SMOKE})")
        if any(failures):
            return steps.outcome(rows.FAILED, "; ".join(filter(None, failures)), f"see reports/{spec.tag}/")
        return steps.outcome(rows.PASSED, "built and passed", None)

    def build_step(self, spec: ImageSpec, steps: _Steps) -> str | None:
        """Build the image; what went wrong, or None."""
        steps.say("build", "started" + self.timings.said("build", spec.tag))
        with steps.beat("build") as beat:
            try:
                base.ensure(self.client, spec.base, say=beat.inner)
                built = build.build(self.client, spec, self.repo, self.settings, say=beat.inner, reports=self.reports)
            except (build.BuildFailed, lockfile.LockError, base.BaseError, wheel_cache.FetchError, serve.ServeError) as e:
                steps.add("build", FAILED, beat.seconds(), f"FAILED:\n  {e}")
                return str(e).splitlines()[0]
        steps.add("build", DONE, built.seconds, f"built {built.image} {built.image_id[7:19]} in {duration(built.seconds)} "
                                                f"({built.cached}/{built.steps} steps from cache)")
        return None

    def size_step(self, spec: ImageSpec, steps: _Steps) -> str | None:
        """Measure the image and what a push sends, against its budget; what went wrong, or None."""
        image = f"{self.repo}:{spec.tag}"
        steps.say("size", "started: layers, packages, and the bytes a push sends" + self.timings.said("size", spec.tag))
        with steps.beat("size") as beat:
            over = None
            try:
                measured = size.check(self.client, image, spec.tag, spec.size_budget, say=beat.inner, reports=self.reports)
            except size.SizeError as e:  # the report is written all the same
                over = str(e)
                measured = records.read_report(self.reports, spec.tag, builds.SIZE, builds.SizeReport)
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
        with steps.beat("smoke") as beat:
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

    def say_plan(self, specs: list[ImageSpec], planned: planning.Plan) -> None:
        todo, refused = planned.todo, planned.refused
        where = "GPUs" if self.gpus else "the CPU (no GPU runtime)"
        self.say(f"matrix: {len(specs)} of {len(self.matrix.specs)} tags; smoke tests on {where}; reports in {self.reports}/")
        for s in specs:
            if s.tag in todo:
                self.say(f"  {s.tag}: " + (", ".join(todo[s.tag]) if todo[s.tag] else "everything current"))
        if refused:
            self.say(f"  not buildable here: {len(refused)} tag(s) (said below, each with its fix)")
        estimate = self.timings.remaining(todo, 0)
        if not todo:
            self.say("no tag asked for can be built here")
        elif not any(todo.values()):
            self.say("nothing to build or smoke-test: every buildable tag asked for is current")
        elif estimate is not None:
            self.say(f"estimate: about {duration(estimate)}, from earlier runs' times (reports/{runs.TIMINGS})")
        else:
            self.say(f"estimate: not yet (a step's first run records its time in reports/{runs.TIMINGS})")

    def refuse(self, spec: ImageSpec, why: str, fix: str) -> runs.Outcome:
        self.line(f"{spec.tag:<{self.width}} {'':>5} lock ", f"not buildable here: {why}; fix: {fix}")
        return runs.Outcome(tag=spec.tag, result=rows.NOT_HERE, reason=why, fix=fix,
                               steps=(runs.Step(name="lock", status=REFUSED, seconds=0, note=why),), date=now())

    def run_buildable(self, spec: ImageSpec, planned: planning.Plan, buildable: list[ImageSpec]) -> runs.Outcome:
        index = buildable.index(spec)
        outcome = self.run_tag(spec, f"{index + 1}/{len(buildable)}".rjust(5), planned.todo[spec.tag],
                               planned.why_current.get(spec.tag, ""))
        left = self.timings.remaining(planned.todo, index + 1)
        self.line(f"{spec.tag:<{self.width}} {'':>5} =>   ",
                  f"{outcome.result.upper()}" + ("" if outcome.result == rows.PASSED else f": {outcome.reason}")
                  + (f"; about {duration(left)} left" if left and index + 1 < len(buildable) else ""))
        return outcome

    def run(self, specs: list[ImageSpec]) -> int:
        planned = self.plan(specs)
        self.say_plan(specs, planned)
        outcomes = []
        buildable = [s for s in specs if s.tag not in planned.refused]
        try:
            for s in specs:
                outcome = (self.refuse(s, *planned.refused[s.tag]) if s.tag in planned.refused
                           else self.run_buildable(s, planned, buildable))
                outcomes.append(outcome)
                records.write_report(self.reports, outcome.tag, runs.RUN, outcome)  # the report shows it, dated
        finally:  # interrupted too: the report shows what finished, each tag with its date
            written = page.write(rows.collect(self.matrix, self.images, self.reports), self.reports)
            self.say("report: " + ", ".join(str(p) for p in written))
        counts = {state: sum(o.result == state for o in outcomes) for state in (rows.PASSED, rows.FAILED, rows.NOT_HERE)}
        self.say(f"matrix: {counts[rows.PASSED]} passed, {counts[rows.FAILED]} failed, {counts[rows.NOT_HERE]} "
                 f"not buildable here, in {duration(time.monotonic() - self.started)}")
        return 1 if counts[rows.FAILED] else 0


def run(matrix: Matrix, tags: str | None, repo: str, reports: Path, settings: network.NetworkSettings, say=print,
        require_gpu: bool = False) -> int:
    specs = planning.asked(matrix, tags)
    return Runner(matrix, engine.connect(), repo, reports, settings, say=say, require_gpu=require_gpu).run(specs)
