"""`make matrix` without an engine: which tags, in which order, the estimates, and the refusals."""

import os
import subprocess
import sys

import pytest

from builder import matrix_run, records
from builder.matrix.spec import MatrixError
from tests.conftest import ROOT


def test_tags_run_in_matrix_order_whatever_order_they_are_given(shipped):
    specs = matrix_run.select(shipped, "v2.15-cu132, v2.6-cu124,v2.6-cu124")
    assert [s.tag for s in specs] == ["v2.6-cu124", "v2.15-cu132"]


@pytest.mark.parametrize("value", [None, "", "all"])
def test_all_is_the_default(shipped, value):
    assert [s.tag for s in matrix_run.select(shipped, value)] == list(shipped.specs)


def test_every_unknown_tag_is_named_with_its_help(shipped):
    with pytest.raises(MatrixError) as e:
        matrix_run.select(shipped, "v2.6-cu121,v2.6-cu124,v9.9-cu999")
    text = str(e.value)
    assert "'v2.6-cu121' is not a tag" in text and "v2.5-cu121" in text
    assert "'v9.9-cu999' is not a tag" in text


def test_an_empty_list_is_refused(shipped):
    with pytest.raises(MatrixError, match="comma-separated list of tags"):
        matrix_run.select(shipped, ",")


def test_estimates_come_from_this_tags_last_time_else_the_median_of_the_others(tmp_path):
    timings = matrix_run.Timings(tmp_path)
    assert timings.estimate("build", "v2.6-cu124") is None
    timings.record("build", "v2.6-cu124", 240.04)
    timings.record("build", "v2.7-cu126", 300)
    timings.record("build", "v2.8-cu128", 900)
    again = matrix_run.Timings(tmp_path)  # read back from reports/timings.json
    assert again.estimate("build", "v2.6-cu124") == 240.0
    assert again.estimate("build", "v2.15-cu132") == 300  # median of 240, 300, 900
    assert again.estimate("smoke", "v2.6-cu124") is None


@pytest.mark.parametrize("content", ["{not json", "[]", '{"build": 5}', '{"build": {"v2.6-cu124": "9"}}',
                                     "[" * 100_000 + "]" * 100_000])
def test_a_corrupt_timings_file_means_no_estimate_not_a_crash(tmp_path, content):
    (tmp_path / records.TIMINGS).write_text(content)
    said = []
    timings = matrix_run.Timings(tmp_path, said.append)
    assert timings.estimate("build", "v2.6-cu124") is None
    assert len(said) == 1 and f"{tmp_path.name}/{records.TIMINGS} is broken" in said[0], said
    timings.record("build", "v2.6-cu124", 240)  # after a finished build: the record is written anew, no TypeError
    assert matrix_run.Timings(tmp_path).estimate("build", "v2.6-cu124") == 240


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (61, "1m 01s"), (3725, "1h 02m"), (None, "?")])
def test_durations_read_as_people_say_them(seconds, text):
    assert matrix_run.duration(seconds) == text


def test_a_check_line_names_its_figure_only_when_it_has_one():
    resnet = records.Check(name="resnet50 amp", status="PASS", figures={"images_per_s": 90.2})
    cuda = records.Check(name="cuda", status="SKIPPED", reason="no GPU: NVML cannot start")
    assert matrix_run.check_text(resnet) == "resnet50 amp PASS (90 images/s)"
    assert matrix_run.check_text(cuda) == "cuda SKIPPED"


def test_a_bad_tag_list_is_refused_before_the_engine_is_asked():
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    result = subprocess.run([sys.executable, "-m", "builder", "matrix", "--tag", "v2.6-cu124,nope"], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "'nope' is not a tag in matrix.yaml" in result.stderr
    assert "Docker" not in result.stderr


def test_an_estimate_says_where_it_comes_from(tmp_path):
    timings = matrix_run.Timings(tmp_path)
    assert timings.said("build", "v2.6-cu124") == ""
    timings.record("build", "v2.6-cu124", 240)
    assert timings.said("build", "v2.6-cu124") == "; ~4m 00s last time"
    assert timings.said("build", "v2.15-cu132") == "; ~4m 00s as other tags took"


@pytest.mark.parametrize("value", ["all,v2.6-cu124", "v2.6-cu124, all", "all,all", "all,nope"])
def test_all_mixed_with_tag_names_is_refused_not_read_as_all(shipped, value):
    with pytest.raises(MatrixError) as refused:
        matrix_run.select(shipped, value)
    (problem,) = refused.value.problems
    assert problem.where == "TAG"
    assert "mixes 'all' with tag names; give TAG=all alone" in problem.message
    assert [s.tag for s in matrix_run.select(shipped, "all,")] == list(shipped.specs)  # a stray comma names nothing more
