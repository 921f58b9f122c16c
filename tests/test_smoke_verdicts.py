"""The smoke suite's judgements, fed the values a real host gives (no torch needed: verdicts are plain Python)."""

import json
import math

import pytest

from builder import render, smoke
from smoke_tests import report, verdicts

DOCKER_DEFAULT_SHM = 64 * 2**20  # what statvfs("/dev/shm") says in `docker run` without --shm-size


@pytest.fixture(scope="module")
def image(shipped):
    return shipped.specs["v2.6-cu124"]


def test_a_driver_older_than_the_images_cuda_floor_fails_and_says_what_to_do(image):
    verdict = verdicts.driver("470.57.02", image.min_driver, image.cuda, driver_cuda="11.4")
    assert not verdict.ok
    assert "470.57.02 is older than 525.60.13, the minimum for CUDA 12.4" in verdict.reason
    assert "Upgrade the host driver to 525.60.13 or newer" in verdict.reason
    assert "supports CUDA up to 11.4" in verdict.reason


def test_the_floor_itself_and_newer_drivers_pass(image):
    assert verdicts.driver("525.60.13", image.min_driver, image.cuda).ok
    assert verdicts.driver("550.54.15", image.min_driver, image.cuda).ok
    assert not verdicts.driver("525.60.11", image.min_driver, image.cuda).ok


def test_outside_an_image_the_drivers_own_cuda_version_judges():
    assert verdicts.driver("550.54.15", None, "12.6", driver_cuda="12.4").ok  # minor-version compatibility
    verdict = verdicts.driver("535.104.05", None, "13.0", driver_cuda="12.2")
    assert not verdict.ok and "older than the major of torch's CUDA 13.0" in verdict.reason


def test_a_gpu_arch_the_image_does_not_cover_names_the_error_and_the_tags_that_do(image, shipped):
    blackwell = (12, 0)  # RTX 50xx
    covering = smoke.covering_tags(shipped, "12.0")
    verdict = verdicts.arch(blackwell, list(image.archs), covering)
    assert not verdict.ok
    assert "this GPU is sm_120" in verdict.reason
    assert "no kernel image is available for execution on the device" in verdict.reason
    assert "v2.15-cu132" in covering and "v2.6-cu124" not in covering
    assert f"Tags in the matrix that cover sm_120: {', '.join(covering)}." in verdict.reason


def test_gpus_the_image_covers_natively_by_binary_compatibility_or_through_ptx(image):
    archs = list(image.archs)
    assert verdicts.arch((9, 0), archs).reason == "sm_90 is in torch's arch list"  # H100
    assert "runs the sm_86 kernels" in verdicts.arch((8, 9), archs).reason  # L40S, Ada
    assert "through PTX (compute_90)" in verdicts.arch((10, 0), archs + ["compute_90"]).reason
    assert not verdicts.arch((3, 7), archs).ok  # K80: older than every kernel
    assert verdicts.arch((9, 0), ["sm_80", "sm_90a"]).ok
    assert not verdicts.arch((10, 0), ["sm_90a"]).ok  # arch-specific cubins run only on their own GPU


def test_dockers_default_64mb_shm_warns_with_the_fix():
    verdict = verdicts.shm(DOCKER_DEFAULT_SHM)
    assert not verdict.ok
    assert "only 64 MiB" in verdict.reason and "--shm-size" in verdict.reason and "--ipc=host" in verdict.reason
    assert verdicts.shm(8 * 2**30).ok


def test_a_nan_loss_fails_at_its_step():
    losses = [2.31, 2.28, 2.2, float("nan"), 2.0, 1.9, 1.7, 1.6, 1.5, 1.4, 1.2]
    verdict = verdicts.loss_falls(losses)
    assert not verdict.ok and "loss is nan at step 3" in verdict.reason
    assert not verdicts.loss_falls([2.3] * 5 + [math.inf] * 5).ok


def test_a_loss_that_does_not_fall_enough_fails():
    flat = [2.30, 2.31, 2.29, 2.30, 2.30, 2.28, 2.29, 2.27, 2.28, 2.26, 2.25, 2.27]
    verdict = verdicts.loss_falls(flat)
    assert not verdict.ok and "the model is not learning" in verdict.reason
    assert verdicts.loss_falls([2.3, 2.2, 2.1, 2.0, 1.9, 1.5, 1.2, 1.0, 0.8, 0.7, 0.6, 0.5]).ok
    assert not verdicts.loss_falls([2.3, 1.0]).ok  # too few steps to judge


def test_cudnn_version_must_be_the_recorded_one(image):
    recorded = render.facts(image)["cudnn_number"]  # what the image's spec.json holds
    assert recorded == 90100
    assert verdicts.cudnn_version(recorded, recorded).ok
    verdict = verdicts.cudnn_version(90501, recorded)
    assert not verdict.ok and "cuDNN 9.5.1 is loaded but the image records 9.1.0" in verdict.reason
    assert verdicts.cudnn_name(8902) == "8.9.2"


def test_conv_speed_floor_separates_tensor_cores_from_a_fallback():
    assert verdicts.conv_speed(400.0, 700.0).ok
    verdict = verdicts.conv_speed(45.0, 700.0)  # fp32 CUDA-core speed on an H100
    assert not verdict.ok and "not using tensor-core kernels" in verdict.reason


def test_require_gpu_turns_only_gpu_skips_into_failures():
    cuda = report.gpu(report.skipped("cuda", "no GPU: NVML cannot start"))
    gloo = report.skipped("gloo all-reduce", "a GPU is present")
    assert report.require_gpu(cuda).status == report.FAIL
    assert cuda.reason == "--require-gpu: no GPU: NVML cannot start"
    assert report.require_gpu(gloo).status == report.SKIPPED


def test_a_check_that_raises_is_that_checks_failure():
    def broken(_):
        raise RuntimeError("CUDA error: no kernel image is available")

    result = report.timed("cuda", broken, None)
    assert result.status == report.FAIL and result.reason == "RuntimeError: CUDA error: no kernel image is available"


def test_the_json_report_holds_every_check_and_the_overall_status(tmp_path):
    results = [report.passed("environment", "ok", cpus=2), report.failed("resnet50 amp", "loss is nan", losses=[1.0])]
    path = tmp_path / "out" / "smoke.json"
    report.write_json(path, results, {"image": "v2.6-cu124"})
    document = json.loads(path.read_text())
    assert document["status"] == "FAIL" and document["image"] == "v2.6-cu124"
    assert [c["name"] for c in document["checks"]] == ["environment", "resnet50 amp"]
    assert document["checks"][0]["figures"] == {"cpus": 2}
    assert list(path.parent.iterdir()) == [path]  # no partial file left behind


def test_the_reproducer_is_a_docker_run_line_a_person_can_paste(tmp_path):
    options = {"shm_size": "8g", "device_requests": ["all"]}
    line = smoke.reproducer("torchyard:v2.6-cu124", options, smoke.suite_args(True, tmp_path), tmp_path)
    assert line == (f"docker run --rm --gpus all --shm-size 8g --ulimit memlock=-1:-1 -v {tmp_path}:/data:ro "
                    "torchyard:v2.6-cu124 python -m smoke_tests --json /tmp/torchyard-smoke.json --require-gpu "
                    "--data /data")
