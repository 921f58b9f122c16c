"""Generated input (Hypothesis; strategies in tests/strategies.py, profile in tests/conftest.py): valid matrices that
must load, each broken in one place and refused with one problem that names the place; the make variables through
the CLI's settings; the entrypoint's variables through its own checks; and no generated password in any message.

Each refusal is the project's refusal type (MatrixError or InputError, exit 2; StartError in the image), never
another exception: Hypothesis reports any other as a failure with the smallest input that raises it. 11,600 cases
a run (the max_examples below), the same on every run (derandomized).
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import re
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder import cli, inputs, options, reference
from builder.host import workspace
from builder.inputs import InputError
from builder.jobs import cluster, multinode
from builder.matrix.load import load
from builder.matrix.types import MatrixError, Problem
from builder.matrix_run import plan
from tests import strategies as gen
from tests.conftest import cases
from tests.strategies import FACTS

# One folder per module for the generated files (a function-scoped tmp_path is made once per test, not per example).
WORK = Path(tempfile.mkdtemp(prefix="torchyard-properties-"))
ENTRYPOINT = workspace._entrypoint()


@pytest.fixture(scope="module", autouse=True)
def no_keys_of_this_user():
    """`make run`'s settings look for ~/.ssh/id_*.pub: HOME is an empty folder here."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(WORK))
        for name in [k for k in os.environ if k.startswith("TORCHYARD_")]:
            patch.delenv(name)
        yield


def write(text: str, name: str = "matrix.yaml") -> Path:
    path = WORK / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- matrix.yaml


@settings(max_examples=cases(500))
@given(gen.valid_matrices())
def test_a_generated_valid_matrix_loads_with_every_tag(doc):
    loaded = load(write(doc.text()), FACTS)
    assert list(loaded.specs) == list(doc.images)
    assert loaded.default == doc.default
    for tag, entry in doc.images.items():
        spec = loaded.specs[tag]
        assert spec.torch == FACTS.release(entry["torch"]).version
        assert spec.python == FACTS.debian_python[spec.base.suite]
        assert spec.devel == tag.endswith("-devel")
        assert spec.torchaudio == (FACTS.release(entry["torch"]).torchaudio if "torchaudio" in entry else None)


def the_one_problem(broken: gen.Broken, path: Path) -> Problem:
    with pytest.raises(MatrixError) as refused:
        load(path, FACTS)
    problems = refused.value.problems
    assert len(problems) == 1, "\n".join(map(str, problems))
    problem = problems[0]
    line = re.fullmatch(r"line (\d+)", broken.where)
    if line:
        assert problem.where.startswith(f"{path}:{line[1]}"), problem
    else:
        assert broken.where in problem.where, problem
    assert "\n" not in str(problem)
    if broken.secret:
        assert broken.secret not in str(problem)
    return problem


@settings(max_examples=cases(3000))
@given(gen.broken_matrices())
def test_a_matrix_broken_in_one_place_is_refused_with_one_problem_naming_it(broken):
    the_one_problem(broken, write(broken.text))


@settings(max_examples=cases(300))
@given(broken=gen.broken_matrices())
def test_the_cli_refuses_a_broken_matrix_with_exit_2_and_writes_nothing(broken):
    path = write(broken.text, "cli.yaml")
    before = sorted(WORK.iterdir())
    with contextlib.redirect_stdout(io.StringIO()) as stdout, contextlib.redirect_stderr(io.StringIO()) as stderr:
        status = cli.main(["--matrix", str(path), "validate", "--tag", "all"])
    out, err = stdout.getvalue(), stderr.getvalue()
    assert status == 2, err
    assert err.startswith("torchyard: refused: 1 problem; nothing was rendered or built.\n"), err
    assert out == "" and "Traceback" not in err
    assert sorted(WORK.iterdir()) == before
    if broken.secret:
        assert broken.secret not in err


# ---------------------------------------------------------------- TAG


def tag_values():
    tags = list(FACTS.releases)  # versions, not tags: near misses
    return st.one_of(st.text(max_size=40), st.lists(st.sampled_from(["all", "v2.6-cu124", "v2.6-cu121", "nope", "", " "]),
                                                    max_size=4).map(",".join), st.sampled_from(tags))


@settings(max_examples=cases(1000))
@given(tag_values())
def test_any_tag_value_selects_tags_or_is_refused_naming_tag(shipped, value):
    for select in (shipped.select, lambda v: plan.asked(shipped, v)):
        try:
            chosen = select(value)
        except MatrixError as e:
            assert [p.where for p in e.problems] and all(p.where == "TAG" for p in e.problems)
            assert all("\n" not in p.message for p in e.problems)
            continue
        assert chosen and all(s.tag in shipped.specs for s in chosen)
        names = [t.strip() for t in value.split(",") if t.strip()]
        assert not ("all" in names and len(names) > 1), "'all' with other names is refused"


# ---------------------------------------------------------------- make variables, through the CLI's settings


ARGUMENTS = {command: cli.parser().parse_args([command]) for command in cli.COMMANDS}  # argparse: once, not per case


def settle(command: str, environ: dict[str, str]):
    """options.settings for `make <command>` with the environment the Makefile would hand over."""
    return options.settings(ARGUMENTS[command], environ=environ)


def port_ok(value: str) -> bool:
    return bool(re.fullmatch(r"[0-9]{1,5}", value.strip(), re.ASCII)) and 0 < int(value.strip()) < 65536


def count_ok(upper: int):
    return lambda value: bool(re.fullmatch(r"[0-9]{1,9}", value.strip(), re.ASCII)) and 1 <= int(value.strip()) <= upper


def address_ok(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def kernel_takes(value: str) -> bool:
    whole = Path(value).absolute()
    return all(len(os.fsencode(p)) <= 255 for p in whole.parts) and len(os.fsencode(str(whole))) < 4096


def path_ok(value: str) -> bool | None:
    """Refused when `docker run -v` or the kernel would not take it; else taken unless something on the way is a file."""
    return None if inputs.PATH_RE.fullmatch(value) and kernel_takes(value) else False


def flag_ok(value: str) -> bool:
    return value.strip().lower() in ("", "0", "no", "false", "1", "yes", "true")


text = st.text(max_size=30)
numbers = st.one_of(st.integers(-10, 100_000).map(str), st.integers(0, 10**12).map(lambda n: f" {n}"),
                    st.sampled_from(["²", "１２", "0x10", "1e3", "+5", "٣"]))
paths = st.one_of(text, st.lists(st.text(string.ascii_letters + "._-", min_size=1, max_size=300), min_size=1, max_size=4)
                  .map(lambda parts: str(WORK / "/".join(parts))))

# (command, environment variable, the Makefile's name, values, oracle: must a correct grammar take it (True), refuse it
# (False), or may it do either (None: it depends on more than the value, e.g. on what is on the disk)?)
SETTINGS = [
    ("run", "TORCHYARD_JUPYTER_PORT", "JUPYTER_PORT", st.one_of(gen.ports.map(str), numbers, text), port_ok),
    ("run", "TORCHYARD_SSH_PORT", "SSH_PORT", st.one_of(gen.ports.map(str), numbers, text), port_ok),
    ("run", "TORCHYARD_BIND", "BIND", st.one_of(st.ip_addresses().map(str), text, st.just("localhost")), address_ok),
    ("run", "TORCHYARD_WORKSPACE", "WORKSPACE", paths, path_ok),
    ("size", "TORCHYARD_REPORTS", "REPORTS", paths, lambda v: None if v and kernel_takes(v) else False),
    ("size", "TORCHYARD_REPO", "REPO", st.one_of(gen.repositories, text), None),
    ("push", "TORCHYARD_REGISTRY", "REGISTRY", st.one_of(gen.registries(), text.filter(bool)), None),
    ("render", "TORCHYARD_PRUNE", "PRUNE", st.one_of(st.sampled_from(["1", "yes", "TRUE", " 0 ", ""]), text), flag_ok),
    ("k8s", "TORCHYARD_NODES", "NODES", st.one_of(st.integers(1, cluster.MAX_NODES).map(str), numbers, text),
     count_ok(cluster.MAX_NODES)),
    ("slurm", "TORCHYARD_GPUS_PER_NODE", "GPUS", st.one_of(st.integers(1, cluster.MAX_GPUS).map(str), numbers, text),
     count_ok(cluster.MAX_GPUS)),
    ("smoke", "TORCHYARD_NODES", "NODES", st.one_of(st.integers(1, multinode.MAX_LOCAL_NODES).map(str), numbers, text),
     count_ok(multinode.MAX_LOCAL_NODES)),
]


@st.composite
def one_setting(draw):
    command, variable, name, values, oracle = draw(st.sampled_from(SETTINGS))
    return command, variable, name, draw(values.filter(lambda v: "\x00" not in v)), oracle


@settings(max_examples=cases(3000))
@given(one_setting())
def test_a_generated_make_variable_is_taken_or_refused_naming_it(setting):
    command, variable, name, value, oracle = setting
    environ = {variable: value, "TORCHYARD_GPUS": "none"}
    if command in ("k8s", "slurm"):
        environ["TORCHYARD_REGISTRY"] = "registry.example.com/ml"
    try:
        checked = settle(command, environ)
    except InputError as e:
        assert name in str(e) and "\n" not in str(e), str(e)
        assert oracle is None or oracle(value) is not True, f"{name}={value!r} was refused: {e}"
        return
    assert oracle is None or oracle(value) is not False, f"{name}={value!r} was taken"
    if name in ("JUPYTER_PORT", "SSH_PORT"):
        assert getattr(checked, name.lower()) == int(value)
    if name == "REGISTRY":
        assert reference.registry(checked.registry) == checked.registry


@settings(max_examples=cases(300))
@given(gen.registries(), gen.repositories)
def test_a_generated_valid_registry_and_repository_are_taken(registry, repository):
    checked = settle("push", {"TORCHYARD_REGISTRY": registry, "TORCHYARD_REPO": repository})
    assert (checked.registry, checked.repo) == (registry, repository)


@settings(max_examples=cases(500))
@given(gen.users, gen.passwords, gen.registries(), st.sampled_from(["push", "pull"]))
def test_a_password_in_registry_is_refused_and_never_shown(user, password, registry, command):
    with pytest.raises(InputError) as refused:
        settle(command, {"TORCHYARD_REGISTRY": f"{user}:{password}@{registry}"})
    assert "REGISTRY holds credentials" in str(refused.value)
    assert password not in str(refused.value)


@settings(max_examples=cases(500))
@given(gen.users, gen.passwords, gen.hosts, st.sampled_from([":0x1", ":99999", ":-1", " /x", "\n", ":8080\t"]))
def test_a_password_in_a_refused_url_is_never_shown(user, password, host, flaw):
    with pytest.raises(InputError) as refused:
        inputs.url(f"https://{user}:{password}@{host}{flaw}/simple", "TORCHYARD_TORCH_INDEX")
    assert "TORCHYARD_TORCH_INDEX=" in str(refused.value)
    assert password not in str(refused.value)
    assert password not in inputs.shown(f"https://{user}:{password}@{host}/simple")


# ---------------------------------------------------------------- the entrypoint's variables


@st.composite
def entrypoint_environments(draw):
    env = {}
    optional = {
        "NB_UID": st.one_of(st.integers(-5, 2**32).map(str), numbers, text),
        "NB_GID": st.one_of(st.integers(1, 70_000).map(str), text),
        "JUPYTER_PORT": st.one_of(gen.ports.map(str), numbers, text),
        "JUPYTER_DISABLE_AUTH": st.one_of(st.sampled_from(["1", "true", "no", "", "maybe", "ON"]), text),
        "JUPYTER_ALLOWED_HOSTS": st.one_of(st.lists(st.one_of(gen.hosts, st.just("*"), st.ip_addresses().map(str), text),
                                                    max_size=3).map(",".join)),
        "JUPYTER_TOKEN": st.one_of(gen.passwords, st.just("  "), gen.passwords.map(lambda p: p + " x")),
        "JUPYTER_PASSWORD_HASH": st.one_of(gen.passwords, st.just("sha1:ab12:cd34")),
        "PUBLIC_KEY": st.one_of(st.lists(gen.public_keys, min_size=1, max_size=3).map("\n".join),
                                gen.broken_public_keys(), text),
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), max_size=4, unique=True)):
        env[name] = draw(optional[name].filter(lambda v: "\x00" not in v))
    return env


@settings(max_examples=cases(2000))
@given(entrypoint_environments())
def test_generated_entrypoint_variables_start_or_stop_with_one_line_and_no_secret(environ):
    try:
        checked = ENTRYPOINT.check_settings(environ)
    except ENTRYPOINT.StartError as e:
        message = str(e)
        assert "\n" not in message and message
        assert any(name in message for name in environ), message
        for secret in ("JUPYTER_TOKEN", "JUPYTER_PASSWORD_HASH"):
            if environ.get(secret, "").startswith(gen.SECRET_MARK):
                assert environ[secret] not in message
        return
    for name, got in (("NB_UID", checked.uid), ("NB_GID", checked.gid)):
        value = environ.get(name, "").strip()
        assert got == (int(value) if value else None)
        assert got is None or (re.fullmatch(r"[0-9]+", value, re.ASCII) and 0 < got < 2**31)
    if "JUPYTER_PORT" in environ and environ["JUPYTER_PORT"].strip():
        assert port_ok(environ["JUPYTER_PORT"])


@settings(max_examples=cases(500))
@given(st.one_of(st.lists(gen.public_keys, min_size=1, max_size=3).map("\n".join),
                 gen.broken_public_keys()))
def test_make_run_takes_a_key_file_exactly_when_the_entrypoint_takes_its_key(keys):
    path = write(keys + "\n", "id.pub")
    try:
        ENTRYPOINT.check_keys(keys, "PUBLIC_KEY")
        image_takes = True
    except ENTRYPOINT.StartError:
        image_takes = False
    try:
        settle("run", {"PUBLIC_KEY_FILE": str(path)})
        host_takes = True
    except InputError as e:
        assert "PUBLIC_KEY_FILE=" in str(e)
        host_takes = False
    assert host_takes == image_takes
