"""What a local image says of itself, read from the engine without running it: /usr/share/torchyard's manifest.json
and the two locks (each checked against the sha256 the manifest records for it), the OS release, and the labels and
architecture its build gave it. The SBOM and the provenance are made from these alone, so they describe the image
that was pushed, not the checkout as it is now.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import docker

from builder import layout, records
from builder.attest import AttestError
from builder.image import engine
from builder.records import builds
from builder.wheels import lockfile

MAX_SHARE_BYTES = 32 * 2**20  # the folder holds a few scripts, the locks and the manifest: ~300 KB
OS_RELEASE = "/usr/lib/os-release"  # /etc/os-release is a link to it on Debian


@dataclass(frozen=True)
class Contents:
    image: str  # as named locally, <repo>:<tag>
    image_id: str
    architecture: str  # amd64
    labels: dict[str, str]
    manifest: builds.ImageManifest
    locks: dict[str, tuple[lockfile.Locked, ...]]  # lock file name -> its artifacts, in install order
    os_release: dict[str, str]  # ID, VERSION_ID, VERSION_CODENAME, …

    @property
    def python(self) -> dict[str, lockfile.Locked]:
        """Every locked artifact by its canonical name."""
        return {lockfile.canonical(p.name): p for locked in self.locks.values() for p in locked}


def _share(container) -> dict[str, bytes]:
    """The files of the image's share folder, by name (the folder is read as one archive, bounded)."""
    try:
        with engine.translated():
            stream, _ = container.get_archive(layout.SHARE)
            data, size = [], 0
            for chunk in stream:
                size += len(chunk)
                if size > MAX_SHARE_BYTES:
                    raise AttestError(f"{layout.SHARE} in the image is larger than {MAX_SHARE_BYTES:,} bytes, which no "
                                      "torchyard image's is")
                data.append(chunk)
    except engine.NotFound:
        raise AttestError(f"the image has no {layout.SHARE}: it is not a torchyard image") from None
    found = {}
    with tarfile.open(fileobj=io.BytesIO(b"".join(data))) as tar:
        for member in tar.getmembers():
            name = PurePosixPath(member.name)
            if member.isfile() and len(name.parts) == 2:  # <folder>/<file>: the folder's own files
                found[name.name] = tar.extractfile(member).read()
    return found


def _os_release(raw: bytes | None) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (raw or b"").decode("utf-8", "replace").splitlines() if "=" in line)
    return {key.strip(): value.strip().strip('"') for key, value in pairs}


def read(client: docker.DockerClient, image: str, tag: str) -> Contents:
    """The contents of the local image `image` (a name or an ID) of tag; AttestError when there is none or it is no
    torchyard image, BrokenRecord (exit 2) when what it carries does not parse."""
    local = engine.find_image(client, image)
    if local is None:
        raise AttestError(f"no local image {image}; build it first: make build TAG={tag}")
    with engine.translated():
        container = client.containers.create(local.id, ["true"])
    try:
        share = _share(container)
        os_release = _os_release(engine.read_file(container, OS_RELEASE))
    finally:
        container.remove(force=True)
    where = Path(f"{image}:{layout.SHARE}")
    fix = f"rebuild the image (make build TAG={tag}): its build writes it"
    if "manifest.json" not in share:
        raise records.BrokenRecord(where / "manifest.json", "missing", fix)
    manifest = records.parsed(share["manifest.json"], builds.ImageManifest, where / "manifest.json", fix)
    locks = {}
    for name in layout.LOCKS:
        raw = share.get(name, b"")
        if hashlib.sha256(raw).hexdigest() != manifest.lock.files.get(name):
            raise records.BrokenRecord(where / name, "missing, or not the lock the image's manifest.json records "
                                                     f"(sha256 {manifest.lock.files.get(name)})", fix)
        locks[name] = lockfile.read(where / name, manifest.tag, raw.decode("utf-8", "replace"))
    return Contents(image, local.id, local.attrs.get("Architecture") or "amd64", dict(local.labels or {}), manifest,
                    locks, os_release)
