"""Two builds of one tag without cache: the same packages, the same file contents and the same layers (diff IDs:
the bytes of each layer's tar, every file's time included), or exactly what differs."""

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


def test_a_rebuild_has_the_same_layers(comparison):
    """Every layer the same bytes: a registry that holds the first build gets nothing new from the second."""
    assert comparison.layers[0] == comparison.layers[1] > 20
    assert comparison.identical_layers and comparison.same_layers == comparison.layers[0], comparison.summary()


def test_a_rebuild_is_the_same_image(client, comparison):
    """The same layers and a config of fixed times (builder/image/build.py's reproducible_config): the same image ID."""
    assert comparison.same_image_id, comparison.summary()
    assert client.images.get(comparison.first).attrs["Created"].startswith("2025-01-01T00:00:00")  # SOURCE_DATE_EPOCH


def test_a_layer_that_differs_is_named_with_the_entries_that_make_it_differ(client, spec, tmp_path):
    """Two small images with the same contents, one file's time apart: the same files, and the first layer whose
    bytes differ is named, with that file's mtime in both."""
    made = []
    base_layers = len(client.images.get(spec.base.image).attrs["RootFS"]["Layers"])
    for n, mtime in enumerate([1735689600, 1735689601]):
        (tmp_path / f"c{n}").mkdir()
        (tmp_path / f"c{n}" / "Dockerfile").write_text(
            f"FROM {spec.base.image}\nRUN echo same > /etc/torchyard-a && touch -d @{mtime} /etc/torchyard-a "
            "&& touch -d @1735689600 /etc\n")
        made.append(client.images.build(path=str(tmp_path / f"c{n}"), rm=True, forcerm=True, nocache=True)[0])
    try:
        found = verify.compare(client, made[0].id, made[1].id, with_manifest=False)
    finally:
        for image in made:
            client.images.remove(image.id, force=True)
    assert found.identical_contents and not found.identical_layers and not found.identical
    assert found.first_differing_layer == found.same_layers == base_layers
    assert found.layer_entries == ("/etc/torchyard-a: mtime 1735689600 vs 1735689601",), found.summary()


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
