"""The bad-input table of tests/test_bad_input.py, run in this process: builder.cli.main(argv) with the case's
environment, instead of the CLI in a child process.

The child-process table proves the whole path (make, the interpreter, exit status, time and memory); this one proves
the same refusals by the same grammars (builder/matrix/, inputs.py, reference.py, network.py, the CLI's settings)
where `make mutation` can see them: mutmut's trampolines run only in the process that imports the mutants, so a
mutant of a grammar that the table would catch survives unless a test like this one calls it. The make cases come
here as the environment variable the Makefile hands the CLI (TAG= is TORCHYARD_TAG, options.SETTINGS says which).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder import cli, options
from tests.conftest import ROOT
from tests.test_bad_input import CASES, SECRET, Case, _fill, _snapshot, lay_out

MAKE_TO_ENVIRONMENT = {setting.make: setting.env for setting in options.SETTINGS}


def as_cli_case(case: Case) -> Case:
    """A make case as the CLI gets it: `make -s push REGISTRY=x` is `python -m builder push` with TORCHYARD_REGISTRY=x."""
    if not case.make:
        return case
    target, assignment = case.make
    name, value = assignment.split("=", 1)
    says = tuple(text for text in case.says if "] Error" not in text)  # make's own line about the recipe's status
    return Case(case.id, args=(target,), matrix=None, env={**case.env, MAKE_TO_ENVIRONMENT[name]: value}, says=says,
                marker=case.marker)


IN_PROCESS = [as_cli_case(c) for c in CASES]


def prepare(case: Case, tmp: Path, monkeypatch) -> list[str]:
    """The case's files, matrix and environment; returns its arguments."""
    args = lay_out(case, tmp)
    for name in [k for k in os.environ if k.startswith("TORCHYARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # a case that reached the engine exits 1
    monkeypatch.setenv("HOME", str(tmp))  # no ~/.ssh key, no ~/.config/pip of this machine's user
    for name, value in case.env.items():
        monkeypatch.setenv(name, _fill(value, tmp))
    monkeypatch.chdir(ROOT)
    return args


def run_in_process(args: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        status = cli.main(args)
    except SystemExit as e:  # argparse's refusal of an unknown command or option
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("case", IN_PROCESS, ids=[c.id for c in IN_PROCESS])
def test_bad_input_is_refused_in_process_with_exit_2_and_nothing_written(case, tmp_path, monkeypatch, capsys):
    args = prepare(case, tmp_path, monkeypatch)
    watched = [ROOT / "images", ROOT / "digests", ROOT / "reports", ROOT / "workspace", tmp_path]
    before = _snapshot(*watched)
    status, out, err = run_in_process(args, capsys)  # an exception here is the traceback
    report = f"exit {status}\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}"
    assert status == 2, report
    for text in case.says:
        assert text.replace("{tmp}", str(tmp_path)) in err, report
    assert sorted(set(before.items()) ^ set(_snapshot(*watched).items())) == [], report
    assert not (tmp_path / "pwned").exists()
    assert SECRET not in out + err, report
    assert len(err.splitlines()) < 60


def test_every_case_of_the_table_runs_here_too():
    assert [c.id for c in IN_PROCESS] == [c.id for c in CASES]
    assert all(not c.make for c in IN_PROCESS)
