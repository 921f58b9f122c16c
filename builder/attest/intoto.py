"""The in-toto Statement v1, the DSSE envelope and SLSA Provenance v1, as msgspec structs, and the three statements
torchyard makes: the provenance, the SBOM and the smoke report, each about one registry digest.

msgspec structs, not the in-toto library: it has no v1 Statement type (in-toto-attestation's is protobuf, a
dependency nothing else here needs), and a struct is both what is written and the strict schema a verifier reads
back (builder/records/'s parsed()).
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from importlib import metadata
from typing import Any, Literal

import msgspec

from builder.attest import PROVENANCE, SBOM, SMOKE
from builder.attest.contents import Contents
from builder.host.smoke import device
from builder.image.build import CONTEXT_LABEL
from builder.records import builds, runs

STATEMENT_V1 = "https://in-toto.io/Statement/v1"
BUILD_TYPE = "urn:torchyard:make-build:v1"  # what `make build` does with a tag: see docs/attestations.md
BUILDER_ID = "urn:torchyard:make-build"
# the labels builder/image/build.py gives every image it builds
SOURCE_LABEL, REVISION_LABEL = "org.opencontainers.image.source", "org.opencontainers.image.revision"
CREATED_LABEL = "org.opencontainers.image.created"


class _Shape(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, rename="camel"):
    """Fields by their camelCase names; one at its default is not written."""


class Subject(_Shape, kw_only=True):
    name: str
    digest: dict[str, str]  # {"sha256": "<64 hex>"}


class Statement(_Shape, kw_only=True):
    type: Literal["https://in-toto.io/Statement/v1"] = msgspec.field(name="_type")
    subject: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any]


class Signature(_Shape, kw_only=True):
    keyid: str = ""
    sig: str  # base64


class Envelope(_Shape, kw_only=True):
    payload: str  # base64 of the statement's JSON
    payload_type: str
    signatures: tuple[Signature, ...] = ()

    def statement_bytes(self) -> bytes:
        return base64.b64decode(self.payload, validate=True)


class Resource(_Shape, kw_only=True):  # SLSA's ResourceDescriptor
    name: str | None = None
    uri: str | None = None
    digest: dict[str, str] = {}
    annotations: dict[str, Any] = {}


class BuildDefinition(_Shape, kw_only=True):
    build_type: str
    external_parameters: dict[str, Any]
    internal_parameters: dict[str, Any] = {}
    resolved_dependencies: tuple[Resource, ...] = ()


class RunDetails(_Shape, kw_only=True):
    builder: dict[str, Any]  # {"id": …, "version": {…}}
    metadata: dict[str, str] = {}  # startedOn, finishedOn
    byproducts: tuple[Resource, ...] = ()


class Provenance(_Shape, kw_only=True):
    build_definition: BuildDefinition
    run_details: RunDetails


def subject(name: str, digest: str) -> Subject:
    """The image in a registry: its repository (<registry>/torchyard) and manifest digest."""
    return Subject(name=name, digest={"sha256": digest.removeprefix("sha256:")})


def _statement(about: Subject, predicate_type: str, predicate) -> Statement:
    return Statement(type=STATEMENT_V1, subject=(about,), predicate_type=predicate_type,
                     predicate=msgspec.to_builtins(predicate))


def _source(contents: Contents) -> list[Resource]:
    """The commit the image was built from, as its revision label says (-dirty: uncommitted changes in its sources)."""
    revision = contents.labels.get(REVISION_LABEL, "unknown")
    commit = revision.removesuffix("-dirty")
    if len(commit) != 40 or not all(c in "0123456789abcdef" for c in commit):
        return []
    uri = contents.labels.get(SOURCE_LABEL, "")
    return [Resource(uri=f"git+{uri}" if uri else None, digest={"gitCommit": commit},
                     annotations={"revision": revision, "dirty": revision.endswith("-dirty")})]


def _dependencies(contents: Contents) -> list[Resource]:
    manifest = contents.manifest
    found = _source(contents)
    if contents.labels.get(CONTEXT_LABEL):
        found.append(Resource(name="build context", digest={"sha256": contents.labels[CONTEXT_LABEL]}))
    if manifest.base.image_id.startswith("sha256:"):
        found.append(Resource(name=f"base image {manifest.base.ref}",
                              digest={"sha256": manifest.base.image_id.removeprefix("sha256:")}))
    found += [Resource(name=name, digest={"sha256": sha}) for name, sha in manifest.lock.files.items()]
    found += [Resource(name=f"pkg:pypi/{p.name}@{p.version}", uri=p.url, digest={"sha256": p.sha256},
                       annotations={"lock": lock}) for lock, locked in contents.locks.items() for p in locked]
    return found


def provenance(contents: Contents, about: Subject, build: builds.BuildRecord | None) -> Statement:
    """SLSA Provenance v1 of the image: its commit, matrix entry, build context, base, every locked artifact, and
    (when the last build record is of this image) the build's start and end."""
    times = {}
    if build and build.image_id == contents.image_id and build.status == "built":
        started = datetime.fromisoformat(build.started)
        times = {"startedOn": started.isoformat(), "finishedOn": (started + timedelta(seconds=build.seconds)).isoformat()}
    manifest = contents.manifest
    predicate = Provenance(
        build_definition=BuildDefinition(
            build_type=BUILD_TYPE,
            external_parameters={"tag": manifest.tag, "matrixEntry": manifest.spec,
                                 "source": {"uri": contents.labels.get(SOURCE_LABEL),
                                            "revision": contents.labels.get(REVISION_LABEL, "unknown")}},
            internal_parameters={"lockSha256": manifest.lock.sha256, "created": contents.labels.get(CREATED_LABEL)},
            resolved_dependencies=tuple(_dependencies(contents))),
        run_details=RunDetails(builder={"id": BUILDER_ID, "version": {"torchyard": metadata.version("torchyard")}},
                               metadata=times,
                               byproducts=(Resource(name="image config (the image ID)",
                                                    digest={"sha256": contents.image_id.removeprefix("sha256:")}),)))
    return _statement(about, PROVENANCE, predicate)


def sbom(text: str, about: Subject) -> Statement:
    return _statement(about, SBOM, msgspec.json.decode(text))


def smoke(report: runs.SmokeReport, about: Subject) -> Statement:
    """The smoke report as it is (every check's verdict, reason and figures, the device, driver and host facts): a
    GPU check SKIPPED on a CPU host says SKIPPED here too."""
    return _statement(about, SMOKE, report)


def verdict(report: runs.SmokeReport) -> str:
    """The smoke verdict in a line, with where it ran and what it could not check there: "PASS on CPU, 2 cores
    (SKIPPED: cuda, cudnn conv, nccl all-reduce)"."""
    name, driver = device(report)
    skipped = [c.name for c in report.checks if c.status == "SKIPPED"]
    return (f"{report.status} on {name}" + (f", driver {driver}" if driver else "")
            + (f" (SKIPPED: {', '.join(skipped)})" if skipped else ""))
