"""What an image of v2.6-cu124 says of itself (builder/attest/contents.py's Contents), made from the committed locks and
spec: the input of the SBOM and the statements, without an engine."""

import json
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from builder import layout
from builder.attest.contents import Contents
from builder.records import builds
from builder.wheels import lockfile
from tests.conftest import ROOT

TAG = "v2.6-cu124"
IMAGE_ID = "sha256:" + "c" * 64
BASE_ID = "sha256:" + "b" * 64
DEBIAN = {"libc6": "2.36-9+deb12u10", "python3.11": "3.11.2-6+deb12u6", "openssh-server": "1:9.2p1-2+deb12u7",
          "tini": "0.19.0-1"}


def make_contents(licenses: dict | None = None, labels: dict | None = None) -> Contents:
    locks = {name: lockfile.read(layout.IMAGES / TAG / name, TAG) for name in layout.LOCKS}
    python = {lockfile.canonical(p.name): p.version for locked in locks.values() for p in locked}
    files = {name: lockfile.sha256_text((layout.IMAGES / TAG / name).read_text()) for name in layout.LOCKS}
    manifest = builds.ImageManifest(
        tag=TAG, spec=json.loads((layout.IMAGES / TAG / layout.SPEC).read_text()),
        lock=builds.ManifestLock(sha256="a" * 64, packages=len(python), files=files), python_packages=python,
        python_licenses={"torch": "BSD-3-Clause", "jinja2": "BSD License", "numpy": "BSD-3-Clause AND 0BSD AND MIT"}
        if licenses is None else licenses,
        venv_bootstrap={"pip": "23.0.1", "setuptools": "66.1.1"}, debian_packages=DEBIAN,
        base=builds.ManifestBase(ref="bookworm", image_id=BASE_ID))
    revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    found = {"org.opencontainers.image.created": "2025-01-01T00:00:00Z", "org.opencontainers.image.revision": revision,
             "org.opencontainers.image.source": "https://example.com/torchyard.git",
             "io.torchyard.context.sha256": "d" * 64}
    return Contents(f"torchyard:{TAG}", IMAGE_ID, "amd64", found if labels is None else labels, manifest, locks,
                    {"ID": "debian", "VERSION_ID": "12", "VERSION_CODENAME": "bookworm"})


@pytest.fixture
def contents() -> Contents:
    return make_contents()


def write_key(path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    path.with_suffix(".pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                       serialization.PublicFormat.SubjectPublicKeyInfo))


@pytest.fixture
def keys(tmp_path) -> dict:
    """Key files as `openssl genpkey` writes them: name -> private PEM (its public half beside it, .pub)."""
    made = {"ed25519": ed25519.Ed25519PrivateKey.generate(), "p256": ec.generate_private_key(ec.SECP256R1()),
            "stranger": ed25519.Ed25519PrivateKey.generate(), "p384": ec.generate_private_key(ec.SECP384R1())}
    for name, key in made.items():
        write_key(tmp_path / f"{name}.pem", key)
    return {name: tmp_path / f"{name}.pem" for name in made}
