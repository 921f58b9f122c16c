"""`make smoke` on the v2.6-cu124 image built from scratch, on this CPU machine: the GPU checks say why they
are SKIPPED, gloo and both CPU fine-tunes PASS, and reports/<tag>/ holds the figures and a reproducer; on a host
that claims GPUs none of which reach the container, the GPU checks FAIL. And the suite's own pytest tests
(smoke_tests/test_suite.py) run inside the image, where torch is."""

import io
import json
import os
import subprocess
import tarfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from builder import layout
from tests.docker.conftest import TAG, TEST_REPO

RECORDINGS = Path(__file__).parent.parent / "data" / "nvml"

@pytest.fixture(scope="module")
def report(smoke_run):
    done, folder = smoke_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((folder / "smoke.json").read_text())


def checks(report) -> dict:
    return {c["name"]: c for c in report["checks"]}


def test_gpu_checks_are_skipped_with_their_reasons(report):
    by_name = checks(report)
    for name in ("cuda", "cudnn conv", "nccl all-reduce"):
        assert by_name[name]["status"] == "SKIPPED", by_name[name]
        assert by_name[name]["reason"].startswith("no GPU: "), by_name[name]
    assert "--gpus all" in by_name["cuda"]["reason"]  # NVML found no driver: the fix is named


def test_gloo_all_reduce_runs_across_two_processes_with_exact_sums(report):
    gloo = checks(report)["gloo all-reduce"]
    assert gloo["status"] == "PASS", gloo["reason"]
    sizes = gloo["figures"]["sizes"]
    assert gloo["figures"]["world_size"] == 2
    assert [row["size_mib"] for row in sizes] == [1, 4, 16, 64, 256]
    assert all(row["min"] == row["max"] == row["expected"] == 3 for row in sizes)
    for row in sizes:  # algbw is the buffer over the time of one all-reduce; at 2 ranks busbw = algbw * 2(2-1)/2
        assert row["algbw_gbs"] == pytest.approx(row["size_mib"] * 2**20 / row["time_us"] / 1e3, rel=0.01, abs=0.006)
        assert row["busbw_gbs"] == pytest.approx(row["algbw_gbs"], abs=0.011)


@pytest.mark.parametrize("model", ["resnet50", "deit-s"])
def test_cpu_fine_tunes_learn(report, model):
    result = checks(report)[f"{model} amp"]
    assert result["status"] == "PASS", result["reason"]
    figures = result["figures"]
    losses = figures["losses"]
    assert len(losses) == figures["steps"] >= 20
    assert sum(losses[-5:]) < 0.75 * sum(losses[:5])
    assert figures["device"] == "cpu" and figures["dtype"] == "bfloat16" and figures["workers"] >= 1
    assert result["reason"].startswith("ran on cpu, bfloat16, from scratch")
    assert len(figures["step_ms"]) == figures["steps"] and figures["warmup_steps"] >= 1
    assert figures["images_per_s"] > 0 and figures["peak_rss_gib"] > 0
    assert "from scratch" in figures["weights"]


def test_torch_compile_passes_on_the_cpu_path_with_cpp_kernels_and_its_figures(report):
    result = checks(report)["compile"]
    assert result["status"] == "PASS", result["reason"]
    assert result["reason"].startswith("Inductor generated C++ kernels; forward and backward as close to an fp64 run")
    for model in ("conv net", "transformer block"):
        figures = result["figures"][f"cpu {model}"]
        assert figures["kernels"]["cpp"] > 0 and figures["kernels"]["triton"] == 0 and figures["graphs"] == 2
        errors = figures["errors_vs_fp64"]
        assert "output" in errors and "grad input" in errors and len(errors) > 5  # every parameter's gradient
        assert all(e["compiled"] <= 1e-4 for e in errors.values())
        assert figures["compile_s"] > 0 and figures["compiled_over_eager"] > 0
    extension = checks(report)["extension"]
    assert extension["status"] == "SKIPPED" and "not a -devel image" in extension["reason"]


def test_torchaudio_resamples_and_makes_a_spectrogram_on_the_cpu(report):
    """The default tag carries torchaudio: its check runs for real on this CPU-only host, with its figures."""
    result = checks(report)["torchaudio"]
    assert result["status"] == "PASS", result["reason"]
    assert result["reason"].startswith("torchaudio 2.6.0+cu124: a 1000 Hz tone resampled 48 -> 16 kHz and its "
                                       "spectrogram as they must be (no GPU: the CPU only); cpu: resample ")
    figures = result["figures"]
    assert figures["torchaudio"] == "2.6.0+cu124" and list(figures["audio"]) == ["cpu"]
    cpu = figures["audio"]["cpu"]
    assert cpu["samples"] == [[4, 96000], [4, 32000]] and cpu["peak_hz"] == 1000.0
    assert cpu["resample_error"] < 1e-2 and cpu["tone_share"] > 0.99
    assert cpu["resample_ms"] > 0 and cpu["spectrogram_ms"] > 0 and cpu["resample_x_realtime"] > 0


def test_the_report_has_the_image_the_log_and_a_reproducer(report, smoke_run, built):
    done, folder = smoke_run
    assert report["image"] == built.image and report["image_id"] == built.image_id
    assert report["status"] == "PASS" and report["seconds"] > 0  # its duration is a figure (docs/benchmarks.md)
    command = (folder / "smoke.cmd").read_text().strip()
    assert command == report["reproducer"]
    assert command.startswith("docker run --rm --shm-size 8g ")
    assert f"{built.image} python -m smoke_tests" in command and "--gpus" not in command
    log = (folder / "smoke.log").read_text()
    assert log.startswith(f"$ {command}") and "deit-s amp" in log
    assert f"{built.image}: PASS" in done.stdout
    # the session's run has a pushed digest and a signing key (tests/docker/conftest.py): it attached its attestation
    assert "attached the smoke attestation to" in done.stdout


def test_dockers_default_shm_is_warned_about(built, run):
    out = run(built.image, "python", "-m", "smoke_tests", "--only", "environment")
    assert "WARN" in out and "only 64 MiB" in out and "--shm-size=8g" in out


def test_require_gpu_fails_on_a_cpu_host(client, built):
    container = client.containers.run(built.image, ["python", "-m", "smoke_tests", "--require-gpu", "--only", "cuda",
                                                    "cudnn", "nccl"], detach=True)
    try:
        assert container.wait(timeout=300)["StatusCode"] == 1
        out = container.logs().decode()
    finally:
        container.remove(force=True)
    assert out.count("--require-gpu: no GPU") == 3 and "FAIL in" in out


def test_a_gpu_host_whose_gpus_do_not_reach_the_container_fails(built, tmp_path):
    """The recorded NVML answer of an H100 host stands in for a GPU no CI machine has: the host side reads it as a
    live NVML would, TORCHYARD_GPUS=none keeps the GPUs out, and the suite must FAIL rather than pass on the CPU."""
    env = {**os.environ, "TORCHYARD_REPORTS": str(tmp_path), "TORCHYARD_GPUS": "none",
           "TORCHYARD_NVML_RECORD": str(RECORDINGS / "h100-driver-535.json")}
    done = subprocess.run(["make", "smoke", f"TAG={TAG}", f"REPO={TEST_REPO}"], cwd=layout.ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode != 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "smoke tests did not pass for v2.6-cu124 (FAIL)" in done.stderr
    assert ("on the CPU (TORCHYARD_GPUS=none), although NVML here sees 1 GPU(s) (NVIDIA H100 80GB HBM3, driver "
            "535.129.03): the GPU checks will FAIL") in done.stdout
    report = json.loads((tmp_path / TAG / "smoke.json").read_text())
    assert report["status"] == "FAIL" and report["host_nvml"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    by_name = checks(report)
    for name in ("cuda", "cudnn conv", "nccl all-reduce", "resnet50 amp", "deit-s amp"):
        assert by_name[name]["status"] == "FAIL", by_name[name]
        assert by_name[name]["reason"].startswith("the host has 1 NVIDIA GPU (NVML there) but none reached this "
                                                  "container (no GPU: "), by_name[name]
        assert "Fix: run it with --gpus all" in by_name[name]["reason"]
    assert by_name["environment"]["status"] == by_name["gloo all-reduce"]["status"] == "PASS"
    assert "--host-gpus 1" in (tmp_path / TAG / "smoke.cmd").read_text()


def pytest_files() -> dict[str, Path]:
    """pytest and what it needs, as this test run has them installed: path under site-packages -> file. All pure
    Python, so they run in the image's Python; the images leave pytest out, and it comes in only for this test."""
    files, todo, seen = {}, ["pytest"], set()
    while todo:
        dist = metadata.distribution(todo.pop())
        if dist.metadata["Name"].lower() in seen:
            continue
        seen.add(dist.metadata["Name"].lower())
        todo += [r.name for r in map(Requirement, dist.requires or []) if not r.marker or r.marker.evaluate({"extra": ""})]
        for file in dist.files or []:
            if not str(file).startswith("..") and "__pycache__" not in file.parts:
                files[str(file)] = Path(dist.locate_file(file))
    return files


def test_the_suites_own_tests_pass_in_the_image_without_a_skip_for_a_missing_package(client, built):
    """smoke_tests/test_suite.py inside the image (the only place with torch): every test runs, none skips. Its
    test_check (each check once more under pytest, for GPU hosts) is left out here: `make smoke` above ran those
    checks in this image, and running them twice cost CI minutes."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, path in pytest_files().items():
            tar.add(path, f"pytest-site/{name}")
    container = client.containers.create(
        built.image, ["python", "-m", "pytest", "-p", "no:cacheprovider", "-rs", "--pyargs", "smoke_tests",
                      "-k", "not test_check"],
        environment={"PYTHONPATH": "/tmp/pytest-site", "PYTHONDONTWRITEBYTECODE": "1"}, shm_size="8g")
    try:
        assert container.put_archive("/tmp", archive.getvalue())
        container.start()
        code = container.wait(timeout=1200)["StatusCode"]
        out = container.logs().decode()
    finally:
        container.remove(force=True)
    assert code == 0, out[-5000:]
    assert "test_suite.py" in out
    last = out.splitlines()[-1]
    assert " passed" in last and "skipped" not in last and "deselected" in last, out[-3000:]
