"""What `make devcontainer` writes, opened by the real Dev Containers CLI (`@devcontainers/cli`, which .ci/run installs
with npm) on the session's image (v2.6-cu124, `built`), as VS Code opens it: `devcontainer up` on a folder, then
`devcontainer exec` as the container's user.

The CLI gives the container's user the host user's uid (updateRemoteUserUID) only when it runs as a user other than
root that has a passwd entry: as root (CI), the test makes such a user, lets it use the engine's socket, and runs the
CLI as it (setpriv); the user is removed afterwards.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import pytest

from builder import layout
from builder.host import gpu
from builder.jobs import devcontainer
from tests.docker.conftest import TAG, TEST_REPO

USER_NAME = "torchyard-devc-test"
FIRST_UID = 4700  # the test user's uid and gid: the first free from here (not 1000, the image's own)
SOCKET = Path("/var/run/docker.sock")


@dataclass(frozen=True)
class HostUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # what lets it use the engine


@pytest.fixture(scope="module")
def cli() -> str:
    found = shutil.which("devcontainer")
    if found is None:
        message = "the Dev Containers CLI is missing: npm install -g @devcontainers/cli@0.89.0 (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def host_user(client) -> HostUser:
    """A non-root user with a passwd entry that can use the engine: this one when the tests run as one, else made."""
    if os.getuid() != 0:
        entry = pwd.getpwuid(os.getuid())
        yield HostUser(entry.pw_name, entry.pw_uid, entry.pw_gid, tuple(os.getgroups()))
        return
    groups = (SOCKET.stat().st_gid,) if SOCKET.exists() else ()
    _remove_user()  # one a killed run left
    uid = next(u for u in range(FIRST_UID, FIRST_UID + 1000) if _free(u))
    subprocess.run(["groupadd", "--gid", str(uid), USER_NAME], check=True, capture_output=True)
    subprocess.run(["useradd", "--uid", str(uid), "--gid", str(uid), "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", USER_NAME], check=True, capture_output=True)
    try:
        yield HostUser(USER_NAME, uid, uid, groups)
    finally:
        _remove_user()
        shutil.rmtree(Path(tempfile.gettempdir()) / f"devcontainercli-{USER_NAME}", ignore_errors=True)


def _remove_user() -> None:
    """The test's own user and group, when they exist."""
    subprocess.run(["userdel", USER_NAME], check=False, capture_output=True)
    subprocess.run(["groupdel", USER_NAME], check=False, capture_output=True)


def _free(uid: int) -> bool:
    """No user has this uid and no group this gid."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return False
        except KeyError:
            continue
    return True


@dataclass(frozen=True)
class Opened:
    folder: Path  # the project folder: mounted at /workspace
    config: Path
    container: object
    run: object  # (*command) -> CompletedProcess of `devcontainer exec`, as the host user


@pytest.fixture(scope="module")
def opened(client, built, cli, host_user) -> Opened:
    """`make devcontainer` into a fresh project folder of the host user's, then `devcontainer up` as that user."""
    base = Path(tempfile.mkdtemp(prefix="torchyard-devcontainer-"))
    folder, home, digests = base / "project", base / "home", base / "digests"
    for path in (folder, home, digests):
        path.mkdir()
    for path in (base, folder, home):
        os.chown(path, host_user.uid, host_user.gid)
    config = folder / devcontainer.FOLDER / TAG / devcontainer.FILE
    written = subprocess.run([sys.executable, "-m", "builder", "devcontainer"], capture_output=True, text=True,
                             env={**os.environ, "TORCHYARD_TAG": TAG, "TORCHYARD_REPO": TEST_REPO,
                                  "TORCHYARD_DIGESTS": str(digests),
                                  "TORCHYARD_DEVCONTAINER_DIR": str(config.parent)}, timeout=60)
    assert written.returncode == 0, written.stderr

    def as_user(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        drop = [] if os.getuid() != 0 else \
            ["setpriv", f"--reuid={host_user.uid}", f"--regid={host_user.gid}",
             f"--groups={','.join(map(str, host_user.groups))}" if host_user.groups else "--clear-groups", "--"]
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "USER": host_user.name, "LANG": "C.UTF-8"}
        if os.environ.get("DOCKER_HOST"):
            env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
        return subprocess.run([*drop, cli, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=base)

    where = ["--workspace-folder", str(folder), "--config", str(config)]
    up = as_user("up", *where, timeout=600)
    container = None
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        result = json.loads(up.stdout.strip().splitlines()[-1])
        assert result["outcome"] == "success", result
        container = client.containers.get(result["containerId"])
        yield Opened(folder, config, container, lambda *command, timeout=300: as_user("exec", *where, *command,
                                                                                        timeout=timeout))
    finally:
        derived = None
        for found in client.containers.list(all=True, filters={"label": f"devcontainer.local_folder={folder}"}):
            derived = found.image.id
            found.remove(force=True, v=True)
        if derived and derived != client.images.get(built.image).id:  # the image the CLI made with the user's uid
            try:
                client.images.remove(derived, force=True)
            except docker.errors.APIError:
                pass
        shutil.rmtree(base, ignore_errors=True)


def test_the_user_is_torchyard_with_the_host_users_uid_and_files_are_theirs(opened, host_user):
    done = opened.run("sh", "-c", 'echo "$(id -un) $(id -u) $(id -g) $(pwd)"; touch /workspace/made-inside')
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"{layout.USER} {host_user.uid} {host_user.gid} {layout.WORKSPACE}"
    made = (opened.folder / "made-inside").stat()
    assert (made.st_uid, made.st_gid) == (host_user.uid, host_user.gid)


def test_torch_imports_and_a_cpu_smoke_check_passes_as_the_user(opened):
    done = opened.run("python", "-c", "import os, torch, torchvision; "
                      "print(torch.__version__, torchvision.__version__, os.getuid() != 0)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-3:] == ["2.6.0+cu124", "0.21.0+cu124", "True"]
    smoke = opened.run("python", "-m", "smoke_tests", "--only", "environment", "gloo", "--json", "-")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    report = json.loads(smoke.stdout.strip().splitlines()[-1])
    assert report["status"] == "PASS" and [c["name"] for c in report["checks"]] == ["environment", "gloo all-reduce"]
    assert "only 64 MiB" not in smoke.stdout + smoke.stderr  # /dev/shm is sized as make run sizes it
    assert opened.container.attrs["HostConfig"]["ShmSize"] == gpu.SHM_GIB * 2**30


def test_the_images_start_runs_and_only_tini_stays_root(opened):
    """overrideCommand false: tini and the entrypoint started the container and dropped to the user for Jupyter."""
    done = opened.run("ps", "-eo", "uid=,comm=")
    assert done.returncode == 0, done.stderr
    processes = [line.split(None, 1) for line in done.stdout.strip().splitlines()]
    assert [name for uid, name in processes if uid == "0"] == ["tini"], processes
    assert any(name.startswith("jupyter-lab") for _, name in processes), processes


def test_the_pip_guard_still_holds(opened):
    done = opened.run("sh", "-c", "pip install --no-cache-dir --no-index torch==2.7.1 2>&1; echo exit $?; "
                                  "python -c 'import torch; print(torch.__version__)'")
    out = done.stdout
    assert "exit 1" in out and "(constraint) torch===2.6.0" in out, out
    assert "torchyard: this image (v2.6-cu124) is built around torch 2.6.0" in out
    assert out.strip().splitlines()[-1] == "2.6.0+cu124"


def test_jupyter_answers_on_the_forwarded_port_with_its_token(opened):
    """VS Code forwards the port devcontainer.json names to the laptop, where it reaches the container's own
    localhost:<port>: asked there, with the token `jupyter server list` shows the person."""
    config = json.loads("".join(line for line in opened.config.read_text().splitlines(keepends=True)
                                if not line.startswith("//")))
    [port] = config["forwardPorts"]
    assert config["portsAttributes"][str(port)]["label"] == "JupyterLab"
    listed = opened.run("jupyter", "server", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [server] = [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
    assert server["port"] == port and server["token"]
    url = f"http://localhost:{port}/api/kernels"
    code = opened.run("sh", "-c", f'curl -s -o /dev/null -w "%{{http_code}} " {url}; '
                                  f'curl -s -o /dev/null -w "%{{http_code}}" -H "Authorization: token {server["token"]}" {url}')
    assert code.stdout.split()[-2:] == ["403", "200"], code.stdout + code.stderr
