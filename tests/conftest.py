import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from builder.matrix import compat
from builder.matrix.load import load
from builder.matrix.types import Matrix

ROOT = Path(__file__).resolve().parent.parent

# Generated tests (tests/test_properties.py): the same cases on every run and every machine (derandomize, no example
# database), so CI's result is the code's and not the draw's; each test sets its own max_examples. No deadline: a
# shared 2-core machine's timing is no property of the code.
settings.register_profile("torchyard", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "torchyard"))
# `make mutation` runs each mutant's tests in mutants/ (a copy of the checkout): there a surviving mutant would run
# the whole generated suite (a minute and a half) once each, hours in all, so each test draws a 30th of its cases.
UNDER_MUTATION = ROOT.name == "mutants"


def copy_checkout(where: Path) -> None:
    """Copy this checkout's files into where as a fresh clone has them: the tracked and the new, not the ignored."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():  # a deleted file git still tracks is not copied
            (where / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, where / rel)


def cases(n: int) -> int:
    """A generated test's max_examples: n, or a 30th of it (at least 10) under `make mutation`."""
    return max(10, n // 30) if UNDER_MUTATION else n


@pytest.fixture(scope="session")
def facts() -> compat.Facts:
    return compat.load()


@pytest.fixture(scope="session")
def shipped(facts) -> Matrix:
    """The matrix.yaml this repository ships."""
    return load(ROOT / "matrix.yaml", facts)


@pytest.fixture
def write_matrix(tmp_path):
    """Write a matrix.yaml into a temporary folder; returns its path."""

    def write(text: str) -> Path:
        path = tmp_path / "matrix.yaml"
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write
