"""What `make matrix` relies on to resume: the context hash an image is labelled with (tests/image/test_context.py has
the rest), and reports/<tag>/build.json."""

import shutil

import pytest

from builder import layout
from builder.image import build


@pytest.fixture
def images(tmp_path, shipped):
    """A copy of images/v2.6-cu124/ to change."""
    copy = tmp_path / "images"
    shutil.copytree(layout.IMAGES / "v2.6-cu124", copy / "v2.6-cu124")
    return copy


def test_the_hash_is_of_what_the_build_gets(shipped, images):
    spec = shipped.specs["v2.6-cu124"]
    assert build.inputs_sha256(spec, images) == build.inputs_sha256(spec, layout.IMAGES)
    before = build.inputs_sha256(spec, images)
    dockerfile = images / "v2.6-cu124" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "# a change\n")
    assert build.inputs_sha256(spec, images) != before


def test_the_record_is_replaced_whole_and_read_back(tmp_path):
    build.write_record(tmp_path, "v2.6-cu124", {"status": "built", "seconds": 1.5})
    assert build.read_record(tmp_path, "v2.6-cu124") == {"status": "built", "seconds": 1.5}
    assert not (tmp_path / "v2.6-cu124" / "build.json.partial").exists()
    (tmp_path / "v2.6-cu124" / "build.json").write_text("{half")
    assert build.read_record(tmp_path, "v2.6-cu124") is None
    assert build.read_record(tmp_path, "v2.7-cu126") is None
