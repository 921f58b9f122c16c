"""torchaudio, the optional matrix key: its facts (compat.yaml, from torchaudio's own wheels), its validation (a
wrong pairing, a torch without one and a Python without its wheels are refused, each saying what is right) and
`make list`."""

import dataclasses
import subprocess
import sys

import pytest

from builder.matrix.load import load
from builder.matrix.types import MatrixError
from tests.conftest import ROOT

WITH_TORCHAUDIO = ["2.4.1", "2.5.1", "2.6.0", "2.7.1", "2.8.0", "2.9.1", "2.10.0", "2.11.0"]


def refusal(path, facts) -> str:
    with pytest.raises(MatrixError) as refused:
        load(path, facts)
    assert len(refused.value.problems) == 1, refused.value.problems
    return str(refused.value.problems[0])


def test_each_torch_release_to_2_11_pairs_with_the_torchaudio_of_its_own_number_and_none_after(facts):
    assert {v: r.torchaudio for v, r in facts.releases.items()} == {
        **{v: v for v in WITH_TORCHAUDIO}, "2.12.1": None, "2.13.0": None, "2.14.1": None, "2.15.0": None}
    assert [r.version for r in facts.with_torchaudio()] == WITH_TORCHAUDIO


def test_torchaudio_2_5_1_has_no_python_3_13_wheel_and_that_is_said_when_it_is_asked_for(facts):
    release = dataclasses.replace(facts.releases["2.5.1"], torchvision_python=None)  # as if torchvision had one
    assert release.torchaudio_python == ("3.9", "3.10", "3.11", "3.12")
    assert release.missing_wheels("3.13") is None  # torch and torchvision have it
    assert release.missing_wheels("3.13", torchaudio=True) == (
        "torchaudio 2.5.1 (the one torch 2.5.1 pairs with) has no wheels for Python 3.13 (it has 3.9, 3.10, 3.11, "
        "3.12, torch has 3.9, 3.10, 3.11, 3.12, 3.13)")
    assert release.missing_wheels("3.12", torchaudio=True) is None


@pytest.mark.parametrize("given", ["2.6", "2.6.0"])
def test_the_key_takes_the_paired_release_or_a_prefix_of_it(write_matrix, facts, given):
    m = load(write_matrix(f"""
        default: v2.6-cu124
        images:
          v2.6-cu124: {{torch: "2.6.0", torchaudio: "{given}"}}
          v2.6-cu118: {{torch: "2.6.0"}}
          v2.11-cu130: {{torch: "2.11.0", torchaudio: "2.11.0"}}
    """), facts)
    assert m.specs["v2.6-cu124"].torchaudio == "2.6.0"
    assert m.specs["v2.6-cu118"].torchaudio is None  # optional: no key, no torchaudio
    assert m.specs["v2.11-cu130"].torchaudio == "2.11.0"


@pytest.mark.parametrize("given", ["2.7.1", "2.6.1", "2.6.0.1", "0.21.0"])
def test_a_wrong_pairing_is_refused_naming_the_right_one(write_matrix, facts, given):
    assert refusal(write_matrix(f"""
        default: v2.6-cu124
        images:
          v2.6-cu124:
            torch: "2.6.0"
            torchaudio: "{given}"
    """), facts).endswith(
        f"matrix.yaml:5: images.v2.6-cu124.torchaudio: torchaudio {given} does not match torch 2.6.0; torch 2.6.0 "
        'pairs with torchaudio 2.6.0: write torchaudio: "2.6.0"')


@pytest.mark.parametrize("tag, torch", [("v2.12-cu130", "2.12.1"), ("v2.15-cu132", "2.15.0")])
def test_a_torch_without_a_torchaudio_refuses_the_key_saying_why(write_matrix, facts, tag, torch):
    assert refusal(write_matrix(f"""
        default: {tag}
        images:
          {tag}: {{torch: "{torch}", torchaudio: "2.11.1"}}
    """), facts).endswith(
        f"matrix.yaml:3: images.{tag}.torchaudio: torch {torch} has no matching torchaudio: no torchaudio release goes "
        "with it (builder/matrix/compat.yaml; torchaudio's releases go with torch 2.4.1 to 2.11.0); remove the "
        "torchaudio key, or use a tag of one of those")


def test_a_base_whose_python_torchaudio_lacks_is_refused_at_the_key(write_matrix, facts):
    """torchaudio 2.5.1 has no cp313 wheel (nor has torchvision 0.20.1, which is refused first in the real facts): with
    torchvision's taken away, the refusal is torchaudio's, at its key, and the entry without it is valid."""
    facts = dataclasses.replace(facts, releases={
        **facts.releases, "2.5.1": dataclasses.replace(facts.releases["2.5.1"], torchvision_python=None)})
    message = refusal(write_matrix("""
        default: v2.5-cu124
        images:
          v2.5-cu124: {torch: "2.5.1", torchaudio: "2.5.1", base: trixie}
    """), facts)
    assert message.endswith("images.v2.5-cu124.torchaudio: torchaudio 2.5.1 (the one torch 2.5.1 pairs with) has no "
                            "wheels for Python 3.13 (it has 3.9, 3.10, 3.11, 3.12, torch has 3.9, 3.10, 3.11, 3.12, "
                            "3.13); remove the torchaudio key, or choose a base whose Python is among them")
    spec = load(write_matrix('default: v2.5-cu124\nimages:\n  v2.5-cu124: {torch: "2.5.1", base: trixie}\n'),
                facts).specs["v2.5-cu124"]
    assert (spec.python, spec.torchaudio) == ("3.13", None)


def _cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": "unix:///nonexistent/docker.sock"})


def test_the_cli_exits_2_on_a_wrong_pairing_and_renders_nothing(tmp_path):
    (tmp_path / "matrix.yaml").write_text('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", torchaudio: "2.7.1"}\n')
    for command in ("validate", "render"):
        done = _cli("--matrix", str(tmp_path / "matrix.yaml"), command)
        assert done.returncode == 2, done.stderr
        assert 'torch 2.6.0 pairs with torchaudio 2.6.0: write torchaudio: "2.6.0"' in done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["matrix.yaml"]


def test_make_list_shows_each_tags_torchaudio(shipped):
    out = _cli("list").stdout.splitlines()
    header = out[0].split()
    assert header[:5] == ["tag", "torch", "vision", "audio", "cuda"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows.keys() == shipped.specs.keys()
    for tag, spec in shipped.specs.items():
        assert rows[tag][3] == (spec.torchaudio or "-"), tag
    assert rows["v2.6-cu124"][3] == "2.6.0" and rows["v2.6-cu124"][-1] == "(default)"
