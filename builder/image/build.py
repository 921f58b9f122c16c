"""images/<tag>/ -> image <repo>:<tag>, through the Docker SDK (classic builder).

A person sees each step with the elapsed time (and a heartbeat during long ones); the whole log goes
to reports/<tag>/build.log. A failure names the failing step with the last log lines, leaves no
containers behind (forcerm) and never moves the tag.

The layers are the same bytes in every build of one commit (see templates/Dockerfile.j2); the image ID is made so
too: the classic builder writes each step's time and its parent step's ID into the image's config, so the tag is
given to the same image with a config of fixed times instead (reproducible_config), loaded beside the builder's.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import docker

from builder import layout
from builder import records
from builder.files import open_fresh
from builder.heartbeat import Heartbeat
from builder.image import context, engine, render
from builder.image.base import SOURCE_DATE_EPOCH
from builder.matrix.types import ImageSpec
from builder.records import builds
from builder.urls import redact
from builder.wheels import cache as wheel_cache
from builder.wheels import lockfile, serve
from builder.wheels.network import NetworkSettings

STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
LAYER_RE = re.compile(r"^---> ([0-9a-f]{12})$")
HEARTBEAT_S = 30
TAIL_LINES = 25
CONTEXT_LABEL = f"{layout.LABEL_PREFIX}.context.sha256"  # builder/image/context.py: what the image was built from


class BuildFailed(Exception):
    def __init__(self, tag: str, step: str, instruction: str, error: str, tail: list[str], log: Path):
        self.tag, self.step, self.instruction, self.error, self.log = tag, step, instruction, error, log
        lines = "\n".join(f"    {line}" for line in tail)
        super().__init__(f"build of {tag} failed at step {step}: {instruction}\n  {error}\n  last log lines:\n{lines}\n"
                         f"  full log: {log}")


@dataclass(frozen=True)
class BuildResult:
    image: str
    image_id: str
    seconds: float
    steps: int
    cached: int
    log: Path
    layers: tuple[str, ...]  # the image ID after each step but FROM (the base is not the build's), as printed


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(layout.ROOT), *args], capture_output=True, text=True, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance_labels(built_from: context.Context) -> dict[str, str]:
    """The labels that describe this build rather than the spec (so they are not in the Dockerfile).

    created follows SOURCE_DATE_EPOCH, else the commit time, so rebuilding one commit gives one value; the
    revision says -dirty when any source of the context (images/<tag>/, a carried file, matrix.yaml for the
    generated matrix.json) has uncommitted changes; the context's sha256 names exactly what was built.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or _git("log", "-1", "--format=%ct")
    created = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    revision = _git("rev-parse", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--", *map(str, built_from.sources)):
        revision += "-dirty"
    return {
        "org.opencontainers.image.created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "org.opencontainers.image.revision": revision,
        # an origin may carry a token (https://user:TOKEN@host/…): the label names the place, not the key
        "org.opencontainers.image.source": redact(_git("remote", "get-url", "origin") or layout.ROOT.as_uri()),
        CONTEXT_LABEL: built_from.sha256,
    }


def base_id(client: docker.DockerClient, spec: ImageSpec) -> str:
    found = engine.find_image(client, spec.base.image)
    return found.id if found else ""  # without it, the build itself then says the base is missing


def locks_sha256(paths: list[Path]) -> str:
    """The locks' hash, in install order: what the io.torchyard.lock.sha256 label says."""
    return hashlib.sha256(b"".join(context.read_source(p) for p in paths)).hexdigest()


def lock_labels(spec: ImageSpec, images: Path, buildargs: dict[str, str]) -> dict[str, str]:
    """The manifest's summary: the locks' hash (both files, in install order) and size, the base's ID."""
    paths = [images / spec.tag / layout.LOCK_FILE, images / spec.tag / layout.WORKSPACE_LOCK_FILE]
    return {
        f"{layout.LABEL_PREFIX}.lock.sha256": locks_sha256(paths),
        f"{layout.LABEL_PREFIX}.lock.packages": str(sum(len(lockfile.packages(p)) for p in paths)),
        f"{layout.LABEL_PREFIX}.base.id": buildargs[render.BASE_ID_ARG] or "not recorded",
        f"{layout.LABEL_PREFIX}.manifest": f"{layout.SHARE}/manifest.json",
    }


def inputs_sha256(spec: ImageSpec, images: Path = layout.IMAGES) -> str:
    """The context hash a build of this tag would label its image with now."""
    return context.assemble(spec, images=images).sha256


class _Progress(Heartbeat):
    """Prints each step as it starts, and a heartbeat while one runs long."""

    def __init__(self, say, log):
        super().__init__(HEARTBEAT_S)
        self.say, self.log = say, log
        self.step, self.instruction, self.step_started = "0/0", "", self.started
        self.steps = self.cached = 0
        self.layers: list[str] = []
        self.created: list[str] = []  # of those, the ones this build made (not "Using cache")
        self.after_from = self.from_cache = False
        self.tail: list[str] = []
        self._lock = threading.Lock()

    def elapsed(self) -> str:
        return f"[{self.seconds():7.1f}s]"

    def line(self, text: str) -> None:
        text = redact(text)  # pip redacts its index's password, not every URL it prints
        self.log.write(text + "\n")
        stripped = text.strip()
        if not stripped:
            return
        self.tail = (self.tail + [stripped])[-TAIL_LINES:]
        if stripped == "---> Using cache":
            self.cached += 1
            self.from_cache = True
        layer = LAYER_RE.match(stripped)
        if layer and not self.after_from:  # a FROM step's ID is the base's (or an earlier stage's): not this build's
            self.layers.append(layer[1])
            if not self.from_cache:
                self.created.append(layer[1])
        if layer:
            self.from_cache = False
        match = STEP_RE.match(stripped)
        if layer or match:
            self.after_from = bool(match) and match[3].upper().startswith("FROM ")
        if match:
            with self._lock:
                self.step, self.instruction = f"{match[1]}/{match[2]}", match[3]
                self.steps, self.step_started = int(match[2]), time.monotonic()
            shown = self.instruction if len(self.instruction) <= 100 else self.instruction[:97] + "..."
            self.say(f"{self.elapsed()} step {self.step:>5}  {shown}")

    def beat(self) -> None:
        with self._lock:
            running = time.monotonic() - self.step_started
            step = self.step
        if running >= HEARTBEAT_S:
            self.say(f"{self.elapsed()}   ... step {step} still running ({running:.0f}s)")


def build(client: docker.DockerClient, spec: ImageSpec, repo: str, network: NetworkSettings,
          say=print, images: Path = layout.IMAGES, reports: Path = layout.REPORTS, nocache: bool = False,
          cache: Path | None = None) -> BuildResult:
    image = f"{repo}:{spec.tag}"
    dockerfile = context.read_source(images / spec.tag / layout.DOCKERFILE).decode(errors="replace")
    needs_lock = layout.LOCK_FILE in dockerfile  # every rendered one does
    problem = lockfile.problem(spec, images) if needs_lock else None
    if problem:
        raise lockfile.LockError(f"not building {image}: {problem}")
    log_path = reports / spec.tag / "build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    buildargs = {render.BASE_ID_ARG: base_id(client, spec)}
    wheels = wheel_cache.wanted([spec], images) if needs_lock else []
    say(f"building {image} (full log: {log_path})")
    built_from = context.assemble(spec, images)
    labels = {**provenance_labels(built_from), **(lock_labels(spec, images, buildargs) if needs_lock else {})}
    with open_fresh(log_path) as log:
        started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        log.write(f"# torchyard build {image} at {started_at}\n")
        with _Progress(say, log) as progress, _failure_recorded(reports, image, spec.tag, started_at, progress):
            # Every artifact the locks name comes from the host's cache (what it lacks fetched now, with the host's CA
            # bundle and credentials, while the build's first steps run), served to this build alone on loopback:
            # nothing of the host's settings enters the build.
            try:
                with _Fetching(wheels, network, say, cache or wheel_cache.folder()) as fetching, \
                        serve.serving(wheels, fetching.cache, fetching.arrivals) as address:
                    try:
                        with engine.translated():
                            # on the host's network, so the build reaches the loopback server by the name the
                            # Dockerfile uses
                            stream = client.api.build(fileobj=io.BytesIO(built_from.tar), custom_context=True,
                                                      tag=image, rm=True, forcerm=True, pull=False, nocache=nocache,
                                                      decode=True, buildargs=buildargs, labels=labels,
                                                      network_mode="host", extra_hosts={serve.HOST: address})
                            image_id = _follow(stream, spec, progress, log_path)
                    except engine.EngineError as e:
                        raise BuildFailed(spec.tag, progress.step, progress.instruction, redact(str(e)),
                                          progress.tail, log_path) from None
            except (BuildFailed, wheel_cache.FetchError):
                # the classic builder keeps each step it committed: none stays to hold layers of other images
                _remove_each(client, reversed(progress.created), noprune=True)
                raise
            seconds = time.monotonic() - progress.started
    image_id = reproducible(client, image, image_id or client.images.get(image).id, say)
    records.write_report(reports, spec.tag, builds.BUILD,
                         _record(image, "built", started_at, seconds, progress, image_id=image_id,
                                 context_sha256=labels[CONTEXT_LABEL]))
    say(f"built {image} {image_id[:19]} in {seconds:.1f}s ({progress.cached}/{progress.steps} steps from cache)")
    return BuildResult(image, image_id, seconds, progress.steps, progress.cached, log_path, tuple(progress.layers))


# A history entry of the classic builder that made no layer: an instruction that only sets the config.
_METADATA_ONLY = re.compile(r"#\(nop\) +(?!COPY |ADD )")


def reproducible_config(client: docker.DockerClient, image_id: str) -> bytes | None:
    """The image's config with nothing of the build's time or its step images: every time SOURCE_DATE_EPOCH, no
    parent image, no build container. The same layers, settings and instructions give the same bytes, so the same
    image ID (its sha256). None when the history does not tell which entries made the layers (then the builder's
    config stays)."""
    attrs = client.api.inspect_image(image_id)
    layers = attrs["RootFS"]["Layers"]
    created = datetime.fromtimestamp(int(SOURCE_DATE_EPOCH), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    history = []
    for entry in reversed(client.api.history(image_id)):  # oldest first, as the config lists them
        made = {"created": created, "created_by": entry["CreatedBy"]}
        if entry.get("Comment"):
            made["comment"] = entry["Comment"]
        if _METADATA_ONLY.search(entry["CreatedBy"]):
            made["empty_layer"] = True
        history.append(made)
    if sum(not entry.get("empty_layer") for entry in history) != len(layers):
        return None
    config = {"architecture": attrs["Architecture"], "os": attrs["Os"], "created": created, "history": history,
              "config": {**attrs["Config"], "Image": ""}, "rootfs": {"type": "layers", "diff_ids": layers}}
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def reproducible(client: docker.DockerClient, image: str, image_id: str, say=print) -> str:
    """Tag `image` as the same layers with reproducible_config's config (docker load of that config alone: the engine
    holds every layer, so it reads none); the builder's image stays untagged, its steps the build cache. The ID."""
    config = reproducible_config(client, image_id)
    if config is None:
        say(f"note: {image} keeps the builder's image ID (its history does not say which steps made its layers)")
        return image_id
    digest = hashlib.sha256(config).hexdigest()
    manifest = [{"Config": f"{digest}.json", "RepoTags": [image],
                 "Layers": [f"{n}/layer.tar" for n in range(len(json.loads(config)["rootfs"]["diff_ids"]))]}]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in ((f"{digest}.json", config), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(SOURCE_DATE_EPOCH)
            tar.addfile(info, io.BytesIO(data))
    try:
        with engine.translated():
            for _ in client.api.load_image(buffer.getvalue()):
                pass
    except engine.EngineError as e:
        say(f"note: {image} keeps the builder's image ID (the engine did not load the reproducible config: "
            f"{redact(str(e))})")
        return image_id
    return f"sha256:{digest}"


class _Fetching:
    """wheel_cache.fetch on a thread of its own while the build runs. On leaving, a failed fetch is the error that
    counts (the build then failed for want of its wheels); a build that failed or was interrupted first stops it."""

    def __init__(self, wheels: list[wheel_cache.Wanted], network: NetworkSettings, say, cache: Path):
        self.cache, self.arrivals = cache, serve.Arrivals()
        self._stop, self._error = threading.Event(), None
        self._thread = threading.Thread(target=self._run, args=(wheels, network, say), daemon=True)

    def _run(self, wheels, network, say) -> None:
        try:
            wheel_cache.fetch(wheels, network, say, self.cache, ready=self.arrivals.arrived, stop=self._stop)
        except BaseException as e:  # noqa: BLE001 - handed to the building thread
            self._error = e
            self.arrivals.failed()

    def __enter__(self) -> _Fetching:
        self._thread.start()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is not None:
            self._stop.set()
        self._thread.join()
        self.arrivals.failed()  # nothing waits any more
        if isinstance(self._error, wheel_cache.FetchError):
            raise self._error from None
        if self._error is not None and error is None:
            raise self._error


def _follow(stream, spec: ImageSpec, progress: _Progress, log_path: Path) -> str | None:
    """Read the engine's build output to its end; the built image's ID, or BuildFailed naming the step."""
    image_id = None
    for chunk in stream:
        for text in chunk.get("stream", "").splitlines():
            progress.line(text)
        if "error" in chunk:
            progress.line(chunk["error"])
            error = redact(chunk["error"].strip())
            raise BuildFailed(spec.tag, progress.step, progress.instruction, error, progress.tail, log_path)
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    return image_id


@contextmanager
def _failure_recorded(reports: Path, image: str, tag: str, started: str, progress: _Progress):
    try:
        yield
    except BuildFailed as failure:
        records.write_report(reports, tag, builds.BUILD,
                             _record(image, "failed", started, progress.seconds(), progress, failed_step=failure.step,
                                     instruction=failure.instruction, error=failure.error.splitlines()[0][:300]))
        raise


def _record(image: str, status: str, started: str, seconds: float, progress: _Progress, **more) -> builds.BuildRecord:
    """reports/<tag>/build.json: what the last build of the tag did (its log is build.log beside it)."""
    return builds.BuildRecord(image=image, status=status, started=started, seconds=round(seconds, 1),
                               steps=progress.steps, cached=progress.cached, **more)


def remove(client: docker.DockerClient, result: BuildResult) -> None:
    """Remove a built image: its tag and the step images its build made (shared ones stay). The image itself only
    when no other tag names it: a rebuild of the same commit is the same image (reproducible), which `make verify`'s
    rebuild under another name must not take from the tag it was compared with."""
    _remove_each(client, (result.image,))
    found = engine.find_image(client, result.image_id)
    tagged = found.tags if found else []
    _remove_each(client, (*(() if tagged else (result.image_id,)), *reversed(result.layers)))


def _remove_each(client: docker.DockerClient, refs, noprune: bool = False) -> None:
    """Remove each image, last step first as given; one already gone, or still used by another image or tag, stays."""
    for ref in refs:
        with suppress(engine.EngineError), engine.translated():
            client.images.remove(ref, noprune=noprune)
