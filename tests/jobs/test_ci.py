"""`make ci`: the committed workflow is a fresh one, passes GitHub's workflow schema (check-jsonschema's vendored
copy, offline), holds one job per buildable tag, and its shell steps pass shellcheck."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from builder.jobs import ci
from builder.wheels import lockfile
from tests.conftest import ROOT

SHELLCHECK = shutil.which("shellcheck")


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(ci.WORKFLOW.read_text())


def test_the_committed_workflow_is_a_fresh_one(shipped):
    assert ci.WORKFLOW.read_text() == ci.text(shipped), "run `make ci` and commit .github/workflows/images.yml"
    done = subprocess.run([sys.executable, "-m", "builder", "ci", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_workflow_passes_githubs_schema():
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(ci.WORKFLOW)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_can_fail(tmp_path, workflow):
    broken = dict(workflow, jobs={"build": {**workflow["jobs"]["build"], "runs_on": "ubuntu-24.04"}})
    del broken["jobs"]["build"]["runs-on"]
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True)
    assert done.returncode == 1


def test_one_job_per_buildable_tag(shipped, workflow):
    expected = [s.tag for s in shipped.specs.values() if lockfile.problem(s) is None]
    assert workflow["jobs"]["build"]["strategy"]["matrix"]["tag"] == expected
    assert workflow["jobs"]["gpu-smoke"]["strategy"]["matrix"]["tag"] == expected
    assert len(expected) >= 1 and shipped.default in expected
    unlocked = [t for t in shipped.specs if t not in expected]
    assert all(t in ci.WORKFLOW.read_text().split("name: images")[0] for t in unlocked)  # named in the header


def test_a_tag_without_a_current_lock_is_left_out(shipped, tmp_path):
    images = tmp_path / "images"
    for tag in ("v2.6-cu124", "v2.7-cu126"):
        shutil.copytree(ROOT / "images" / tag, images / tag)
    (images / "v2.7-cu126" / "requirements.txt").write_text("torch==2.7.1\neinops==0.8.1\n")  # the lock is stale now
    assert ci.buildable(shipped, images) == ["v2.6-cu124"]


def test_each_tag_builds_smokes_pushes_then_smokes_on_a_gpu_runner(workflow):
    build, gpu = workflow["jobs"]["build"], workflow["jobs"]["gpu-smoke"]
    runs = [step.get("run", "") for step in build["steps"]]
    order = [next(i for i, r in enumerate(runs) if f"make {target} " in r) for target in ("build", "smoke", "push")]
    assert order == sorted(order)
    assert gpu["needs"] == "build" and "self-hosted" in gpu["runs-on"] and "gpu" in gpu["runs-on"]
    gpu_runs = "\n".join(step.get("run", "") for step in gpu["steps"])
    assert gpu_runs.index("make pull ") < gpu_runs.index("make smoke ") and "REQUIRE_GPU=1" in gpu_runs
    assert all("@" in s["uses"] and re.search(r"@[0-9a-f]{40}$", s["uses"])
               for job in (build, gpu) for s in job["steps"] if "uses" in s)  # actions pinned by commit


def test_no_secret_is_pasted_into_a_script(workflow):
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), step  # expressions reach scripts as environment, never as text


@pytest.mark.skipif(SHELLCHECK is None and os.environ.get("CI") != "true", reason="shellcheck is not installed")
def test_every_step_script_passes_shellcheck(workflow, tmp_path):
    for job_name, job in workflow["jobs"].items():
        for number, step in enumerate(job["steps"]):
            if "run" not in step:
                continue
            path = tmp_path / f"{job_name}-{number}.sh"
            path.write_text("#!/bin/bash\nset -eo pipefail\n" + step["run"])  # GitHub's default shell for run
            done = subprocess.run([SHELLCHECK, "--severity=style", str(path)], capture_output=True, text=True)
            assert done.returncode == 0, done.stdout
