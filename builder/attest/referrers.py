"""Attestations stored beside a digest by the OCI 1.1 referrers convention, with its tag-schema fallback.

Each envelope is a blob, named by an OCI image manifest whose `subject` is the image's manifest, whose `artifactType`
is the DSSE envelope's media type, whose config is OCI's empty descriptor and whose annotation names the in-toto
predicate type. A registry with the referrers API (GET /v2/<name>/referrers/<digest>) lists such manifests by
itself; for every other registry (Debian's docker-registry, distribution 2.x, answers that API with 404) the
fallback is an image index tagged `sha256-<hex of the digest>` that lists them, which torchyard writes on every
registry alike. Attaching a predicate type again replaces its entry in that index (the older manifest stays in the
registry, unlisted); reading takes the union of both lists.

What docker-registry 2.8 accepts, tried: an OCI manifest with artifactType, subject, the empty config
(application/vnd.oci.empty.v1+json) and a layer of application/vnd.dsse.envelope.v1+json; an index at a tag of that
form; an index naming a manifest it lacks is refused (MANIFEST_BLOB_UNKNOWN), so manifests go first.
"""

from __future__ import annotations

from pathlib import Path

from builder import records
from builder.attest import AttestError
from builder.attest.oci import OCI_INDEX, OCI_MANIFEST, Descriptor, Index, Manifest, Registry, digest_of, encode

ENVELOPE = "application/vnd.dsse.envelope.v1+json"  # the layer's media type, and the manifest's artifactType
PREDICATE = "in-toto.io/predicate-type"
CREATED = "org.opencontainers.image.created"
EMPTY = b"{}"
EMPTY_CONFIG = Descriptor(media_type="application/vnd.oci.empty.v1+json", digest=digest_of(EMPTY), size=len(EMPTY),
                          data="e30=")


def fallback_tag(digest: str) -> str:
    """The tag schema's name for digest's referrers: sha256-<hex>."""
    return digest.replace(":", "-", 1)


def _index(registry: Registry, raw: bytes, where: str) -> Index:
    try:
        return records.parsed(raw, Index, Path(f"{registry.name}:{where}"), "it is rewritten on the next attach")
    except records.BrokenRecord as e:
        raise AttestError(f"{registry.name}:{where} is no OCI image index ({e.problem})") from None


def _fallback(registry: Registry, digest: str) -> Index:
    found = registry.manifest(fallback_tag(digest))
    return _index(registry, found[0], fallback_tag(digest)) if found else Index(schema_version=2)


def attach(registry: Registry, digest: str, envelope: bytes, predicate_type: str, created: str) -> str:
    """Store the envelope as a referrer of digest; the digest of the manifest that carries it."""
    subject = registry.descriptor(digest)
    if subject is None:
        raise AttestError(f"{registry.name} has no manifest {digest} to attach to: push the image first (make push)")
    registry.put_blob(EMPTY, EMPTY_CONFIG.media_type)
    layer = registry.put_blob(envelope, ENVELOPE)
    annotations = {PREDICATE: predicate_type, CREATED: created}
    manifest = encode(Manifest(schema_version=2, media_type=OCI_MANIFEST, artifact_type=ENVELOPE, config=EMPTY_CONFIG,
                               layers=(Descriptor(media_type=ENVELOPE, digest=layer.digest, size=layer.size,
                                                  annotations={PREDICATE: predicate_type}),),
                               subject=subject, annotations=annotations))
    stored = registry.put_manifest(digest_of(manifest), manifest, OCI_MANIFEST)
    entry = Descriptor(media_type=OCI_MANIFEST, digest=stored, size=len(manifest), artifact_type=ENVELOPE,
                       annotations=annotations)
    kept = tuple(d for d in _fallback(registry, digest).manifests
                 if not (d.artifact_type == ENVELOPE and d.annotations.get(PREDICATE) == predicate_type))
    registry.put_manifest(fallback_tag(digest), encode(Index(schema_version=2, media_type=OCI_INDEX, manifests=(*kept, entry))), OCI_INDEX)
    return stored


def listed(registry: Registry, digest: str) -> tuple[list[Descriptor], int]:
    """The DSSE referrers of digest, from the referrers API and the fallback tag (each once), and how many other
    artifacts those name (signatures of other tools: not torchyard's to check)."""
    found: dict[str, Descriptor] = {}
    api = registry.referrers(digest)
    for index in ([_index(registry, api, f"referrers/{digest}")] if api else []) + [_fallback(registry, digest)]:
        for descriptor in index.manifests:
            found.setdefault(descriptor.digest, descriptor)
    ours = [d for d in found.values() if d.artifact_type == ENVELOPE]
    return ours, len(found) - len(ours)


def envelope(registry: Registry, referrer: Descriptor, digest: str, limit: int) -> bytes:
    """The envelope a listed referrer carries; AttestError naming what is wrong with the manifest on the way."""
    found = registry.manifest(referrer.digest)
    if found is None:
        raise AttestError("is listed, but the registry has no such manifest")
    try:
        manifest = records.parsed(found[0], Manifest, Path(f"{registry.name}@{referrer.digest}"), "attach it anew")
    except records.BrokenRecord as e:
        raise AttestError(f"is no OCI manifest ({e.problem})") from None
    if manifest.subject is None or manifest.subject.digest != digest:
        subject = manifest.subject.digest if manifest.subject else "none"
        raise AttestError(f"is attached to another digest (its OCI subject is {subject}, not {digest})")
    layer = next((d for d in manifest.layers if d.media_type == ENVELOPE), None)
    if layer is None:
        raise AttestError(f"is unsigned: its manifest holds no DSSE envelope ({ENVELOPE})")
    blob = registry.blob(layer.digest, limit)
    if blob is None:
        raise AttestError(f"names the envelope {layer.digest}, which the registry does not have")
    return blob
