"""Docker tests talk to a real engine. Without one they skip, except under CI=true, where they fail."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import docker
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from builder import layout
from builder.image import base, build, engine, registry
from builder.wheels import cache as wheel_cache
from builder.wheels import network
from tests import loopback
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


# ---------------------------------------------------------------- one registry and one push per session

USER, PASSWORD = "torchyard", "test-only-password"  # the loopback registry's htpasswd login


@pytest.fixture(scope="session")
def server(client, tmp_path_factory):
    """Debian's docker-registry on a free loopback port with its own storage (deletes allowed) and htpasswd auth, for
    the session (tests/docker/test_registry.py and test_attest.py): always stopped, and the local tags of its images
    removed. Where the engine runs and docker-registry is missing (or does not answer), this errs, CI or not."""
    with loopback.registry(tmp_path_factory.mktemp("registry"), login=(USER, PASSWORD), delete=True) as served:
        yield served.address
    for image in client.images.list():
        for ref in image.tags:
            if ref.startswith(f"{served.address}/"):
                client.images.remove(ref)


def client_with_config(config_dir) -> docker.DockerClient:
    """A client whose credentials come from the Docker config in config_dir (the SDK reads DOCKER_CONFIG)."""
    before = os.environ.get("DOCKER_CONFIG")
    os.environ["DOCKER_CONFIG"] = str(config_dir)
    try:
        return docker.from_env(timeout=600)
    finally:
        if before is None:
            del os.environ["DOCKER_CONFIG"]
        else:
            os.environ["DOCKER_CONFIG"] = before


@pytest.fixture(scope="session")
def docker_config(server, tmp_path_factory) -> Path:
    """`docker login`, as a user would, into a Docker config of its own (DOCKER_CONFIG=this folder reads it)."""
    config = tmp_path_factory.mktemp("docker-config")
    subprocess.run(["docker", "--config", str(config), "login", "--username", USER, "--password-stdin", server],
                   input=PASSWORD, capture_output=True, text=True, check=True)
    assert server in json.loads((config / "config.json").read_text())["auths"]
    return config


@pytest.fixture(scope="session")
def logged_in(docker_config):
    """A client that reads that config."""
    client = client_with_config(docker_config)
    yield client
    client.close()


@pytest.fixture(scope="session")
def digests(tmp_path_factory):
    return tmp_path_factory.mktemp("digests")


@pytest.fixture(scope="session")
def pushed(logged_in, built, server, digests):
    """The session's image pushed once (minutes: its layers go over the wire) and its digest recorded."""
    said = []
    shipped = registry.push(logged_in, built.image, server, TAG, say=said.append, digests=digests)
    print("\n".join(said[-2:]))
    return shipped


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory) -> dict[str, Path]:
    """Two Ed25519 key pairs as `openssl genpkey` writes them (PKCS#8 PEM, the private one mode 600): the session's
    signing key, and a stranger's."""
    folder = tmp_path_factory.mktemp("signing")
    found = {}
    for name in ("signing", "stranger"):
        key = ed25519.Ed25519PrivateKey.generate()
        private = folder / f"{name}.pem"
        private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        private.chmod(0o600)
        public = folder / f"{name}.pub.pem"
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
        found[name], found[f"{name}.pub"] = private, public
    return found


@pytest.fixture(scope="session")
def smoke_reports(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="session")
def smoke_run(built, pushed, digests, docker_config, signing_keys, smoke_reports):
    """`make smoke` of the session's image on this CPU machine, once (minutes): the image has a registry digest and
    SIGNING_KEY is set, so it also attaches its smoke attestation (tests/docker/test_attest.py checks it)."""
    env = {**os.environ, "TORCHYARD_REPORTS": str(smoke_reports), "TORCHYARD_GPUS": "none",
           "TORCHYARD_DIGESTS": str(digests), "DOCKER_CONFIG": str(docker_config)}
    done = subprocess.run(["make", "smoke", f"TAG={TAG}", f"REPO={TEST_REPO}", f"SIGNING_KEY={signing_keys['signing']}"],
                          cwd=layout.ROOT, env=env, capture_output=True, text=True, timeout=900)
    return done, smoke_reports / TAG
