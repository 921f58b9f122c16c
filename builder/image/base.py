"""Base images: a Debian root filesystem made with mmdebstrap and `docker import`ed, or a registry
image pulled by digest.

The local base is reproducible: a pinned suite and a fixed SOURCE_DATE_EPOCH give bit-identical
tarballs, and importing one tarball twice gives the same layer. Point TORCHYARD_DEBIAN_MIRROR at a
snapshot.debian.org URL to pin the packages themselves to a day.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import docker

from builder.image import engine
from builder.matrix.types import Base
from builder.urls import redact

DEBIAN_MIRROR = "http://deb.debian.org/debian"
SOURCE_DATE_EPOCH = "1735689600"  # 2025-01-01T00:00:00Z: fixed, so the same packages give the same tarball
# Like Debian's -slim images: no manuals, docs or translations (copyright files stay).
SLIM_DPKG_OPTIONS = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
]


class BaseError(Exception):
    pass


def mmdebstrap_command(base: Base, tarball: Path, mirror: str) -> list[str]:
    command = ["mmdebstrap", "--variant=minbase", "--quiet", '--aptopt=Acquire::Retries "3"',
               f"--components={','.join(base.components)}"]
    command += [f"--dpkgopt={option}" for option in SLIM_DPKG_OPTIONS]
    return command + [base.suite, str(tarball), mirror]


def ensure(client: docker.DockerClient, base: Base, say=print) -> str:
    """The base image's ID, making or pulling it when it is missing."""
    found = engine.find_image(client, base.image)
    if found:
        return found.id
    if base.is_local:
        return make_local(client, base, say)
    say(f"pulling base {base.ref}")
    try:
        with engine.translated():
            return client.images.pull(base.ref).id
    except engine.EngineError as e:
        raise BaseError(f"cannot pull base {base.ref}: {e}") from None


def make_local(client: docker.DockerClient, base: Base, say=print) -> str:
    if shutil.which("mmdebstrap") is None:
        raise BaseError("making a local Debian base needs mmdebstrap (Debian: apt-get install mmdebstrap), "
                        "or set base: to a registry image pinned by digest in matrix.yaml")
    mirror = os.environ.get("TORCHYARD_DEBIAN_MIRROR", DEBIAN_MIRROR)
    suite, components = base.suite, ",".join(base.components)
    repository, tag = base.image.split(":")
    with tempfile.TemporaryDirectory(prefix="torchyard-base-") as tmp:
        tarball = Path(tmp) / f"{tag}.tar"
        say(f"making base {base.image} with mmdebstrap ({suite} {components} from {redact(mirror)}, "
            f"SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH})")
        started = time.monotonic()
        result = subprocess.run(mmdebstrap_command(base, tarball, mirror), capture_output=True, text=True,
                                env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
        if result.returncode != 0:
            tail = redact("\n".join((result.stderr or result.stdout).strip().splitlines()[-15:]))
            raise BaseError(f"mmdebstrap failed for {suite} (exit {result.returncode}):\n{tail}")
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=tag,
            changes=[f"LABEL io.torchyard.base.suite={suite} io.torchyard.base.components={components} "
                     f"io.torchyard.base.source_date_epoch={SOURCE_DATE_EPOCH}",
                     'CMD ["bash"]'],
        )
        say(f"made base {base.image} in {time.monotonic() - started:.0f}s")
    return client.images.get(base.image).id
