"""matrix.yaml -> validated ImageSpec per tag.

Every problem is collected (file, line, tag, key: what is wrong and what would be right) before
anything is rendered, pulled or built; MatrixError carries them all.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement

from builder import files
from builder import reference as references
from builder.inputs import shown
from builder.matrix import compat
from builder.matrix.compat import Facts, cuda_of_variant, version_key
from builder.units import parse_size

# Matched whole (fullmatch: `$` would let a trailing newline through); ASCII digits only.
TAG_RE = re.compile(r"v(?P<torch>[0-9]+\.[0-9]+)-(?P<cuda>cu[0-9]{3})(?P<devel>-devel)?", re.ASCII)
TOP_KEYS = ("default", "defaults", "images")
ENTRY_KEYS = ("torch", "cuda", "python", "torchvision", "cudnn", "base", "extra_packages", "allow_direct_urls",
              "size_budget")
DEFAULT_KEYS = ("base", "size_budget")
VERSION_EXAMPLES = {"torch": "2.6.0", "torchvision": "0.21.0", "cudnn": "9.1.0.70", "python": "3.11"}
# user:password@host/… or user@host/…: credentials in front of a registry (never image@sha256:… or name@tag).
CREDENTIALS_RE = re.compile(r"^[^/@]+:[^/@]*@(?!sha256:)|^[^/@:]+@(?!sha256:)[^/@]+/")
PYPI_INDEX = "pypi"
# A matrix of a thousand tags is about 40 KB; past this size a file is not a matrix, and reading it would
# cost seconds and hundreds of MB (YAML nodes) before the first refusal.
MAX_BYTES = 256 * 1024
SHOWN_PROBLEMS = 50  # a refusal lists the first ones and counts the rest
# What pip reads in a requirements file besides a requirement: an option (a word starting with '-', even
# inside a marker's quoted string, as pip splits the line on spaces), a comment, a line continuation, and
# ${VARIABLE} (expanded from the environment of `make lock`).
PIP_SYNTAX_RE = re.compile(r"(^|\s)[-#]|\\|\$")
# Control characters in the file itself (YAML allows tab, newline and carriage return).
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")


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


# ---------------------------------------------------------------- YAML with line numbers


class _Mapping(dict):
    """A dict that remembers the line of each key (1-based)."""

    lines: dict
    line: int
    broken_base: bool = False  # defaults whose base is refused

    def __init__(self, items=(), broken_base: bool = False):
        super().__init__(items)
        self.broken_base = broken_base


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when PyYAML has it
    """Plain data only: string keys, no aliases (the matrix needs none, and an alias bomb expands a few
    lines into gigabytes), safe types."""

    def construct_object(self, node, deep=False):
        if node in self.constructed_objects or node in self.recursive_objects:
            raise yaml.constructor.ConstructorError(
                None, None, "a YAML alias (*name) of the anchor here: aliases are not allowed in a matrix; "
                            "write the value out", node.start_mark)
        return super().construct_object(node, deep)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    result = _Mapping()
    result.lines = {}
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str"):
            raise yaml.constructor.ConstructorError(None, None, _not_a_string_key(key_node), key_node.start_mark)
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"duplicate key {key!r} (first on line {result.lines[key]}); each tag and key may appear once",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = line
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _not_a_string_key(node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        return "a key must be a string; this one is a list or a mapping"
    kind = node.tag.rsplit(":", 1)[-1]  # YAML reads yes/no/on/off as bool, 2.6 as float, ~ as null
    return f"a key must be a string; YAML reads {node.value[:60]!r} as a {kind}: quote it (\"{node.value[:60]}\")"


def _line_of(data: bytes | str, offset: int) -> int:
    return data[:offset].count(b"\n" if isinstance(data, bytes) else "\n") + 1


def _read_yaml(path: Path):
    try:
        data = files.read_bounded(path, MAX_BYTES)  # the cap holds while reading: /dev/zero and a pipe say size 0
    except files.TooLarge:
        raise MatrixError([Problem(str(path), f"is larger than {MAX_BYTES // 1024} KiB; a matrix is at most "
                                              f"{MAX_BYTES // 1024} KiB (a thousand tags take about 40 KB)")]) from None
    except files.Refused as e:
        if path.is_dir():
            raise MatrixError([Problem(str(path), "is a folder; name the matrix file, e.g. --matrix matrix.yaml")]) from None
        raise MatrixError([Problem(str(path), f"{str(e).removeprefix(f'{path} ')}; name the matrix file, "
                                              "e.g. --matrix matrix.yaml")]) from None
    except OSError as e:
        raise MatrixError([Problem(str(path), f"cannot read the matrix: {e.strerror}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MatrixError([Problem(f"{path}:{_line_of(data, e.start)}",
                                   f"byte 0x{data[e.start]:02x} is not UTF-8; save the matrix as UTF-8")]) from None
    control = CONTROL_RE.search(text)
    if control:
        raise MatrixError([Problem(f"{path}:{_line_of(text, control.start())}",
                                   f"control character {control[0]!r}; a matrix holds printable text only")])
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise MatrixError([Problem(where, f"malformed YAML: {e.problem or e.context}")]) from None
    except yaml.YAMLError as e:  # a reader error: the text has what YAML refuses
        raise MatrixError([Problem(str(path), f"malformed YAML: {e}")]) from None
    except RecursionError:
        raise MatrixError([Problem(str(path), "malformed YAML: nested too deep; a matrix is a few levels deep")]) from None


# ---------------------------------------------------------------- validation


def load(path: Path, facts: Facts | None = None) -> Matrix:
    facts = facts or compat.load()
    raw = _read_yaml(path)
    problems: list[Problem] = []

    def at(mapping: _Mapping | None, key: str | None, label: str) -> str:
        line = getattr(mapping, "lines", {}).get(key) or getattr(mapping, "line", None)
        return f"{path}:{line}: {label}" if line else f"{path}: {label}"

    if not isinstance(raw, dict):
        raise MatrixError([Problem(str(path), "expected a mapping with keys: " + ", ".join(TOP_KEYS))])
    problems += _unknown_keys(raw, TOP_KEYS, lambda k: at(raw, k, _label(k)))
    defaults = raw.get("defaults")
    if defaults is None:
        defaults = _Mapping()
    elif not isinstance(defaults, dict):
        problems.append(Problem(at(raw, "defaults", "defaults"), f"expected a mapping of {', '.join(DEFAULT_KEYS)} "
                                                                 f"(e.g. 'defaults: {{base: bookworm}}'), not {shown(defaults)}"))
        defaults = _Mapping()
    problems += _unknown_keys(defaults, DEFAULT_KEYS, lambda k: at(defaults, k, _label("defaults", k)))
    if "size_budget" in defaults:
        try:
            _size_budget(defaults["size_budget"])
        except ValueError as e:
            problems.append(Problem(at(defaults, "size_budget", "defaults.size_budget"), str(e)))
    if "base" in defaults:  # checked once, here: not again under each entry that takes it (none of which holds it)
        before = len(problems)
        _validate_base(defaults["base"], facts,
                       lambda key, message: problems.append(Problem(at(defaults, "base", "defaults.base"), message)))
        if len(problems) > before:
            defaults = _Mapping({k: v for k, v in defaults.items() if k != "base"}, broken_base=True)
    images = raw.get("images")
    if not isinstance(images, dict) or not images:
        problems.append(Problem(at(raw, "images", "images"), "needs at least one tag, e.g. 'v2.6-cu124: {torch: \"2.6.0\"}'"))
        raise MatrixError(problems)

    specs: dict[str, ImageSpec] = {}
    for tag, entry in images.items():
        entry_problems: list[Problem] = []

        def report(key: str | None, message: str, tag=tag, entry=entry) -> None:
            label = _label("images", tag, *([key] if key else []))
            entry_problems.append(Problem(at(entry if key else images, key or tag, label), message))

        spec = _validate_entry(tag, entry, defaults, facts, report)
        problems += entry_problems
        if spec and not entry_problems:
            specs[spec.tag] = spec

    default = raw.get("default")
    if default is None:
        problems.append(Problem(at(raw, None, "default"), "name the tag that plain `make build` uses, e.g. 'default: v2.6-cu124'"))
    elif not isinstance(default, str):
        problems.append(Problem(at(raw, "default", "default"), f"expected one tag, e.g. 'default: v2.6-cu124', not {shown(default)}"))
    elif default not in images:
        problems.append(Problem(at(raw, "default", "default"), f"{shown(default)} is not a tag under images{_nearest(default, list(images))}"))
    if problems:
        raise MatrixError(problems)
    siblings = tuple(Sibling(s.tag, s.cuda, s.min_driver, s.archs) for s in specs.values())
    return Matrix(path=path, default=default, specs={tag: replace(s, siblings=siblings) for tag, s in specs.items()})


def _label(*keys: str) -> str:
    """images.v2.6-cu124.torch"""
    return ".".join(_word(key) for key in keys)


def _word(value) -> str:
    """A plain word as it is; anything else quoted and cut (shown), so a message stays one short line."""
    return value if isinstance(value, str) and re.fullmatch(r"[\w.+-]{1,80}", value, re.ASCII) else shown(value)


def _unknown_key(key: str, allowed: tuple[str, ...]) -> str:
    hint = difflib.get_close_matches(key[:80], allowed, n=1)
    return f"unknown key {shown(key)}; " + (f"did you mean {hint[0]!r}?" if hint else "allowed keys: " + ", ".join(allowed))


def _unknown_keys(mapping: dict, allowed: tuple[str, ...], where) -> list[Problem]:
    return [Problem(where(key), _unknown_key(key, allowed)) for key in mapping if key not in allowed]


def _nearest(word: str, candidates: list[str]) -> str:
    near = difflib.get_close_matches(word[:80], candidates, n=3, cutoff=0.5) if len(candidates) <= 1000 else []
    return f"; nearest: {', '.join(near)}" if near else ""


def _size_budget(value) -> int:
    budget = parse_size(value)
    if budget <= 0:
        raise ValueError(f"{shown(value)} is no budget; give a positive size like \"7GB\"")
    return budget


def _version_string(entry: dict, key: str, report) -> str | None:
    if key not in entry:
        return None
    value = entry[key]
    if value is None:  # `torch:` with nothing after it: unset by mistake, not on purpose (torch's would drop the tag)
        report(key, f"has no value (YAML reads an empty value as null); write a version, e.g. {key}: \"{VERSION_EXAMPLES[key]}\""
                    + ("" if key == "torch" else ", or leave the key out"))
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        report(key, f"write versions as quoted strings ({key}: \"{value}\"): YAML reads {value} as the number {value!r}")
        return None
    if not isinstance(value, str):
        report(key, f"expected a version as a quoted string, e.g. {key}: \"2.6.0\", not {shown(value)}")
        return None
    return value


def _validate_entry(tag: str, entry, defaults: dict, facts: Facts, report) -> ImageSpec | None:
    if not isinstance(entry, dict):
        report(None, "expected a mapping, e.g. {torch: \"2.6.0\"}")
        return None
    for key in entry:
        if key not in ENTRY_KEYS:
            report(key, _unknown_key(key, ENTRY_KEYS))

    parsed = TAG_RE.fullmatch(tag)
    if not parsed:
        report(None, f"tag {shown(tag)} does not follow v<torch major.minor>-cu<CUDA digits>[-devel], e.g. v2.6-cu124 or v2.6-cu124-devel")
        return None

    torch_v = _version_string(entry, "torch", report)
    if torch_v is None:
        if "torch" not in entry:
            report(None, f"names no torch version; add e.g. torch: \"{parsed['torch']}\"")
        return None
    release = facts.release(torch_v)
    if release is None:
        known = ", ".join(facts.releases)
        report("torch", f"unknown torch version {shown(torch_v)}; known releases: {known}")
        return None
    if release.minor != parsed["torch"]:
        report("torch", f"tag {tag} says torch {parsed['torch']} but the entry names {torch_v}; the tag and torch must agree")
        return None

    variant_name = entry.get("cuda", parsed["cuda"])
    if variant_name != parsed["cuda"]:
        report("cuda", f"tag {tag} says {parsed['cuda']} but the entry names {shown(variant_name)}; the tag and cuda must agree")
        return None
    variant = release.variants.get(variant_name)
    if variant is None:
        report("cuda", unpublished_variant_message(release, variant_name, None, facts))
        return None

    torchvision = _version_string(entry, "torchvision", report)
    if torchvision is not None and not _same_release(torchvision, release.torchvision):
        report("torchvision", f"torchvision {_word(torchvision)} does not match torch {release.version}; "
                              f"torch {release.version} pairs with torchvision {release.torchvision} (its 'requires torch==' pin)")

    cudnn = _version_string(entry, "cudnn", report)
    if cudnn is not None:
        if variant.cudnn is None:
            report("cudnn", f"the cuDNN that torch {release.version}+{variant_name} bundles is not recorded in builder/matrix/compat.yaml; "
                            "remove the cudnn key or add the fact with its source")
        elif not _same_release(cudnn, variant.cudnn):
            report("cudnn", f"torch {release.version}+{variant_name} bundles cuDNN {variant.cudnn}, not {_word(cudnn)}; "
                            f"the wheel's cuDNN cannot be swapped: remove the key or write cudnn: \"{variant.cudnn}\"")

    devel = bool(parsed["devel"])
    nvcc = facts.nvcc.get(variant.cuda) if devel else None
    # A compiler from a Debian package decides the suite, unless the entry names its own base (then checked).
    compiler_suite = nvcc.suite if nvcc and nvcc.source == "debian" else None
    if "base" not in entry and not compiler_suite and getattr(defaults, "broken_base", False):
        base = None  # defaults.base is refused already (load)
    else:
        base = _validate_base(entry.get("base", compiler_suite or defaults.get("base", "bookworm")), facts, report)
    if base is not None and compiler_suite:
        base = _compiler_base(base, nvcc, variant.cuda, report)
    python = _version_string(entry, "python", report)
    if base is not None:
        suite_python = facts.debian_python[base.suite]
        if python is not None and python != suite_python:
            others = ", ".join(f"{s} -> {p}" for s, p in facts.debian_python.items())
            report("python", f"base {base.suite} ships Python {suite_python}, not {_word(python)}; pick the base whose Python you want ({others})")
        python = suite_python
        missing = release.missing_wheels(python)
        if missing:
            report("python" if "python" in entry else "base", f"{missing}; choose a base whose Python is among them"
                   + (f" (this -devel tag's compiler needs Debian {nvcc.suite})" if compiler_suite else ""))

    if devel and nvcc is None:
        have = ", ".join(f"CUDA {c} ({n.source})" for c, n in facts.nvcc.items())
        report(None, f"-devel needs a CUDA {variant.cuda} compiler, and builder/matrix/compat.yaml knows no source of one: "
                     f"no PyPI wheel carries nvcc {variant.cuda} and no Debian suite packages it (known: {have}); "
                     "drop -devel, or use a CUDA variant with a known compiler")

    allow_urls = entry.get("allow_direct_urls", False)
    if not isinstance(allow_urls, bool):
        report("allow_direct_urls", f"expected true or false, not {shown(allow_urls)}")
        allow_urls = False
    extra = _extra_packages(entry.get("extra_packages", []), allow_urls, report)

    size_budget = None
    if "size_budget" in entry:
        try:
            size_budget = _size_budget(entry["size_budget"])
        except ValueError as e:
            report("size_budget", str(e))
    elif "size_budget" in defaults:
        size_budget = _default_budget(defaults)

    if base is None or (devel and nvcc is None):
        return None
    cuda = cuda_of_variant(variant_name)
    return ImageSpec(
        tag=tag,
        torch=release.version,
        torchvision=release.torchvision,
        cuda_variant=variant_name,
        cuda=cuda,
        cuda_runtime=variant.cuda_runtime,
        cudnn=variant.cudnn,
        nccl=variant.nccl,
        archs=variant.archs,
        python=python,
        min_driver=facts.min_driver(cuda),
        toolkit_driver=facts.toolkit_driver.get(cuda),
        base=base,
        devel=devel,
        nvcc=nvcc,
        index=PYPI_INDEX if variant_name == release.pypi_variant else variant_name,
        extra_packages=tuple(extra),
        size_budget=size_budget,
    )


def _default_budget(defaults) -> int | None:
    try:
        return _size_budget(defaults["size_budget"])
    except ValueError:
        return None  # load() reports it once, at defaults.size_budget


def _compiler_base(base: Base, nvcc: compat.Nvcc, cuda: str, report) -> Base | None:
    """The base a Debian-packaged compiler needs: its suite, made locally with its archive area."""
    package, version = nvcc.packages[0]
    where = f"CUDA {cuda}'s nvcc comes from Debian {nvcc.suite}'s {nvcc.component} {package} ({version})"
    if base.suite != nvcc.suite:
        report("base", f"{where}; base {base.suite} does not have it. Remove the base key (the {nvcc.suite} base is "
                       f"then used) or write base: {nvcc.suite}")
        return None
    if not base.is_local:
        report("base", f"{where}, and a registry base ({base.ref}) does not carry that archive area; write "
                       f"base: {nvcc.suite} (made locally with {nvcc.component})")
        return None
    return dataclasses.replace(base, components=("main", nvcc.component))


def _same_release(given: str, actual: str) -> bool:
    """'0.21' and '0.21.0' both name torchvision 0.21.0; '9.1' names cuDNN 9.1.0.70."""
    return actual.split(".")[: len(given.split("."))] == given.split(".")


def _extra_packages(value, allow_urls: bool, report) -> tuple[str, ...]:
    """PEP 508 requirements, written back in packaging's normal form: nothing pip would read as an option,
    a comment or a variable; a direct URL only where the entry says allow_direct_urls: true, and never one
    with credentials (the requirements file is committed)."""
    example = 'e.g. ["einops==0.8.1"]'
    if not isinstance(value, list):
        report("extra_packages", f"expected a list of requirement strings, {example}, not {shown(value)}")
        return ()
    packages = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            report("extra_packages", f"{shown(item)} is not a requirement string; {example}")
            continue
        try:
            requirement = Requirement(item)
        except InvalidRequirement as e:
            report("extra_packages", f"{shown(item)} is not a PEP 508 requirement ({str(e).splitlines()[0][:160]}); "
                                     f"write name, extras, version and markers only, {example}")
            continue
        if PIP_SYNTAX_RE.search(item) or PIP_SYNTAX_RE.search(str(requirement)):
            report("extra_packages", f"{shown(item)} holds what pip reads as an option, comment or variable "
                                     "(a word starting with '-', '#', '\\', '$'); pip options do not belong in the matrix")
            continue
        if requirement.url:
            if not allow_urls:
                report("extra_packages", f"{shown(item)} is a direct URL; an entry takes those only with "
                                         "allow_direct_urls: true (the URL is then trusted as the index would be)")
                continue
            if not requirement.url.startswith(("https://", "http://")):
                report("extra_packages", f"{shown(item)}: a direct URL here is https:// (a local path or VCS "
                                         "checkout cannot be locked by sha256 or reached from a build)")
                continue
            if "@" in requirement.url.split("//", 1)[-1].split("/", 1)[0]:
                report("extra_packages", f"{shown(item)} carries credentials in its URL, which would be committed "
                                         "in images/; give them to pip (netrc or your pip configuration) instead")
                continue
        packages.append(str(requirement))
    return tuple(packages)


def _validate_base(value, facts: Facts, report) -> Base | None:
    """A Debian suite made locally, or an image reference by Docker's grammar pinned by sha256 digest."""
    suites = list(facts.debian_python)
    pinned = "name:tag@sha256:<64 hex digits>, e.g. docker.io/library/debian:bookworm-slim@sha256:…"
    if not isinstance(value, str):
        report("base", f"expected a Debian suite ({', '.join(suites)}) or a registry image as {pinned}, not {shown(value)}")
        return None
    if value in suites:
        return Base(ref=value, suite=value)
    if re.fullmatch(r"[a-z]+", value):
        report("base", f"unknown Debian suite {shown(value)}; known: {', '.join(suites)}")
        return None
    if CREDENTIALS_RE.match(value):
        report("base", "holds credentials (a user and password before an '@'); leave them out: a base is pulled with the "
                       "Docker config's credentials (`docker login <registry>`)")
        return None
    ref = references.parse(value)
    if ref is None:
        report("base", f"{shown(value)} is not an image reference by Docker's grammar "
                       f"([registry/]path[:tag]@digest, lowercase path, nothing else); write it as {pinned}")
        return None
    if ref.digest is None:
        report("base", f"registry base {shown(value)} is not pinned; write it as {pinned} "
                       "(a floating tag is not reproducible)")
        return None
    named = [s for s in suites if s in (ref.tag or "") or s in ref.path]
    if len(named) != 1:
        report("base", f"cannot tell the Debian suite of {shown(value)}; use an image whose tag names it "
                       "(e.g. debian:bookworm-slim@sha256:…)")
        return None
    return Base(ref=value, suite=named[0])


# ---------------------------------------------------------------- helpful refusals


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


