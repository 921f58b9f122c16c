"""What the docker tests that start the image share: containers on free 127.0.0.1 ports, always removed, and SSH
through the real OpenSSH client."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from builder import render


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def ssh(port: int, key: Path, known_hosts: Path, *command: str, user: str = render.USER,
        options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-p", str(port), "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}", "-o", "ConnectTimeout=20",
         *options, f"{user}@127.0.0.1", *command],
        capture_output=True, text=True, timeout=90)
