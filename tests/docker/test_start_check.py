"""The GPU start check in the real image: the entrypoint runs smoke_tests.startup as the user before the command,
so a host whose GPU or driver cannot run the image hears it once, at start, and the command runs all the same.

No GPU runs here: TORCHYARD_NVML_RECORD hands the check a recorded NVML answer (tests/data/nvml/), the one stand-in.
"""

from __future__ import annotations

import io
import tarfile

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.docker

RECORDINGS = ROOT / "tests" / "data" / "nvml"


def start(client, image: str, recording: str | None, mode: int = 0o644, user: str | None = None) -> tuple[int, str]:
    """`docker run IMAGE echo started` with the recording at /tmp/nvml.json (root's, `mode`): exit code and log."""
    environment = {"TORCHYARD_NVML_RECORD": "/tmp/nvml.json"} if recording else {}
    container = client.containers.create(image, ["echo", "started"], environment=environment, user=user)
    try:
        if recording:
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w") as tar:
                data = (RECORDINGS / f"{recording}.json").read_bytes()
                info = tarfile.TarInfo("nvml.json")
                info.size, info.mode, info.uid, info.gid = len(data), mode, 0, 0
                tar.addfile(info, io.BytesIO(data))
            assert container.put_archive("/tmp", archive.getvalue())
        container.start()
        code = container.wait(timeout=60)["StatusCode"]
        return code, container.logs().decode()
    finally:
        container.remove(force=True)


def test_an_uncovered_gpu_is_one_warning_at_start_and_the_command_still_runs(client, built):
    code, log = start(client, built.image, "rtx5090-driver-570")
    assert code == 0
    warnings = [line for line in log.splitlines() if line.startswith("torchyard: WARNING:")]
    assert len(warnings) == 1, log
    assert "this image (v2.6-cu124, CUDA 12.4) will not run on this host's GPU" in warnings[0]
    assert "sm_120" in warnings[0]
    assert log.splitlines()[-1] == "started"  # the warning came first, then the command


@pytest.mark.parametrize("recording", [None, "no-gpu", "h100-driver-535"])
def test_silent_without_a_gpu_and_where_the_image_runs(client, built, recording):
    code, log = start(client, built.image, recording)
    assert (code, log) == (0, "started\n")


def test_the_check_runs_as_the_user_not_as_root(client, built):
    """A recording only root may read: root would read it and warn; the user cannot, and says the check could not run."""
    code, log = start(client, built.image, "rtx5090-driver-570", mode=0o600)
    assert code == 0 and "WARNING" not in log
    assert "torchyard: the GPU start check could not run (RecordingError: " in log and "(Permission denied)" in log, log
    assert log.splitlines()[-1] == "started"


def test_with_user_the_check_runs_too(client, built):
    code, log = start(client, built.image, "rtx5090-driver-570", user="1234:1234")
    assert code == 0 and log.count("torchyard: WARNING:") == 1 and log.splitlines()[-1] == "started", log
