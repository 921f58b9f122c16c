"""`make matrix` without an engine: the estimates, the progress lines, and the refusals."""

import os
import subprocess
import sys

import pytest

from builder.matrix_run import progress, run
from builder.records import runs
from tests.conftest import ROOT


def test_estimates_come_from_this_tags_last_time_else_the_median_of_the_others(tmp_path):
    timings = progress.Timings(tmp_path)
    assert timings.estimate("build", "v2.6-cu124") is None
    timings.record("build", "v2.6-cu124", 240.04)
    timings.record("build", "v2.7-cu126", 300)
    timings.record("build", "v2.8-cu128", 900)
    again = progress.Timings(tmp_path)  # read back from reports/timings.json
    assert again.estimate("build", "v2.6-cu124") == 240.0
    assert again.estimate("build", "v2.15-cu132") == 300  # median of 240, 300, 900
    assert again.estimate("smoke", "v2.6-cu124") is None


@pytest.mark.parametrize("content", ["{not json", "[]", '{"build": 5}', '{"build": {"v2.6-cu124": "9"}}',
                                     "[" * 100_000 + "]" * 100_000])
def test_a_corrupt_timings_file_means_no_estimate_not_a_crash(tmp_path, content):
    (tmp_path / runs.TIMINGS).write_text(content)
    said = []
    timings = progress.Timings(tmp_path, said.append)
    assert timings.estimate("build", "v2.6-cu124") is None
    assert len(said) == 1 and f"{tmp_path.name}/{runs.TIMINGS} is broken" in said[0], said
    timings.record("build", "v2.6-cu124", 240)  # after a finished build: the record is written anew, no TypeError
    assert progress.Timings(tmp_path).estimate("build", "v2.6-cu124") == 240


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (61, "1m 01s"), (3725, "1h 02m"), (None, "?")])
def test_durations_read_as_people_say_them(seconds, text):
    assert progress.duration(seconds) == text


def test_a_check_line_names_its_figure_only_when_it_has_one():
    resnet = runs.Check(name="resnet50 amp", status="PASS", figures={"images_per_s": 90.2})
    cuda = runs.Check(name="cuda", status="SKIPPED", reason="no GPU: NVML cannot start")
    assert run.check_text(resnet) == "resnet50 amp PASS (90 images/s)"
    assert run.check_text(cuda) == "cuda SKIPPED"


def test_a_bad_tag_list_is_refused_before_the_engine_is_asked():
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    result = subprocess.run([sys.executable, "-m", "builder", "matrix", "--tag", "v2.6-cu124,nope"], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "'nope' is not a tag in matrix.yaml" in result.stderr
    assert "Docker" not in result.stderr


def test_an_estimate_says_where_it_comes_from(tmp_path):
    timings = progress.Timings(tmp_path)
    assert timings.said("build", "v2.6-cu124") == ""
    timings.record("build", "v2.6-cu124", 240)
    assert timings.said("build", "v2.6-cu124") == "; ~4m 00s last time"
    assert timings.said("build", "v2.15-cu132") == "; ~4m 00s as other tags took"
