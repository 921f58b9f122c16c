"""SSH the way clusters and VS Code use it, in the real image (v2.6-cu124, the session's `built`), with the real OpenSSH
client: a local port forward to Jupyter that a kernel runs through, forwarding for the logged-in user only and only from
the client's side, and what VS Code Server needs in the container (its Remote-SSH runs a bash script over SSH)."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import time
from contextlib import contextmanager

import pytest

from builder import layout
from tests.docker.containers import Containers, Running, execute, logs, ssh, ssh_command
from tests.loopback import free_port
from tests.docker.test_workspace import status, wait_for_jupyter

# VS Code Server's Linux prerequisites (code.visualstudio.com/docs/remote/linux, VS Code 1.86 and later): glibc 2.28 and
# libstdc++'s GLIBCXX_3.4.25 or newer, bash, tar, ps; it installs itself in ~/.vscode-server.
GLIBC_MIN, GLIBCXX_MIN = (2, 28), (3, 4, 25)
LIBSTDCXX = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"


@pytest.fixture(scope="module")
def node(client, built, keys):
    """The workspace as it runs on a GPU node: Jupyter with a token, sshd with the user's key, both on loopback."""
    containers = Containers(client, built.image)
    token = secrets.token_hex(24)
    try:
        running = containers.start(environment={"JUPYTER_TOKEN": token, "PUBLIC_KEY": keys.public})
        wait_for_jupyter(running)
        deadline = time.monotonic() + 60
        while "sshd listens" not in logs(running) and time.monotonic() < deadline:
            time.sleep(0.25)
        yield running, token
    finally:
        containers.remove_all()


@contextmanager
def forward(running: Running, keys, spec: str, flag: str = "-L"):
    """`ssh -N <flag> <spec>` (nothing run, only the forward) until the block ends; ExitOnForwardFailure: a forward
    sshd refuses ends the client."""
    process = subprocess.Popen(ssh_command(running.ssh_port, keys.user, keys.known_hosts, "-N", flag, spec,
                                           options=("-o", "ExitOnForwardFailure=yes")),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_for_listener(process: subprocess.Popen, port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ssh ended ({process.returncode}) before its forward listened: {process.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"nothing listened on 127.0.0.1:{port} within {timeout_s}s")


def test_jupyter_through_an_ssh_tunnel_runs_a_kernel(node, keys):
    """`ssh -p 2222 -N -L 8888:localhost:8888 torchyard@gpu-node`, then the laptop's browser on its own 127.0.0.1."""
    running, token = node
    local = free_port()
    with forward(running, keys, f"127.0.0.1:{local}:localhost:{layout.JUPYTER_PORT}") as tunnel:
        wait_for_listener(tunnel, local)
        through = Running(running.container, local, running.ssh_port)
        assert status(f"{through.jupyter}/api/kernels") == 403  # the tunnel carries the request; the token still guards
        assert status(f"{through.jupyter}/api/kernels", token=token) == 200
        out, reply = execute(through, token, "import os, torch; print(torch.__version__, os.getuid(), os.getcwd())")
    assert reply["status"] == "ok", out
    assert out.split() == ["2.6.0+cu124", str(layout.UID), layout.WORKSPACE]


def test_forwarding_is_the_logged_in_users_and_only_from_the_clients_side(node, keys):
    running, _ = node
    with forward(running, keys, f"127.0.0.1:{free_port()}:localhost:{layout.JUPYTER_PORT}", flag="-R") as remote:
        remote.wait(timeout=60)
        assert remote.returncode == 255 and "remote port forwarding failed" in remote.stderr.read()
    # sshd's own reading of its configuration, per user: the Match block holds for torchyard alone
    effective = {}
    for user in (layout.USER, "root", "nobody"):
        result = running.container.exec_run(["/usr/sbin/sshd", "-T", "-C", f"user={user},host=laptop,addr=127.0.0.1"],
                                            user="root")
        assert result.exit_code == 0, result.output
        settings = dict(line.split(" ", 1) for line in result.output.decode().splitlines() if " " in line)
        effective[user] = {name: settings[name] for name in ("allowtcpforwarding", "allowstreamlocalforwarding",
                                                               "gatewayports", "permittunnel", "x11forwarding")}
    assert effective[layout.USER] == {"allowtcpforwarding": "local", "allowstreamlocalforwarding": "local",
                                      "gatewayports": "no", "permittunnel": "no", "x11forwarding": "no"}
    assert effective["root"] == effective["nobody"] == {**effective[layout.USER], "allowtcpforwarding": "no",
                                                        "allowstreamlocalforwarding": "no"}


def test_a_login_shell_over_ssh_has_the_venv_first(node, keys):
    """An interactive `ssh host` is a login shell, whose /etc/profile resets PATH: /etc/profile.d/torchyard.sh puts the
    venv back, and ~/.profile the user's ~/.local/bin before it, as the entrypoint orders them."""
    running, _ = node
    result = ssh(running.ssh_port, keys.user, keys.known_hosts,
                 "bash -l -c 'echo $PATH; python -c \"import torch; print(torch.__version__)\"'")
    assert result.returncode == 0, result.stderr
    path, version = result.stdout.splitlines()[-2:]
    assert path.split(":")[:2] == [f"{layout.HOME}/.local/bin", f"{layout.VENV}/bin"] and version == "2.6.0+cu124"


def test_vs_code_servers_needs_hold_over_ssh(node, keys):
    """What VS Code's Remote-SSH needs of the host it installs its server on, asked over SSH as it asks."""
    running, _ = node
    script = ('echo "bash=$BASH_VERSION"; echo "tar=$(tar --version | head -1)"; echo "glibc=$(getconf GNU_LIBC_VERSION)"; '
              f"echo \"glibcxx=$(grep -ao 'GLIBCXX_3\\.4\\.[0-9]*' {LIBSTDCXX} | sort -uV | tail -1)\"; "
              'echo "ps=$(ps -o comm= -p $$)"; '
              'mkdir -p ~/.vscode-server/bin && touch ~/.vscode-server/bin/probe && echo "server=$(stat -c %U ~/.vscode-server/bin/probe)"')
    result = ssh(running.ssh_port, keys.user, keys.known_hosts, script)  # sshd runs it with the user's shell, bash -c
    assert result.returncode == 0, result.stderr
    found = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert found["bash"].startswith("5.")
    assert found["tar"].startswith("tar (GNU tar)")
    glibc = tuple(map(int, re.fullmatch(r"glibc (\d+)\.(\d+)", found["glibc"]).groups()))
    glibcxx = tuple(map(int, found["glibcxx"].removeprefix("GLIBCXX_").split(".")))
    assert glibc >= GLIBC_MIN and glibcxx >= GLIBCXX_MIN, found
    assert found["ps"] == "bash" and found["server"] == layout.USER  # a writable ~/.vscode-server, the user's
