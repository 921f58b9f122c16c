"""Locks: uv's resolution for the image's platform and Python, isolated from this machine; the wheel pip would
choose; staleness; the committed locks."""

import dataclasses
import re

import pytest

from builder import layout
from builder.image import render
from builder.inputs import InputError
from builder.matrix.load import load
from builder.wheels import lock, lockfile, network
from tests.conftest import ROOT
from tests import loopback
from tests.loopback import serving

SHA = "a" * 64


def report(*packages):
    """What `uv pip compile --format pylock.toml` writes, for the given (name, version, sha256)."""
    return {"packages": [{"name": name, "version": version,
                          "wheels": [{"name": f"{name}-{version}-py3-none-any.whl", "size": 1,
                                      "url": f"https://files.example/{name}-{version}-py3-none-any.whl",
                                      "hashes": {"sha256": sha}}]}
                         for name, version, sha in packages]}


@pytest.fixture
def spec(shipped):
    return shipped.specs["v2.6-cu124"]


def test_a_lock_lists_every_package_sorted_with_its_hash_and_artifact(spec):
    made = lock.from_pylock(spec, report(("torch", "2.6.0", SHA), ("Jinja2", "3.1.6", "b" * 64)), "c" * 64, [lock.PYPI_SIMPLE])
    text = made.text()
    assert "# input: requirements.txt sha256=" + "c" * 64 in text
    assert text.index("jinja2==3.1.6 --hash=sha256:" + "b" * 64) < text.index("torch==2.6.0 --hash=sha256:" + SHA)
    assert "# https://files.example/torch-2.6.0-py3-none-any.whl size=1\ntorch==2.6.0" in text
    assert "Debian bookworm (glibc 2.36)" in text and "CPython 3.11" in text


def test_an_artifact_without_sha256_is_refused(spec):
    bad = report(("torch", "2.6.0", SHA))
    bad["packages"][0]["wheels"][0]["hashes"] = {"md5": "x"}
    with pytest.raises(lockfile.LockError, match="no sha256 or URL for torch 2.6.0"):
        lock.from_pylock(spec, bad, SHA, [lock.PYPI_SIMPLE])


def test_uv_sees_only_the_build_index_and_the_image_platform(spec, tmp_path):
    command = lock.uv_command(spec, tmp_path / "r.txt", tmp_path / "out.toml", tmp_path / "uv.toml",
                              network.NetworkSettings(), tmp_path / "cache")
    assert "--no-config" in command and "--no-python-downloads" in command
    assert command[command.index("--only-binary") + 1] == ":all:"
    assert command[command.index("--config-file") + 1] == str(tmp_path / "uv.toml")  # the indexes: that file's only
    assert lock.uv_indexes(lock.indexes(spec, network.NetworkSettings()), network.NetworkSettings()) == (
        '[[index]]\nurl = "https://pypi.org/simple"\ndefault = true\n')
    assert not {"--index", "--default-index", "--index-url", "--extra-index-url"} & set(command)
    assert "--find-links" not in " ".join(command)
    assert command[command.index("--python-version") + 1] == "3.11"  # markers are the image's Python's
    assert command[command.index("--python-platform") + 1] == "x86_64-manylinux_2_36"  # bookworm's glibc
    env = lock.clean_environment({"PIP_FIND_LINKS": "/opt/wheels", "PIP_CONSTRAINT": "/c.txt", "UV_INDEX_URL": "x",
                                  "UV_CONSTRAINT": "/c.txt", "SSL_CERT_FILE": "/mine.crt", "NETRC": "/n", "HOME": "/root"},
                                 tmp_path / "ca.crt")
    assert env == {"HOME": "/root", "SSL_CERT_FILE": str(tmp_path / "ca.crt")}
    assert lock.clean_environment({"REQUESTS_CA_BUNDLE": "/x", "HOME": "/root"}, None) == {"HOME": "/root"}


def test_a_forwarded_mirror_is_what_the_lock_resolves_against(spec, shipped):
    mirror = network.NetworkSettings(pip={"index-url": ["https://mirror.example/simple"],
                                          "extra-index-url": ["https://more.example/simple"]})
    # In the order uv searches them: the extra index before the default one.
    assert lock.indexes(spec, mirror) == ["https://more.example/simple", "https://mirror.example/simple"]
    # An index variant: the PyTorch wheel index first (torch and what it mirrors come from it alone), then the
    # configured ones for what it does not hold (nvidia-ml-py, extra_packages).
    assert lock.indexes(shipped.specs["v2.6-cu118"], mirror) == [
        f"{network.TORCH_INDEX}/cu118", "https://more.example/simple", "https://mirror.example/simple"]


def test_missing_and_stale_locks_say_what_to_run(spec, shipped, tmp_path):
    render.write(spec, tmp_path)
    assert "is missing" in lockfile.problem(spec, tmp_path) and "make lock TAG=v2.6-cu124" in lockfile.problem(spec, tmp_path)
    requirements = (tmp_path / spec.tag / "requirements.txt").read_text()
    made = lock.from_pylock(spec, report(("torch", "2.6.0", SHA)), lockfile.sha256_text(requirements), [lock.PYPI_SIMPLE])
    assert lockfile.write(made, tmp_path) is True and lockfile.write(made, tmp_path) is False
    assert "requirements-workspace.lock is missing" in lockfile.problem(spec, tmp_path)
    workspace = (tmp_path / spec.tag / "requirements-workspace.txt").read_text()
    second = lock.from_pylock(spec, report(("jupyterlab", "4.6.6", SHA)), lockfile.sha256_text(workspace + made.text()),
                              [lock.PYPI_SIMPLE])
    lockfile.write(dataclasses.replace(second, file=layout.WORKSPACE_LOCK_FILE), tmp_path)
    assert lockfile.problem(spec, tmp_path) is None
    lockfile.write(lock.from_pylock(spec, report(("torch", "2.6.1", SHA)), lockfile.sha256_text(requirements),
                                [lock.PYPI_SIMPLE]), tmp_path)  # torch's lock changed: the workspace's is stale
    assert "requirements-workspace.lock is stale" in lockfile.problem(spec, tmp_path)
    lockfile.write(made, tmp_path)
    (tmp_path / spec.tag / "requirements.txt").write_text(requirements + "einops==0.8.1\n")
    assert "is stale" in lockfile.problem(spec, tmp_path)
    variant = shipped.specs["v2.6-cu118"]
    render.write(variant, tmp_path)
    assert "download.pytorch.org" in lockfile.problem(variant, tmp_path)


def test_render_leaves_the_lock_alone(spec, tmp_path):
    render.write(spec, tmp_path)
    (tmp_path / spec.tag / layout.LOCK_FILE).write_text("# a lock\n")
    (tmp_path / spec.tag / "Dockerfile").write_text("FROM scratch\n")
    assert render.diff(spec, tmp_path) == [f"{spec.tag}/Dockerfile"]
    assert render.write(spec, tmp_path) is True
    assert (tmp_path / spec.tag / layout.LOCK_FILE).read_text() == "# a lock\n"


def test_every_pypi_tag_has_a_current_lock_and_index_variants_say_why_not(shipped):
    for spec in shipped.specs.values():
        problem = lockfile.problem(spec)
        if spec.index == "pypi":
            assert problem is None, problem
            locked = lockfile.packages(ROOT / "images" / spec.tag / layout.LOCK_FILE)
            assert locked["torch"] == spec.torch and locked["torchvision"] == spec.torchvision
        else:
            assert "is missing" in problem and "download.pytorch.org" in problem


def test_a_real_resolution_ignores_the_machines_pip_and_uv_settings(spec, tmp_path, monkeypatch):
    """uv against the real index; constraints, a local wheel folder and a uv.toml of this machine (as on a machine
    with pip and uv settings of its own) must not reach the lock."""
    render.write(spec, tmp_path)
    (tmp_path / spec.tag / "requirements.txt").write_text("nvidia-ml-py==13.615.71\nfilelock\n")
    (tmp_path / spec.tag / "requirements-workspace.txt").write_text("filelock\nsix\n")
    constraint = tmp_path / "constraints.txt"
    constraint.write_text("filelock<3\n")
    settings = network.host_settings()
    config = tmp_path / "config"
    (config / "uv").mkdir(parents=True)
    (config / "uv" / "uv.toml").write_text('constraint-dependencies = ["filelock<3"]\n')
    monkeypatch.setenv("TORCHYARD_CACHE", str(tmp_path / "cache"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PIP_CONSTRAINT", str(constraint))
        env.setenv("PIP_FIND_LINKS", str(tmp_path))
        env.setenv("UV_CONSTRAINT", str(constraint))
        env.setenv("XDG_CONFIG_HOME", str(config))
        made, workspace = lock.resolve(spec, settings, tmp_path)
    versions = {p.name: p.version for p in made.packages}
    assert versions["nvidia-ml-py"] == "13.615.71" and int(versions["filelock"].split(".")[0]) >= 3
    assert all(p.url.startswith("https://") and len(p.sha256) == 64 for p in made.packages + workspace.packages)
    # The workspace step holds only what torch's step does not: filelock is already there.
    assert [p.name for p in workspace.packages] == ["six"] and workspace.file == "requirements-workspace.lock"
    # Freshly made, both locks are current: the build takes them (the workspace lock's input covers torch's lock).
    assert all(lockfile.write(made_lock, tmp_path) for made_lock in (made, workspace))
    assert lockfile.problem(spec, tmp_path) is None


def test_an_unreachable_index_is_said_fast(shipped, tmp_path):
    variant = shipped.specs["v2.6-cu118"]
    settings = network.NetworkSettings(torch_index="https://torch-index.invalid/whl")
    said = []
    assert lock.lock_all([variant], settings, say=said.append, images=tmp_path) == ["v2.6-cu118"]
    assert "https://torch-index.invalid/whl/cu118 cannot be used" in said[0]
    assert not (tmp_path / "v2.6-cu118").exists() or not (tmp_path / "v2.6-cu118" / layout.LOCK_FILE).exists()



def test_the_wheel_tags_are_pips_every_manylinux_the_bases_glibc_takes_newest_first(spec, facts, tmp_path):
    bookworm = [str(t) for t in lock.supported_tags(spec)]
    platforms = [t.split("-", 2)[2] for t in bookworm if t.startswith("cp311-cp311-")]
    assert platforms[:2] == ["manylinux_2_36_x86_64", "manylinux_2_35_x86_64"] and platforms[-1] == "linux_x86_64"
    assert platforms.index("manylinux2014_x86_64") == platforms.index("manylinux_2_17_x86_64") + 1  # PEP 600's alias
    assert "cp311-abi3-manylinux_2_17_x86_64" in bookworm and "py3-none-any" in bookworm and "cp312-cp312-linux_x86_64" not in bookworm
    path = tmp_path / "matrix.yaml"
    path.write_text('default: v2.15-cu132\nimages:\n  v2.15-cu132: {torch: "2.15.0", base: trixie}\n')
    trixie = [str(t) for t in lock.supported_tags(load(path, facts).specs["v2.15-cu132"])]
    assert trixie[0] == "cp313-cp313-manylinux_2_41_x86_64"  # trixie: Python 3.13, glibc 2.41
    # the pure and interpreter-only wheels too are the image's Python's and platform's, not this machine's
    assert {"py313-none-manylinux_2_41_x86_64", "cp313-none-any", "py3-none-any"} <= set(trixie)


def test_of_every_wheel_uv_lists_the_lock_keeps_the_one_pip_would_install(spec):
    def wheel(name):
        return {"name": name, "url": f"https://files.example/{name}", "size": 1, "hashes": {"sha256": SHA}}

    wheels = [wheel("pkg-1.0-cp311-cp311-manylinux2014_x86_64.whl"), wheel("pkg-1.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
              wheel("pkg-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"), wheel("pkg-1.0-cp311-cp311-manylinux_2_39_x86_64.whl"),
              wheel("pkg-1.0-py3-none-any.whl"), wheel("not-a-wheel.tar.gz")]
    assert lock.choose_wheel(wheels, spec)["name"] == "pkg-1.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert lock.choose_wheel(wheels[-2:], spec)["name"] == "pkg-1.0-py3-none-any.whl"
    assert lock.choose_wheel([wheels[2], wheels[3]], spec) is None  # another Python, a newer glibc than bookworm's
    data = {"packages": [{"name": "Pkg", "version": "1.0", "wheels": [wheels[2], wheels[3]]}]}
    with pytest.raises(lockfile.LockError, match="no wheel of pkg 1.0 fits CPython 3.11, linux/amd64, Debian bookworm"):
        lock.from_pylock(spec, data, SHA, [lock.PYPI_SIMPLE])


def test_markers_are_the_images_python_not_this_machines(shipped):
    """v2.6-cu124-devel runs Python 3.13: torch's `setuptools; python_version >= "3.12"` is in its lock, with no pin
    of ours, and the bookworm tags (3.11) have none."""
    devel = lockfile.packages(ROOT / "images" / "v2.6-cu124-devel" / layout.LOCK_FILE)
    assert "setuptools" in devel and "setuptools" not in (ROOT / "images" / "v2.6-cu124-devel" / "requirements.txt").read_text()
    assert "setuptools" not in lockfile.packages(ROOT / "images" / "v2.6-cu124" / layout.LOCK_FILE)


def test_uvs_command_is_exactly_the_images_platform_and_the_given_indexes(spec, shipped, tmp_path):
    settings = network.NetworkSettings(pip={"trusted-host": ["mirror.example"]})
    command = lock.uv_command(spec, tmp_path / "r.txt", tmp_path / "out.toml", tmp_path / "uv.toml", settings,
                              tmp_path / "cache", tmp_path / "c.txt")
    assert command == [
        lock.uv_binary(), "pip", "compile", "--quiet", "--no-progress", "--color", "never", "--no-config",
        "--config-file", str(tmp_path / "uv.toml"), "--no-python-downloads", "--no-header", "--format", "pylock.toml",
        "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_36", "--only-binary", ":all:",
        "--cache-dir", str(tmp_path / "cache"), "--index-strategy", "first-index",
        "--allow-insecure-host", "mirror.example", "--constraints", str(tmp_path / "c.txt"),
        "--output-file", str(tmp_path / "out.toml"), str(tmp_path / "r.txt")]
    devel = lock.uv_command(shipped.specs["v2.6-cu124-devel"], tmp_path / "r.txt", tmp_path / "out.toml",
                            tmp_path / "uv.toml", network.NetworkSettings(), tmp_path / "cache")
    assert "--allow-insecure-host" not in devel and "--constraints" not in devel
    # trixie's glibc is 2.41; uv names platforms up to manylinux_2_40
    assert devel[devel.index("--python-version") + 1:devel.index("--python-platform") + 2] == [
        "3.13", "--python-platform", "x86_64-manylinux_2_40"]


def test_a_lock_is_exactly_its_header_then_each_artifact_and_pin(spec):
    made = lock.from_pylock(spec, report(("Torch", "2.6.0", SHA), ("nvidia_ml.py", "13.615.71", "b" * 64)), "c" * 64,
                            [lock.PYPI_SIMPLE, "https://extra.example/simple"])
    assert made.text() == (
        "# Generated by `make lock TAG=v2.6-cu124` from requirements.txt: do not edit.\n"
        f"# input: requirements.txt sha256={'c' * 64}\n"
        "# resolved against: https://pypi.org/simple https://extra.example/simple\n"
        "# for: CPython 3.11, linux/amd64, Debian bookworm (glibc 2.36), wheels only\n"
        "# install: pip install --require-hashes --no-deps --only-binary=:all: -r requirements.lock\n"
        "# https://files.example/nvidia_ml.py-13.615.71-py3-none-any.whl size=1\n"
        f"nvidia-ml-py==13.615.71 --hash=sha256:{'b' * 64}\n"
        "# https://files.example/Torch-2.6.0-py3-none-any.whl size=1\n"
        f"torch==2.6.0 --hash=sha256:{SHA}\n")
    assert [p.filename for p in made.packages] == ["nvidia_ml.py-13.615.71-py3-none-any.whl", "Torch-2.6.0-py3-none-any.whl"]


def test_uvs_complaint_keeps_its_last_twelve_lines_and_names_an_unreachable_torch_index(spec, shipped):
    stderr = "\n".join(f"error: line {i}" for i in range(15)) + "\n\n"
    assert lock._complaint(stderr, spec) == "\n".join(f"    error: line {i}" for i in range(3, 15))
    variant = shipped.specs["v2.6-cu118"]
    for words in ("dns error: failed to lookup address information", "Connection refused (os error 111)",
                  "error sending request for url", "Because torch was not found in the package registry"):
        assert lock._complaint(f"error: {words}", variant) == (
            f"    error: {words}\n  v2.6-cu118 takes torch from the PyTorch wheel index (cu118), which this machine "
            "cannot reach; lock it where download.pytorch.org (or a mirror named by TORCHYARD_TORCH_INDEX) answers")
    assert lock._complaint("error: torch==9.9 was not found in the package registry", spec) == (
        "    error: torch==9.9 was not found in the package registry")  # PyPI answered: no index to blame
    assert lock._complaint("error: No solution found", variant) == "    error: No solution found"


def test_an_index_that_answers_is_reachable_whatever_it_answers():
    """A real HTTP server on loopback: one HEAD of the index's root (no body to wait for); any answer, even 404,
    means the index is there; a closed port is not, and says why."""

    asked = []

    def head(handler):
        asked.append(("HEAD", handler.path))
        handler.send_response(200 if handler.path == "/simple/" else 404)
        handler.end_headers()

    def get(handler):
        asked.append(("GET", handler.path))
        handler.send_response(200)
        handler.end_headers()

    with serving(do_HEAD=head, do_GET=get) as url:
        assert lock.unreachable(f"{url}/simple", network.NetworkSettings()) is None
        assert lock.unreachable(f"{url}/nothing-here//", network.NetworkSettings()) is None
    assert asked == [("HEAD", "/simple/"), ("HEAD", "/nothing-here/")]
    closed = loopback.free_port()  # nothing listens there
    assert lock.unreachable(f"http://127.0.0.1:{closed}/simple", network.NetworkSettings()) == (
        "[Errno 111] Connection refused")


def test_the_configured_indexes_are_searched_extras_first_and_the_first_index_url_last():
    settings = network.NetworkSettings(pip={"index-url": ["https://a.example/simple", "https://ignored.example/simple"],
                                            "extra-index-url": ["https://b.example/simple", "https://c.example/simple"]})
    assert lock._configured_indexes(settings) == [
        "https://b.example/simple", "https://c.example/simple", "https://a.example/simple"]


def test_uvs_indexes_are_in_search_order_the_last_the_default_and_the_torch_indexs_403s_ignored():
    """The PyTorch wheel index answers 403 for a project it lacks; uv would stop there (it exempts only
    download.pytorch.org, by name): its 403s are ignored, wherever TORCHYARD_TORCH_INDEX puts it, and no other's."""
    settings = network.NetworkSettings(torch_index="https://u:pw@Mirror.example/whl")
    assert lock.uv_indexes(["https://mirror.example/whl/cu126", 'https://b.example/"q"\\/simple',
                            "https://mirror.example/whlx/simple"], settings) == (
        '[[index]]\nurl = "https://mirror.example/whl/cu126"\nignore-error-codes = [403]\n'
        '[[index]]\nurl = "https://b.example/\\"q\\"\\\\/simple"\n'
        '[[index]]\nurl = "https://mirror.example/whlx/simple"\ndefault = true\n')


def test_the_workspace_locks_header_names_its_inputs(spec):
    made = dataclasses.replace(lock.from_pylock(spec, report(("six", "1.17.0", SHA)), "d" * 64, [lock.PYPI_SIMPLE]),
                                    source="requirements-workspace.txt + requirements.lock", file=layout.WORKSPACE_LOCK_FILE)
    assert made.text().splitlines()[:2] == [
        "# Generated by `make lock TAG=v2.6-cu124` from requirements-workspace.txt: do not edit.",
        f"# input: requirements-workspace.txt + requirements.lock sha256={'d' * 64}"]


def pylock_refusal(spec, name: str, version: str, **wheel) -> str:
    """from_pylock's refusal of a one-package report whose wheel has these fields set (None: left out)."""
    made = report((name, version, SHA))
    listed = made["packages"][0]["wheels"][0]
    for key, value in wheel.items():
        if value is None:
            del listed[key]
        else:
            listed[key] = value
    with pytest.raises(lockfile.LockError) as refused:
        lock.from_pylock(spec, made, SHA, [lock.PYPI_SIMPLE])
    return str(refused.value)


def test_an_artifact_without_any_hash_or_url_is_refused_whole(spec):
    assert pylock_refusal(spec, "torch", "2.6.0", hashes=None) == (
        "v2.6-cu124: the index gave no sha256 or URL for torch 2.6.0 "
        "(https://files.example/torch-2.6.0-py3-none-any.whl); a lock needs both for every artifact")
    assert re.search(r"no sha256 or URL for torch 2.6.0 \(torch-2.6.0-py3-none-any.whl\)",
                     pylock_refusal(spec, "torch", "2.6.0", url=None))


def test_an_index_variants_missing_lock_says_where_it_can_be_made(shipped, tmp_path):
    variant = shipped.specs["v2.6-cu118"]
    render.write(variant, tmp_path)
    assert lockfile.problem(variant, tmp_path) == (
        f"{tmp_path}/v2.6-cu118/requirements.lock is missing: the build installs only what a lock names, with hashes; "
        "run `make lock TAG=v2.6-cu118` where the PyTorch wheel index for cu118 answers (download.pytorch.org, or a "
        "mirror named by TORCHYARD_TORCH_INDEX)")
    shown = lockfile.problem(variant, tmp_path, as_repository=True)  # what the report and the doctor show
    assert shown.startswith("images/v2.6-cu118/requirements.lock is missing: ") and str(tmp_path) not in shown


def test_an_index_that_never_answers_is_unreachable_after_the_timeout():
    import socket

    with socket.socket() as silent:  # listens, so the connection opens, and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        assert lock.unreachable(f"http://127.0.0.1:{port}/simple", network.NetworkSettings(), timeout=0.5) == "timed out"


def test_index_credentials_go_to_a_netrc_only_the_user_can_read(tmp_path):
    env = lock._netrc(["https://alice:s3cret@mirror.example:8443/simple", "https://pypi.org/simple"], tmp_path)
    netrc = tmp_path / "netrc"
    assert env == {"NETRC": str(netrc)} and netrc.stat().st_mode & 0o777 == 0o600
    assert netrc.read_text() == "machine mirror.example login alice password s3cret\n"  # a netrc names hosts, not ports
    assert lock._netrc(["https://pypi.org/simple"], tmp_path / "none") == {}
    for bad in ("al%20ice:pw", "alice:p%23w", "alice:p%22w", "alice:p%27w"):  # percent-decoded, as uv would
        with pytest.raises(lockfile.LockError, match="mirror.example hold a space, quote or '#'"):
            lock._netrc([f"https://{bad}@mirror.example/simple"], tmp_path)


def test_every_ca_netrc_and_environment_variable_of_the_machine_is_dropped(tmp_path):
    machine = {name: "/x" for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "VIRTUAL_ENV",
                                       "CONDA_PREFIX", "NETRC", "UV_CACHE_DIR", "PIP_INDEX_URL")}
    assert lock.clean_environment({**machine, "PATH": "/usr/bin"}, None) == {"PATH": "/usr/bin"}


def test_the_platforms_are_every_manylinux_down_to_2_5_with_pep_600s_aliases_then_linux(spec):
    platforms = [str(t).split("-", 2)[2] for t in lock.supported_tags(spec) if str(t).startswith("cp311-cp311-")]
    expected = []
    for minor in range(36, 4, -1):
        expected.append(f"manylinux_2_{minor}_x86_64")
        expected += {17: ["manylinux2014_x86_64"], 12: ["manylinux2010_x86_64"], 5: ["manylinux1_x86_64"]}.get(minor, [])
    assert platforms == expected + ["linux_x86_64"]


def test_a_wheel_named_only_by_its_url_counts_and_the_first_of_equals_is_kept(spec):
    by_url = {"url": "https://files.example/a/b/pkg-1.0-py3-none-any.whl", "size": 1, "hashes": {"sha256": SHA}}
    same = {"url": "https://mirror.example/pkg-1.0-py3-none-any.whl", "size": 1, "hashes": {"sha256": SHA}}
    assert lock.choose_wheel([{"name": "not-a-wheel.zip"}, by_url, same], spec) is by_url
    with pytest.raises(lockfile.LockError, match="no wheel of pkg 1.0"):
        lock.from_pylock(spec, {"packages": [{"name": "pkg", "version": "1.0"}]}, SHA, [lock.PYPI_SIMPLE])
    assert lock.from_pylock(spec, {}, SHA, [lock.PYPI_SIMPLE]).packages == ()


def test_every_committed_lock_loads_as_the_lock_that_wrote_it(shipped):
    for spec in shipped.specs.values():
        for file in layout.LOCKS:
            path = ROOT / "images" / spec.tag / file
            if path.is_file():
                assert lockfile.load(path, spec.tag).text() == path.read_text(), path


def test_a_lock_without_its_header_does_not_load(tmp_path):
    path = tmp_path / layout.LOCK_FILE
    path.write_text("# https://example.org/a-1.0-py3-none-any.whl\na==1.0 --hash=sha256:" + "0" * 64 + "\n")
    with pytest.raises(lockfile.LockError, match="is not a lock `make lock` wrote"):
        lockfile.load(path, "v2.6-cu124")


# ---------------------------------------------------------------- a lock is input: every line parsed

GOOD_URL = "https://files.pythonhosted.org/packages/aa/bb/six-1.17.0-py2.py3-none-any.whl"


def lock_with(tmp_path, *lines, header=True):
    """A lock file of the given lines after make lock's header."""
    path = tmp_path / "v2.6-cu124" / layout.WORKSPACE_LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    head = ["# Generated by `make lock TAG=v2.6-cu124` from requirements-workspace.txt: do not edit.",
            f"# input: requirements-workspace.txt + requirements.lock sha256={SHA}",
            "# resolved against: https://pypi.org/simple", "# for: CPython 3.11", "# install: pip install -r x"]
    path.write_text("\n".join((head if header else []) + list(lines)) + "\n")
    return path


def test_a_well_formed_lock_reads_with_sizes(tmp_path):
    path = lock_with(tmp_path, f"# {GOOD_URL} size=11053", f"six==1.17.0 --hash=sha256:{SHA}")
    assert lockfile.read(path) == (lockfile.Locked("six", "1.17.0", SHA, GOOD_URL, 11053),)
    assert lockfile.packages(path) == {"six": "1.17.0"}


@pytest.mark.parametrize("url_line, entry, says", [
    # a sha256 is 64 lowercase hex digits, never a path
    (f"# {GOOD_URL} size=1", "six==1.17.0 --hash=sha256:/tmp/victim.txt", "sha256 '/tmp/victim.txt' is not 64 lowercase hex"),
    (f"# {GOOD_URL} size=1", "six==1.17.0 --hash=sha256:../../x", "sha256 '../../x' is not 64 lowercase hex"),
    (f"# {GOOD_URL} size=1", f"six==1.17.0 --hash=sha256:{'A' * 64}", "is not 64 lowercase hex"),
    (f"# {GOOD_URL} size=1", f"six==1.17.0 --hash=sha256:{'a' * 63}", "is not 64 lowercase hex"),
    (f"# {GOOD_URL} size=1", f"six==1.17.0 --hash=sha256:{'a' * 65}", "is not 64 lowercase hex"),
    (f"# {GOOD_URL} size=1", "six==1.17.0 --hash=sha256:", "is not 64 lowercase hex"),
    # the URL: https (or http on loopback), no credentials, query or fragment, the line's own wheel
    ("# file:///etc/passwd size=1", f"six==1.17.0 --hash=sha256:{SHA}", "its URL is a file URL"),
    ("# ftp://files.example/six-1.17.0-py3-none-any.whl size=1", f"six==1.17.0 --hash=sha256:{SHA}", "a ftp URL"),
    ("# http://files.example/six-1.17.0-py3-none-any.whl size=1", f"six==1.17.0 --hash=sha256:{SHA}",
     "plain http to a host other than loopback"),
    ("# https://u:p@files.example/six-1.17.0-py3-none-any.whl size=1", f"six==1.17.0 --hash=sha256:{SHA}",
     "with credentials in it"),
    (f"# {GOOD_URL}?x=1 size=1", f"six==1.17.0 --hash=sha256:{SHA}", "has a query or fragment"),
    (f"# {GOOD_URL}#sha256={SHA} size=1", f"six==1.17.0 --hash=sha256:{SHA}", "has a query or fragment"),
    ("# https://files.example/six.tar.gz size=1", f"six==1.17.0 --hash=sha256:{SHA}", "does not end in a wheel's file name"),
    ("# https://files.example/x/six-1.17.0.whl size=1", f"six==1.17.0 --hash=sha256:{SHA}", "is not a wheel's"),
    ("# https://files.example/evil-1.0-py3-none-any.whl size=1", f"six==1.17.0 --hash=sha256:{SHA}",
     "names the wheel of evil 1.0, not of six 1.17.0"),
    (f"# {GOOD_URL} size=1", f"six==1.18.0 --hash=sha256:{SHA}", "names the wheel of six 1.17.0, not of six 1.18.0"),
    (f"# {GOOD_URL} size=1", f"six==not-a-version --hash=sha256:{SHA}", "is not a version"),
    (f"# {GOOD_URL} size=0", f"six==1.17.0 --hash=sha256:{SHA}", "size='0' is not a number of bytes"),
    (f"# {GOOD_URL} size=-5", f"six==1.17.0 --hash=sha256:{SHA}", "size='-5' is not a number of bytes"),
    (f"# {GOOD_URL} size=1e9", f"six==1.17.0 --hash=sha256:{SHA}", "size='1e9' is not a number of bytes"),
    # lines make lock does not write
    (f"# {GOOD_URL} size=1", f"six==1.17.0 --hash=sha256:{SHA} --hash=sha256:{SHA}", "is not a line `make lock` writes"),
    (f"# {GOOD_URL} size=1", f"six==1.17.0 --hash=sha256:{SHA} ; python_version>'3'", "is not a line `make lock` writes"),
    (f"# {GOOD_URL} size=1", f"-e git+https://evil.example/six#egg=six", "is not a line `make lock` writes"),
    (f"# {GOOD_URL} size=1", "", "is not a line `make lock` writes"),
    ("--index-url https://evil.example/simple", f"six==1.17.0 --hash=sha256:{SHA}", "is not a line `make lock` writes"),
    ("# just a remark", f"six==1.17.0 --hash=sha256:{SHA}", "is not a line `make lock` writes"),
    ("", f"six==1.17.0 --hash=sha256:{SHA}", "is not a line `make lock` writes"),
])
def test_a_lock_line_make_lock_does_not_write_is_refused_naming_file_and_line(tmp_path, url_line, entry, says):
    path = lock_with(tmp_path, f"# {GOOD_URL} size=11053", f"six==1.17.0 --hash=sha256:{SHA}", url_line, entry)
    with pytest.raises(lockfile.LockFormatError) as refused:
        lockfile.read(path, "v2.6-cu124")
    message = str(refused.value)
    assert says in message
    assert message.startswith(f"{path}:8: ") or message.startswith(f"{path}:9: "), message
    assert "`make lock TAG=v2.6-cu124` writes it anew" in message
    assert isinstance(refused.value, InputError)  # the CLI's exit 2


def test_an_entry_without_its_url_line_or_a_url_line_without_its_entry_is_refused(tmp_path):
    with pytest.raises(lockfile.LockFormatError, match=r":6: 'six==1.17.0 --hash=sha256:a+' has no URL line above it"):
        lockfile.read(lock_with(tmp_path, f"six==1.17.0 --hash=sha256:{SHA}"))
    with pytest.raises(lockfile.LockFormatError, match=r":6: a URL line with no entry below it"):
        lockfile.read(lock_with(tmp_path, f"# {GOOD_URL} size=1"))
    with pytest.raises(lockfile.LockFormatError, match=r":7: .* is not a line `make lock` writes \(line 6.s URL wants its entry here\)"):
        lockfile.read(lock_with(tmp_path, f"# {GOOD_URL} size=1", f"# {GOOD_URL} size=1", f"six==1.17.0 --hash=sha256:{SHA}"))
    with pytest.raises(lockfile.LockFormatError, match=r":8: .*# for: x.* is not a line"):  # a header only on top
        lockfile.read(lock_with(tmp_path, f"# {GOOD_URL} size=1", f"six==1.17.0 --hash=sha256:{SHA}", "# for: x"))


def test_a_lock_that_is_a_symlink_a_folder_huge_or_not_utf8_is_refused(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("secret of another file\n")
    link = tmp_path / "link.lock"
    link.symlink_to(target)
    with pytest.raises(lockfile.LockFormatError, match="a symlink"):
        lockfile.read(link)
    with pytest.raises(lockfile.LockFormatError, match="not a regular file"):
        lockfile.read(tmp_path)
    big = tmp_path / "big.lock"
    big.write_bytes(b"#" * (lockfile.MAX_LOCK_BYTES + 1))
    with pytest.raises(lockfile.LockFormatError, match="larger than"):
        lockfile.read(big)
    latin = tmp_path / "latin.lock"
    latin.write_bytes(b"# caf\xe9\n")
    with pytest.raises(lockfile.LockFormatError, match="not UTF-8 text .byte 0xe9 at offset 5"):
        lockfile.read(latin)


def test_a_lock_without_sizes_is_stale_and_says_to_lock_again(spec, tmp_path):
    render.write(spec, tmp_path)
    made = lock.from_pylock(spec, report(("six", "1.17.0", SHA)), lockfile.sha256_text((tmp_path / spec.tag / layout.REQUIREMENTS).read_text()),
                            [lock.PYPI_SIMPLE])
    lockfile.write(made, tmp_path)
    second = dataclasses.replace(made, input_sha256=lockfile.sha256_text(
        (tmp_path / spec.tag / layout.WORKSPACE_REQUIREMENTS).read_text() + made.text()), packages=(), file=layout.WORKSPACE_LOCK_FILE)
    lockfile.write(second, tmp_path)
    assert lockfile.problem(spec, tmp_path) is None
    path = tmp_path / spec.tag / layout.LOCK_FILE
    path.write_text(path.read_text().replace(" size=1\n", "\n"))  # as an older make lock wrote it
    with pytest.raises(lockfile.LockStale):
        lockfile.read(path)
    lockfile.check(spec, tmp_path)  # stale is not malformed: no exit 2
    assert lockfile.problem(spec, tmp_path) == (
        f"{path} is stale: an older `make lock` wrote it, without each artifact's size; run `make lock TAG=v2.6-cu124`")


def test_a_malformed_lock_is_a_problem_for_the_report_and_an_exit_2_for_fetch(spec, tmp_path):
    render.write(spec, tmp_path)
    made = lock.from_pylock(spec, report(("six", "1.17.0", SHA)), lockfile.sha256_text((tmp_path / spec.tag / layout.REQUIREMENTS).read_text()),
                            [lock.PYPI_SIMPLE])
    lockfile.write(made, tmp_path)
    lockfile.write(dataclasses.replace(made, input_sha256=lockfile.sha256_text(
        (tmp_path / spec.tag / layout.WORKSPACE_REQUIREMENTS).read_text() + made.text()), packages=(),
        file=layout.WORKSPACE_LOCK_FILE), tmp_path)
    assert lockfile.problem(spec, tmp_path) is None
    path = tmp_path / spec.tag / layout.LOCK_FILE
    path.write_text(path.read_text() + "# https://files.example/evil-1.0-py3-none-any.whl size=1\n"
                    "evil==1.0 --hash=sha256:/tmp/victim.txt\n")
    assert lockfile.sha256_text((tmp_path / spec.tag / layout.REQUIREMENTS).read_text()) == made.input_sha256  # input unchanged
    with pytest.raises(lockfile.LockFormatError, match=rf"^{path}:9: 'evil==1.0': its sha256 '/tmp/victim.txt'"):
        lockfile.check(spec, tmp_path)
    assert lockfile.problem(spec, tmp_path).startswith(f"{path}:9: 'evil==1.0': its sha256 '/tmp/victim.txt' is not 64")


def test_the_index_gives_an_artifact_a_lock_cannot_hold(spec):
    bad = report(("six", "1.17.0", SHA))
    bad["packages"][0]["wheels"][0]["url"] = "file:///srv/six-1.17.0-py3-none-any.whl"
    with pytest.raises(lockfile.LockError, match="which a lock cannot hold: its URL is a file URL"):
        lock.from_pylock(spec, bad, SHA, [lock.PYPI_SIMPLE])
    bad = report(("six", "1.17.0", "not-hex"))
    with pytest.raises(lockfile.LockError, match="its sha256 'not-hex' is not 64 lowercase hex digits"):
        lock.from_pylock(spec, bad, SHA, [lock.PYPI_SIMPLE])
    fragment = report(("six", "1.17.0", SHA))
    fragment["packages"][0]["wheels"][0]["url"] += f"#sha256={SHA}"  # a fragment repeating the hash is dropped
    assert lock.from_pylock(spec, fragment, SHA, [lock.PYPI_SIMPLE]).packages[0].url.endswith(".whl")


def test_a_wheel_the_index_lists_without_a_size_is_sized_by_a_head_request(spec):
    """A PEP 503 HTML index (the PyTorch wheel index) lists no size: make lock asks the artifact's server."""
    def head(handler):
        handler.send_response(200 if handler.path.endswith(".whl") else 404)
        handler.send_header("Content-Length", "4242")
        handler.end_headers()

    with serving(do_HEAD=head) as server:
        sizeless = report(("six", "1.17.0", SHA))
        wheel = sizeless["packages"][0]["wheels"][0]
        del wheel["size"]
        wheel["url"] = f"{server}/six-1.17.0-py3-none-any.whl"
        made = lock.from_pylock(spec, sizeless, SHA, [lock.PYPI_SIMPLE],
                                size_of=lambda url: lock.content_length(url, network.NetworkSettings()))
        assert made.packages[0].size == 4242
        with pytest.raises(lockfile.LockError, match="no size"):
            lock.from_pylock(spec, sizeless, SHA, [lock.PYPI_SIMPLE])
        with pytest.raises(lockfile.LockError, match=r"cannot learn the size of .*HTTP Error 404|Not Found"):
            lock.content_length(f"{server}/x", network.NetworkSettings())


def test_the_lock_text_is_in_the_context_hash_that_says_an_image_is_current(spec, tmp_path):
    """The issue's 'the lock's own text is in no input hash': the input hash says whether the lock is stale against
    requirements*.txt; whether an image is current is the build context's sha256, which holds the locks' text."""
    from builder.image import context

    render.write(spec, tmp_path)
    for file in layout.LOCKS:
        (tmp_path / spec.tag / file).write_text((ROOT / "images" / spec.tag / file).read_text())
    before = context.assemble(spec, tmp_path).sha256
    path = tmp_path / spec.tag / layout.WORKSPACE_LOCK_FILE
    path.write_text(path.read_text() + "\n")
    assert context.assemble(spec, tmp_path).sha256 != before


# ---------------------------------------------------------------- sizes, headers, and a real uv against a loopback index

def test_an_artifacts_size_needs_a_content_length_from_a_server_that_answers():
    import http.server
    import socket
    import threading

    class NoLength(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoLength)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/six-1.17.0-py3-none-any.whl"
    try:
        with pytest.raises(lockfile.LockError) as refused:
            lock.content_length(url, network.NetworkSettings())
    finally:
        server.shutdown()
        server.server_close()
    assert str(refused.value) == f"{url}: the index names no size for it (no Content-Length); a lock needs one"
    closed = f"http://127.0.0.1:{loopback.free_port()}/six-1.17.0-py3-none-any.whl"
    with pytest.raises(lockfile.LockError) as refused:
        lock.content_length(closed, network.NetworkSettings())
    assert str(refused.value) == f"cannot learn the size of {closed}: [Errno 111] Connection refused"
    with socket.socket() as silent:  # listens, never answers: the time-out ends the wait
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/six-1.17.0-py3-none-any.whl"
        with pytest.raises(lockfile.LockError) as refused:
            lock.content_length(url, network.NetworkSettings(), timeout=0.5)
    assert str(refused.value) == f"cannot learn the size of {url}: timed out"


@pytest.mark.parametrize("dropped", ["# input: ", "# resolved against: ", "# for: "])
def test_a_lock_without_any_one_of_its_header_lines_does_not_load(tmp_path, dropped):
    path = lock_with(tmp_path, f"# {GOOD_URL} size=11053", f"six==1.17.0 --hash=sha256:{SHA}")
    path.write_text("".join(line for line in path.read_text().splitlines(True) if not line.startswith(dropped)))
    with pytest.raises(lockfile.LockError, match="is not a lock `make lock` wrote"):
        lockfile.load(path, "v2.6-cu124")


def test_a_lock_loads_with_every_index_it_was_resolved_against(spec, tmp_path):
    made = lock.from_pylock(spec, report(("six", "1.17.0", SHA)), "c" * 64,
                            ["https://a.example/simple", "https://b.example/simple"])
    lockfile.write(made, tmp_path)
    assert lockfile.load(tmp_path / spec.tag / made.file, spec.tag) == made


def test_a_broken_lock_names_the_tag_it_was_asked_for_not_its_folder(tmp_path):
    """A lock loaded for a tag says to lock that tag, wherever the file lies."""
    path = lock_with(tmp_path, f"# {GOOD_URL} size=11053", "six==1.17.0 --hash=sha256:x")
    moved = tmp_path / "elsewhere" / layout.LOCK_FILE
    moved.parent.mkdir()
    path.rename(moved)
    with pytest.raises(lockfile.LockFormatError, match=r"`make lock TAG=v2\.6-cu124` writes it anew"):
        lockfile.load(moved, "v2.6-cu124")


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """A PEP 503 index on loopback that serves real wheels: pkg 1.0 and 2.0; app 1.0 (needs pkg<2) and 2.0 (needs
    pkg>=2); it wants credentials. Yields (its URL with them, what it was asked, the wheels' folder)."""
    monkeypatch.setenv("TORCHYARD_CACHE", str(tmp_path / "cache"))  # uv's own cache: not this machine's
    files = tmp_path / "files"
    files.mkdir()
    made = [loopback.wheel(files, "pkg", "1.0"), loopback.wheel(files, "pkg", "2.0"), loopback.wheel(files, "app", "1.0", "pkg<2"),
            loopback.wheel(files, "app", "2.0", "pkg>=2")]
    with loopback.index({"/simple": [loopback.Listed.of(files / w) for w in made]}, files="/files",
                        credentials=("alice", "s3cret")) as served:
        yield served.url.replace("http://", "http://alice:s3cret@") + "/simple", served, files


def _requirements(images, tag, torch_step: str, workspace: str):
    (images / tag).mkdir(parents=True, exist_ok=True)
    (images / tag / layout.REQUIREMENTS).write_text(torch_step)
    (images / tag / layout.WORKSPACE_REQUIREMENTS).write_text(workspace)


def test_make_lock_resolves_both_steps_with_uv_against_the_index_and_its_credentials(spec, local_index, tmp_path):
    """uv, for real, against a loopback index: torch's step, then the workspace's within its versions (constraints),
    each wheel's sha256 and size (the HTML index lists none: a HEAD asks), the credentials through the netrc only."""
    import base64
    import hashlib

    index, served, files = local_index
    settings = network.NetworkSettings(pip={"index-url": [index]})
    images = tmp_path / "images"
    _requirements(images, spec.tag, "pkg<2\n", "app\n")
    said = []
    assert lock.lock_all([spec], settings, say=said.append, images=images) == []
    assert len(said) == 1 and said[0].startswith(f"locked {spec.tag}: 1 + 1 (workspace) packages in ")
    assert said[0].endswith("s") and "(unchanged)" not in said[0]
    first = lockfile.load(images / spec.tag / layout.LOCK_FILE, spec.tag)
    second = lockfile.load(images / spec.tag / layout.WORKSPACE_LOCK_FILE, spec.tag)
    shown = index.replace("alice:s3cret@", "")
    wheel = files / "pkg-1.0-py3-none-any.whl"
    assert first.packages == (lockfile.Locked("pkg", "1.0", hashlib.sha256(wheel.read_bytes()).hexdigest(),
                                          shown.replace("/simple", "/files/") + wheel.name, wheel.stat().st_size),)
    assert [(p.name, p.version) for p in second.packages] == [("app", "1.0")]  # pkg 2.0 would take app 2.0
    assert first.indexes == second.indexes == (shown,)
    assert second.source == f"{layout.WORKSPACE_REQUIREMENTS} + {layout.LOCK_FILE}"  # its input covers torch's lock
    assert "s3cret" not in first.text() + second.text()
    assert (tmp_path / "cache" / "uv").is_dir()  # uv's metadata cache is torchyard's, kept for the next lock
    sent = [authorization for _, path, authorization, *_ in served.seen if path.startswith("/simple/")]
    assert f"Basic {base64.b64encode(b'alice:s3cret').decode()}" in sent  # uv read them from the netrc
    said.clear()
    assert lock.lock_all([spec], settings, say=said.append, images=images) == []
    assert said[0].endswith(" (unchanged)")


@pytest.mark.parametrize("absent, pep691", [(403, False), (404, True)], ids=["as-download.pytorch.org", "pep691-json"])
def test_an_index_variant_takes_what_the_torch_index_holds_from_it_and_the_rest_from_the_configured_index(
        shipped, tmp_path, monkeypatch, absent, pep691):
    """uv, for real, against a stand-in of the PyTorch wheel index (/whl/cu118/, credentials required) and a
    configured index. The PyTorch index holds torch+cu118 and dep 1.0, not nvidia-ml-py (nor does the real one):
    locking an index variant against it alone failed for every such tag (nvidia-ml-py 'not found'); and where it
    answers 403 for what it lacks, as download.pytorch.org does, uv stopped there. dep 2.0 on the configured index
    is not taken (first-index: dep is on the PyTorch index), and the credentials go to the PyTorch index alone."""
    import base64

    monkeypatch.setenv("TORCHYARD_CACHE", str(tmp_path / "cache"))
    variant = shipped.specs["v2.6-cu118"]
    files = tmp_path / "files"
    files.mkdir()
    torch_side = [loopback.wheel(files, "torch", "2.6.0+cu118", "dep"), loopback.wheel(files, "dep", "1.0")]
    pypi_side = [loopback.wheel(files, "torch", "2.6.0", "dep"), loopback.wheel(files, "dep", "2.0"),
                 loopback.wheel(files, "nvidia_ml_py", "13.615.71"), loopback.wheel(files, "app", "1.0")]
    images = tmp_path / "images"
    _requirements(images, variant.tag, "torch==2.6.0+cu118\nnvidia-ml-py==13.615.71\n", "app\n")
    listed = lambda names: [loopback.Listed.of(files / n) for n in names]  # noqa: E731
    with loopback.index({"/whl/cu118": listed(torch_side)}, credentials=("alice", "s3cret"), absent=absent,
                        pep691=pep691) as torch_index, \
            loopback.index({"/simple": listed(pypi_side)}, host="127.0.0.2", pep691=pep691) as pypi:
        settings = network.NetworkSettings(pip={"index-url": [f"{pypi.url}/simple"]},
                                           torch_index=torch_index.url.replace("http://", "http://alice:s3cret@") + "/whl")
        said = []
        assert lock.lock_all([variant], settings, say=said.append, images=images) == [], said
    first = lockfile.load(images / variant.tag / layout.LOCK_FILE, variant.tag)
    assert {p.name: (p.version, p.url) for p in first.packages} == {
        "dep": ("1.0", f"{torch_index.url}/whl/cu118/dep-1.0-py3-none-any.whl"),
        "nvidia-ml-py": ("13.615.71", f"{pypi.url}/simple/nvidia_ml_py-13.615.71-py3-none-any.whl"),
        "torch": ("2.6.0+cu118", f"{torch_index.url}/whl/cu118/torch-2.6.0%2Bcu118-py3-none-any.whl")}
    assert first.indexes == (f"{torch_index.url}/whl/cu118", f"{pypi.url}/simple")
    assert [p.name for p in lockfile.read(images / variant.tag / layout.WORKSPACE_LOCK_FILE)] == ["app"]
    asked = {(path, status) for _, path, _, _, status, _ in torch_index.seen}  # and 401s: uv asks without credentials first
    assert ("/whl/cu118/nvidia-ml-py/", absent) in asked and ("/whl/cu118/torch/", 200) in asked
    assert f"Basic {base64.b64encode(b'alice:s3cret').decode()}" in {auth for _, _, auth, *_ in torch_index.seen}
    assert {auth for _, _, auth, *_ in pypi.seen} == {None}  # another host: never the PyTorch index's credentials
    heads = [path for method, path, *_ in torch_index.seen + pypi.seen if method == "HEAD" and path.endswith(".whl")]
    assert len(heads) == (0 if pep691 else 4)  # an HTML page lists no sizes: a HEAD each; PEP 691 JSON has them


def test_a_resolution_uv_refuses_says_what_uv_said(spec, local_index, tmp_path):
    index, _, _ = local_index
    images = tmp_path / "images"
    _requirements(images, spec.tag, "nothere\n", "app\n")
    said = []
    assert lock.lock_all([spec], network.NetworkSettings(pip={"index-url": [index]}), say=said.append,
                         images=images) == [spec.tag]
    shown = index.replace("alice:s3cret@", "")
    assert said[0].startswith(f"not locked: {spec.tag}: cannot resolve {layout.REQUIREMENTS} against {shown}:\n    ")
    assert "nothere" in said[0] and "not found in the package registry" in said[0] and "s3cret" not in said[0]
    assert not (images / spec.tag / layout.LOCK_FILE).exists()


def test_a_resolution_that_hangs_ends_at_the_time_out(spec, tmp_path, monkeypatch):
    import socket

    monkeypatch.setenv("TORCHYARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(lock, "UV_TIMEOUT_S", 2)
    images = tmp_path / "images"
    _requirements(images, spec.tag, "pkg\n", "app\n")
    with socket.socket() as silent:  # takes the connection and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        index = f"http://127.0.0.1:{silent.getsockname()[1]}/simple"
        with pytest.raises(lockfile.LockError) as refused:
            lock.resolve(spec, network.NetworkSettings(pip={"index-url": [index]}), images)
    assert str(refused.value) == f"{spec.tag}: uv did not finish resolving within 2s against {index}"


def test_an_unreachable_index_leaves_its_tags_unlocked_and_says_why(shipped, tmp_path):
    closed = f"http://127.0.0.1:{loopback.free_port()}"
    settings = network.NetworkSettings(pip={"index-url": [f"{closed}/simple"]}, torch_index=f"{closed}/whl")
    said = []
    tags = ["v2.6-cu124", "v2.6-cu118"]
    assert lock.lock_all([shipped.specs[t] for t in tags], settings, say=said.append, images=tmp_path) == tags
    assert said == [
        f"not locked: v2.6-cu124: its index {closed}/simple cannot be used: [Errno 111] Connection refused",
        f"not locked: v2.6-cu118: its index {closed}/whl/cu118 cannot be used: [Errno 111] Connection refused. Lock it "
        "where the PyTorch wheel index (or a mirror named by TORCHYARD_TORCH_INDEX) answers; until then building it is "
        "refused"]


def test_a_listed_wheel_without_a_name_or_url_is_passed_over(spec):
    good = {"url": "https://files.example/pkg-1.0-py3-none-any.whl", "size": 1, "hashes": {"sha256": SHA}}
    assert lock.choose_wheel([{"size": 1}, good], spec) is good


def test_the_index_refusals_name_the_package_and_version(spec):
    assert pylock_refusal(spec, "six", "1.17.0", size=None) == (
        "v2.6-cu124: the index lists six 1.17.0 with no size "
        "(https://files.example/six-1.17.0-py3-none-any.whl); a lock needs each artifact's size")
    query = pylock_refusal(spec, "six", "1.17.0", url="https://files.example/six-1.17.0-py3-none-any.whl?token=1")
    assert query.startswith("v2.6-cu124: the index gave six 1.17.0 as "
                            "'https://files.example/six-1.17.0-py3-none-any.whl?token=1', which a lock cannot "
                            "hold: its URL has a query or fragment")


def test_a_lock_is_not_made_before_its_requirements_are_rendered(spec, tmp_path):
    with pytest.raises(lockfile.LockError) as refused:
        lock.resolve(spec, network.NetworkSettings(), tmp_path)
    assert str(refused.value) == f"{tmp_path / spec.tag / layout.REQUIREMENTS} is missing; run `make render` first"


def test_a_relock_keeps_what_the_locks_hold_and_upgrade_takes_the_newest(spec, local_index, tmp_path):
    """uv, for real: a tag locked at pkg 1.0 (app 1.0 with it) keeps both when its requirements widen, as `make lock`
    after adding torchaudio kept every other pin; a requirement the kept version no longer meets moves it; UPGRADE=1
    resolves everything to the newest."""
    index, _, _ = local_index
    settings = network.NetworkSettings(pip={"index-url": [index]})
    images = tmp_path / "images"

    def relock(torch_step: str, upgrade: bool = False) -> tuple[dict, dict]:
        _requirements(images, spec.tag, torch_step, "app\n")
        assert lock.lock_all([spec], settings, say=lambda _: None, images=images, upgrade=upgrade) == []
        return tuple(lockfile.packages(images / spec.tag / name) for name in layout.LOCKS)

    assert relock("pkg<2\n") == ({"pkg": "1.0"}, {"app": "1.0"})
    assert relock("pkg\n") == ({"pkg": "1.0"}, {"app": "1.0"})  # pkg 2.0 (and app 2.0) would be allowed now
    assert lockfile.problem(spec, images) is None  # the lock is made from the new requirements
    assert relock("pkg\n", upgrade=True) == ({"pkg": "2.0"}, {"app": "2.0"})
    assert relock("pkg<2\n") == ({"pkg": "1.0"}, {"app": "1.0"})  # kept where allowed, moved where not
    assert relock("pkg>=2\n") == ({"pkg": "2.0"}, {"app": "2.0"})


def test_the_preferences_are_a_pylock_of_names_and_versions_and_a_broken_lock_gives_none(tmp_path):
    import tomllib

    text = lock.preferences({"torch": "2.6.0+cu118", "filelock": "4.3.1"})
    assert tomllib.loads(text) == {"lock-version": "1.0", "created-by": "torchyard", "packages": [
        {"name": "filelock", "version": "4.3.1"}, {"name": "torch", "version": "2.6.0+cu118"}]}
    assert lock.kept(tmp_path / "none.lock") == {}
    (tmp_path / "broken.lock").write_text("torch==2.6.0\n")  # no header: a relock replaces it
    assert lock.kept(tmp_path / "broken.lock") == {}
    assert lock.kept(ROOT / "images" / "v2.6-cu124" / layout.LOCK_FILE)["torch"] == "2.6.0"
