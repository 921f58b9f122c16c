"""`make matrix`'s plan without an engine: which steps are current, from an image's labels and the recorded reports
(tests/data/report: what a real run of v2.6-cu124 wrote). tests/docker/test_matrix.py asks a real engine's image."""

import dataclasses

import msgspec
import pytest

from builder import layout
from builder.image import build
from builder.matrix_run import plan
from builder.records import runs
from tests.conftest import ROOT

RECORDED = ROOT / "tests" / "data" / "report" / "reports"
TAG = "v2.6-cu124"
CONTEXT, BASE = "sha256:" + "c" * 64, "sha256:" + "b" * 64


@pytest.fixture
def found():
    """The three records as the recorded run left them, all measured on one image."""
    return plan.measured(RECORDED, TAG, say=pytest.fail)


def image(**labels) -> plan.Image:
    given = {build.CONTEXT_LABEL: CONTEXT, f"{layout.LABEL_PREFIX}.base.id": BASE, **labels}
    return plan.Image("sha256:" + "1" * 64, given, CONTEXT, BASE)


def test_an_image_built_from_these_inputs_on_this_base_is_current(shipped):
    spec = shipped.specs[TAG]
    assert plan.image_current(spec, image()) == (True, "111111111111, built from these inputs")
    assert plan.image_current(spec, None) == (False, "no image yet")
    assert plan.image_current(spec, image(**{build.CONTEXT_LABEL: "sha256:" + "0" * 64})) == (
        False, "its inputs changed since the image was built")
    assert plan.image_current(spec, image(**{f"{layout.LABEL_PREFIX}.base.id": ""})) == (
        False, f"the base {spec.base.image} is not the one it was built on")


def test_without_a_current_image_every_step_does_work(found):
    assert plan.steps(None, found, gpus=False, require_gpu=False) == ["build", "size", "smoke"]


def test_records_of_this_image_made_as_this_run_would_are_current(found):
    image_id = found.smoke.image_id
    assert found.size.image_id == found.compressed.image_id == image_id
    assert plan.steps(image_id, found, gpus=False, require_gpu=False) == []
    assert plan.steps("sha256:" + "0" * 64, found, gpus=False, require_gpu=False) == ["size", "smoke"]


@pytest.mark.parametrize("change", [{"image_id": "sha256:" + "0" * 64}, {"status": "FAIL"}, {"gpus_passed": True},
                                    {"require_gpu": True}, {"data": "/data/imagenette"}])
def test_a_smoke_report_of_another_image_or_run_is_not_current(found, change):
    image_id = found.smoke.image_id
    other = dataclasses.replace(found, smoke=msgspec.structs.replace(found.smoke, **change))
    assert not plan.smoke_current(other, image_id, gpus=False, require_gpu=False)
    assert plan.steps(image_id, other, gpus=False, require_gpu=False) == ["smoke"]


def test_a_smoke_report_run_on_gpus_is_not_current_for_a_cpu_run_and_back(found):
    image_id = found.smoke.image_id
    assert plan.smoke_current(found, image_id, gpus=False, require_gpu=False)
    assert not plan.smoke_current(found, image_id, gpus=True, require_gpu=False)


def test_a_missing_compressed_size_measures_the_size_again(found):
    assert not plan.size_current(dataclasses.replace(found, compressed=None), found.size.image_id)


def test_a_broken_record_is_said_and_measured_again(tmp_path):
    (tmp_path / TAG).mkdir()
    (tmp_path / TAG / runs.SMOKE).write_text("{broken")
    said = []
    found = plan.measured(tmp_path, TAG, say=said.append)
    assert found == plan.Measured() and len(said) == 1
    assert said[0].startswith(f"  reports/{TAG}/{runs.SMOKE} is broken") and said[0].endswith(": measured again")
