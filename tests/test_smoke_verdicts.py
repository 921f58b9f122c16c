"""The smoke suite's judgements, fed the values a real host gives (no torch needed: verdicts are plain Python)."""

import json
import math

import pytest

from builder.host import smoke
from builder.image import render
from smoke_tests import finetune, report, verdicts

DOCKER_DEFAULT_SHM = 64 * 2**20  # what statvfs("/dev/shm") says in `docker run` without --shm-size
Verdict = verdicts.Verdict  # whole verdicts are compared: ok is a bool, and the reason is the sentence a person reads


@pytest.fixture(scope="module")
def image(shipped):
    return shipped.specs["v2.6-cu124"]


def test_a_driver_older_than_the_images_cuda_floor_fails_and_says_what_to_do(image):
    too_old = ("driver 470.57.02 is older than 525.60.13, the minimum for CUDA 12.4: CUDA calls fail with 'the NVIDIA "
               "driver on your system is too old'. Upgrade the host driver to 525.60.13 or newer, or use an image "
               "built for an older CUDA")
    assert verdicts.driver("470.57.02", image.min_driver, image.cuda, driver_cuda="11.4") == Verdict(
        False, too_old + " (this driver supports CUDA up to 11.4)")
    assert verdicts.driver("470.57.02", image.min_driver, image.cuda) == Verdict(False, too_old)


def test_the_floor_itself_and_newer_drivers_pass(image):
    assert verdicts.driver("525.60.13", image.min_driver, image.cuda) == Verdict(
        True, "driver 525.60.13 >= 525.60.13, the minimum for CUDA 12.4")
    assert verdicts.driver("550.54.15", image.min_driver, image.cuda).ok is True
    assert verdicts.driver("525.60.11", image.min_driver, image.cuda).ok is False


def test_outside_an_image_the_drivers_own_cuda_version_judges():
    assert verdicts.driver("550.54.15", None, "12.6", driver_cuda="12.4") == Verdict(  # minor-version compatibility
        True, "driver 550.54.15 supports CUDA 12.4; torch's CUDA 12.6 runs on it (same major or newer: minor-version "
              "compatibility)")
    assert verdicts.driver("580.65.06", None, "12.6", driver_cuda="13.0").ok is True
    assert verdicts.driver("535.104.05", None, "13.0", driver_cuda="12.2") == Verdict(
        False, "driver 535.104.05 supports CUDA up to 12.2, older than the major of torch's CUDA 13.0: upgrade the "
               "host driver, or use an image built for CUDA 12.2 or older")
    assert verdicts.driver("535.104.05", None, "12.4") == Verdict(
        False, "driver 535.104.05: neither a recorded minimum nor the driver's CUDA version is known, so the driver "
               "cannot be judged")


def test_a_gpu_arch_the_image_does_not_cover_names_the_error_and_the_tags_that_do(image, shipped):
    blackwell = (12, 0)  # RTX 50xx
    covering = smoke.covering_tags(shipped, "12.0")
    verdict = verdicts.arch(blackwell, list(image.archs), covering)
    uncovered = (f"this GPU is sm_120, and this torch has kernels for {' '.join(image.archs)} only: every CUDA op fails "
                 "with 'no kernel image is available for execution on the device'. Use an image whose torch was built "
                 "for sm_120.")
    assert verdict == Verdict(False, f"{uncovered} Tags in the matrix that cover sm_120: {', '.join(covering)}.")
    assert "v2.15-cu132" in covering and "v2.6-cu124" not in covering
    assert verdicts.arch(blackwell, list(image.archs)) == Verdict(False, uncovered)
    assert verdicts.arch((9, 0), []).reason.startswith("this GPU is sm_90, and this torch has kernels for no arch only")


def test_gpus_the_image_covers_natively_by_binary_compatibility_or_through_ptx(image):
    archs = list(image.archs)
    assert verdicts.arch((9, 0), archs).reason == "sm_90 is in torch's arch list"  # H100
    assert verdicts.arch((8, 9), archs) == Verdict(  # L40S, Ada
        True, "sm_89 runs the sm_86 kernels (same major, binary compatible)")
    assert verdicts.arch((8, 9), ["sm_80", "sm_86", "sm_87"]).reason.startswith("sm_89 runs the sm_87 kernels")
    assert "through PTX (compute_90)" in verdicts.arch((10, 0), archs + ["compute_90"]).reason
    assert not verdicts.arch((3, 7), archs).ok  # K80: older than every kernel
    assert verdicts.arch((9, 0), ["sm_80", "sm_90a"]).ok
    assert not verdicts.arch((10, 0), ["sm_90a"]).ok  # arch-specific cubins run only on their own GPU


def test_dockers_default_64mb_shm_warns_with_the_fix():
    assert verdicts.shm(DOCKER_DEFAULT_SHM) == Verdict(
        False, "/dev/shm is only 64 MiB (Docker's default is 64 MB): DataLoader workers and NCCL run out of shared "
               "memory ('Bus error', 'unable to allocate shared memory'). Start the container with --shm-size=8g, or "
               "--ipc=host")
    assert verdicts.shm(8 * 2**30) == Verdict(True, "/dev/shm is 8.0 GiB")
    assert verdicts.shm(2**30) == Verdict(True, "/dev/shm is 1.0 GiB")  # the floor itself
    assert verdicts.shm(2**30 - 4096).ok is False


CHANCE_10 = math.log(10)  # the loss of guessing among 10 balanced classes


def test_a_nan_loss_fails_at_its_step():
    losses = [2.31, 2.28, 2.2, float("nan"), 2.0, 1.9, 1.7, 1.6, 1.5, 1.4, 1.2]
    assert verdicts.loss_falls(losses, CHANCE_10) == Verdict(
        False, "loss is nan at step 3: training diverged (check the AMP dtype, the GradScaler, the learning rate)")
    assert not verdicts.loss_falls([2.3] * 5 + [math.inf] * 5, CHANCE_10).ok


def test_a_loss_that_does_not_fall_enough_fails():
    flat = [2.30, 2.31, 2.29, 2.30, 2.30, 2.28, 2.29, 2.27, 2.28, 2.26, 2.25, 2.27]
    verdict = verdicts.loss_falls(flat, CHANCE_10)
    assert not verdict.ok and "the model is not learning" in verdict.reason
    assert verdicts.loss_falls([2.3, 2.2, 2.1, 2.0, 1.9, 1.5, 1.2, 1.0, 0.8, 0.7, 0.6, 0.5], CHANCE_10).ok
    assert verdicts.loss_falls([2.3, 1.0], CHANCE_10) == Verdict(  # too few steps to judge
        False, "only 2 steps ran; 10 are needed to judge the loss")
    assert verdicts.loss_falls([1.0] * 5 + [0.4] * 4, CHANCE_10).ok is False
    assert verdicts.loss_falls([1.0] * 5 + [0.5] * 5, CHANCE_10).ok is True
    assert verdicts.loss_falls([1.0] * 3 + [0.5] * 3, CHANCE_10, window=3).ok is True


def test_the_fall_must_be_a_quarter_of_the_start():
    assert verdicts.loss_falls([1.0] * 5 + [0.75] * 5, CHANCE_10).ok  # exactly 25 % down
    assert verdicts.loss_falls([1.0] * 5 + [0.76] * 5, CHANCE_10) == Verdict(
        False, "loss went from 1.000 to 0.760 (24% down); at least 25% is required: the model is not learning")
    assert not verdicts.loss_falls([1.0] * 5 + [0.9] * 5, CHANCE_10).ok  # 10 % down, well below chance: still FAIL


def test_the_loss_is_judged_on_means_of_five_steps_not_single_batches():
    """A noisy loss that did not fall: its first and last single steps (1.2 -> 0.5) would pass."""
    noisy = [1.2, 0.8, 0.9, 0.85, 0.95, 0.9, 0.85, 0.9, 0.8, 0.95, 0.85, 0.9, 0.8, 0.95, 0.5]
    verdict = verdicts.loss_falls(noisy, CHANCE_10)
    assert not verdict.ok and "loss went from 0.940 to 0.800" in verdict.reason


def test_a_model_that_learned_only_the_class_prior_fails():
    """The issue's case: a 10-class model from 3.08 down to the uniform guess, ln 10 = 2.30, falls by 25 %, and has
    learned nothing about the images. At 0.75 of chance (1.73) the model has learned something."""
    prior_only = [3.10, 3.08, 3.07, 3.09, 3.06, 2.9, 2.7, 2.5, 2.35, 2.31] + [2.303] * 5  # 3.080 -> 2.303: 25% down
    assert verdicts.loss_falls(prior_only, CHANCE_10) == Verdict(
        False, "loss went from 3.080 to 2.303 (25% down), but 2.303 is not clearly below chance (2.303, the loss of "
               "guessing by class frequency; at most 75% of it is required): the model learned the class frequencies, "
               "not the images")
    assert verdicts.loss_falls([3.0] * 5 + [1.5] * 5, 2.0).ok is True  # exactly 0.75 of chance
    assert verdicts.loss_falls(prior_only[:10] + [1.72] * 5, CHANCE_10).ok  # just under 0.75 of chance
    assert not verdicts.loss_falls(prior_only[:10] + [1.74] * 5, CHANCE_10).ok
    # Chance is that of the data: with two classes in a 3:1 ratio guessing by frequency gives 0.562.
    assert not verdicts.loss_falls([0.9] * 5 + [0.5] * 5, 0.5623351446188083).ok


def test_a_passing_loss_says_how_far_below_chance_it_ended():
    verdict = verdicts.loss_falls([2.83] * 5 + [0.576] * 5, CHANCE_10)
    assert verdict.ok and verdict.reason == ("loss went from 2.830 to 0.576 (80% down), 25% of chance (2.303); "
                                             "25% fall and at most 75% of chance required")


def test_cudnn_version_must_be_the_recorded_one(image):
    recorded = render.facts(image)["cudnn_number"]  # what the image's spec.json holds
    assert recorded == 90100
    assert verdicts.cudnn_version(recorded, recorded) == Verdict(True, "cuDNN 9.1.0 as the image records")
    assert verdicts.cudnn_version(90501, recorded) == Verdict(
        False, "cuDNN 9.5.1 is loaded but the image records 9.1.0: another libcudnn is ahead on the library path "
               "(LD_LIBRARY_PATH, a mounted CUDA install)")
    assert verdicts.cudnn_version(90501, None) == Verdict(True, "cuDNN 9.5.1 (no recorded version to compare with)")


@pytest.mark.parametrize("number, release", [(8902, "8.9.2"), (8000, "8.0.0"), (7605, "7.6.5"), (90000, "9.0.0"),
                                             (91002, "9.10.2"), (90100, "9.1.0"), (100003, "10.0.3")])
def test_cudnn_numbers_read_as_releases(number, release):
    """cuDNN 8 counts major * 1000 + minor * 100 + patch, cuDNN 9 major * 10000 + minor * 100 + patch."""
    assert verdicts.cudnn_name(number) == release


def test_conv_speed_floor_separates_tensor_cores_from_a_fallback():
    # The H200's own run (docs/benchmarks.md): conv 405 TFLOP/s against a 790 TFLOP/s bf16 matmul, 0.51.
    assert verdicts.conv_speed(405.0, 790.0).ok
    # fp32 CUDA-core math reaches at most ~0.07 of the bf16 tensor-core matmul (H100: 67 / 990 TFLOP/s).
    assert verdicts.conv_speed(55.3, 790.0) == Verdict(
        False, "conv 55.3 TFLOP/s is only 0.07 of the bf16 matmul's 790.0 (floor 0.15): cuDNN is not using tensor-core "
               "kernels")
    assert verdicts.conv_speed(15.0, 100.0).ok and not verdicts.conv_speed(14.9, 100.0).ok  # the floor, 0.15
    assert verdicts.conv_speed(405.0, 790.0).reason == "conv 405.0 TFLOP/s = 0.51 of bf16 matmul (790.0)"


def test_a_conv_matches_its_reference_only_within_the_tolerance():
    assert verdicts.close_to_reference(1.7e-3, 3e-2, "bfloat16 conv") == Verdict(
        True, "bfloat16 conv matches the fp32 reference (relative error 1.70e-03 <= 3e-02)")
    assert verdicts.close_to_reference(5e-3, 5e-3, "float16 conv").ok  # at the tolerance itself
    assert verdicts.close_to_reference(5.1e-3, 5e-3, "float16 conv") == Verdict(
        False, "float16 conv differs from the fp32 reference: relative error 5.10e-03 > 5e-03")
    assert not verdicts.close_to_reference(math.nan, 5e-3, "float16 conv").ok  # NaN compares false with anything
    assert not verdicts.close_to_reference(math.inf, 5e-3, "float16 conv").ok


def test_an_all_reduce_sum_is_exact_only_when_every_element_is():
    assert verdicts.exact_sum(3.0, 3.0, 3, "1 MiB").reason == "1 MiB: every element is 3"
    assert not verdicts.exact_sum(2.999, 3.0, 3, "1 MiB").ok
    assert not verdicts.exact_sum(3.0, 3.0001, 3, "1 MiB").ok
    assert verdicts.exact_sum(math.nan, math.nan, 36, "256 MiB") == Verdict(
        False, "256 MiB: all-reduce gave nan where the exact sum is 36 (elements from nan to nan)")


def test_ptx_runs_only_on_gpus_at_least_as_new_as_it():
    assert verdicts.arch((8, 0), ["sm_70", "compute_80"]).ok
    verdict = verdicts.arch((8, 0), ["sm_70", "compute_90"])  # A100, PTX for Hopper: the driver cannot use it
    assert not verdict.ok and "this GPU is sm_80" in verdict.reason
    assert not verdicts.arch((8, 6), ["sm_90", "compute_90"]).ok
    assert not verdicts.arch((9, 0), ["sm_100"]).ok  # a newer cubin neither


def test_a_gpu_check_that_finds_no_gpu_is_skipped_only_where_none_was_expected():
    reason = "no GPU: NVML cannot start (NVML Shared Library Not Found)"
    assert verdicts.missing_gpu(reason, False, None) == verdicts.Verdict(True, reason)
    assert verdicts.missing_gpu(reason, True, None) == verdicts.Verdict(False, f"--require-gpu: {reason}")
    assert verdicts.missing_gpu(reason, False, "1") == Verdict(
        False, f"the host has 1 NVIDIA GPU (NVML there) but none reached this container ({reason}): a CPU run proves "
               "nothing about them. Fix: run it with --gpus all (make smoke does so when the toolkit is configured; "
               "unset TORCHYARD_GPUS=none), and check the toolkit: `docker run --rm --gpus all <image> nvidia-smi` "
               "must list the GPUs")
    assert verdicts.missing_gpu(reason, True, "8").reason.startswith("the host has 8 NVIDIA GPUs (NVML there)")
    toolkit = verdicts.missing_gpu(reason, False, "toolkit")
    assert not toolkit.ok and toolkit.reason.startswith("the host's Docker engine has the NVIDIA container toolkit but")


def test_expected_gpus_turn_only_gpu_skips_into_failures():
    cuda = report.gpu(report.skipped("cuda", "no GPU: NVML cannot start"))
    gloo = report.skipped("gloo all-reduce", "a GPU is present")
    assert report.expect_gpu(cuda, True, None).status == report.FAIL
    assert cuda.reason == "--require-gpu: no GPU: NVML cannot start"
    assert report.expect_gpu(gloo, True, "2").status == report.SKIPPED
    nccl = report.expect_gpu(report.gpu(report.skipped("nccl all-reduce", "no GPU: x")), False, "2")
    assert nccl.status == report.FAIL and nccl.reason.startswith("the host has 2 NVIDIA GPUs")
    assert report.expect_gpu(report.gpu(report.skipped("cuda", "no GPU: x")), False, None).status == report.SKIPPED
    assert report.expect_gpu(report.gpu(report.passed("cuda", "ok")), True, "1").status == report.PASS


@pytest.mark.parametrize("capability, dtype", [
    (None, "bfloat16"),  # the CPU: bf16 autocast, no scaler
    ((6, 0), "float16"),  # P100
    ((7, 0), "float16"),  # V100: torch.cuda.is_bf16_supported() says yes, through emulation
    ((7, 5), "float16"),  # T4, likewise
    ((8, 0), "bfloat16"),  # A100: native bf16 from Ampere on
    ((8, 9), "bfloat16"),  # L40S
    ((9, 0), "bfloat16"),
    ((12, 0), "bfloat16"),
])
def test_bf16_only_where_the_gpu_has_it_natively_else_fp16(capability, dtype):
    assert finetune.amp_dtype(capability) == dtype


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


def test_a_resampled_tone_passes_only_within_the_tolerance():
    assert verdicts.tone_resampled(3.2e-4, 48_000, 16_000) == Verdict(
        True, "resampled 48000 -> 16000 Hz, the tone itself (relative error 3.2e-04 <= 1e-02)")
    assert verdicts.tone_resampled(verdicts.RESAMPLE_TOLERANCE, 48_000, 16_000).ok is True
    wrong = "resampling 48000 -> 16000 Hz does not give the tone at the new rate: relative error "
    assert verdicts.tone_resampled(1.41, 48_000, 16_000) == Verdict(False, wrong + "1.41e+00 > 1e-02")
    assert verdicts.tone_resampled(math.nan, 48_000, 16_000) == Verdict(False, wrong + "nan > 1e-02")


def test_a_spectrogram_passes_only_with_its_peak_on_the_tone_holding_the_energy():
    bin_hz = 16_000 / 1024
    assert verdicts.tone_peak(1000.0, 1000, bin_hz, 0.99998) == Verdict(
        True, "spectrogram peak at 1000.0 Hz with 1.0000 of the energy")
    assert verdicts.tone_peak(1000.0 + bin_hz, 1000, bin_hz, 0.99998) == Verdict(
        False, "the spectrogram peaks at 1015.6 Hz, not at the tone's 1000 Hz (bins of 15.625 Hz)")
    assert verdicts.tone_peak(1000.0, 1000, bin_hz, 0.5) == Verdict(
        False, "the spectrogram peaks at 1000.0 Hz but holds only 0.500 of the energy there (at least 0.99 for a pure "
               "tone): the rest is spread where there is no signal")
    assert verdicts.tone_peak(1000.0, 1000, bin_hz, verdicts.TONE_SHARE_FLOOR).ok is True
    assert verdicts.tone_peak(1000.0, 1000, bin_hz, math.nan).ok is False


def test_the_gpus_audio_results_must_be_the_cpus():
    assert verdicts.same_on_both({"resample": 2.1e-7, "spectrogram": 3.4e-6}) == Verdict(
        True, "the GPU's results are the CPU's (resample 2.1e-07, spectrogram 3.4e-06)")
    assert verdicts.same_on_both({"resample": 2.1e-7, "spectrogram": 0.02}) == Verdict(
        False, "the GPU's spectrogram differs from the CPU's: relative difference 2.00e-02 > 1e-04")
    assert verdicts.same_on_both({"resample": math.inf}).ok is False
