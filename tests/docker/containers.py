"""What the docker tests that start the image share: containers on free 127.0.0.1 ports, always removed, SSH
through the real OpenSSH client, and code run in a Jupyter kernel as JupyterLab runs it."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import websocket

from builder import layout
from tests.loopback import free_port


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


def logs(running: Running) -> str:
    return running.container.logs().decode(errors="replace")


@dataclass(frozen=True)
class Keys:
    user: Path  # private key whose .pub is given to the container
    stranger: Path  # a key nobody gave it
    known_hosts: Path

    @property
    def public(self) -> str:
        return Path(f"{self.user}.pub").read_text().strip()


def ssh_command(port: int, key: Path, known_hosts: Path, *command: str, user: str = layout.USER,
                options: tuple[str, ...] = ()) -> list[str]:
    """The real OpenSSH client's command line to the container's sshd on 127.0.0.1:port, no config file read."""
    return ["ssh", "-F", "/dev/null", "-p", str(port), "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}", "-o", "ConnectTimeout=20",
            *options, f"{user}@127.0.0.1", *command]


def ssh(port: int, key: Path, known_hosts: Path, *command: str, user: str = layout.USER,
        options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(ssh_command(port, key, known_hosts, *command, user=user, options=options),
                          capture_output=True, text=True, timeout=90)


def start_kernel(running: Running, token: str) -> str:
    request = urllib.request.Request(f"{running.jupyter}/api/kernels", method="POST", data=b"{}",
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["id"]


def execute(running: Running, token: str, code: str, kernel_id: str | None = None,
            timeout: float = 300) -> tuple[str, dict]:
    """Run code in a kernel (a new one unless given) over its websocket; its output (streams and errors) and the
    execute_reply."""
    kernel_id = kernel_id or start_kernel(running, token)
    ws = websocket.create_connection(f"ws://127.0.0.1:{running.jupyter_port}/api/kernels/{kernel_id}/channels",
                                     header=[f"Authorization: token {token}"], timeout=timeout)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "session": uuid.uuid4().hex, "username": "test", "msg_type": "execute_request",
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        out, reply, idle = "", None, False
        # The reply (shell channel) may come before the output (iopub): the request is done when both the reply
        # and iopub's "idle" for it have come.
        while reply is None or not idle:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                idle = True
            elif msg["msg_type"] == "stream":
                out += msg["content"]["text"]
            elif msg["msg_type"] == "error":
                out += "\n".join(msg["content"]["traceback"])
            elif msg["msg_type"] == "execute_reply":
                reply = msg["content"]
    finally:
        ws.close()
    return out, reply
