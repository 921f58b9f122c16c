"""`make verify-image TAG=… REGISTRY=… KEY=pub.pem`: every attestation beside the recorded digest, checked offline with
the public key, and what they say.

Each DSSE referrer of the digest (builder/attest/referrers.py) must be attached to that digest, be signed by KEY's key
over exactly its bytes, hold an in-toto Statement whose every subject is that digest, and carry a predicate of the type
its manifest names, in the shape torchyard writes it. The provenance, the SBOM and the smoke report must each be there
at least once. Anything else fails, naming the attestation (its kind and manifest digest) and what is wrong with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
from securesystemslib.signer import SSlibKey

from builder import layout, records
from builder.attest import KINDS, PROVENANCE, SBOM, SMOKE, AttestError, dsse, intoto, referrers
from builder.attest.oci import Descriptor, Registry
from builder.records import published, runs

MAX_ENVELOPE_BYTES = records.MAX_BYTES  # an SBOM of a few thousand packages is ~2 MB in base64


class BomComponent(msgspec.Struct, kw_only=True, rename="camel"):
    """What the summary reads of an SBOM's component; the rest is kept unread."""
    name: str = ""
    version: str = ""
    purl: str = ""
    components: tuple[BomComponent, ...] = ()


class Bom(msgspec.Struct, kw_only=True, rename="camel"):
    bom_format: Literal["CycloneDX"]
    spec_version: str
    components: tuple[BomComponent, ...] = ()


@dataclass(frozen=True)
class Checked:
    predicate_type: str
    manifest: str  # the referrer manifest's digest
    created: str
    predicate: object  # the predicate, typed: intoto.Provenance, runs.SmokeReport or Bom


def _name(descriptor: Descriptor) -> str:
    kind = descriptor.annotations.get(referrers.PREDICATE, "")
    return f"{KINDS.get(kind, 'the')} attestation {descriptor.digest[:19]}…"


def _typed(statement: intoto.Statement, origin: str):
    """The predicate in the shape its type has; AttestError for a type torchyard does not make, or a wrong shape."""
    where = Path(origin)
    try:
        if statement.predicate_type == PROVENANCE:
            return msgspec.convert(statement.predicate, intoto.Provenance, strict=True)
        if statement.predicate_type == SMOKE:
            return runs.smoke_from_suite(msgspec.json.encode(statement.predicate), where)  # figures checked too
        if statement.predicate_type == SBOM:
            return msgspec.convert(statement.predicate, Bom, strict=True)
    except (msgspec.ValidationError, records.BrokenRecord) as e:
        raise AttestError(f"holds a {KINDS[statement.predicate_type]} predicate of the wrong shape "
                          f"({getattr(e, 'problem', e)})") from None
    raise AttestError(f"holds a predicate of type {statement.predicate_type[:80]!r}, which torchyard does not make")


def check(registry: Registry, descriptor: Descriptor, digest: str, key: SSlibKey) -> Checked:
    """One referrer checked whole; AttestError (without its name: the caller adds it) saying what is wrong."""
    raw = referrers.envelope(registry, descriptor, digest, MAX_ENVELOPE_BYTES)
    origin = f"{registry.name}@{descriptor.digest}"
    try:
        statement = dsse.open_envelope(raw, key, origin)
    except dsse.Unverified as e:
        raise AttestError(str(e)) from None
    others = [s.digest.get("sha256", "none") for s in statement.subject if s.digest.get("sha256") != digest[7:]]
    if others or not statement.subject:
        raise AttestError(f"is signed, but for another digest: its statement's subject is sha256:{(others or ['none'])[0]}, "
                          f"not {digest}")
    said = descriptor.annotations.get(referrers.PREDICATE)
    if said and said != statement.predicate_type:
        raise AttestError(f"says it holds {said} but its statement is a {statement.predicate_type}")
    return Checked(statement.predicate_type, descriptor.digest, descriptor.annotations.get(referrers.CREATED, ""),
                   _typed(statement, origin))


def verify(registry: Registry, reference: str, digest: str, key: SSlibKey) -> list[Checked]:
    """Every attestation of digest, checked; AttestError listing each failure and each kind missing."""
    found, other = referrers.listed(registry, digest)
    if not found:
        raise AttestError(f"{reference}@{digest} has no attestations in the registry: neither its referrers API nor the "
                          f"tag {referrers.fallback_tag(digest)} lists any"
                          + (f" ({other} artifacts of other tools)" if other else "")
                          + "; attach them with make push TAG=… REGISTRY=… SIGNING_KEY=<private key>")
    checked, problems = [], []
    for descriptor in found:
        try:
            checked.append(check(registry, descriptor, digest, key))
        except AttestError as e:
            problems.append(f"{_name(descriptor)} {e}")
    listed = {d.annotations.get(referrers.PREDICATE) for d in found} | {c.predicate_type for c in checked}
    problems += [f"no {kind} attestation" for kind_type, kind in KINDS.items() if kind_type not in listed]
    if problems:
        raise AttestError(f"{reference}@{digest} did not verify with {dsse.describe(key)}:\n  " + "\n  ".join(problems))
    return checked


def _newest(checked: list[Checked], predicate_type: str) -> Checked:
    return max((c for c in checked if c.predicate_type == predicate_type), key=lambda c: c.created)


def summary(checked: list[Checked]) -> list[str]:
    """What the attestations say, a few lines: commit, build, locks; the SBOM's count; the smoke verdicts and device."""
    provenance: intoto.Provenance = _newest(checked, PROVENANCE).predicate
    build = provenance.build_definition
    source = build.external_parameters.get("source")
    source = source if isinstance(source, dict) else {}
    times = provenance.run_details.metadata
    locks = [d for d in build.resolved_dependencies if d.name and d.name.endswith(".lock")]
    artifacts = [d for d in build.resolved_dependencies if d.annotations.get("lock")]
    lines = [f"provenance: commit {source.get('revision', 'unknown')}, tag {build.external_parameters.get('tag')}, "
             + (f"built {times['startedOn']} to {times.get('finishedOn', '?')}" if "startedOn" in times else "build times not recorded"),
             "  locks: " + ", ".join(f"{d.name} sha256:{d.digest.get('sha256', '?')}" for d in locks)
             + f"; {len(artifacts)} artifacts, each by sha256"]
    bom: Bom = _newest(checked, SBOM).predicate
    purls = [c.purl for c in bom.components]
    inside = [f"{c.name} {c.version}" for wheel in bom.components for c in wheel.components]
    lines.append(f"sbom: CycloneDX {bom.spec_version}, {len(purls)} components ("
                 f"{sum(p.startswith('pkg:pypi/') for p in purls)} Python, {sum(p.startswith('pkg:deb/') for p in purls)} "
                 f"Debian); inside the nvidia wheels: {', '.join(inside) or 'none'}")
    report: runs.SmokeReport = _newest(checked, SMOKE).predicate
    lines.append(f"smoke: {intoto.verdict(report)}, started {report.started}")
    lines += [f"  {c.name}: {c.status}" + (f" ({c.reason[:100]})" if c.status != "PASS" and c.reason else "")
              for c in report.checks]
    return lines



def run(registry: str, tag: str, digests: Path, key: SSlibKey, say=print) -> None:
    """`make verify-image` for <registry>/torchyard:<tag>: the digest make push recorded, verified, then what its
    attestations say; AttestError when it does not verify or none is recorded."""
    reference = f"{registry}/{layout.REGISTRY_NAME}:{tag}"
    entry = published.read_digests(tag, digests).get(reference)
    if entry is None:
        raise AttestError(f"no recorded digest for {reference} in {published.digests_path(tag, digests)}: verify-image "
                          "checks the digest make push recorded (commit digests/ where you push)")
    checked = verify(Registry(registry, layout.REGISTRY_NAME), reference, entry.digest, key)
    say(f"verified {reference}@{entry.digest}: {len(checked)} attestations, each signed by {dsse.describe(key)} for "
        "this digest")
    for line in summary(checked):
        say(f"  {line}")


def require(reference: str, digest: str | None, key: SSlibKey, say=print) -> None:
    """`make k8s`/`make slurm` with KEY=: the digest a cluster will pull has attestations that verify with key;
    AttestError when it has none recorded or they do not."""
    if digest is None:
        raise AttestError(f"KEY= asks for a verified digest, and none is recorded for {reference}: make push records one")
    registry = reference.rsplit("/", 1)[0]
    verify(Registry(registry, layout.REGISTRY_NAME), reference, digest, key)
    say(f"verified {reference}@{digest} with {dsse.describe(key)}")
