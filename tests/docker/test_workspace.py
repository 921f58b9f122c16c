"""The workspace in the real image (v2.6-cu124, the session's `built`): Jupyter over HTTP and its websocket,
sshd through the real OpenSSH client, ids on a mounted /workspace, the healthcheck and `docker stop`.

Every container publishes on 127.0.0.1 at free host ports and is removed, whatever the outcome.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
import re
import secrets
import tarfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

import docker.errors
import pytest

from builder import layout
from builder.host import workspace
from tests.docker.containers import Containers, Running, execute, logs, ssh, start_kernel
from tests.loopback import free_port

START_TIMEOUT_S = 120


@pytest.fixture
def free_host_port():
    return free_port


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
    out, reply = execute(running, token, "import torch; print(torch.__version__)")
    assert reply["status"] == "ok", out
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


def test_without_auth_only_loopback_host_names_are_served(containers, jupyter_and_ssh):
    """DNS rebinding: a page on evil.example that points its name at 127.0.0.1 reaches a loopback-published port
    with `Host: evil.example`. Without auth, Jupyter refuses such requests; with a token, the token guards it."""
    no_auth = containers.start(environment={"JUPYTER_DISABLE_AUTH": "1"})
    listed = containers.start(environment={"JUPYTER_DISABLE_AUTH": "1", "JUPYTER_ALLOWED_HOSTS": "gpu-box,gpu-box.lan"})
    for running in (no_auth, listed):
        wait_for_jupyter(running)
        assert status_as(running, "/api/kernels", "evil.example") == 403
        assert status_as(running, "/api/kernels", f"127.0.0.1:{running.jupyter_port}") == 200
        assert status_as(running, "/api/kernels", f"localhost:{running.jupyter_port}") == 200
        assert status_as(running, "/api/kernels", "evil.example", method="POST") == 403  # no kernel for it
    assert status_as(no_auth, "/api/kernels", "gpu-box:8888") == 403
    assert status_as(listed, "/api/kernels", "gpu-box:8888") == 200
    assert status_as(listed, "/api/kernels", "gpu-box.lan") == 200
    assert "Served to the Host names 127.0.0.1, localhost" in logs(no_auth)

    running, token = jupyter_and_ssh  # auth on: any Host, the token decides
    assert status_as(running, "/api/kernels", "evil.example", token=token) == 200
    assert status_as(running, "/api/kernels", "evil.example") == 403


def status_as(running: Running, path: str, host: str, token: str | None = None, method: str = "GET") -> int:
    """The status of a request with this Host header (urllib would send the address it connects to)."""
    headers = {"Host": host, **({"Authorization": f"token {token}"} if token else {})}
    connection = http.client.HTTPConnection("127.0.0.1", running.jupyter_port, timeout=10)
    try:
        connection.request(method, path, body=b"{}" if method == "POST" else None, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


# ---------------------------------------------------------------- the user's own packages
def demo_wheel(folder: Path) -> Path:
    """A pure-Python wheel with a console script, made by hand: installs with --no-index, needs no network."""
    files = {
        "torchyard_demo/__init__.py": "def main():\n    print('demo ran')\n",
        "torchyard_demo-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: torchyard-demo\nVersion: 1.0\n",
        "torchyard_demo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "torchyard_demo-1.0.dist-info/entry_points.txt": "[console_scripts]\ntorchyard-demo = torchyard_demo:main\n",
    }
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
                     f"{len(text.encode())}\n" for name, text in files.items())
    files["torchyard_demo-1.0.dist-info/RECORD"] = record + "torchyard_demo-1.0.dist-info/RECORD,,\n"
    wheel = folder / "torchyard_demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return wheel


def test_the_users_pip_install_goes_to_its_home_for_any_uid_and_torch_stays(built, run, tmp_path):
    wheel = demo_wheel(tmp_path)
    tmp_path.chmod(0o755)  # readable by the container's uid 4321
    out = run(built.image, "sh", "-c",
              f"pip install --no-index /wheels/{wheel.name} 2>&1 && torchyard-demo && "
              "python -c 'import torchyard_demo; print(torchyard_demo.__file__)' && "
              "{ pip uninstall -y torch >/dev/null 2>&1; echo uninstall says $?; } && "
              "python -c 'import torch; print(torch.__version__)'",
              environment={"NB_UID": "4321", "NB_GID": "4321"},
              volumes={str(tmp_path): {"bind": "/wheels", "mode": "ro"}})
    lines = out.splitlines()
    assert "Defaulting to user installation because normal site-packages is not writeable" in lines
    assert "demo ran" in lines  # its script is on the user's PATH (~/.local/bin)
    assert f"{layout.HOME}/.local/lib/python3.11/site-packages/torchyard_demo/__init__.py" in lines
    assert "uninstall says 0" not in lines and lines[-1] == "2.6.0+cu124"  # the venv is root's: torch stays


def test_pip_in_a_notebook_is_seen_by_the_running_kernel_and_by_ssh_never_by_root(jupyter_and_ssh, keys, tmp_path):
    running, token = jupyter_and_ssh
    wheel = demo_wheel(tmp_path)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(wheel, arcname=f"wheels/{wheel.name}")
    running.container.put_archive("/tmp", archive.getvalue())
    kernel = start_kernel(running, token)
    out, _ = execute(running, token, f"%pip install --no-index /tmp/wheels/{wheel.name}", kernel)
    assert "Successfully installed torchyard-demo-1.0" in out
    out, _ = execute(running, token, "import torchyard_demo; torchyard_demo.main()", kernel)  # no kernel restart
    assert out == "demo ran\n"
    result = ssh(running.ssh_port, keys.user, keys.known_hosts, "torchyard-demo")
    assert (result.returncode, result.stdout) == (0, "demo ran\n"), result.stderr
    as_root = running.container.exec_run(["python", "-c", "import torchyard_demo"])  # Docker's default: root
    assert as_root.exit_code == 1 and b"ModuleNotFoundError" in as_root.output


# ---------------------------------------------------------------- SSH
def test_ssh_with_the_key_has_the_images_environment(jupyter_and_ssh, keys):
    running, _ = jupyter_and_ssh
    result = ssh(running.ssh_port, keys.user, keys.known_hosts,
                 'python -c "import torch; print(torch.__version__)"; id -un; echo "$VIRTUAL_ENV $TORCH_HOME $NVIDIA_VISIBLE_DEVICES"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["2.6.0+cu124", layout.USER, f"{layout.VENV} /workspace/.cache/torch all"]


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
        f"{layout.UID}:{layout.GID} {layout.USER} /workspace {layout.HOME}\n"
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
    """What `make run` does (builder.host.workspace.start), on free ports and a name of the test's own."""
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
