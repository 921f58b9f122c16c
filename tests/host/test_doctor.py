"""`make doctor` fed recorded NVML answers (tests/data/nvml: no GPU can run here), against the shipped matrix.

The engine is described, not asked: an Engine with the nvidia runtime, one without any GPU route, none at all.
"""

import dataclasses

import pytest

from builder import layout
from builder.host import doctor, smoke
from smoke_tests import fit, nvml
from tests.conftest import ROOT

RECORDINGS = ROOT / "tests" / "data" / "nvml"
WITH_GPUS = doctor.Engine(None, "27.5.1", "the nvidia runtime is registered with the engine", (), "/var/lib/docker")
NO_RUNTIME = doctor.Engine(None, "20.10.24", None, (), "/var/lib/docker")
NO_ENGINE = doctor.Engine("no Docker engine answers at unix:///nonexistent.sock (DockerException)")
DISK = doctor.Disk("/var/lib/docker", 60 * 10**9, 6_170_000_000, "v2.6-cu124")
SHM = 8 * 2**30


def host(name: str) -> nvml.Nvml:
    return nvml.read({nvml.RECORD_VARIABLE: str(RECORDINGS / f"{name}.json")})


def verdicts(shipped, name: str, engine=WITH_GPUS) -> dict[str, doctor.TagVerdict]:
    answer = host(name)
    return {tag: doctor.judge(spec, answer, engine, layout.IMAGES) for tag, spec in shipped.specs.items()}


def output(shipped, name: str, engine=WITH_GPUS) -> list[str]:
    return doctor.report(shipped, host(name), engine, SHM, DISK, layout.IMAGES)


@pytest.mark.parametrize("name", ["h100-driver-535", "h100-driver-580", "rtx5090-driver-570", "p100-driver-535", "no-gpu",
                                  "h200-driver-580-recorded"])
def test_every_tag_gets_a_verdict_line(shipped, name):
    lines = output(shipped, name)
    for tag in shipped.specs:
        line = next((line for line in lines if line.startswith(f"{tag} ")), None)
        assert line, tag
        assert any(v in line for v in (doctor.RUNS, doctor.DOES_NOT_RUN, doctor.UNKNOWN, doctor.CPU_ONLY)), line


def test_h100_on_driver_535_runs_cuda_12_and_not_cuda_13(shipped):
    judged = verdicts(shipped, "h100-driver-535")
    assert judged["v2.6-cu124"].verdict == doctor.RUNS
    for tag in ("v2.15-cu132", "v2.14-cu130", "v2.9-cu130"):
        assert judged[tag].verdict == doctor.DOES_NOT_RUN
        assert "535.129.03 < 580.65.06" in judged[tag].why
    assert any("is older than 580.65.06, the minimum for CUDA 13.2" in r for r in judged["v2.15-cu132"].reasons)
    lines = output(shipped, "h100-driver-535")
    assert lines[-1] == "newest tag that runs here: make build TAG=v2.10-cu128"  # the newest with a lock here
    assert "GPU 0           NVIDIA H100 80GB HBM3: sm_90 (compute capability 9.0), 79.6 GiB" in lines
    assert "NVIDIA driver   535.129.03, supports CUDA up to 12.2 (NVML)" in lines


def test_h100_on_driver_535_finds_the_cuda_12_6_builds_of_the_newest_releases(shipped):
    """A cluster on driver 535 (CUDA 12.2) runs torch 2.13 and 2.14 through their cu126 builds (minor-version
    compatibility: CUDA 12.x on >= 525.60.13; sm_90 is in their arch list), and the doctor names the newest."""
    judged = verdicts(shipped, "h100-driver-535")
    for tag in ("v2.13-cu126", "v2.14-cu126"):
        assert judged[tag].verdict == doctor.RUNS, (tag, judged[tag].why)
        assert judged[tag].why == "driver 535.129.03 >= 525.60.13; sm_90 covered"
    assert doctor.newest(list(judged.values()), doctor.RUNS).spec.tag == "v2.14-cu126"
    lines = output(shipped, "h100-driver-535")
    assert ("v2.14-cu126 would run here too but cannot be built here: images/v2.14-cu126/requirements.lock is missing"
            in "\n".join(lines))
    # "cannot tell" for no tag: compat.yaml gives every variant an arch list from a source
    unknown = {tag for tag, v in judged.items() if v.verdict == doctor.UNKNOWN}
    assert unknown == {tag for tag, spec in shipped.specs.items() if spec.archs is None} == set()
    for tag in ("v2.7-cu118", "v2.5-cu118", "v2.5-cu121"):  # the last three recorded: [cyc], [whl]
        assert judged[tag].verdict == doctor.RUNS, (tag, judged[tag].why)
    assert judged["v2.7-cu118"].why == "driver 535.129.03 >= 450.80.02; sm_90 covered"
    assert judged["v2.5-cu121"].why == "driver 535.129.03 >= 525.60.13; sm_90 covered"
    assert not any("their GPU architectures are not recorded" in line for line in lines)  # none newer than 2.14


def test_without_a_gpu_runtime_the_doctor_still_names_the_newest_tag_the_gpus_would_run(shipped):
    """The engine cannot give containers GPUs yet (this machine's case): the newest tag the driver and GPU would run is
    named even when it cannot be built here, before the newest that can."""
    lines = output(shipped, "h100-driver-535", NO_RUNTIME)
    assert lines[-2].startswith("v2.14-cu126 would run here too but cannot be built here: "
                                "images/v2.14-cu126/requirements.lock is missing")
    assert lines[-1] == "newest tag that runs here once containers get GPUs: make build TAG=v2.10-cu128"


def test_h100_on_driver_580_runs_the_newest_tag(shipped):
    judged = verdicts(shipped, "h100-driver-580")
    assert judged["v2.15-cu132"].verdict == doctor.RUNS
    assert judged["v2.6-cu124"].verdict == doctor.RUNS
    # The runtime image, not -devel, when both are equally new.
    assert output(shipped, "h100-driver-580")[-1] == "newest tag that runs here: make build TAG=v2.15-cu132"


def test_the_h200_recorded_on_a_real_host_runs_the_tags_whose_archs_are_known(shipped):
    """NVML's own answer on the lent H200 (not written by hand), against the arch lists compat.yaml records."""
    judged = verdicts(shipped, "h200-driver-580-recorded")
    for tag in ("v2.6-cu124", "v2.11-cu130", "v2.15-cu132"):
        assert judged[tag].verdict == doctor.RUNS, (tag, judged[tag].why)
    assert judged["v2.11-cu130"].why == "driver 580.159.04 >= 580.65.06; sm_90 covered"
    assert judged["v2.10-cu128"].verdict == doctor.RUNS  # sm_90 in its build script's list ([bcs])
    assert judged["v2.7-cu118"].verdict == doctor.RUNS  # the 2.7 cu118 wheel's own list ([whl]) has sm_90
    assert judged["v2.5-cu118"].verdict == doctor.RUNS  # sm_90 in the 2.5 cycle's build script ([cyc])
    lines = output(shipped, "h200-driver-580-recorded")
    assert "GPU 0           NVIDIA H200: sm_90 (compute capability 9.0), 140.4 GiB" in lines
    assert "NVIDIA driver   580.159.04, supports CUDA up to 13.0 (NVML)" in lines


def test_rtx_5090_sm_120_is_not_covered_by_the_cuda_12_4_wheel(shipped):
    judged = verdicts(shipped, "rtx5090-driver-570")
    assert judged["v2.6-cu124"].verdict == doctor.DOES_NOT_RUN
    assert judged["v2.6-cu124"].why == "sm_120 not in sm_50…sm_90"
    assert any("no kernel image is available" in r for r in judged["v2.6-cu124"].reasons)
    # The CUDA 13.2 wheel has sm_120 kernels, but driver 570 is below CUDA 13's floor.
    assert judged["v2.15-cu132"].verdict == doctor.DOES_NOT_RUN
    assert judged["v2.15-cu132"].why == "driver 570.133.07 < 580.65.06"
    # The CUDA 11.8 wheels of 2.5 and 2.7 and the 12.1 one of 2.5 stop at sm_90 with no PTX ([cyc], [whl]).
    for tag in ("v2.7-cu118", "v2.5-cu118", "v2.5-cu121"):
        assert judged[tag].verdict == doctor.DOES_NOT_RUN and judged[tag].why == "sm_120 not in sm_50…sm_90", tag
    # The CUDA 12.8 builds carry sm_120 cubins; 12.6 ones stop at sm_90, with no PTX to JIT from.
    assert judged["v2.8-cu128"].verdict == doctor.RUNS
    assert judged["v2.14-cu126"].verdict == doctor.DOES_NOT_RUN and judged["v2.14-cu126"].why == "sm_120 not in sm_50…sm_90"
    lines = output(shipped, "rtx5090-driver-570")
    assert lines[-1] == "newest tag that runs here: make build TAG=v2.10-cu128"


def test_a_tag_whose_archs_are_not_recorded_is_not_guessed_at(shipped):
    """Every shipped tag has an arch list now; one without (a release compat.yaml gives none for) is 'cannot tell'."""
    spec = dataclasses.replace(shipped.specs["v2.5-cu118"], archs=None)  # and no images/v2.5-cu118/archs.json
    for name in ("rtx5090-driver-570", "h100-driver-535"):
        judged = doctor.judge(spec, host(name), WITH_GPUS, layout.IMAGES)
        assert judged.verdict == doctor.UNKNOWN and "archs not recorded" in judged.why, name


def test_p100_sm_60_is_not_covered_by_the_cuda_13_wheels(shipped):
    judged = verdicts(shipped, "p100-driver-535")
    assert judged["v2.6-cu124"].verdict == doctor.RUNS  # sm_60 is in 2.6's cu124 arch list
    assert judged["v2.15-cu132"].verdict == doctor.DOES_NOT_RUN
    assert "sm_60 not in sm_75…sm_120" in judged["v2.15-cu132"].why
    assert "535.183.01 < 580.65.06" in judged["v2.15-cu132"].why


def test_without_a_gpu_it_says_so_and_what_would_be_needed(shipped):
    judged = verdicts(shipped, "no-gpu", NO_RUNTIME)
    assert {v.verdict for v in judged.values()} == {doctor.CPU_ONLY}
    assert judged["v2.6-cu124"].why == "for GPUs: driver >= 525.60.13, a GPU of sm_50…sm_90"
    lines = output(shipped, "no-gpu", NO_RUNTIME)
    text = "\n".join(lines)
    assert "NVIDIA driver   none: NVML cannot start (NVML Shared Library Not Found)" in text
    assert "No NVIDIA GPU here" in text and ">= 580.65.06 for CUDA 13 images" in text
    assert "GPU runtime     none: no nvidia runtime registered" in text
    assert lines[-1] == "newest tag for CPU work here: make build TAG=v2.15-cu132"


def test_a_gpu_host_whose_engine_cannot_give_containers_gpus(shipped):
    judged = verdicts(shipped, "h100-driver-580", NO_RUNTIME)
    assert judged["v2.15-cu132"].verdict == doctor.NO_RUNTIME
    lines = output(shipped, "h100-driver-580", NO_RUNTIME)
    assert any("nvidia-ctk runtime configure --runtime=docker" in line for line in lines)
    assert lines[-1] == "newest tag that runs here once containers get GPUs: make build TAG=v2.15-cu132"


def test_without_an_engine_the_host_is_still_judged(shipped):
    judged = verdicts(shipped, "h100-driver-580", NO_ENGINE)
    assert judged["v2.15-cu132"].verdict == doctor.RUNS
    text = "\n".join(output(shipped, "h100-driver-580", NO_ENGINE))
    assert "Docker engine   no Docker engine answers" in text
    assert "GPU runtime     unknown: no engine to ask" in text


def test_tags_without_a_lock_are_not_offered_to_build(shipped):
    judged = verdicts(shipped, "h100-driver-535")
    assert not judged["v2.6-cu126"].buildable and "make lock TAG=v2.6-cu126" in judged["v2.6-cu126"].lock_problem
    assert "images/v2.6-cu126/requirements.lock is missing" in judged["v2.6-cu126"].lock_problem
    assert str(ROOT) not in judged["v2.6-cu126"].lock_problem  # paths as the repository names them


def test_disk_against_the_largest_image_measured():
    line = next(line for line in doctor.host_lines(host("no-gpu"), NO_RUNTIME, SHM, DISK) if line.startswith("disk"))
    assert "60.00 GB free in /var/lib/docker; a build needs about 12.34 GB" in line
    assert "v2.6-cu124 6.17 GB): room for 4 build(s)" in line


@pytest.mark.parametrize("name", ["h100-driver-580", "rtx5090-driver-570", "p100-driver-535"])
def test_the_doctor_and_the_smoke_suite_name_the_same_covering_tags(shipped, name):
    """The suite explains an uncovered GPU with smoke.covering_tags; the doctor judges archs through fit.judge.
    With the driver out of the way, the tags the doctor finds covering a GPU are exactly the suite's."""
    gpu = host(name).gpus[0]
    new_driver = nvml.Nvml("999.99.99", "99.0", (gpu,), None)
    doctor_says = [tag for tag, spec in shipped.specs.items()
                   if spec.archs and fit.judge(new_driver, spec.cuda, spec.min_driver, spec.archs).runs]
    assert doctor_says == smoke.covering_tags(shipped, f"{gpu.capability[0]}.{gpu.capability[1]}")


def test_ptx_needs_a_driver_as_new_as_the_toolkit_that_wrote_it():
    hopper = nvml.Gpu(0, "NVIDIA H100", (9, 0), 80 * 2**30)
    archs = ["sm_80", "compute_80"]  # sm_90 runs only through the PTX
    old = nvml.Nvml("525.60.13", "12.0", (hopper,), None)
    new = nvml.Nvml("550.54.14", "12.4", (hopper,), None)
    assert fit.judge(old, "12.4", "525.60.13", archs).status == fit.DOES_NOT_RUN
    assert "compiles PTX only up to CUDA 12.0" in fit.judge(old, "12.4", "525.60.13", archs).reasons[0]
    assert fit.judge(new, "12.4", "525.60.13", archs).runs


def test_the_doctor_runs_here_without_an_engine_and_without_a_gpu(shipped, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    env.pop(nvml.RECORD_VARIABLE, None)
    result = subprocess.run([sys.executable, "-m", "builder", "doctor", "--reports", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Docker engine   no Docker engine answers at unix:///nonexistent/docker.sock" in result.stdout
    assert result.stdout.count("\nv2.") == len(shipped.specs)
