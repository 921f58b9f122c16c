"""What an image is, provable by whoever pulls it: an SBOM, its provenance and its smoke result, each an in-toto
Statement whose subject is the image's registry digest, signed as a DSSE envelope and stored beside the image in
the registry (OCI 1.1 referrers, with the tag-schema fallback every registry takes).

    contents.py  what the local image says of itself (its manifest.json, locks, labels), read without running it
    sbom.py      the CycloneDX 1.6 SBOM made from those contents (`make sbom`)
    intoto.py    the in-toto Statement, DSSE envelope and SLSA Provenance shapes, and the statements made of them
    dsse.py      keys (Ed25519, ECDSA P-256, PEM) and signing and opening envelopes (securesystemslib)
    oci.py       the registry's HTTP API: credentials from the Docker config, manifests, blobs
    referrers.py attaching an envelope to a digest, and listing a digest's attestations
    attach.py    what `make push` and `make smoke` attach, and the record of it (reports/<tag>/attested.json)
    verify.py    `make verify-image`: every attestation of a digest checked with a public key, offline

docs/attestations.md says what is attested, how to check it by hand and how to keep the key.
"""

from __future__ import annotations

# The predicate types: in-toto's registered ones for provenance and CycloneDX; the smoke report's is torchyard's own
# (a URN: the project has no domain of its own whose URL it could use).
PROVENANCE = "https://slsa.dev/provenance/v1"
SBOM = "https://cyclonedx.org/bom"
SMOKE = "urn:torchyard:smoke-report:v1"
KINDS = {PROVENANCE: "provenance", SBOM: "sbom", SMOKE: "smoke"}  # what a message calls each


class AttestError(Exception):
    """Attesting or verifying failed (no local image, the registry refused, an attestation does not verify): exit 1."""
