"""`make smoke`'s host side: what says the host has GPUs, and how the suite in the container is told.

The recorded NVML answers (tests/data/nvml) stand in for GPUs that no machine running these tests has.
"""

from pathlib import Path

import pytest

from builder.host import smoke
from smoke_tests import nvml
from smoke_tests.__main__ import parser

RECORDINGS = Path(__file__).parent.parent / "data" / "nvml"
H100 = nvml.replay(RECORDINGS / "h100-driver-535.json")
NONE = nvml.replay(RECORDINGS / "no-gpu.json")
CPU_ONLY = {"shm_size": "8g"}


def test_a_host_has_gpus_when_nvml_sees_them_or_the_engine_has_the_toolkit():
    assert smoke.host_gpus(H100, toolkit=False) == "1"
    two = nvml.Nvml("580.65.06", "13.0", H100.gpus * 2, None)
    assert smoke.host_gpus(two, toolkit=True) == "2"
    assert smoke.host_gpus(NONE, toolkit=True) == "toolkit"
    assert smoke.host_gpus(NONE, toolkit=False) is None


def test_the_suite_is_told_what_the_host_has():
    assert smoke.suite_args(False, None, "1") == ["python", "-m", "smoke_tests", "--json", smoke.CONTAINER_JSON,
                                                   "--host-gpus", "1"]
    assert "--host-gpus" not in smoke.suite_args(True, None, None)
    line = smoke.reproducer("torchyard:v2.6-cu124", CPU_ONLY, smoke.suite_args(False, None, "toolkit"), None)
    assert line.endswith("python -m smoke_tests --json /tmp/torchyard-smoke.json --host-gpus toolkit")


def test_the_run_says_where_it_runs_and_what_a_cpu_run_on_a_gpu_host_means(monkeypatch):
    monkeypatch.setenv("TORCHYARD_GPUS", "none")
    assert smoke.describe(CPU_ONLY, H100, "1") == ("the CPU (TORCHYARD_GPUS=none), although NVML here sees 1 GPU(s) "
                                                   "(NVIDIA H100 80GB HBM3, driver 535.129.03): the GPU checks will FAIL")
    assert smoke.describe(CPU_ONLY, NONE, None) == "the CPU (TORCHYARD_GPUS=none)"
    monkeypatch.delenv("TORCHYARD_GPUS")
    assert smoke.describe(CPU_ONLY, NONE, None) == "the CPU (no NVIDIA container toolkit)"
    assert smoke.describe(CPU_ONLY, NONE, "toolkit").endswith("although the engine has the NVIDIA container toolkit: "
                                                              "the GPU checks will FAIL")
    assert smoke.describe({**CPU_ONLY, "device_requests": ["all"]}, H100, "1") == "all GPUs"


@pytest.mark.parametrize("given", ["1", "8", "toolkit"])
def test_host_gpus_takes_a_count_or_toolkit(given):
    assert parser().parse_args(["--host-gpus", given]).host_gpus == given


@pytest.mark.parametrize("given", ["0", "-1", "two", "1; rm -rf /", "toolkit ", ""])
def test_anything_else_is_refused_with_what_would_be_right(given, capsys):
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["--host-gpus", given])
    assert exit_.value.code == 2
    assert "give the number of GPUs the host has (1 or more), or 'toolkit'" in capsys.readouterr().err


def test_the_steps_help_says_the_defaults_the_code_uses():
    from smoke_tests import finetune

    text = parser().format_help()
    gpu, cpu = finetune.GPU_SIZES["resnet50"].steps, finetune.CPU_SIZES["resnet50"].steps
    assert f"(default: {gpu} on a GPU, {cpu} on the CPU)" in " ".join(text.split())
    assert (gpu, cpu) == (finetune.GPU_SIZES["deit-s"].steps, finetune.CPU_SIZES["deit-s"].steps)
