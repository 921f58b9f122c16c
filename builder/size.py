"""How big an image is and where the bytes are: total, each layer with the instruction that made it, the
largest Python packages; written to reports/<tag>/size.json and size.md. A tag may set `size_budget` in
matrix.yaml: an image more than BUDGET_SLACK over it fails, naming the largest layers and the packages that
are largest or grew since the previous report.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import docker

from builder import render
from builder.units import human

REPORTS = render.ROOT / "reports"
BUDGET_SLACK = 0.10  # over budget by more than 10% fails; less is noise (a patch release, a new wheel build)
TOP_PACKAGES = 15

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


@dataclass(frozen=True)
class Layer:
    size: int
    instruction: str


@dataclass(frozen=True)
class SizeReport:
    tag: str
    image: str
    image_id: str
    total: int
    layers: tuple[Layer, ...]  # oldest first, only those that add bytes
    packages: tuple[tuple[str, int], ...]  # largest first

    def to_json(self) -> str:
        data = asdict(self)
        data["packages"] = dict(self.packages)
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SizeReport:
        data = json.loads(text)
        return cls(data["tag"], data["image"], data["image_id"], data["total"],
                   tuple(Layer(**layer) for layer in data["layers"]), tuple(data["packages"].items()))

    def markdown(self) -> str:
        lines = [f"# {self.image}: {human(self.total)}", "", "| layer size | instruction |", "| ---: | --- |"]
        lines += [f"| {human(layer.size)} | `{_short(layer.instruction, 110)}` |"
                  for layer in sorted(self.layers, key=lambda layer: -layer.size)]
        lines += ["", f"Largest Python packages (of {len(self.packages)}):", "", "| size | package |", "| ---: | --- |"]
        lines += [f"| {human(size)} | {name} |" for name, size in self.packages[:TOP_PACKAGES]]
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
    layers = tuple(Layer(entry["Size"], _short(entry["CreatedBy"], 400)) for entry in reversed(history) if entry["Size"])
    out = client.containers.run(found.id, ["python", "-c", PACKAGE_SIZES], remove=True, stderr=True)
    sizes = json.loads(out.decode().strip().splitlines()[-1])
    packages = tuple(sorted(sizes.items(), key=lambda item: (-item[1], item[0])))
    return SizeReport(tag, image, found.id, found.attrs["Size"], layers, packages)


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
        before = dict(previous.packages)
        grew = sorted(((name, size - before.get(name, 0)) for name, size in report.packages if size > before.get(name, 0)),
                      key=lambda item: -item[1])[:5]
        lines.append(f"Against the previous report ({human(previous.total)}): "
                     + ("; ".join(f"{name} +{human(delta)}" + ("" if name in before else " (new)") for name, delta in grew)
                        if grew else "no package grew; the growth is outside the Python packages"))
    lines.append("Largest packages: " + ", ".join(f"{name} {human(size)}" for name, size in report.packages[:5]))
    lines.append("Raise size_budget in matrix.yaml if the growth is wanted.")
    return "\n  ".join(lines)


def baseline(tag: str, reports: Path = REPORTS) -> SizeReport | None:
    """The last report that was within budget (or had none): what growth is measured against."""
    path = reports / tag / "size.baseline.json"
    return SizeReport.from_json(path.read_text()) if path.is_file() else None


def write(report: SizeReport, reports: Path = REPORTS, within_budget: bool = True) -> None:
    """reports/<tag>/size.{json,md}; size.baseline.json too when within budget, so that an image over its
    budget is compared with the last good one however often it is rebuilt."""
    folder = reports / report.tag
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "size.json").write_text(report.to_json())
    (folder / "size.md").write_text(report.markdown())
    if within_budget:
        (folder / "size.baseline.json").write_text(report.to_json())


def check(client: docker.DockerClient, image: str, tag: str, budget: int | None, say=print,
          reports: Path = REPORTS) -> SizeReport:
    """Measure, write the report, and raise SizeError when over budget."""
    report = measure(client, image, tag)
    problem = over_budget(report, budget, baseline(tag, reports)) if budget is not None else None
    write(report, reports, within_budget=problem is None)
    top = ", ".join(f"{name} {human(size)}" for name, size in report.packages[:3])
    say(f"size of {image}: {human(report.total)} in {len(report.layers)} layers; largest packages: {top} "
        f"(reports/{tag}/size.md)" + (f"; budget {human(budget)}" if budget else ""))
    if problem:
        raise SizeError(problem)
    return report
