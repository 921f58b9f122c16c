"""What `make push` and `make smoke` attest, and the record of it.

`make push` with SIGNING_KEY (TORCHYARD_SIGNING_KEY) set attaches, beside the digest it just pushed, the provenance, the SBOM and
(when reports/<tag>/smoke.json is of this very image) the smoke report; `make smoke` of an image whose digest
digests/<tag>.json records writes the smoke statement and, with the key set, attaches it beside each such digest.
One key setting decides it, so a signed push is one command and an image pushed with a key is never left without its
attestations; a push without the key says it attached nothing.

Each statement is also written to reports/<tag>/ (sbom.cdx.json, provenance.intoto.json, smoke.intoto.json) as it
was signed, and reports/<tag>/attested.json records what was attached where, with the attested smoke verdict the
matrix report shows beside the local one.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import docker
from securesystemslib.signer import CryptoSigner

from builder import layout, records
from builder.records import builds, published, runs
from builder import reference as references
from builder.attest import KINDS, contents, dsse, intoto, referrers, sbom
from builder.attest.oci import Registry
from builder.files import write_atomic
from builder.image.registry import Shipped


def registry_of(reference: str) -> tuple[str, str]:
    """<REGISTRY>/torchyard:<tag> -> (REGISTRY, <REGISTRY>/torchyard: the statements' subject name)."""
    found = references.parse(reference)
    repository = f"{found.domain}/{found.path}"
    return repository.rsplit("/", 1)[0], repository


def write_sbom(client: docker.DockerClient, image: str, tag: str, reports: Path, say=print) -> tuple[contents.Contents, str]:
    """`make sbom`: the image's SBOM in reports/<tag>/sbom.cdx.json; (what the image holds, the SBOM)."""
    found = contents.read(client, image, tag)
    text = sbom.make(found)
    path = write_atomic(records.report_path(reports, tag, published.SBOM), text)
    say(f"wrote {path}: CycloneDX 1.6 of {image} ({found.image_id[:19]}), {len(found.manifest.python_packages)} Python "
        f"and {len(found.manifest.debian_packages)} Debian packages, the base, CUDA, cuDNN and NCCL")
    return found, text


def _write(reports: Path, tag: str, name: str, statement: intoto.Statement) -> Path:
    return records.write_report(reports, tag, name, statement)


def attach(reference: str, digest: str, statements: list[intoto.Statement], signer: CryptoSigner, tag: str,
           reports: Path, say=print, smoke: str | None = None) -> published.Attachment:
    """Sign each statement and attach it beside reference's digest; reports/<tag>/attested.json records it."""
    registry = Registry(registry_of(reference)[0], layout.REGISTRY_NAME)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    artifacts = {}
    for statement in statements:
        stored = referrers.attach(registry, digest, dsse.sign(statement, signer), statement.predicate_type, now)
        artifacts[statement.predicate_type] = stored
        say(f"attached the {KINDS[statement.predicate_type]} attestation to {reference} ({digest[:19]}…): {stored}")
    attested = published.read_attested(tag, reports)
    before = attested.get(reference)
    if before and before.digest == digest and before.keyid == signer.public_key.keyid:
        artifacts = {**before.artifacts, **artifacts}
    smoke = smoke or (before.smoke if before and before.digest == digest else None)  # the attested smoke verdict
    attested[reference] = published.Attachment(digest=digest, keyid=signer.public_key.keyid, date=now,
                                             artifacts=artifacts, smoke=smoke)
    records.write_report(reports, tag, published.ATTESTED, dict(sorted(attested.items())))
    return attested[reference]


def after_push(client: docker.DockerClient, shipped: Shipped, tag: str, signer: CryptoSigner | None, reports: Path,
               say=print) -> published.Attachment | None:
    """The provenance, the SBOM and a current smoke report, signed and attached beside the pushed digest."""
    reference, digest = shipped.reference, shipped.digest
    if signer is None:
        say("attested nothing: SIGNING_KEY (TORCHYARD_SIGNING_KEY) is not set (docs/attestations.md: make push with it "
            "attaches the provenance, the SBOM and the smoke result, signed)")
        return None
    found, text = write_sbom(client, shipped.image_id, tag, reports, say)
    about = intoto.subject(registry_of(reference)[1], digest)
    build = records.read_report(reports, tag, builds.BUILD, builds.BuildRecord)
    statements = [intoto.provenance(found, about, build), intoto.sbom(text, about)]
    _write(reports, tag, published.PROVENANCE_STATEMENT, statements[0])
    report = records.read_report(reports, tag, runs.SMOKE, runs.SmokeReport)
    if report and report.image_id == found.image_id:
        statements.append(intoto.smoke(report, about))
        _write(reports, tag, published.SMOKE_STATEMENT, statements[-1])
    else:
        say(f"no smoke attestation yet: reports/{tag}/smoke.json is not of this image; make smoke TAG={tag} attaches one")
    verdict = intoto.verdict(report) if len(statements) == 3 else None
    return attach(reference, digest, statements, signer, tag, reports, say, verdict)


def after_smoke(tag: str, report: runs.SmokeReport, digests: Path, registry: str | None,
                signer: CryptoSigner | None, reports: Path, say=print) -> list[str]:
    """The smoke statement for each recorded digest of the image smoke-tested (only REGISTRY's, when given), written
    and, with a key, attached; the references it was made for."""
    made = []
    for reference, pushed in published.read_digests(tag, digests).items():
        if pushed.image_id != report.image_id or (registry and registry_of(reference)[0] != registry):
            continue
        statement = intoto.smoke(report, intoto.subject(registry_of(reference)[1], pushed.digest))
        path = _write(reports, tag, published.SMOKE_STATEMENT, statement)
        if signer:
            attach(reference, pushed.digest, [statement], signer, tag, reports, say, intoto.verdict(report))
        else:
            say(f"wrote {path.name} for {reference}@{pushed.digest[:19]}…; not attached: SIGNING_KEY "
                "(TORCHYARD_SIGNING_KEY) is not set")
        made.append(reference)
    return made
