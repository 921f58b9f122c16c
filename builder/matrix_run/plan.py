"""`make matrix`'s plan: which tags can be built here, and which steps of each are current (not redone).

- the image is current when <repo>:<tag> exists, its io.torchyard.context.sha256 label is the hash of the context a
  build would assemble now (Dockerfile, locks, spec, the files every image carries, smoke_tests/: builder/image/build.py),
  and its io.torchyard.base.id label is the ID of the base image there now;
- the size is current when size.json and compressed.json name the image's ID;
- the smoke report is current when smoke.json names the image's ID, says PASS, and ran as this run would (GPUs or
  the CPU, --require-gpu or not, synthetic data). A failed step is always tried again.

The decisions are pure functions of what image_here() and measured() found: the image and the records.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker

from builder import layout, records
from builder.image import build, engine
from builder.matrix.types import PYPI_INDEX, ImageSpec, Matrix
from builder.records import builds, runs
from builder.wheels import lock, lockfile, network

STEPS = ("build", "size", "smoke")  # the steps that can be current; the lock check is never redone


@dataclass(frozen=True)
class Image:
    """A tag's image here, and what a build would label it with now."""

    id: str
    labels: dict[str, str]
    context_sha256: str  # the hash of the context a build would assemble now
    base_id: str  # the ID of the base image here now ("" when there is none)


@dataclass(frozen=True)
class Measured:
    """The tag's records of its size and smoke test; a broken one reads as none (the step that writes it runs)."""

    size: builds.SizeReport | None = None
    compressed: builds.Compressed | None = None
    smoke: runs.SmokeReport | None = None


@dataclass(frozen=True)
class Plan:
    refused: dict[str, tuple[str, str]]  # tag -> (why it cannot be built here, how to fix it)
    todo: dict[str, list[str]]  # tag -> the steps that will do work (the rest are current), for every other tag
    why_current: dict[str, str] = field(default_factory=dict)  # tag -> why its image is current


def asked(matrix: Matrix, tags: str | None) -> list[ImageSpec]:
    """The tags `make matrix` runs: every tag unless TAG= names some (Matrix.select reads a,b,c)."""
    return matrix.select(tags or "all")


# ---------------------------------------------------------------- what is here (reads)


def image_here(client: docker.DockerClient, repo: str, spec: ImageSpec, images: Path) -> Image | None:
    found = engine.find_image(client, f"{repo}:{spec.tag}")
    if found is None:
        return None
    return Image(found.id, dict(found.labels or {}), build.inputs_sha256(spec, images), build.base_id(client, spec))


def measured(reports: Path, tag: str, say=print) -> Measured:
    def read(name: str, schema):
        try:
            return records.read_report(reports, tag, name, schema)
        except records.BrokenRecord as e:
            say(f"  {e.short(f'reports/{tag}')}: measured again")
            return None

    return Measured(read(builds.SIZE, builds.SizeReport), read(builds.COMPRESSED, builds.Compressed),
                    read(runs.SMOKE, runs.SmokeReport))


# ---------------------------------------------------------------- what is current (pure)


def image_current(spec: ImageSpec, image: Image | None) -> tuple[bool, str]:
    if image is None:
        return False, "no image yet"
    if image.labels.get(build.CONTEXT_LABEL) != image.context_sha256:
        return False, "its inputs changed since the image was built"
    if image.labels.get(f"{layout.LABEL_PREFIX}.base.id") != image.base_id:
        return False, f"the base {spec.base.image} is not the one it was built on"
    return True, f"{image.id[7:19]}, built from these inputs"


def size_current(found: Measured, image_id: str) -> bool:
    size, packed = found.size, found.compressed
    return bool(size and packed) and size.image_id == image_id and packed.image_id == image_id


def smoke_current(found: Measured, image_id: str, gpus: bool, require_gpu: bool) -> bool:
    smoke = found.smoke
    return (smoke is not None and smoke.image_id == image_id and smoke.status == "PASS"
            and smoke.gpus_passed == gpus and smoke.require_gpu == require_gpu and smoke.data is None)


def steps(image_id: str | None, found: Measured, gpus: bool, require_gpu: bool) -> list[str]:
    """The steps that will do work: all of them without a current image (image_id None), else those whose records
    were not measured on it, the way this run would."""
    if image_id is None:
        return list(STEPS)
    return [step for step, current in (("size", size_current(found, image_id)),
                                       ("smoke", smoke_current(found, image_id, gpus, require_gpu))) if not current]


# ---------------------------------------------------------------- the plan


def unbuildable(specs: list[ImageSpec], images: Path, settings: network.NetworkSettings) -> dict[str, tuple[str, str]]:
    """tag -> (why it cannot be built here, how to fix it), for tags without a current lock; the wheel index of
    each is asked once whether it answers, so the reason says which of the two it is."""
    problems = {s.tag: lockfile.problem(s, images, as_repository=True) for s in specs}
    missing = [s for s in specs if problems[s.tag]]
    indexes = {s.tag: lock.indexes(s, settings)[0] for s in missing}
    with ThreadPoolExecutor(8) as pool:
        down = dict(zip(set(indexes.values()), pool.map(lambda url: lock.unreachable(url, settings, timeout=5),
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


def plan(client: docker.DockerClient, repo: str, specs: list[ImageSpec], refused: dict[str, tuple[str, str]],
         images: Path, reports: Path, gpus: bool, require_gpu: bool, say=print) -> Plan:
    """What a run does for each tag it can build here; the records are read only for a current image."""
    todo, why_current = {}, {}
    for s in specs:
        if s.tag in refused:
            continue
        image = image_here(client, repo, s, images)
        current, why = image_current(s, image)
        found = measured(reports, s.tag, say) if current else Measured()
        todo[s.tag] = steps(image.id if current else None, found, gpus, require_gpu)
        if current:
            why_current[s.tag] = why
    return Plan(refused, todo, why_current)
