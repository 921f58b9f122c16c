"""A real registry on loopback (Debian's docker-registry, htpasswd auth over HTTP, which Docker allows for
127.0.0.0/8; the session's, tests/docker/conftest.py, where the image is pushed once): push, remove the local image,
pull it back verified, run it; refusals that say why.

The module removes the session's built image and restores it from the pull (same image ID), so it runs
last (tests/docker/conftest.py orders it): the build cache of the final stage is gone afterwards.
"""

import base64
import json

import docker
import pytest

from builder.image import registry
from tests.docker.conftest import TAG, USER, client_with_config
from tests.loopback import free_port

pytestmark = pytest.mark.removes_the_built_image


def test_a_push_records_the_registrys_digest(logged_in, pushed, server, digests):
    entry = json.loads((digests / f"{TAG}.json").read_text())[f"{server}/torchyard:{TAG}"]
    assert entry["digest"] == pushed.digest == registry.remote_digest(logged_in, pushed.reference)
    assert entry["image_id"] == pushed.image_id
    assert pushed.bytes > 1e9  # the layers really went over the wire


def test_remove_pull_run_gives_the_recorded_digest(client, logged_in, built, pushed, server, digests):
    for ref in (pushed.reference, built.image):
        client.images.remove(ref)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(pushed.image_id)
    said = []
    pulled = registry.pull(logged_in, server, TAG, say=said.append, digests=digests)
    print("\n".join(said[-1:]))
    client.images.get(pulled.reference).tag(*built.image.split(":"))  # later tests use the session's image again
    assert pulled.digest == pushed.digest and pulled.image_id == pushed.image_id
    # No byte count is asserted: the builder's own untagged image of the same layers stays as build cache, and the
    # layers are the same bytes on every build (issue 22), so what a pull moves depends on what else the engine holds;
    # the digest and the image ID above say the right image arrived.
    assert f"{pushed.reference.rsplit(':', 1)[0]}@{pushed.digest}" in client.images.get(pulled.reference).attrs["RepoDigests"]
    out = client.containers.run(pulled.reference, ["python", "-c", "import torch; print(torch.__version__)"], remove=True)
    assert out.decode().strip() == "2.6.0+cu124"


def test_a_pull_whose_digest_differs_from_the_record_is_refused(client, logged_in, pushed, server, digests, tmp_path, spec):
    """Someone pushes another image over the tag: the recorded digest no longer matches, nothing is pulled."""
    (tmp_path / "Dockerfile").write_text(f"FROM {spec.base.image}\nLABEL io.torchyard.test=pushed-over\n")
    other, _ = client.images.build(path=str(tmp_path), tag=f"{server}/torchyard:other", rm=True)
    try:
        registry.push(logged_in, other.id, server, TAG, say=lambda _: None, digests=tmp_path / "elsewhere")
        local_before = client.images.get(pushed.reference).id
        with pytest.raises(registry.RegistryError, match="refused: the registry's .* records sha256:.*Nothing was pulled"):
            registry.pull(logged_in, server, TAG, say=lambda _: None, digests=digests)
        assert client.images.get(pushed.reference).id == local_before
    finally:
        client.images.remove(other.id, force=True)


def test_refused_credentials_say_docker_login(built, server, tmp_path, digests):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    token = base64.b64encode(f"{USER}:not-the-password".encode()).decode()
    (wrong / "config.json").write_text(json.dumps({"auths": {server: {"auth": token}}}))
    for config in (wrong, tmp_path / "none"):
        client = client_with_config(config)
        with pytest.raises(registry.RegistryError, match=f"refused the credentials.*docker login {server}"):
            registry.push(client, built.image, server, TAG, say=lambda _: None, digests=tmp_path / "d")
        with pytest.raises(registry.RegistryError, match="refused the credentials"):
            registry.pull(client, server, TAG, say=lambda _: None, digests=digests)
        client.close()


def test_an_unreachable_registry_is_named(client, built, tmp_path):
    nowhere = f"127.0.0.1:{free_port()}"
    with pytest.raises(registry.RegistryError, match=f"the registry {nowhere} cannot be reached"):
        registry.push(client, built.image, nowhere, TAG, say=lambda _: None, digests=tmp_path)
    assert f"{nowhere}/torchyard:{TAG}" not in client.images.get(built.image).tags  # a failed push leaves no tag
    assert not (tmp_path / f"{TAG}.json").exists()


def test_a_missing_tag_and_a_missing_record_are_named(logged_in, server, digests):
    registry.record("v2.6-cu118", registry.Shipped(f"{server}/torchyard:v2.6-cu118", "sha256:" + "1" * 64, "sha256:" + "2" * 64, 0, 0),
                    digests)
    with pytest.raises(registry.RegistryError, match=f"has no {server}/torchyard:v2.6-cu118"):
        registry.pull(logged_in, server, "v2.6-cu118", say=lambda _: None, digests=digests)
    with pytest.raises(registry.RegistryError, match="no recorded digest"):
        registry.pull(logged_in, server, "v2.7-cu126", say=lambda _: None, digests=digests)


def test_a_pull_checks_the_image_id_before_it_moves_the_tag(client, logged_in, built, pushed, server, tmp_path):
    """The registry's digest is the recorded one but the image it unpacks to is not (a record edited by
    hand, or a registry that serves other bytes under a digest): refused, and the local tag stays put."""
    now = registry.remote_digest(logged_in, pushed.reference)
    record = tmp_path / "digests"
    registry.record(TAG, registry.Shipped(pushed.reference, now, "sha256:" + "0" * 64, 0, 0), record)
    # the local tag as the push left it (a test before this one may have pushed another image over it)
    client.images.get(built.image).tag(pushed.reference)
    before = client.images.get(pushed.reference).id
    repository = pushed.reference.rsplit(":", 1)[0]
    try:
        with pytest.raises(registry.RegistryError, match="not the recorded sha256:0+; the tag .* was not moved"):
            registry.pull(logged_in, server, TAG, say=lambda _: None, digests=record)
        assert client.images.get(pushed.reference).id == before
    finally:
        if client.images.get(f"{repository}@{now}").id != before:
            client.images.remove(f"{repository}@{now}")


def test_the_session_image_is_back_under_its_name(client, built, pushed):
    assert client.images.get(built.image).id == pushed.image_id
