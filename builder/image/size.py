"""How big an image is and where the bytes are: total, each layer with the instruction that made it, the
largest Python packages; written to reports/<tag>/size.json and size.md. A tag may set `size_budget` in
matrix.yaml: an image more than BUDGET_SLACK over it fails, naming the largest layers and the packages that
are largest or grew since the previous report. compressed() measures what a push sends (reports/<tag>/compressed.json).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

from builder import layout, records
from builder.files import write_atomic
from builder.image import engine
from builder.records import builds
from builder.units import human

BUDGET_SLACK = 0.10  # over budget by more than 10% fails; less is noise (a patch release, a new wheel build)
TOP_PACKAGES = 15
# The free disk a build needs, in images (make doctor says it, make matrix checks it before a build): the image, its
# wheels in the cache (about half of it) and the engine's copy while committing.
BUILD_FACTOR = 2

# Run inside the image by its own Python: bytes on disk per installed distribution (from its RECORD).
PACKAGE_SIZES = """
import importlib.metadata, json, os
sizes = {}
for d in importlib.metadata.distributions():
    total = 0
    for f in d.files or []:
        path = f.locate()
        if os.path.isfile(path) and not os.path.islink(path):
            total += os.path.getsize(path)
    sizes[d.metadata["Name"].lower().replace("_", "-")] = total
print(json.dumps(sizes))
"""


class SizeError(Exception):
    pass


Layer, SizeReport = builds.Layer, builds.SizeReport  # reports/<tag>/size.json


def markdown(report: SizeReport) -> str:
    """reports/<tag>/size.md: the layers, largest first, and the largest packages."""
    lines = [f"# {report.image}: {human(report.total)}", "", "| layer size | instruction |", "| ---: | --- |"]
    lines += [f"| {human(layer.size)} | `{_short(layer.instruction, 110)}` |"
              for layer in sorted(report.layers, key=lambda layer: -layer.size)]
    lines += ["", f"Largest Python packages (of {len(report.packages)}):", "", "| size | package |", "| ---: | --- |"]
    lines += [f"| {human(size)} | {name} |" for name, size in list(report.packages.items())[:TOP_PACKAGES]]
    return "\n".join(lines) + "\n"


def _short(text: str, width: int) -> str:
    """An instruction as `docker history` records it, without the shell and build-arg prefixes."""
    text = " ".join(text.split())
    text = re.sub(r"^\|\d+ (\S+=\S* )*", "", text)  # RUN with build args: '|1 DEBIAN_FRONTEND=… /bin/sh -c …'
    text = re.sub(r"^/bin/sh -c (#\(nop\) +)?", "", text) or "(the base image's filesystem)"
    # COPY's source is a content hash, 'dir:<64 hex>'; 12 digits identify it (as image IDs are shown), and
    # the classic builder glues '--chown=…' to it ('--chown=1000:1000dir:…').
    text = re.sub(r"(--chown=\S*?)?(file|dir):([0-9a-f]{12})[0-9a-f]{52}", lambda m: (f"{m[1]} " if m[1] else "")
                  + f"{m[2]}:{m[3]}", text)
    return text if len(text) <= width else text[: width - 3] + "..."


def measure(client: docker.DockerClient, image: str, tag: str) -> SizeReport:
    found = client.images.get(image)
    history = client.api.history(found.id)
    layers = tuple(Layer(size=entry["Size"], instruction=_short(entry["CreatedBy"], 400)) for entry in reversed(history) if entry["Size"])
    out = client.containers.run(found.id, ["python", "-c", PACKAGE_SIZES], remove=True, stderr=True)
    sizes = json.loads(out.decode().strip().splitlines()[-1])
    packages = dict(sorted(sizes.items(), key=lambda item: (-item[1], item[0])))
    return SizeReport(tag=tag, image=image, image_id=found.id, total=found.attrs["Size"], layers=layers, packages=packages)


def over_budget(report: SizeReport, budget: int, previous: SizeReport | None) -> str | None:
    """Why the image is over its budget (beyond the slack), naming layers and packages; None when within."""
    if report.total <= budget * (1 + BUDGET_SLACK):
        return None
    over = report.total / budget - 1
    lines = [f"{report.image} is {human(report.total)}, {over:.0%} over its size budget of {human(budget)} "
             f"(more than {BUDGET_SLACK:.0%} over fails)."]
    biggest = sorted(report.layers, key=lambda layer: -layer.size)[:3]
    lines.append("Largest layers: " + "; ".join(f"{human(layer.size)} from `{_short(layer.instruction, 90)}`" for layer in biggest))
    if previous is not None:
        before = previous.packages
        grew = sorted(((name, size - before.get(name, 0)) for name, size in report.packages.items() if size > before.get(name, 0)),
                      key=lambda item: -item[1])[:5]
        lines.append(f"Against the previous report ({human(previous.total)}): "
                     + ("; ".join(f"{name} +{human(delta)}" + ("" if name in before else " (new)") for name, delta in grew)
                        if grew else "no package grew; the growth is outside the Python packages"))
    lines.append("Largest packages: " + ", ".join(f"{name} {human(size)}" for name, size in list(report.packages.items())[:5]))
    lines.append("Raise size_budget in matrix.yaml if the growth is wanted.")
    return "\n  ".join(lines)


def baseline(tag: str, reports: Path = layout.REPORTS, say=print) -> SizeReport | None:
    """The last report that was within budget (or had none): what growth is measured against (none when it is
    broken: the one written now replaces it)."""
    try:
        return records.read_report(reports, tag, builds.SIZE_BASELINE, SizeReport)
    except records.BrokenRecord as e:
        say(f"{e.short(f'reports/{tag}')}: measured against nothing")
        return None


def write(report: SizeReport, reports: Path = layout.REPORTS, within_budget: bool = True) -> None:
    """reports/<tag>/size.{json,md}; size.baseline.json too when within budget, so that an image over its
    budget is compared with the last good one however often it is rebuilt."""
    records.write_report(reports, report.tag, builds.SIZE, report)
    write_atomic(reports / report.tag / "size.md", markdown(report))
    if within_budget:
        records.write_report(reports, report.tag, builds.SIZE_BASELINE, report)


def check(client: docker.DockerClient, image: str, tag: str, budget: int | None, say=print,
          reports: Path = layout.REPORTS) -> SizeReport:
    """Measure, write the report, and raise SizeError when over budget."""
    report = measure(client, image, tag)
    problem = over_budget(report, budget, baseline(tag, reports, say)) if budget is not None else None
    write(report, reports, within_budget=problem is None)
    top = ", ".join(f"{name} {human(size)}" for name, size in list(report.packages.items())[:3])
    say(f"size of {image}: {human(report.total)} in {len(report.layers)} layers; largest packages: {top} "
        f"(reports/{tag}/size.md)" + (f"; budget {human(budget)}" if budget else ""))
    if problem:
        raise SizeError(problem)
    return report


# ---------------------------------------------------------------- compressed size: what a push sends

GZIP_LEVEL = 6  # `docker push` gzips each layer at Go's default level, 6
GZIP_FRAME = 18  # gzip's header and trailer around the deflate stream
CHUNK = 16 * 2**20  # deflated independently, in parallel: 16 MiB pieces cost < 0.01% against one stream
PROGRESS_EVERY = 256 * 2**20


Compressed = builds.Compressed  # reports/<tag>/compressed.json
METHOD = f"gzip -{GZIP_LEVEL} per layer, as docker push"


def _deflated(chunk: bytes) -> int:
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
    return len(packer.compress(chunk)) + len(packer.flush(zlib.Z_FULL_FLUSH))


def known_layers(reports: Path = layout.REPORTS) -> dict[str, tuple[int, int]]:
    """diff_id -> (bytes, gzipped bytes) from every tag's compressed.json: a layer is measured once (the base and
    the system stage are shared by many tags; a rebuild that changed the last layers keeps the venv's). A broken
    record is passed over: its layers are measured again."""
    known = {}
    for path in reports.glob(f"*/{builds.COMPRESSED}"):
        try:
            found = records.read(path, Compressed)
        except records.BrokenRecord:
            continue
        known.update({diff_id: (size, packed) for diff_id, size, packed in found.layers} if found else {})
    return known


def compressed(client: docker.DockerClient, image: str, tag: str, reports: Path = layout.REPORTS, say=print) -> Compressed:
    """Gzip every layer of the image as a push would (docker save, then deflate on every core), counting bytes.
    Layers measured before (by diff_id) are not compressed again; each layer's sha256 is checked against the
    image's diff_ids, so a count can only belong to the layer it names."""
    found = client.images.get(image)
    diff_ids = found.attrs["RootFS"]["Layers"]
    known = known_layers(reports)
    missing = [d for d in dict.fromkeys(diff_ids) if d not in known]
    if missing:
        what = f"compressing {len(missing)} layer(s) of {image} as a push would (gzip -{GZIP_LEVEL}, {os.cpu_count()} threads)"
        say(what)
        # `docker save` names layers by IDs that say nothing of their content: a known layer is recognised by
        # its size, only hashed (never compressed), and the hash confirms it; a wrong guess costs a second pass.
        by_size = collections.Counter(known[d][0] for d in diff_ids if d in known)
        guesses = {known[d][0]: d for d in diff_ids if d in known and by_size[known[d][0]] == 1}
        for attempt in (guesses, {}):
            known.update(_measure(client, found.id, set(missing), attempt,
                                  lambda done: say(f"{what}: {done / 1e9:.1f} of ~{found.attrs['Size'] / 1e9:.1f} GB")))
            missing = [d for d in missing if d not in known]
            if not missing:
                break
    absent = [d for d in diff_ids if d not in known]
    if absent:
        raise SizeError(f"`docker save {image}` did not hold the layer(s) {', '.join(a[:19] for a in absent)}")
    layers = tuple((d, *known[d]) for d in diff_ids)
    result = Compressed(tag=tag, image_id=found.id, total=sum(packed for _, _, packed in layers), layers=layers,
                        method=METHOD)
    records.write_report(reports, tag, builds.COMPRESSED, result)
    return result


def _measure(client: docker.DockerClient, image_id: str, wanted: set[str], skip: dict[int, str],
             progress) -> dict[str, tuple[int, int]]:
    """(bytes, gzipped bytes) of the wanted layers; a file the size of a layer in `skip` is only hashed."""
    measured, done = {}, 0
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as pool, \
            tarfile.open(fileobj=engine.reader(client.api.get_image(image_id), CHUNK), mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = member.name.rsplit("/", 1)[-1]
            if member.name.startswith("blobs/sha256/") and f"sha256:{name}" not in wanted:
                continue  # an OCI layout names each layer by its digest: a known one needs no compression
            reader = tar.extractfile(member)
            compress = member.size not in skip
            digest, size, packed, pending = hashlib.sha256(), 0, GZIP_FRAME, collections.deque()
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                done += len(chunk)
                if done % PROGRESS_EVERY < len(chunk):
                    progress(done)
                if compress:
                    pending.append(pool.submit(_deflated, chunk))
                while len(pending) > 2 * workers:  # bounded memory: at most a few chunks in flight
                    packed += pending.popleft().result()
            packed += sum(f.result() for f in pending)
            diff_id = f"sha256:{digest.hexdigest()}"
            if diff_id in wanted and compress:
                measured[diff_id] = (size, packed)
    return measured
