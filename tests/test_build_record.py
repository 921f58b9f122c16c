"""What `make matrix` relies on to resume: the context hash an image is labelled with, and reports/<tag>/build.json."""

import shutil

import pytest

from builder import build, network, render


@pytest.fixture
def images(tmp_path, shipped):
    """A copy of images/v2.6-cu124/ to change."""
    copy = tmp_path / "images"
    shutil.copytree(render.IMAGES / "v2.6-cu124", copy / "v2.6-cu124")
    return copy


def test_the_hash_is_of_what_the_build_gets(shipped, images):
    spec = shipped.specs["v2.6-cu124"]
    assert build.inputs_sha256(spec, images) == build.inputs_sha256(spec, render.IMAGES)
    before = build.inputs_sha256(spec, images)
    dockerfile = images / "v2.6-cu124" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "# a change\n")
    assert build.inputs_sha256(spec, images) != before


def test_a_changed_mode_changes_the_hash(shipped, images):
    spec = shipped.specs["v2.6-cu124"]
    before = build.inputs_sha256(spec, images)
    (images / "v2.6-cu124" / "requirements.txt").chmod(0o755)
    assert build.inputs_sha256(spec, images) != before


def test_the_hosts_build_inputs_are_not_hashed(shipped, images, tmp_path):
    """The CA bundle and pip settings (they may hold credentials) neither enter the hash nor change it."""
    spec = shipped.specs["v2.6-cu124"]
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    plain = build.prepare_context(spec, network.NetworkSettings(), tmp_path / "a", images)
    proxied = build.prepare_context(spec, network.NetworkSettings(pip={"index-url": ["https://user:secret@mirror.example/simple"]},
                                                                  ca_files=(ca,)), tmp_path / "b", images)
    assert build.context_sha256(plain) == build.context_sha256(proxied)


def test_the_record_is_replaced_whole_and_read_back(tmp_path):
    build.write_record(tmp_path, "v2.6-cu124", {"status": "built", "seconds": 1.5})
    assert build.read_record(tmp_path, "v2.6-cu124") == {"status": "built", "seconds": 1.5}
    assert not (tmp_path / "v2.6-cu124" / "build.json.partial").exists()
    (tmp_path / "v2.6-cu124" / "build.json").write_text("{half")
    assert build.read_record(tmp_path, "v2.6-cu124") is None
    assert build.read_record(tmp_path, "v2.7-cu126") is None


def test_every_context_carries_the_matrix_and_its_hash_follows_it(shipped, images, tmp_path):
    """matrix.json (the tags a start warning can name) is made for each build, not committed per tag; a new tag in
    the matrix changes every image's context."""
    import dataclasses
    import json

    spec = shipped.specs["v2.6-cu124"]
    context = build.prepare_context(spec, network.NetworkSettings(), tmp_path / "ctx", images)
    tags = [entry["tag"] for entry in json.loads((context / "torchyard" / "matrix.json").read_text())]
    assert tags == list(shipped.specs)
    fewer = dataclasses.replace(spec, siblings=spec.siblings[:-1])
    assert build.inputs_sha256(fewer, images) != build.inputs_sha256(spec, images)
