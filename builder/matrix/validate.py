"""Each entry under matrix.yaml's images, key by key, against the compatibility facts: one validator per key, each
reporting what is wrong and what would be right; an entry none reported on becomes its ImageSpec."""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from typing import Callable

from packaging.requirements import InvalidRequirement, Requirement

from builder import reference as references
from builder.inputs import shown
from builder.matrix import compat
from builder.matrix.compat import Facts, TorchRelease, Variant
from builder.matrix.types import PYPI_INDEX, TAG_RE, Base, ImageSpec, unpublished_variant_message
from builder.units import parse_size

ENTRY_KEYS = ("torch", "cuda", "python", "torchvision", "torchaudio", "cudnn", "base", "extra_packages",
              "allow_direct_urls", "size_budget")
VERSION_EXAMPLES = {"torch": "2.6.0", "torchvision": "0.21.0", "torchaudio": "2.6.0", "cudnn": "9.1.0.70", "python": "3.11"}
# user:password@host/… or user@host/…: credentials in front of a registry (never image@sha256:… or name@tag).
CREDENTIALS_RE = re.compile(r"^[^/@]+:[^/@]*@(?!sha256:)|^[^/@:]+@(?!sha256:)[^/@]+/")
# What pip reads in a requirements file besides a requirement: an option (a word starting with '-', even
# inside a marker's quoted string, as pip splits the line on spaces), a comment, a line continuation, and
# ${VARIABLE} (expanded from the environment of `make lock`).
PIP_SYNTAX_RE = re.compile(r"(^|\s)[-#]|\\|\$")
_EXTRA_EXAMPLE = 'e.g. ["einops==0.8.1"]'
# (key, message): a problem of the entry's key, or of the entry itself (None); load.py adds the file, line and tag.
Report = Callable[[str | None, str], None]


@dataclass(frozen=True)
class Defaults:
    """What an entry takes from matrix.yaml's defaults where it names none (load.py checks them, once)."""

    base: str | None = "bookworm"  # None: defaults.base is refused, and an entry without its own base has none
    size_budget: int | None = None  # None: none given, or refused


def entry(tag: str, value, defaults: Defaults, facts: Facts, report: Report) -> ImageSpec | None:
    """The spec of images.<tag>; None when a key of it is refused (each problem reported)."""
    if not isinstance(value, dict):
        report(None, "expected a mapping, e.g. {torch: \"2.6.0\"}")
        return None
    for key in value:
        if key not in ENTRY_KEYS:
            report(key, unknown_key(key, ENTRY_KEYS))
    parsed = _tag(tag, report)
    release = _torch(tag, parsed, value, facts, report) if parsed else None
    variant = _cuda(tag, parsed, release, value, facts, report) if release else None
    if variant is None:
        return None
    _torchvision(value, release, report)
    torchaudio = _torchaudio(value, release, facts, report)
    _cudnn(value, release, variant, report)
    devel = bool(parsed["devel"])
    nvcc = facts.nvcc.get(variant.cuda) if devel else None
    # A compiler from a Debian package decides the suite, unless the entry names its own base (then checked).
    compiler_suite = nvcc.suite if nvcc and nvcc.source == "debian" else None
    image_base = _entry_base(value, defaults, nvcc, compiler_suite, variant.cuda, facts, report)
    python = _python(value, image_base, release, compiler_suite, facts, report, torchaudio=torchaudio is not None)
    if devel and nvcc is None:
        _no_compiler(variant.cuda, facts, report)
    extra = _extra_packages(value.get("extra_packages", []), _allow_direct_urls(value, report), report)
    budget = _entry_size_budget(value, defaults, report)
    if image_base is None or (devel and nvcc is None):
        return None
    return ImageSpec(
        tag=tag,
        torch=release.version,
        torchvision=release.torchvision,
        cuda_variant=variant.name,
        cuda=variant.cuda,
        cuda_runtime=variant.cuda_runtime,
        cudnn=variant.cudnn,
        nccl=variant.nccl,
        archs=variant.archs,
        python=python,
        min_driver=facts.min_driver(variant.cuda),
        toolkit_driver=facts.toolkit_driver.get(variant.cuda),
        base=image_base,
        devel=devel,
        nvcc=nvcc,
        index=PYPI_INDEX if variant.name == release.pypi_variant else variant.name,
        extra_packages=extra,
        torchaudio=torchaudio,
        size_budget=budget,
    )


def _tag(tag: str, report: Report) -> re.Match[str] | None:
    parsed = TAG_RE.fullmatch(tag)
    if not parsed:
        report(None, f"tag {shown(tag)} does not follow v<torch major.minor>-cu<CUDA digits>[-devel], e.g. v2.6-cu124 or v2.6-cu124-devel")
    return parsed


def _torch(tag: str, parsed: re.Match[str], entry: dict, facts: Facts, report: Report) -> TorchRelease | None:
    version = _version_string(entry, "torch", report)
    if version is None:
        if "torch" not in entry:
            report(None, f"names no torch version; add e.g. torch: \"{parsed['torch']}\"")
        return None
    release = facts.release(version)
    if release is None:
        report("torch", f"unknown torch version {shown(version)}; known releases: {', '.join(facts.releases)}")
        return None
    if release.minor != parsed["torch"]:
        report("torch", f"tag {tag} says torch {parsed['torch']} but the entry names {version}; the tag and torch must agree")
        return None
    return release


def _cuda(tag: str, parsed: re.Match[str], release: TorchRelease, entry: dict, facts: Facts, report: Report) -> Variant | None:
    name = entry.get("cuda", parsed["cuda"])
    if name != parsed["cuda"]:
        report("cuda", f"tag {tag} says {parsed['cuda']} but the entry names {shown(name)}; the tag and cuda must agree")
        return None
    variant = release.variants.get(name)
    if variant is None:
        report("cuda", unpublished_variant_message(release, name, None, facts))
    return variant


def _torchvision(entry: dict, release: TorchRelease, report: Report) -> None:
    given = _version_string(entry, "torchvision", report)
    if given is not None and not same_release(given, release.torchvision):
        report("torchvision", f"torchvision {word(given)} does not match torch {release.version}; "
                              f"torch {release.version} pairs with torchvision {release.torchvision} (its 'requires torch==' pin)")


def _torchaudio(entry: dict, release: TorchRelease, facts: Facts, report: Report) -> str | None:
    """Optional: the torchaudio compat.yaml pairs with the entry's torch, named as a prefix of it ('2.6' or '2.6.0')."""
    given = _version_string(entry, "torchaudio", report)
    if given is None:
        return None
    if release.torchaudio is None:
        paired = facts.with_torchaudio()
        report("torchaudio", f"torch {release.version} has no matching torchaudio: no torchaudio release goes with it "
                             f"(builder/matrix/compat.yaml; torchaudio's releases go with torch {paired[0].version} to "
                             f"{paired[-1].version}); remove the torchaudio key, or use a tag of one of those")
        return None
    if not same_release(given, release.torchaudio):
        report("torchaudio", f"torchaudio {word(given)} does not match torch {release.version}; torch {release.version} "
                             f"pairs with torchaudio {release.torchaudio}: write torchaudio: \"{release.torchaudio}\"")
        return None
    return release.torchaudio


def _cudnn(entry: dict, release: TorchRelease, variant: Variant, report: Report) -> None:
    given = _version_string(entry, "cudnn", report)
    if given is None:
        return
    wheel = f"torch {release.version}+{variant.name}"
    if variant.cudnn is None:
        report("cudnn", f"the cuDNN that {wheel} bundles is not recorded in builder/matrix/compat.yaml; "
                        "remove the cudnn key or add the fact with its source")
    elif not same_release(given, variant.cudnn):
        report("cudnn", f"{wheel} bundles cuDNN {variant.cudnn}, not {word(given)}; "
                        f"the wheel's cuDNN cannot be swapped: remove the key or write cudnn: \"{variant.cudnn}\"")


def _entry_base(entry: dict, defaults: Defaults, nvcc: compat.Nvcc | None, compiler_suite: str | None, cuda: str,
                facts: Facts, report: Report) -> Base | None:
    """The entry's base, else the suite its compiler decides, else the defaults' base."""
    if "base" not in entry and not compiler_suite and defaults.base is None:
        return None  # defaults.base is refused already (load)
    found = base(entry.get("base", compiler_suite or defaults.base), facts, report)
    if found is not None and compiler_suite:
        return _compiler_base(found, nvcc, cuda, report)
    return found


def _compiler_base(found: Base, nvcc: compat.Nvcc, cuda: str, report: Report) -> Base | None:
    """The base a Debian-packaged compiler needs: its suite, made locally with its archive area."""
    package, version = nvcc.packages[0]
    where = f"CUDA {cuda}'s nvcc comes from Debian {nvcc.suite}'s {nvcc.component} {package} ({version})"
    if found.suite != nvcc.suite:
        report("base", f"{where}; base {found.suite} does not have it. Remove the base key (the {nvcc.suite} base is "
                       f"then used) or write base: {nvcc.suite}")
        return None
    if not found.is_local:
        report("base", f"{where}, and a registry base ({found.ref}) does not carry that archive area; write "
                       f"base: {nvcc.suite} (made locally with {nvcc.component})")
        return None
    return dataclasses.replace(found, components=("main", nvcc.component))


def _python(entry: dict, image_base: Base | None, release: TorchRelease, compiler_suite: str | None, facts: Facts,
            report: Report, torchaudio: bool = False) -> str | None:
    """The base's Python: a python key must name it, and torch and torchvision (and torchaudio, when the entry asks for
    it) must have wheels for it."""
    python = _version_string(entry, "python", report)
    if image_base is None:
        return python
    suite_python = facts.debian_python[image_base.suite]
    if python is not None and python != suite_python:
        others = ", ".join(f"{s} -> {p}" for s, p in facts.debian_python.items())
        report("python", f"base {image_base.suite} ships Python {suite_python}, not {word(python)}; pick the base whose Python you want ({others})")
    missing = release.missing_wheels(suite_python)
    needs = f" (this -devel tag's compiler needs Debian {compiler_suite})" if compiler_suite else ""
    if missing:
        report("python" if "python" in entry else "base", f"{missing}; choose a base whose Python is among them{needs}")
    elif torchaudio and (missing := release.missing_wheels(suite_python, torchaudio=True)):
        report("torchaudio", f"{missing}; remove the torchaudio key, or choose a base whose Python is among them{needs}")
    return suite_python


def _no_compiler(cuda: str, facts: Facts, report: Report) -> None:
    have = ", ".join(f"CUDA {c} ({n.source})" for c, n in facts.nvcc.items())
    report(None, f"-devel needs a CUDA {cuda} compiler, and builder/matrix/compat.yaml knows no source of one: "
                 f"no PyPI wheel carries nvcc {cuda} and no Debian suite packages it (known: {have}); "
                 "drop -devel, or use a CUDA variant with a known compiler")


def _allow_direct_urls(entry: dict, report: Report) -> bool:
    allow = entry.get("allow_direct_urls", False)
    if not isinstance(allow, bool):
        report("allow_direct_urls", f"expected true or false, not {shown(allow)}")
        return False
    return allow


def _extra_packages(value, allow_urls: bool, report: Report) -> tuple[str, ...]:
    """PEP 508 requirements, written back in packaging's normal form."""
    if not isinstance(value, list):
        report("extra_packages", f"expected a list of requirement strings, {_EXTRA_EXAMPLE}, not {shown(value)}")
        return ()
    return tuple(r for r in (_requirement(item, allow_urls, report) for item in value) if r is not None)


def _requirement(item, allow_urls: bool, report: Report) -> str | None:
    """Nothing pip would read as an option, a comment or a variable; a direct URL only where the entry says
    allow_direct_urls: true, and never one with credentials (the requirements file is committed)."""
    if not isinstance(item, str) or not item.strip():
        report("extra_packages", f"{shown(item)} is not a requirement string; {_EXTRA_EXAMPLE}")
        return None
    try:
        requirement = Requirement(item)
    except InvalidRequirement as e:
        report("extra_packages", f"{shown(item)} is not a PEP 508 requirement ({str(e).splitlines()[0][:160]}); "
                                 f"write name, extras, version and markers only, {_EXTRA_EXAMPLE}")
        return None
    if PIP_SYNTAX_RE.search(item) or PIP_SYNTAX_RE.search(str(requirement)):
        report("extra_packages", f"{shown(item)} holds what pip reads as an option, comment or variable "
                                 "(a word starting with '-', '#', '\\', '$'); pip options do not belong in the matrix")
        return None
    if requirement.url and not allow_urls:
        report("extra_packages", f"{shown(item)} is a direct URL; an entry takes those only with "
                                 "allow_direct_urls: true (the URL is then trusted as the index would be)")
        return None
    if requirement.url and not requirement.url.startswith(("https://", "http://")):
        report("extra_packages", f"{shown(item)}: a direct URL here is https:// (a local path or VCS "
                                 "checkout cannot be locked by sha256 or reached from a build)")
        return None
    if requirement.url and "@" in requirement.url.split("//", 1)[-1].split("/", 1)[0]:
        report("extra_packages", f"{shown(item)} carries credentials in its URL, which would be committed "
                                 "in images/; give them to pip (netrc or your pip configuration) instead")
        return None
    return str(requirement)


def _entry_size_budget(entry: dict, defaults: Defaults, report: Report) -> int | None:
    if "size_budget" not in entry:
        return defaults.size_budget
    try:
        return size_budget(entry["size_budget"])
    except ValueError as e:
        report("size_budget", str(e))
        return None


def _version_string(entry: dict, key: str, report: Report) -> str | None:
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


# ---------------------------------------------------------------- shared with load.py (defaults, labels)


def base(value, facts: Facts, report: Report) -> Base | None:
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


def size_budget(value) -> int:
    """Bytes, from "7GB"; ValueError saying what is wrong."""
    budget = parse_size(value)
    if budget <= 0:
        raise ValueError(f"{shown(value)} is no budget; give a positive size like \"7GB\"")
    return budget


def same_release(given: str, actual: str) -> bool:
    """'0.21' and '0.21.0' both name torchvision 0.21.0; '9.1' names cuDNN 9.1.0.70."""
    return actual.split(".")[: len(given.split("."))] == given.split(".")


def word(value) -> str:
    """A plain word as it is; anything else quoted and cut (shown), so a message stays one short line."""
    return value if isinstance(value, str) and re.fullmatch(r"[\w.+-]{1,80}", value, re.ASCII) else shown(value)


def unknown_key(key: str, allowed: tuple[str, ...]) -> str:
    hint = difflib.get_close_matches(key[:80], allowed, n=1)
    return f"unknown key {shown(key)}; " + (f"did you mean {hint[0]!r}?" if hint else "allowed keys: " + ", ".join(allowed))
