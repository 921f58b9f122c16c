"""`make sbom`: a CycloneDX 1.6 SBOM of an image, made with cyclonedx-python-lib from what the image says of itself
(builder/attest/contents.py): every Python package of its manifest (pkg:pypi, with the wheel's sha256 and URL from the
image's locks and the license its metadata declares), every Debian package (pkg:deb, with the image's architecture
and Debian release), the base image, and CUDA, cuDNN and NCCL as components of their own inside the nvidia-* wheels
that carry them (their versions are the image's compatibility facts, builder/matrix/compat.yaml, as its spec.json
records them).

The same image gives the same bytes: the serial number is derived from the image ID and the timestamp is the image's
creation label (SOURCE_DATE_EPOCH or the commit's time), never the clock.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from builder import layout
from builder.attest.contents import Contents
from builder.attest.intoto import CREATED_LABEL
from builder.wheels import lockfile

# (what, the spec.json key of its version, the name the wheel that carries it starts with)
NVIDIA_LIBRARIES = (("CUDA runtime", "cuda_runtime", "nvidia-cuda-runtime"), ("cuDNN", "cudnn", "nvidia-cudnn"),
                    ("NCCL", "nccl", "nvidia-nccl"))
_licenses = LicenseFactory()


def _sha256(hex_digest: str) -> HashType:
    return HashType(alg=HashAlgorithm.SHA_256, content=hex_digest)


def _python(name: str, version: str, locked: lockfile.Locked | None, license_: str | None) -> Component:
    purl = PackageURL(type="pypi", name=name, version=version)
    return Component(
        type=ComponentType.LIBRARY, name=name, version=version, purl=purl, bom_ref=purl.to_string(),
        hashes=[_sha256(locked.sha256)] if locked else [],
        external_references=[ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(locked.url))]
        if locked else [],
        licenses=[_licenses.make_from_string(license_)] if license_ else [],
        description=None if locked else "from Debian's python3-venv, as the venv was made (not locked)")


def _debian(name: str, version: str, contents: Contents) -> Component:
    release = contents.os_release
    purl = PackageURL(type="deb", namespace=release.get("ID", "debian"), name=name, version=version,
                      qualifiers={"arch": contents.architecture,
                                  "distro": release.get("VERSION_CODENAME") or f"debian-{release.get('VERSION_ID', '')}"})
    return Component(type=ComponentType.LIBRARY, name=name, version=version, purl=purl, bom_ref=purl.to_string())


def _nvidia(what: str, version: str) -> Component:
    slug = what.lower().replace(" ", "-")
    purl = PackageURL(type="generic", namespace="nvidia", name=slug, version=version)
    return Component(type=ComponentType.LIBRARY, name=what, version=version, purl=purl, bom_ref=purl.to_string(),
                     supplier=OrganizationalEntity(name="NVIDIA"),
                     description=f"{what} {version}, inside the wheel that carries it (the image's compatibility facts)")


def _base(contents: Contents) -> Component:
    base = contents.manifest.base
    recorded = base.image_id.startswith("sha256:")
    return Component(type=ComponentType.CONTAINER, name=base.ref, version=base.image_id if recorded else None,
                     bom_ref="base-image", hashes=[_sha256(base.image_id.removeprefix("sha256:"))] if recorded else [],
                     description="the base image the build started from (its image ID)")


def components(contents: Contents) -> list[Component]:
    """Every component: the Python packages (the nvidia libraries inside their wheels), the Debian packages, the base."""
    manifest, locked = contents.manifest, contents.python
    python = {name: _python(name, version, locked.get(name), manifest.python_licenses.get(name))
              for name, version in {**manifest.python_packages, **manifest.venv_bootstrap}.items()}
    top = list(python.values())
    for what, key, wheel in NVIDIA_LIBRARIES:
        version = manifest.spec.get(key) or (manifest.spec.get("cuda") if key == "cuda_runtime" else None)
        if not isinstance(version, str) or not version:
            continue
        carrier = next((c for name, c in sorted(python.items()) if name.startswith(wheel)), None)
        (carrier.components.add if carrier else top.append)(_nvidia(what, version))
    top += [_debian(name, version, contents) for name, version in manifest.debian_packages.items()]
    return [*top, _base(contents)]


def _created(contents: Contents) -> datetime | None:
    try:
        return datetime.fromisoformat(contents.labels[CREATED_LABEL].replace("Z", "+00:00")).astimezone(timezone.utc)
    except (KeyError, ValueError):
        return None


def make(contents: Contents) -> str:
    """The SBOM as CycloneDX 1.6 JSON text."""
    tag = contents.manifest.tag
    image = Component(type=ComponentType.CONTAINER, name=layout.REGISTRY_NAME, version=tag, bom_ref="image",
                      hashes=[_sha256(contents.image_id.removeprefix("sha256:"))],
                      description=f"torchyard {tag}: torch {contents.manifest.spec.get('torch')}",
                      properties=[Property(name="torchyard:image_id", value=contents.image_id),
                                  Property(name="torchyard:lock_sha256", value=contents.manifest.lock.sha256)])
    found = components(contents)
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"torchyard:{contents.image_id}"),
              metadata=BomMetaData(component=image, timestamp=_created(contents)), components=found)
    bom.register_dependency(image, found)
    # re-indented by json so the file is the same bytes whatever the library's own spacing
    return json.dumps(json.loads(JsonV1Dot6(bom).output_as_string()), indent=2, sort_keys=True) + "\n"
