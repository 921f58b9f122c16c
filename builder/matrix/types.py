"""What a matrix is once read: ImageSpec per tag, the Matrix, and the problems that refuse one (Problem,
MatrixError); the tag grammar, and the refusal of a tag the matrix lacks, which Matrix.select gives."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from builder.inputs import shown
from builder.matrix import compat
from builder.matrix.compat import Facts, cuda_of_variant, version_key

# Matched whole (fullmatch: `$` would let a trailing newline through); ASCII digits only.
TAG_RE = re.compile(r"v(?P<torch>[0-9]+\.[0-9]+)-(?P<cuda>cu[0-9]{3})(?P<devel>-devel)?", re.ASCII)
PYPI_INDEX = "pypi"
SHOWN_PROBLEMS = 50  # a refusal lists the first ones and counts the rest


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class MatrixError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self, limit: int = SHOWN_PROBLEMS) -> list[str]:
        """The first `limit` problems, and how many more there are."""
        shown_problems = [str(p) for p in self.problems[:limit]]
        rest = len(self.problems) - limit
        return shown_problems + ([f"... and {rest} more problem{'s' if rest > 1 else ''}"] if rest > 0 else [])


@dataclass(frozen=True)
class Base:
    """Where an image starts: a Debian suite made locally with mmdebstrap, or a registry image by digest."""

    ref: str  # 'bookworm' or 'docker.io/library/debian:bookworm-slim@sha256:…'
    suite: str
    components: tuple[str, ...] = ("main",)  # Debian archive areas apt sees; a local base is made with them

    @property
    def is_local(self) -> bool:
        return self.ref == self.suite

    @property
    def image(self) -> str:
        if not self.is_local:
            return self.ref
        extra = "".join(f"-{c}" for c in self.components if c != "main")  # another sources list, another image
        return f"torchyard-base:{self.suite}{extra}"


@dataclass(frozen=True)
class Sibling:
    """What an image knows of each tag of its matrix (spec.json): enough to name, at container start, the tags
    that would run on a host where it does not (smoke_tests/startup.py)."""

    tag: str
    cuda: str
    min_driver: str
    archs: tuple[str, ...] | None


@dataclass(frozen=True)
class ImageSpec:
    tag: str
    torch: str
    torchvision: str
    cuda_variant: str  # cu124
    cuda: str  # 12.4
    cuda_runtime: str | None  # 12.4.127; None: not recorded
    cudnn: str | None
    nccl: str | None
    archs: tuple[str, ...] | None
    python: str
    min_driver: str
    toolkit_driver: str | None
    base: Base
    devel: bool
    nvcc: compat.Nvcc | None
    index: str  # 'pypi', or the CUDA variant whose PyTorch wheel index the torch wheel comes from
    extra_packages: tuple[str, ...]
    torchaudio: str | None = None  # the matrix entry asked for it (optional); compat.yaml's pairing with torch
    size_budget: int | None = None  # bytes; `make build`/`make size` fail more than 10% over it
    siblings: tuple[Sibling, ...] = field(default=(), repr=False)  # every tag of the matrix, this one included


@dataclass(frozen=True)
class Matrix:
    path: Path
    default: str
    specs: dict[str, ImageSpec]

    def select(self, tag: str | None, facts: Facts | None = None) -> list[ImageSpec]:
        """The specs a TAG= asks for: none given -> the default tag, 'all' -> every tag, a,b,c -> those (any order,
        matrix order kept); unknown tags are refused, each explained."""
        if tag in (None, ""):
            return [self.specs[self.default]]
        if tag == "all":
            return list(self.specs.values())
        if tag in self.specs:
            return [self.specs[tag]]
        if "," not in tag:
            raise MatrixError([Problem("TAG", unknown_tag_message(tag, self, facts or compat.load()))])
        names = [t for t in (t.strip() for t in tag.split(",")) if t]
        if "all" in names and len(names) > 1:  # 'all,x' would quietly mean every tag
            others = ",".join(t for t in names if t != "all")
            raise MatrixError([Problem("TAG", f"{shown(tag)} mixes 'all' with tag names; give TAG=all alone for every "
                                              f"tag, or only the tags you want: {shown(others)}")])
        wanted, problems = set(), []
        for one in names:
            try:
                wanted |= {s.tag for s in self.select(one, facts)}
            except MatrixError as e:
                problems += e.problems
        if problems or not wanted:
            raise MatrixError(problems or [Problem("TAG", "give a comma-separated list of tags, or all")])
        return [s for s in self.specs.values() if s.tag in wanted]


# ---------------------------------------------------------------- a tag the matrix lacks


def unpublished_variant_message(release: compat.TorchRelease, variant: str, matrix: Matrix | None, facts: Facts) -> str:
    """Why torch X has no build for this CUDA, and what to run instead."""
    cuda = cuda_of_variant(variant)
    published = sorted(release.variants, key=lambda v: version_key(cuda_of_variant(v)))
    lines = [f"PyTorch {release.minor} was never published for CUDA {cuda} ({variant}); its CUDA variants are {', '.join(published)}."]
    tags = matrix.specs if matrix else {}
    same_major = [v for v in published if cuda_of_variant(v).split(".")[0] == cuda.split(".")[0]]
    newer = [v for v in same_major if version_key(cuda_of_variant(v)) >= version_key(cuda)]
    if newer:
        runs = newer[0]
        floor = facts.min_driver(cuda)
        tag = f"v{release.minor}-{runs}"
        listed = "" if (not matrix or tag in tags) else " (add it to matrix.yaml)"
        lines.append(f"A host whose driver supports CUDA {cuda} runs {tag}{listed} through CUDA minor-version "
                     f"compatibility (any CUDA {cuda.split('.')[0]}.x image runs on a driver >= {floor}).")
    real = [r for r in facts.releases.values() if variant in r.variants]
    if real:
        newest = max(real, key=lambda r: version_key(r.version))
        candidates = [s.tag for s in tags.values() if s.cuda_variant == variant and not s.devel]
        tag = max(candidates, key=lambda t: version_key(TAG_RE.fullmatch(t)["torch"])) if candidates else f"v{newest.minor}-{variant}"
        lines.append(f"For a true CUDA {cuda} build use {tag}.")
    return " ".join(lines)


def unknown_tag_message(tag: str, matrix: Matrix, facts: Facts) -> str:
    message = f"{shown(tag)} is not a tag in {matrix.path.name}"
    parsed = TAG_RE.fullmatch(tag)
    release = facts.release_for_minor(parsed["torch"]) if parsed else None
    if release and parsed["cuda"] not in release.variants:
        return f"{message}. " + unpublished_variant_message(release, parsed["cuda"], matrix, facts)
    near = difflib.get_close_matches(tag[:80], list(matrix.specs), n=3, cutoff=0.5)
    hint = f"; nearest: {', '.join(near)}" if near else ""
    return f"{message}{hint} (all tags: `make list`)"


