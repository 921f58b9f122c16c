"""What `make matrix` relies on to resume: the context hash an image is labelled with (tests/image/test_context.py has
the rest), and reports/<tag>/build.json."""

import shutil

import pytest

from builder import layout, records
from builder.image import build
from builder.records import builds


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
    record = builds.BuildRecord(status="built", started="2026-11-25T23:40:07+00:00", seconds=1.5)
    records.write_report(tmp_path, "v2.6-cu124", builds.BUILD, record)
    assert records.read_report(tmp_path, "v2.6-cu124", builds.BUILD, builds.BuildRecord) == record
    assert [p.name for p in (tmp_path / "v2.6-cu124").iterdir()] == [builds.BUILD]  # no temporary file left
    (tmp_path / "v2.6-cu124" / builds.BUILD).write_text("{half")
    with pytest.raises(records.BrokenRecord, match="build.json is broken: not JSON"):
        records.read_report(tmp_path, "v2.6-cu124", builds.BUILD, builds.BuildRecord)
    assert records.read_report(tmp_path, "v2.7-cu126", builds.BUILD, builds.BuildRecord) is None
