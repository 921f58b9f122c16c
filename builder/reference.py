"""Docker's reference grammar (github.com/distribution/reference, regexp.go), for every image name that
reaches a Dockerfile's FROM or the engine: a registry base, REGISTRY= and REPO=.

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component [ "/" path-component ]*
    domain     := host [ ":" port ]          host: DNS name (any case), or [IPv6]
    path-component := [a-z0-9]+ ( ( [._] | __ | -+ ) [a-z0-9]+ )*
    tag        := [\\w][\\w.-]{0,127}
    digest     := algorithm ":" hex          (torchyard pins bases by sha256: 64 lowercase hex digits)

The first component of a name is a domain only when it holds a '.' or a ':' or is 'localhost' (Docker's
own rule: otherwise `ml/torchyard` means docker.io/ml/torchyard). Full matches only: Python's `$` would
let a trailing newline through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.inputs import InputError, shown

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PATH = rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"
TAG = r"[\w][\w.-]{0,127}"
SHA256 = r"sha256:[0-9a-f]{64}"
NAME_MAX = 255  # Docker refuses longer names

_REFERENCE_RE = re.compile(rf"(?:(?P<domain>{DOMAIN})/)?(?P<path>{PATH})(?::(?P<tag>{TAG}))?(?:@(?P<digest>{SHA256}))?",
                           re.ASCII)
_REGISTRY_RE = re.compile(rf"(?P<domain>{DOMAIN})(?:/(?P<path>{PATH}))?", re.ASCII)


@dataclass(frozen=True)
class Reference:
    domain: str | None
    path: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        name = f"{self.domain}/{self.path}" if self.domain else self.path
        return name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _is_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost"


def _port_in_range(domain: str) -> bool:
    """A domain's port, when it names one, is 1-65535 (the grammar takes any digits)."""
    found = re.search(r"(?<!:):([0-9]+)$", domain.rsplit("]", 1)[-1], re.ASCII)
    return found is None or 0 < int(found[1]) < 65536


def parse(value: str) -> Reference | None:
    """An image reference by Docker's grammar, or None when it is not one."""
    found = _REFERENCE_RE.fullmatch(value)
    if not found:
        return None
    domain, path = found["domain"], found["path"]
    if domain and not _is_domain(domain):  # 'ml/torchyard': a path of two components on docker.io
        domain, path = None, f"{domain}/{path}"
        if not re.fullmatch(PATH, path, re.ASCII):
            return None
    if len(f"{domain}/{path}" if domain else path) > NAME_MAX or (domain and not _port_in_range(domain)):
        return None
    return Reference(domain, path, found["tag"], found["digest"])


def registry(value: str, what: str = "REGISTRY") -> str:
    """host[:port][/namespace…] as `make push REGISTRY=` takes it: a domain Docker recognises, lowercase
    path components, no scheme, tag, digest or credentials."""
    example = "e.g. registry.example.com/ml or 127.0.0.1:5000; images go to <REGISTRY>/torchyard:<tag>"
    if "@" in value.split("/")[0]:
        raise InputError(f"{what} holds credentials (a user and password before an '@'); leave them out: push and pull use the "
                         "Docker config that `docker login <host>` writes")
    value = value.rstrip("/")
    found = _REGISTRY_RE.fullmatch(value)
    if not found or not _is_domain(found["domain"]) or len(value) > NAME_MAX:
        hint = ""
        if "://" in value:
            hint = " (leave out the scheme)"
        elif found is None and re.fullmatch(rf"{DOMAIN}(?:/\S*)?", value, re.ASCII) and value != value.lower():
            hint = " (the parts after the host are lowercase)"
        elif found and not _is_domain(found["domain"]):
            hint = " (the first part names a registry only with a '.', a ':port' or as localhost)"
        raise InputError(f"{what}={shown(value)} is not host[:port][/namespace]{hint}; {example}")
    if not _port_in_range(found["domain"]):
        raise InputError(f"{what}={shown(value)}: its port is not a number from 1 to 65535; {example}")
    return value


def repository(value: str, what: str = "REPO") -> str:
    """A local repository name: lowercase path components, optionally after a domain (no tag or digest)."""
    found = parse(value)
    if found is None or found.tag or found.digest:
        raise InputError(f"{what}={shown(value)} is not a repository name: lowercase letters and digits with . _ - "
                         "between them, e.g. torchyard or torchyard-dev")
    return value
