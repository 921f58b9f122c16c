"""Two builds of one tag without cache: the same packages and the same file contents, or exactly what differs."""

import pytest

from builder.image import build, verify
from builder.wheels import network
from tests.docker.conftest import TEST_REPO


@pytest.fixture(scope="module")
def comparison(client, built, spec, tmp_path_factory):
    """The session's image against a second build from scratch (every step runs again, the base stays)."""
    reports = tmp_path_factory.mktemp("verify")
    again = build.build(client, spec, f"{TEST_REPO}-verify", network.host_settings(), reports=reports, nocache=True)
    try:
        found = verify.compare(client, built.image, again.image)
    finally:
        build.remove(client, again)
    print(found.summary())
    return found


def test_a_rebuild_has_the_same_package_sets(comparison):
    assert comparison.packages == ()


def test_a_rebuild_has_the_same_file_contents(comparison):
    assert comparison.file_count > 10_000
    assert comparison.files == (), comparison.summary()


def test_a_difference_is_named_exactly(client, spec, tmp_path):
    """Two small images that differ in one file's content and one file's mode: both are named, nothing else."""
    made = []
    for n, (content, mode) in enumerate([("one", "644"), ("two", "600")]):
        (tmp_path / f"c{n}").mkdir()
        (tmp_path / f"c{n}" / "Dockerfile").write_text(
            f"FROM {spec.base.image}\nRUN echo {content} > /etc/torchyard-a && echo same > /etc/torchyard-b "
            f"&& chmod {mode} /etc/torchyard-b\n")
        made.append(client.images.build(path=str(tmp_path / f"c{n}"), rm=True, forcerm=True)[0])
    try:
        found = verify.compare(client, made[0].id, made[1].id, with_manifest=False)
    finally:
        for image in made:
            client.images.remove(image.id, force=True)
    assert found.files == ("/etc/torchyard-a: content differs", "/etc/torchyard-b: mode differs")
    assert not found.identical_contents and not found.same_image_id
