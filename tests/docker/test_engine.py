"""The engine boundary against a real engine: what is absent is None or NotFound in the engine's words, a refusal is
an EngineError, and a file comes back out of a created container."""

import secrets

import pytest

from builder.image import base, engine


@pytest.fixture
def created(client, spec):
    """A created (never started) container of the tag's base image; removed after the test."""
    image = base.ensure(client, spec.base)
    container = client.containers.create(image, ["true"], name=f"torchyard-test-engine-{secrets.token_hex(3)}")
    yield container
    container.remove(force=True)


def test_an_absent_image_or_container_is_none(client):
    missing = f"torchyard-test-absent-{secrets.token_hex(4)}"
    assert engine.find_image(client, f"{missing}:none") is None
    assert engine.find_container(client, missing) is None


def test_a_present_image_and_container_are_found(client, spec, created):
    assert engine.find_image(client, spec.base.image).id == client.images.get(spec.base.image).id
    assert engine.find_container(client, created.name).id == created.id


def test_the_engines_refusals_come_out_as_ours(client, created):
    missing = f"torchyard-test-absent-{secrets.token_hex(4)}:none"
    with pytest.raises(engine.NotFound, match=f"No such image: {missing}"):
        with engine.translated():
            client.images.remove(missing)
    with pytest.raises(engine.EngineError) as refused:  # a second container of one name: a conflict, not an absence
        with engine.translated():
            client.containers.create(created.image.id, ["true"], name=created.name)
    assert type(refused.value) is engine.EngineError
    assert created.name in str(refused.value) and "already in use" in str(refused.value)


def test_a_file_comes_out_of_a_container_and_an_absent_one_is_none(created):
    assert engine.read_file(created, "/etc/debian_version").strip()[:2].isdigit()
    assert engine.read_file(created, "/no/such/file") is None


def test_a_file_past_the_cap_or_not_a_regular_one_is_refused_not_read(created):
    # what a container wrote is input: the base's /etc/os-release is a symlink, /etc a folder, /bin/bash ~1 MB
    with pytest.raises(engine.EngineError, match="larger than 1,000 bytes"):
        engine.read_file(created, "/bin/bash", limit=1000)
    for path in ("/etc", "/etc/os-release"):
        with pytest.raises(engine.EngineError, match="not a regular file"):
            engine.read_file(created, path)
