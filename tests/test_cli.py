"""The command line as a user meets it: exit codes, messages, and nothing touched on refusal."""

import os
import subprocess
import sys
import time

from tests.conftest import ROOT


def run(*args, **env):
    # DOCKER_HOST points nowhere: a refusal must come before any Docker call.
    environment = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock", **env}
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=ROOT, capture_output=True, text=True,
                          env=environment, timeout=60)


def snapshot():
    return {p: p.stat().st_mtime_ns for p in (ROOT / "images").rglob("*")}


def test_v2_6_cu121_is_refused_fast_and_helpfully():
    before = snapshot()
    started = time.monotonic()
    result = run("build", "--tag", "v2.6-cu121")
    assert time.monotonic() - started < 10
    assert result.returncode == 2, result.stderr
    for name in ("cu118", "cu124", "cu126", "v2.6-cu124", "v2.5-cu121"):
        assert name in result.stderr
    assert "Docker" not in result.stderr
    assert snapshot() == before


def test_an_invalid_matrix_is_refused_before_anything_is_written(tmp_path):
    bad = tmp_path / "matrix.yaml"
    bad.write_text('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", cudnn: "8.9"}\n')
    before = snapshot()
    result = run("--matrix", str(bad), "build")
    assert result.returncode == 2
    assert f"{bad}:3: images.v2.6-cu124.cudnn" in result.stderr
    assert "nothing was rendered or built" in result.stderr
    assert snapshot() == before


def test_no_engine_is_a_clear_error():
    result = run("base")
    assert result.returncode == 1
    assert "no Docker engine answers at unix:///nonexistent/docker.sock" in result.stderr
    assert "apt-get install docker.io" in result.stderr


def test_validate_and_render_check_pass_on_the_shipped_matrix():
    assert run("validate", "--tag", "all").returncode == 0
    result = run("render", "--check")
    assert result.returncode == 0, result.stderr


def test_make_help_lists_every_target():
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    phony = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith(".PHONY:"))
    targets = phony.split(":")[1].split()
    for target in targets:
        assert f"make {target} " in out


def test_a_reader_that_leaves_early_ends_the_output_without_a_traceback():
    """`make -s list | head -1`: the pipe is closed before the CLI writes; it stops quietly with SIGPIPE's status."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "builder", "list"], cwd=ROOT, stdout=write, stderr=subprocess.PIPE,
                                text=True, timeout=60)
    finally:
        os.close(write)
    assert result.returncode == 128 + 13, result.stderr
    assert result.stderr == ""


def test_an_output_on_a_full_disk_is_one_line_on_stderr_not_a_traceback():
    """`make -s list > /dev/full`: the write fails with ENOSPC; the CLI says so once and exits 1."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "builder", "list"], cwd=ROOT, stdout=full, stderr=subprocess.PIPE,
                                text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == "torchyard: could not write the output: No space left on device\n"
