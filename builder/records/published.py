"""Records of what went to a registry: the digest each push recorded (digests/<tag>.json), what was signed and
attached beside each pushed digest (reports/<tag>/attested.json) and the statements attached (written, not read
back: the signed copies are in the registry). Read and written through builder/records/ (its __init__ says how a
record is read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from builder import layout
from builder import reference as references
from builder.inputs import shown
from builder.records import BrokenRecord, Record, Sha256, at, read, report_path, write

DIGESTS_MAX_BYTES = 256 * 1024  # a few hundred bytes per registry
ATTESTED, SBOM, PROVENANCE_STATEMENT, SMOKE_STATEMENT = ("attested.json", "sbom.cdx.json", "provenance.intoto.json",
                                                         "smoke.intoto.json")


# ---------------------------------------------------------------- digests/<tag>.json


class Pushed(Record, kw_only=True):
    digest: Sha256  # the manifest digest the registry gave
    image_id: Sha256


Digests = dict[str, Pushed]  # <REGISTRY>/torchyard:<tag> -> what was pushed there


def digests_path(tag: str, digests: Path = layout.DIGESTS) -> Path:
    return digests / f"{tag}.json"


def read_digests(tag: str, digests: Path = layout.DIGESTS) -> Digests:
    """reference -> Pushed as digests/<tag>.json records them ({} when there is none); BrokenRecord when malformed."""
    path = digests_path(tag, digests)
    fix = f"restore it from git (`git checkout -- {path.parent.name}/{path.name}`) or remove it"
    entries = {}
    for ref, entry in (read(path, dict[str, Any], fix, DIGESTS_MAX_BYTES) or {}).items():
        where = f"$[{shown(ref)}]"  # the key named in full where msgspec would say $[...]
        # the key reaches other engines (a Kubernetes manifest, an sbatch script: builder/jobs/cluster.py) as the image
        found = references.parse(ref)
        if found is None or not found.domain or found.path.rsplit("/", 1)[-1] != layout.REGISTRY_NAME \
                or found.tag != tag or found.digest:
            raise BrokenRecord(path, f"the key {where} is not a reference {tag} is pushed as "
                                     f"(<REGISTRY>/{layout.REGISTRY_NAME}:{tag}, e.g. "
                                     f"registry.example.com/ml/{layout.REGISTRY_NAME}:{tag})", fix)
        try:
            entries[ref] = msgspec.convert(entry, Pushed, strict=True)
        except msgspec.ValidationError as e:
            raise BrokenRecord(path, at(str(e), where) + ' ({"digest": "sha256:<64 hex>", "image_id": "sha256:<64 hex>"})',
                               fix) from None
    return entries


def write_digests(tag: str, entries: Digests, digests: Path = layout.DIGESTS) -> Path:
    return write(digests_path(tag, digests), dict(sorted(entries.items())))


# ---------------------------------------------------------------- reports/<tag>/attested.json


class Attachment(Record, kw_only=True):
    digest: Sha256  # the image's manifest digest in that registry: the statements' subject
    keyid: str  # the signing key's (securesystemslib's: the sha256 of the public key's canonical form)
    date: str
    artifacts: dict[str, Sha256]  # predicate type -> the referrer manifest that carries its envelope
    smoke: str | None = None  # the attested smoke verdict ("PASS on CPU, 2 cores"), which the report shows


Attested = dict[str, Attachment]  # <REGISTRY>/torchyard:<tag> -> what was attached beside its digest


def read_attested(tag: str, reports: Path) -> Attested:
    return read(report_path(reports, tag, ATTESTED), Attested) or {}
