"""smoke_tests.nvml: the one NVML reader, live (no driver on this machine) and replayed from recordings."""

import json
from pathlib import Path

import pytest

from smoke_tests import nvml

RECORDINGS = Path(__file__).parent / "data" / "nvml"


@pytest.mark.parametrize("number, version", [(12020, "12.2"), (12080, "12.8"), (13000, "13.0"), (11080, "11.8")])
def test_cuda_of_driver(number, version):
    assert nvml.cuda_of_driver(number) == version


def test_a_recording_replays_as_the_answer_it_records():
    answer = nvml.read({nvml.RECORD_VARIABLE: str(RECORDINGS / "rtx5090-driver-570.json")})
    assert (answer.driver, answer.cuda, answer.problem) == ("570.133.07", "12.8", None)
    assert [(g.name, g.capability, g.sm) for g in answer.gpus] == [("NVIDIA GeForce RTX 5090", (12, 0), "sm_120")]
    assert answer.source.endswith("rtx5090-driver-570.json")


def test_record_and_replay_round_trip(tmp_path):
    original = nvml.Nvml("535.129.03", "12.2", (nvml.Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0), 85520809984),), None)
    path = tmp_path / "answer.json"
    path.write_text(json.dumps(nvml.record(original)))
    assert nvml.replay(path) == nvml.Nvml(*[getattr(original, f) for f in ("driver", "cuda", "gpus", "problem")],
                                          source=str(path))


def test_every_recording_parses():
    for path in RECORDINGS.glob("*.json"):
        answer = nvml.replay(path)
        assert (answer.problem is None) == bool(answer.gpus), path.name


def test_the_live_reader_on_this_machine_says_why_it_cannot_answer():
    """No NVIDIA driver where the tests run: the live read says so rather than inventing a GPU."""
    answer = nvml.read({})
    if answer.problem is None:
        pytest.skip(f"this machine has an NVIDIA driver ({answer.driver}); the no-driver path is not observable here")
    assert answer.gpus == () and answer.driver is None
    assert "NVML" in answer.problem or "nvidia-ml-py" in answer.problem
