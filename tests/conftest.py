import textwrap
from pathlib import Path

import pytest

from builder.matrix import compat, spec as matrix

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def facts() -> compat.Facts:
    return compat.load()


@pytest.fixture(scope="session")
def shipped(facts) -> matrix.Matrix:
    """The matrix.yaml this repository ships."""
    return matrix.load(ROOT / "matrix.yaml", facts)


@pytest.fixture
def write_matrix(tmp_path):
    """Write a matrix.yaml into a temporary folder; returns its path."""

    def write(text: str) -> Path:
        path = tmp_path / "matrix.yaml"
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write
