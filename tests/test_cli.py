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


def test_the_makefile_hands_over_each_setting_options_declares_and_no_other(tmp_path):
    """The Makefile's SETTINGS are the variables builder/options.py declares it passes on, and `make … NAME=value`
    reaches the CLI as that setting's environment variable, as given; REPORTS and DIGESTS are the environment's only."""
    from builder import options

    passed = [s for s in options.SETTINGS if s.makefile]
    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("SETTINGS :="))
    assert sorted(line.split(":=", 1)[1].split()) == sorted(s.make for s in passed)
    probe = tmp_path / "probe.mk"
    probe.write_text("probe:\n\t@env\n")  # a target beside the Makefile's: the environment its recipes get
    given = {s.make: f"value of {s.make} $$(x)" for s in options.SETTINGS}
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TORCHYARD_")}
    out = subprocess.run(["make", "-s", "-f", "Makefile", "-f", str(probe), "probe",
                          *(f"{name}={value}" for name, value in given.items())],
                         cwd=ROOT, capture_output=True, text=True, check=True, env=environment).stdout
    received = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    for setting in options.SETTINGS:
        assert received.get(setting.env) == (given[setting.make] if setting.makefile else None), setting.make
    for setting in passed:
        assert setting.make not in received  # make would expand a command-line value to export it under its name


def test_every_option_is_declared_for_commands_that_exist():
    from builder import cli, options

    named = {command for option in options.OPTIONS for command in option.commands or ()}
    named |= {command for variable in options.VARIABLES for command in variable.commands}
    assert named <= set(cli.COMMANDS)
    assert all(set(option.helps) <= set(option.commands) for option in options.OPTIONS if option.helps)


def test_the_settings_table_of_the_docs_names_the_commands_options_declares():
    """docs/commands.md says which commands read each variable; options.py is where that is decided."""
    import re

    from builder import cli, options

    declared = {o.make: set(o.commands) for o in options.SETTINGS if o.commands}
    declared |= {v.name: set(v.commands) for v in options.VARIABLES}
    checked = 0
    for row in (ROOT / "docs" / "commands.md").read_text().splitlines():
        cells = row.split(" | ")
        if not row.startswith("| `") or len(cells) < 3:
            continue
        said = {c.strip() for c in re.sub(r"\([^)]*\)", "", cells[1]).replace(" and ", ",").split(",")}
        if not said <= set(cli.COMMANDS):  # "every command", "every command that takes a tag"
            continue
        for name in re.findall(r"`([A-Z_]+)`", cells[0]):
            assert declared[name] == said, name
            checked += 1
    assert checked >= 12
