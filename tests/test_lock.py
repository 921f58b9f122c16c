"""Locks: pip's resolution for the image's platform, isolated from this machine; staleness; the committed locks."""

import os

import pytest

from builder import lock, matrix, network, render
from tests.conftest import ROOT

SHA = "a" * 64


def report(*packages):
    return {"install": [{"metadata": {"name": name, "version": version},
                         "download_info": {"url": f"https://files.example/{name}-{version}-py3-none-any.whl",
                                           "archive_info": {"hashes": {"sha256": sha}}}}
                        for name, version, sha in packages]}


@pytest.fixture
def spec(shipped):
    return shipped.specs["v2.6-cu124"]


def test_a_lock_lists_every_package_sorted_with_its_hash_and_artifact(spec):
    made = lock.from_report(spec, report(("torch", "2.6.0", SHA), ("Jinja2", "3.1.6", "b" * 64)), "c" * 64, [lock.PYPI_SIMPLE])
    text = made.text()
    assert "# input: requirements.txt sha256=" + "c" * 64 in text
    assert text.index("jinja2==3.1.6 --hash=sha256:" + "b" * 64) < text.index("torch==2.6.0 --hash=sha256:" + SHA)
    assert "# https://files.example/torch-2.6.0-py3-none-any.whl\ntorch==2.6.0" in text
    assert "Debian bookworm (glibc 2.36)" in text and "CPython 3.11" in text


def test_an_artifact_without_sha256_is_refused(spec):
    bad = report(("torch", "2.6.0", SHA))
    bad["install"][0]["download_info"]["archive_info"]["hashes"] = {"md5": "x"}
    with pytest.raises(lock.LockError, match="no sha256 for torch 2.6.0"):
        lock.from_report(spec, bad, SHA, [lock.PYPI_SIMPLE])


def test_pip_sees_only_the_build_index_and_the_image_platform(spec, tmp_path):
    settings = network.NetworkSettings(ca_files=(tmp_path / "ca.crt",))
    command = lock.pip_command(spec, tmp_path / "r.txt", tmp_path / "rep.json", tmp_path / "t", settings, tmp_path / "ca.crt")
    assert "--isolated" in command and "--dry-run" in command and "--only-binary=:all:" in command
    assert command[command.index("--index-url") + 1] == "https://pypi.org/simple"
    assert "--extra-index-url" not in command and "--find-links" not in " ".join(command)
    assert command[command.index("--python-version") + 1] == "3.11" and command[command.index("--abi") + 1] == "cp311"
    platforms = [command[i + 1] for i, word in enumerate(command) if word == "--platform"]
    assert platforms[0] == "manylinux_2_36_x86_64" and "manylinux2014_x86_64" in platforms  # bookworm's glibc first
    assert command[command.index("--cert") + 1] == str(tmp_path / "ca.crt")
    env = lock.clean_environment({"PIP_FIND_LINKS": "/opt/wheels", "PIP_CONSTRAINT": "/c.txt", "HOME": "/root"})
    assert env == {"PIP_CONFIG_FILE": os.devnull, "HOME": "/root"}


def test_a_forwarded_mirror_is_what_the_lock_resolves_against(spec, shipped):
    mirror = network.NetworkSettings(pip={"index-url": ["https://mirror.example/simple"],
                                          "extra-index-url": ["https://more.example/simple"]})
    assert lock.indexes(spec, mirror) == ["https://mirror.example/simple", "https://more.example/simple"]
    # An index variant reads only the PyTorch wheel index, as its Dockerfile's --index-url says.
    assert lock.indexes(shipped.specs["v2.6-cu118"], mirror) == [f"{network.TORCH_INDEX}/cu118"]


def test_missing_and_stale_locks_say_what_to_run(spec, shipped, tmp_path):
    render.write(spec, tmp_path)
    assert "is missing" in lock.problem(spec, tmp_path) and "make lock TAG=v2.6-cu124" in lock.problem(spec, tmp_path)
    requirements = (tmp_path / spec.tag / "requirements.txt").read_text()
    made = lock.from_report(spec, report(("torch", "2.6.0", SHA)), lock.sha256_text(requirements), [lock.PYPI_SIMPLE])
    assert lock.write(made, tmp_path) is True and lock.write(made, tmp_path) is False
    assert "requirements-workspace.lock is missing" in lock.problem(spec, tmp_path)
    workspace = (tmp_path / spec.tag / "requirements-workspace.txt").read_text()
    second = lock.from_report(spec, report(("jupyterlab", "4.6.6", SHA)), lock.sha256_text(workspace + made.text()),
                              [lock.PYPI_SIMPLE])
    lock.write(lock.dataclasses.replace(second, file=lock.WORKSPACE_LOCK_FILE), tmp_path)
    assert lock.problem(spec, tmp_path) is None
    lock.write(lock.from_report(spec, report(("torch", "2.6.1", SHA)), lock.sha256_text(requirements),
                                [lock.PYPI_SIMPLE]), tmp_path)  # torch's lock changed: the workspace's is stale
    assert "requirements-workspace.lock is stale" in lock.problem(spec, tmp_path)
    lock.write(made, tmp_path)
    (tmp_path / spec.tag / "requirements.txt").write_text(requirements + "einops==0.8.1\n")
    assert "is stale" in lock.problem(spec, tmp_path)
    variant = shipped.specs["v2.6-cu118"]
    render.write(variant, tmp_path)
    assert "download.pytorch.org" in lock.problem(variant, tmp_path)


def test_render_leaves_the_lock_alone(spec, tmp_path):
    render.write(spec, tmp_path)
    (tmp_path / spec.tag / lock.LOCK_FILE).write_text("# a lock\n")
    (tmp_path / spec.tag / "Dockerfile").write_text("FROM scratch\n")
    assert render.diff(spec, tmp_path) == [f"{spec.tag}/Dockerfile"]
    assert render.write(spec, tmp_path) is True
    assert (tmp_path / spec.tag / lock.LOCK_FILE).read_text() == "# a lock\n"


def test_every_pypi_tag_has_a_current_lock_and_index_variants_say_why_not(shipped):
    for spec in shipped.specs.values():
        problem = lock.problem(spec)
        if spec.index == "pypi":
            assert problem is None, problem
            locked = lock.packages(ROOT / "images" / spec.tag / lock.LOCK_FILE)
            assert locked["torch"] == spec.torch and locked["torchvision"] == spec.torchvision
        else:
            assert "is missing" in problem and "download.pytorch.org" in problem


def test_a_real_resolution_ignores_the_machines_pip_settings(spec, tmp_path):
    """pip against the real index; a constraint and a local wheel folder in this process's environment
    (as on a machine with pip settings of its own) must not reach the lock."""
    render.write(spec, tmp_path)
    (tmp_path / spec.tag / "requirements.txt").write_text("nvidia-ml-py==13.615.71\nfilelock\n")
    (tmp_path / spec.tag / "requirements-workspace.txt").write_text("filelock\nsix\n")
    constraint = tmp_path / "constraints.txt"
    constraint.write_text("filelock<3\n")
    settings = network.host_settings()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PIP_CONSTRAINT", str(constraint))
        env.setenv("PIP_FIND_LINKS", str(tmp_path))
        made, workspace = lock.resolve(spec, settings, tmp_path)
    versions = {p.name: p.version for p in made.packages}
    assert versions["nvidia-ml-py"] == "13.615.71" and int(versions["filelock"].split(".")[0]) >= 3
    assert all(p.url.startswith("https://") and len(p.sha256) == 64 for p in made.packages + workspace.packages)
    # The workspace step holds only what torch's step does not: filelock is already there.
    assert [p.name for p in workspace.packages] == ["six"] and workspace.file == "requirements-workspace.lock"
    # Freshly made, both locks are current: the build takes them (the workspace lock's input covers torch's lock).
    assert all(lock.write(made_lock, tmp_path) for made_lock in (made, workspace))
    assert lock.problem(spec, tmp_path) is None


def test_an_unreachable_index_is_said_fast(shipped, tmp_path):
    variant = shipped.specs["v2.6-cu118"]
    settings = network.NetworkSettings(torch_index="https://torch-index.invalid/whl")
    said = []
    assert lock.lock_all([variant], settings, say=said.append, images=tmp_path) == ["v2.6-cu118"]
    assert "https://torch-index.invalid/whl/cu118 cannot be used" in said[0]
    assert not (tmp_path / "v2.6-cu118").exists() or not (tmp_path / "v2.6-cu118" / lock.LOCK_FILE).exists()



def test_the_build_names_each_package_whose_hash_pip_refused():
    """pip's own words, as a build log carries them, become the build failure's message."""
    from builder import build

    lines = []
    progress = build._Progress(lambda _: None, type("Log", (), {"write": lambda self, text: lines.append(text)})())
    for line in [
        "\x1b[91mERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated ...",
        "    nvidia-ml-py==13.615.71 from https://files.pythonhosted.org/packages/53/a1/x/nvidia_ml_py-13.615.71-py3-none-any.whl"
        " (from -r /tmp/requirements.lock (line 5)):",
        "        Expected sha256 " + "0" * 64,
        "             Got        959bf4adf6fe1308e4bd739e722236b0d1ec8392e2cefad33ff70c311380b9b6",
    ]:
        progress.line(line)
    assert progress.mismatches == [["nvidia-ml-py==13.615.71", "0" * 64,
                                    "959bf4adf6fe1308e4bd739e722236b0d1ec8392e2cefad33ff70c311380b9b6", "requirements.lock"]]


def test_the_platform_tags_are_every_manylinux_the_bases_glibc_takes_newest_first(spec, facts, tmp_path):
    bookworm = lock.platforms(spec)
    assert bookworm == [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)] + [
        "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    path = tmp_path / "matrix.yaml"
    path.write_text('default: v2.15-cu132\nimages:\n  v2.15-cu132: {torch: "2.15.0", base: trixie}\n')
    trixie = lock.platforms(matrix.load(path, facts).specs["v2.15-cu132"])
    assert trixie[:2] == ["manylinux_2_41_x86_64", "manylinux_2_40_x86_64"] and trixie[5:] == bookworm


def test_pips_command_is_exactly_the_images_platform_and_the_given_indexes(spec, tmp_path):
    settings = network.NetworkSettings(pip={"trusted-host": ["mirror.example"]})
    command = lock.pip_command(spec, tmp_path / "r.txt", tmp_path / "rep.json", tmp_path / "t", settings,
                               tmp_path / "ca.crt", ["https://a.example/simple", "https://b.example/simple"])
    platforms = [word for tag in lock.platforms(spec) for word in ("--platform", tag)]
    assert command == [
        lock.sys.executable, "-m", "pip", "install", "--isolated", "--disable-pip-version-check", "--quiet", "--dry-run",
        "--ignore-installed", "--report", str(tmp_path / "rep.json"), "--target", str(tmp_path / "t"),
        "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11", "--abi", "cp311", *platforms,
        "--index-url", "https://a.example/simple", "--extra-index-url", "https://b.example/simple",
        "--trusted-host", "mirror.example", "--cert", str(tmp_path / "ca.crt"), "-r", str(tmp_path / "r.txt")]
    bare = lock.pip_command(spec, tmp_path / "r.txt", tmp_path / "rep.json", tmp_path / "t", network.NetworkSettings(), None)
    assert "--cert" not in bare and "--trusted-host" not in bare and bare[-4:-2] == ["--index-url", lock.PYPI_SIMPLE]


def test_a_lock_is_exactly_its_header_then_each_artifact_and_pin(spec):
    made = lock.from_report(spec, report(("Torch", "2.6.0", SHA), ("nvidia_ml.py", "13.615.71", "b" * 64)), "c" * 64,
                            [lock.PYPI_SIMPLE, "https://extra.example/simple"])
    assert made.text() == (
        "# Generated by `make lock TAG=v2.6-cu124` from requirements.txt: do not edit.\n"
        f"# input: requirements.txt sha256={'c' * 64}\n"
        "# resolved against: https://pypi.org/simple https://extra.example/simple\n"
        "# for: CPython 3.11, linux/amd64, Debian bookworm (glibc 2.36), wheels only\n"
        "# install: pip install --require-hashes --no-deps --only-binary=:all: -r requirements.lock\n"
        "# https://files.example/nvidia_ml.py-13.615.71-py3-none-any.whl\n"
        f"nvidia-ml-py==13.615.71 --hash=sha256:{'b' * 64}\n"
        "# https://files.example/Torch-2.6.0-py3-none-any.whl\n"
        f"torch==2.6.0 --hash=sha256:{SHA}\n")
    assert [p.filename for p in made.packages] == ["nvidia_ml.py-13.615.71-py3-none-any.whl", "Torch-2.6.0-py3-none-any.whl"]


def test_pips_complaint_keeps_its_last_eight_lines_and_names_an_unreachable_torch_index(spec, shipped):
    stderr = "\n".join(f"ERROR: line {i}" for i in range(12)) + "\n\n[notice] A new release of pip is available\n"
    assert lock._pip_complaint(stderr, spec) == "\n".join(f"    ERROR: line {i}" for i in range(4, 12))
    variant = shipped.specs["v2.6-cu118"]
    for words in ("NewConnectionError", "Name or service not known", "Could not resolve host", "Max retries exceeded",
                  "No matching distribution found for torch==2.6.0"):
        assert lock._pip_complaint(f"ERROR: {words}", variant) == (
            f"    ERROR: {words}\n  v2.6-cu118 takes torch from the PyTorch wheel index (cu118), which this machine "
            "cannot reach; lock it where download.pytorch.org (or a mirror named by TORCHYARD_TORCH_INDEX) answers")
    assert lock._pip_complaint("ERROR: No matching distribution found for torch==2.6.0", spec) == (
        "    ERROR: No matching distribution found for torch==2.6.0")  # PyPI answered: no index to blame
    assert lock._pip_complaint("ERROR: ResolutionImpossible", variant) == "    ERROR: ResolutionImpossible"


def test_an_index_that_answers_is_reachable_whatever_it_answers():
    """A real HTTP server on loopback: one HEAD of the index's root (no body to wait for); any answer, even 404,
    means the index is there; a closed port is not, and says why."""
    import http.server
    import socket
    import threading

    asked = []

    class Index(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            asked.append(("HEAD", self.path))
            self.send_response(200 if self.path == "/simple/" else 404)
            self.end_headers()

        def do_GET(self):
            asked.append(("GET", self.path))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert lock.unreachable(f"http://127.0.0.1:{port}/simple", network.NetworkSettings()) is None
        assert lock.unreachable(f"http://127.0.0.1:{port}/nothing-here//", network.NetworkSettings()) is None
    finally:
        server.shutdown()
        server.server_close()
    assert asked == [("HEAD", "/simple/"), ("HEAD", "/nothing-here/")]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert lock.unreachable(f"http://127.0.0.1:{closed}/simple", network.NetworkSettings()) == (
        "[Errno 111] Connection refused")


def test_the_first_configured_index_is_the_index_and_the_extras_follow():
    settings = network.NetworkSettings(pip={"index-url": ["https://a.example/simple", "https://ignored.example/simple"],
                                            "extra-index-url": ["https://b.example/simple"]})
    assert lock._configured_indexes(settings) == ["https://a.example/simple", "https://b.example/simple"]


def test_the_workspace_locks_header_names_its_inputs(spec):
    made = lock.dataclasses.replace(lock.from_report(spec, report(("six", "1.17.0", SHA)), "d" * 64, [lock.PYPI_SIMPLE]),
                                    source="requirements-workspace.txt + requirements.lock", file=lock.WORKSPACE_LOCK_FILE)
    assert made.text().splitlines()[:2] == [
        "# Generated by `make lock TAG=v2.6-cu124` from requirements-workspace.txt: do not edit.",
        f"# input: requirements-workspace.txt + requirements.lock sha256={'d' * 64}"]


def test_an_artifact_without_any_hash_is_refused_whole(spec):
    bare = report(("torch", "2.6.0", SHA))
    del bare["install"][0]["download_info"]["archive_info"]
    with pytest.raises(lock.LockError) as refused:
        lock.from_report(spec, bare, SHA, [lock.PYPI_SIMPLE])
    assert str(refused.value) == ("v2.6-cu124: the index gave no sha256 for torch 2.6.0 "
                                  "(https://files.example/torch-2.6.0-py3-none-any.whl); a lock needs one for every artifact")
    bare["install"][0]["download_info"]["archive_info"] = {}
    with pytest.raises(lock.LockError, match="no sha256 for torch 2.6.0"):
        lock.from_report(spec, bare, SHA, [lock.PYPI_SIMPLE])


def test_an_index_variants_missing_lock_says_where_it_can_be_made(shipped, tmp_path):
    variant = shipped.specs["v2.6-cu118"]
    render.write(variant, tmp_path)
    assert lock.problem(variant, tmp_path) == (
        f"{tmp_path}/v2.6-cu118/requirements.lock is missing: the build installs only what a lock names, with hashes; "
        "run `make lock TAG=v2.6-cu118` where the PyTorch wheel index for cu118 answers (download.pytorch.org, or a "
        "mirror named by TORCHYARD_TORCH_INDEX)")


def test_an_index_that_never_answers_is_unreachable_after_the_timeout():
    import socket

    with socket.socket() as silent:  # listens, so the connection opens, and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        assert lock.unreachable(f"http://127.0.0.1:{port}/simple", network.NetworkSettings(), timeout=0.5) == "timed out"
