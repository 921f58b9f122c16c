"""Docker tests talk to a real engine. Without one they skip, except under CI=true, where they fail."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.image import base, build, engine
from builder.wheels import cache as wheel_cache
from builder.wheels import network
from tests.docker.containers import Keys

# Never touches the user's torchyard:* images; TORCHYARD_TEST_REPO keeps parallel checkouts apart.
TEST_REPO = os.environ.get("TORCHYARD_TEST_REPO", "torchyard-test")
TAG = "v2.6-cu124"  # the default tag; its torch wheel comes from PyPI, so it builds here
# The CA bundle this machine's network needs (a TLS-inspecting proxy): a container gets it at run time, as a user would.
HOST_CA = Path(os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
CA_IN_CONTAINER = "/etc/ssl/certs/host-ca-bundle.crt"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/docker/" in str(item.fspath):
            item.add_marker(pytest.mark.docker)
    # Tests that remove the session's image (and restore it by pulling) go last: after them the build cache
    # of its final stage is gone. sort is stable, so the order within each group stays.
    items.sort(key=lambda item: item.get_closest_marker("removes_the_built_image") is not None)


def linked_cache(where: Path, leave_out: frozenset[str] | set[str] = frozenset()) -> Path:
    """A wheel cache of a test's own (TORCHYARD_CACHE=where): hard links to what this machine's holds (the session
    build filled it), no copy of gigabytes; leave_out: the sha256 of what the test's fetch must download itself."""
    (where / "sha256").mkdir()
    machine = wheel_cache.folder()
    for entry in sorted(machine.iterdir()) if machine.is_dir() else []:
        if entry.is_file() and not entry.name.startswith(".") and entry.name not in leave_out:
            os.link(entry, where / "sha256" / entry.name)
    return where


@pytest.fixture(scope="session")
def client():
    try:
        client = engine.connect()
    except engine.EngineError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {e}")
        pytest.skip(str(e))
    yield client
    client.close()


@pytest.fixture
def run(client):
    """Run a command in an image; returns its output; the container is always removed."""

    def run(image: str, *command: str, **kwargs) -> str:
        out = client.containers.run(image, list(command), remove=True, stdout=True, stderr=True, **kwargs)
        return out.decode()

    return run


@pytest.fixture(scope="session")
def spec(shipped):
    return shipped.specs[TAG]


@pytest.fixture(scope="session")
def built(client, spec, tmp_path_factory):
    """v2.6-cu124 built from scratch once per session (every step runs, pip downloads torch from PyPI).

    Every docker test module shares it; the image and its step images are removed at the end, the base stays.
    TORCHYARD_TEST_KEEP=1 (for working on the tests, never in CI) builds with the cache and keeps the image,
    so a second run starts in seconds.
    """
    keep = os.environ.get("TORCHYARD_TEST_KEEP") == "1"
    reports = tmp_path_factory.mktemp("reports")
    base.ensure(client, spec.base)
    result = build.build(client, spec, TEST_REPO, network.host_settings(), reports=reports, nocache=not keep)
    yield result
    if not keep:
        build.remove(client, result)


@pytest.fixture(scope="session")
def behind_the_proxy() -> dict:
    """docker run options for pip against the real index: the host's CA bundle, read-only, named by PIP_CERT."""
    if not HOST_CA.is_file():
        pytest.fail(f"no CA bundle at {HOST_CA}: set PIP_CERT to the one this machine's network needs")
    return {"volumes": {str(HOST_CA): {"bind": CA_IN_CONTAINER, "mode": "ro"}}, "environment": {"PIP_CERT": CA_IN_CONTAINER}}


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.fail("the SSH tests need the OpenSSH client: apt-get install openssh-client (.ci/run does)")
    folder = tmp_path_factory.mktemp("ssh")
    for name in ("user", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)], check=True)
    return Keys(folder / "user", folder / "stranger", folder / "known_hosts")
