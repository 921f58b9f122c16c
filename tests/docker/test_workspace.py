"""The workspace in the real image (v2.6-cu124, the session's `built`): Jupyter over HTTP and its websocket,
sshd through the real OpenSSH client, ids on a mounted /workspace, the healthcheck and `docker stop`.

Every container publishes on 127.0.0.1 at free host ports and is removed, whatever the outcome.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import pytest
import websocket

from builder import render, workspace

START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_host_port():
    return free_port


@dataclass(frozen=True)
class Running:
    container: object
    jupyter_port: int
    ssh_port: int

    @property
    def jupyter(self) -> str:
        return f"http://127.0.0.1:{self.jupyter_port}"


class Containers:
    """Starts containers of an image detached, ports on 127.0.0.1; remove_all() in teardown."""

    def __init__(self, client, image: str):
        self.client, self.image, self.started = client, image, []

    def start(self, *command: str, **kwargs) -> Running:
        jupyter_port, ssh_port = free_port(), free_port()
        container = self.client.containers.run(
            self.image, list(command) or None, detach=True,
            ports={"8888/tcp": ("127.0.0.1", jupyter_port), "22/tcp": ("127.0.0.1", ssh_port)}, **kwargs)
        self.started.append(container)
        return Running(container, jupyter_port, ssh_port)

    def remove_all(self) -> None:
        for container in self.started:
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass


@pytest.fixture
def containers(client, built):
    made = Containers(client, built.image)
    yield made
    made.remove_all()


@pytest.fixture(scope="module")
def module_containers(client, built):
    made = Containers(client, built.image)
    yield made
    made.remove_all()


def status(url: str, token: str | None = None, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def wait_for_jupyter(running: Running, timeout_s: float = START_TIMEOUT_S) -> float:
    """Seconds until GET /api answers 200; fails with the container's log if it stops or never answers."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        running.container.reload()
        if running.container.status == "exited":
            pytest.fail(f"the container exited before Jupyter answered:\n{logs(running)}")
        try:
            if status(f"{running.jupyter}/api") == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"Jupyter did not answer within {timeout_s}s:\n{logs(running)}")


def logs(running: Running) -> str:
    return running.container.logs().decode(errors="replace")


# ---------------------------------------------------------------- SSH through the real OpenSSH client
@dataclass(frozen=True)
class Keys:
    user: Path  # private key whose .pub is given to the container
    stranger: Path  # a key nobody gave it
    known_hosts: Path

    @property
    def public(self) -> str:
        return Path(f"{self.user}.pub").read_text().strip()


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Keys:
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.fail("the SSH tests need the OpenSSH client: apt-get install openssh-client (.ci/run does)")
    folder = tmp_path_factory.mktemp("ssh")
    for name in ("user", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)], check=True)
    return Keys(folder / "user", folder / "stranger", folder / "known_hosts")


def ssh(port: int, key: Path, known_hosts: Path, *command: str, user: str = render.USER,
        options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-p", str(port), "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}", "-o", "ConnectTimeout=20",
         *options, f"{user}@127.0.0.1", *command],
        capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def jupyter_and_ssh(module_containers, keys):
    """The default start: Jupyter with a given token, sshd with a given key."""
    token = secrets.token_hex(24)
    running = module_containers.start(environment={"JUPYTER_TOKEN": token, "PUBLIC_KEY": keys.public})
    wait_for_jupyter(running)
    return running, token


# ---------------------------------------------------------------- Jupyter
def test_jupyter_answers_403_without_the_token_and_200_with_it(jupyter_and_ssh):
    running, token = jupyter_and_ssh
    assert status(f"{running.jupyter}/api/kernels") == 403
    assert status(f"{running.jupyter}/api/kernels", token="not-the-token") == 403
    assert status(f"{running.jupyter}/api/kernels", token=token) == 200
    assert status(f"{running.jupyter}/api/kernels?token={token}") == 200


def test_a_kernel_runs_torch_over_the_websocket_api(jupyter_and_ssh):
    running, token = jupyter_and_ssh
    request = urllib.request.Request(f"{running.jupyter}/api/kernels", method="POST", data=b"{}",
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        kernel = json.load(response)
    ws = websocket.create_connection(f"ws://127.0.0.1:{running.jupyter_port}/api/kernels/{kernel['id']}/channels",
                                     header=[f"Authorization: token {token}"], timeout=60)
    try:
        msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "session": session, "username": "test", "msg_type": "execute_request",
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": "import torch; print(torch.__version__)", "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        out, reply = "", None
        while reply is None:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out += msg["content"]["text"]
            elif msg["msg_type"] == "error":
                pytest.fail("\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "execute_reply":
                reply = msg["content"]
    finally:
        ws.close()
    assert reply["status"] == "ok"
    assert out.strip() == "2.6.0+cu124"


def test_token_from_a_file_a_random_token_and_auth_off_only_when_asked(containers, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("from-a-secret-file\n")  # the newline a secret file usually ends with is not part of it
    from_file = containers.start(environment={"JUPYTER_TOKEN_FILE": "/run/secrets/token"},
                                 volumes={str(secret): {"bind": "/run/secrets/token", "mode": "ro"}})
    random_token = containers.start()
    no_auth = containers.start(environment={"JUPYTER_DISABLE_AUTH": "1"})
    empty = containers.start(environment={"JUPYTER_TOKEN": " "})

    wait_for_jupyter(from_file)
    assert status(f"{from_file.jupyter}/api/kernels", token="from-a-secret-file") == 200
    assert status(f"{from_file.jupyter}/api/kernels") == 403

    wait_for_jupyter(random_token)
    found = re.search(r"http://127\.0\.0\.1:8888/lab\?token=([0-9a-f]{48})", logs(random_token))
    assert found, logs(random_token)
    assert status(f"{random_token.jupyter}/api/kernels", token=found[1]) == 200
    assert status(f"{random_token.jupyter}/api/kernels") == 403

    wait_for_jupyter(no_auth)
    assert status(f"{no_auth.jupyter}/api/kernels") == 200
    assert "WITHOUT ANY AUTHENTICATION" in logs(no_auth)

    assert empty.container.wait(timeout=60)["StatusCode"] != 0  # a blank token is refused, never "no auth"
    assert "JUPYTER_TOKEN is empty" in logs(empty)


# ---------------------------------------------------------------- SSH
def test_ssh_with_the_key_has_the_images_environment(jupyter_and_ssh, keys):
    running, _ = jupyter_and_ssh
    result = ssh(running.ssh_port, keys.user, keys.known_hosts,
                 'python -c "import torch; print(torch.__version__)"; id -un; echo "$VIRTUAL_ENV $TORCH_HOME $NVIDIA_VISIBLE_DEVICES"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["2.6.0+cu124", render.USER, f"{render.VENV} /workspace/.cache/torch all"]


def test_ssh_refuses_passwords_root_and_unknown_keys(jupyter_and_ssh, keys):
    running, _ = jupyter_and_ssh
    # Passwords: the server offers publickey and nothing else.
    password = ssh(running.ssh_port, keys.user, keys.known_hosts, "true", options=(
        "-v", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"))
    assert password.returncode == 255
    assert "Authentications that can continue: publickey\n" in password.stderr
    assert "Permission denied (publickey)" in password.stderr

    # Root: refused even with a key root itself would accept.
    running.container.exec_run(["sh", "-c", f"install -d -m 700 /root/.ssh && echo '{keys.public}' > /root/.ssh/authorized_keys"
                                            " && chmod 600 /root/.ssh/authorized_keys"], user="root")
    root = ssh(running.ssh_port, keys.user, keys.known_hosts, "true", user="root")
    assert root.returncode == 255 and "Permission denied (publickey)" in root.stderr

    stranger = ssh(running.ssh_port, keys.stranger, keys.known_hosts, "true")
    assert stranger.returncode == 255 and "Permission denied (publickey)" in stranger.stderr


def test_each_container_makes_its_own_host_key(jupyter_and_ssh, containers, keys):
    running, _ = jupyter_and_ssh
    other = containers.start("sleep", "60", environment={"PUBLIC_KEY": keys.public})
    deadline = time.monotonic() + 60
    while "sshd listens" not in logs(other) and time.monotonic() < deadline:
        time.sleep(0.25)
    host_keys = []
    for c in (running.container, other.container):
        result = c.exec_run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
        assert result.exit_code == 0, result.output
        host_keys.append(result.output.decode().split()[1])
    assert host_keys[0] != host_keys[1]
    # and the one a client saw is the container's own (accept-new recorded it on first contact)
    assert ssh(running.ssh_port, keys.user, keys.known_hosts, "true").returncode == 0
    assert host_keys[0] in keys.known_hosts.read_text()


def test_no_layer_holds_a_host_key_or_an_authorized_key(client, built, run):
    graph = client.api.inspect_image(built.image)["GraphDriver"]
    if graph["Name"] != "overlay2":
        pytest.skip(f"reads overlay2 layer folders; this engine uses {graph['Name']}")
    layers = [graph["Data"]["UpperDir"], *graph["Data"].get("LowerDir", "").split(":")]
    if not all(os.path.isdir(layer) for layer in layers):
        pytest.skip("the engine's layer folders are not on this machine (remote or rootless engine)")
    found = []
    for layer in layers:
        for folder, _, files in os.walk(layer):
            found += [os.path.join(folder, f) for f in files if f.startswith("ssh_host_") or f.startswith("authorized_keys")]
    assert found == []
    assert len(layers) > 10  # every layer was looked at, not an empty list
    # what a fresh container sees, before the entrypoint runs
    out = run(built.image, "/", "-xdev", "(", "-name", "ssh_host_*", "-o", "-name", "authorized_keys*", ")",
              entrypoint=["find"])
    assert out == ""


def test_a_bad_public_key_stops_the_start_with_the_reason(client, built):
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run(built.image, ["true"], environment={"PUBLIC_KEY": "hunter2"}, remove=True)
    assert e.value.exit_status == 2
    assert b"not an OpenSSH public key: 'hunter2'" in e.value.stderr


# ---------------------------------------------------------------- users, ids and commands
def test_commands_run_as_the_user_in_workspace_and_keep_their_exit_status(client, built, run):
    assert run(built.image, "sh", "-c", 'echo "$(id -u):$(id -g) $(id -un) $(pwd) $HOME"') == \
        f"{render.UID}:{render.GID} {render.USER} /workspace {render.HOME}\n"
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run(built.image, ["python", "-c", "import sys; sys.exit(3)"], remove=True)
    assert e.value.exit_status == 3


def test_files_in_a_mounted_workspace_belong_to_NB_UID(built, run, tmp_path):
    folder = tmp_path / "ws"
    folder.mkdir(mode=0o700)  # as Docker makes a missing -v folder: root's, empty
    run(built.image, "sh", "-c", "touch /workspace/made && mkdir /workspace/dir",
        environment={"NB_UID": "4321", "NB_GID": "4322"}, volumes={str(folder): {"bind": "/workspace", "mode": "rw"}})
    for path in (folder / "made", folder / "dir"):
        assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4322)


def test_files_in_a_mounted_workspace_belong_to_the_user_given(built, run, tmp_path, keys):
    folder = tmp_path / "ws"
    folder.mkdir()
    folder.chmod(0o777)
    out = run(built.image, "sh", "-c", "touch /workspace/made && echo $HOME", user="2345:2346",
              environment={"PUBLIC_KEY": keys.public}, volumes={str(folder): {"bind": "/workspace", "mode": "rw"}})
    made = (folder / "made").stat()
    assert (made.st_uid, made.st_gid) == (2345, 2346)
    assert "SSH is off: this container runs as uid 2345 (--user)" in out
    assert "/tmp/home-2345" in out.splitlines()  # no passwd entry: a HOME it can write


# ---------------------------------------------------------------- health and stop
def test_health_turns_healthy_and_docker_stop_is_quick(containers, keys):
    running = containers.start(environment={"PUBLIC_KEY": keys.public})
    deadline = time.monotonic() + START_TIMEOUT_S
    health = None
    while time.monotonic() < deadline:
        running.container.reload()
        health = running.container.attrs["State"].get("Health", {})
        if health.get("Status") in ("healthy", "unhealthy") or running.container.status == "exited":
            break
        time.sleep(0.5)
    assert health and health["Status"] == "healthy", (health, logs(running))
    started = time.monotonic()
    running.container.stop(timeout=10)
    seconds = time.monotonic() - started
    running.container.reload()
    assert seconds < 10, f"docker stop took {seconds:.1f}s (killed at the timeout, not stopped by SIGTERM)"
    assert running.container.attrs["State"]["ExitCode"] != 137  # it stopped on SIGTERM, was not killed


# ---------------------------------------------------------------- make run
def test_make_run_starts_the_workspace_and_prints_the_url_with_its_token(client, built, keys, tmp_path, free_host_port):
    """What `make run` does (builder.workspace.start), on free ports and a name of the test's own."""
    ws = workspace.plan(built.image, "test", tmp_path / "workspace", "127.0.0.1", free_host_port(), free_host_port(),
                        environ={"PUBLIC_KEY_FILE": f"{keys.user}.pub"}, uid=4321, gid=4321,
                        name=f"torchyard-test-run-{uuid.uuid4().hex[:8]}")
    said = []
    try:
        url = workspace.start(client, ws, say=said.append)
        assert status(url.replace("/lab?", "/api/kernels?")) == 200
        assert status(f"http://127.0.0.1:{ws.jupyter_port}/api/kernels") == 403
        assert f"JupyterLab: {url}" in said
        assert ssh(ws.ssh_port, keys.user, keys.known_hosts, "touch /workspace/made").returncode == 0
        assert (tmp_path / "workspace" / "made").stat().st_uid == 4321
    finally:
        try:
            client.containers.get(ws.name).remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
