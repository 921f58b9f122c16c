"""`make run`: start an image's workspace (JupyterLab, and SSH when a public key is found) the convenient way.

Ports are published on 127.0.0.1 unless asked otherwise: reaching a workspace from other machines is a
choice (BIND=0.0.0.0), not a default. The folder mounted at /workspace is made by us, as the invoking user,
and the container's user gets that user's ids (NB_UID/NB_GID), so what it writes there belongs to you.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shlex
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import docker

from builder import layout
from builder.host import gpu
from builder.image import engine

KEY_NAMES = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")  # what ssh-keygen makes, preferred first
TOKEN_RE = re.compile(r"/lab\?token=([0-9a-f]{16,})")
READY_TIMEOUT_S = 180


class WorkspaceError(Exception):
    pass


@dataclass(frozen=True)
class Workspace:
    image: str
    name: str
    folder: Path
    bind: str
    jupyter_port: int
    ssh_port: int
    key_file: Path | None  # the public key passed as PUBLIC_KEY; None: SSH stays off
    ids: tuple[int, int] | None  # NB_UID/NB_GID; None when the caller is root (the image never runs as root)
    token_from_env: bool  # JUPYTER_TOKEN is set here and passed on; else Jupyter makes one


def find_public_key(environ: dict[str, str], home: Path) -> Path | None:
    """PUBLIC_KEY_FILE when set (it must exist), else the first of ~/.ssh/id_{ed25519,ecdsa,rsa}.pub."""
    named = environ.get("PUBLIC_KEY_FILE")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise WorkspaceError(f"PUBLIC_KEY_FILE={named}: no such file; name your public key (a .pub file), "
                                 "or unset it to use ~/.ssh/id_ed25519.pub")
        return path
    return next((home / ".ssh" / n for n in KEY_NAMES if (home / ".ssh" / n).is_file()), None)


@functools.cache
def _entrypoint() -> ModuleType:
    """The image's entrypoint as a module (it runs nothing when imported): the image cannot import builder, so the
    grammar both sides share lives there."""
    spec = importlib.util.spec_from_file_location("torchyard_entrypoint", layout.ROOT / layout.ENTRYPOINT_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def public_keys(text: str, source: str) -> str:
    """The OpenSSH public key lines of a .pub file's text, by the grammar the image's entrypoint checks PUBLIC_KEY
    with at start (its check_keys): what passes here passes there, short of ssh-keygen's decoding of the key itself."""
    grammar = _entrypoint()
    try:
        return grammar.check_keys(text, source)
    except grammar.StartError as e:
        raise WorkspaceError(str(e)) from None


def plan(image: str, tag: str, folder: Path, bind: str, jupyter_port: int, ssh_port: int,
         environ: dict[str, str] | None = None, home: Path | None = None,
         uid: int | None = None, gid: int | None = None, name: str | None = None) -> Workspace:
    environ = dict(os.environ if environ is None else environ)
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    for what, port in (("jupyter port", jupyter_port), ("ssh port", ssh_port)):
        if not 0 < port < 65536:
            raise WorkspaceError(f"{what} {port}: give a port from 1 to 65535")
    return Workspace(
        image=image,
        name=name or f"torchyard-{tag}",
        folder=folder.resolve(),
        bind=bind,
        jupyter_port=jupyter_port,
        ssh_port=ssh_port,
        key_file=find_public_key(environ, home or Path.home()),
        ids=None if uid == 0 else (uid, gid),
        token_from_env=bool(environ.get("JUPYTER_TOKEN", "").strip()),
    )


def environment(ws: Workspace, environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    env = {}
    if ws.key_file:
        env["PUBLIC_KEY"] = ws.key_file.read_text().strip()
    if ws.ids:
        env["NB_UID"], env["NB_GID"] = map(str, ws.ids)
    if ws.token_from_env:
        env["JUPYTER_TOKEN"] = environ["JUPYTER_TOKEN"].strip()
    return env


def run_kwargs(ws: Workspace, gpu_options: dict, environ: dict[str, str] | None = None) -> dict:
    """Keyword arguments for client.containers.run."""
    return {
        "name": ws.name,
        "detach": True,
        "ports": {f"{layout.JUPYTER_PORT}/tcp": (ws.bind, ws.jupyter_port), f"{layout.SSH_PORT}/tcp": (ws.bind, ws.ssh_port)},
        "volumes": {str(ws.folder): {"bind": layout.WORKSPACE, "mode": "rw"}},
        "environment": environment(ws, environ),
        **gpu_options,
    }


def docker_run_line(ws: Workspace, gpu_options: dict) -> str:
    """The same start as one `docker run` a person can paste (the key read from its file, the token from $JUPYTER_TOKEN)."""
    words = ["docker", "run", "-d", "--name", ws.name, *gpu.docker_run_flags(gpu_options),
             "-p", f"{ws.bind}:{ws.jupyter_port}:{layout.JUPYTER_PORT}", "-p", f"{ws.bind}:{ws.ssh_port}:{layout.SSH_PORT}",
             "-v", f"{ws.folder}:{layout.WORKSPACE}"]
    line = " ".join(shlex.quote(w) for w in words)
    if ws.ids:
        line += f" -e NB_UID={ws.ids[0]} -e NB_GID={ws.ids[1]}"
    if ws.key_file:
        line += f' -e PUBLIC_KEY="$(cat {shlex.quote(str(ws.key_file))})"'
    if ws.token_from_env:
        line += " -e JUPYTER_TOKEN"
    return f"{line} {shlex.quote(ws.image)}"


# The workspace answers on this machine: a probe of it never goes through http_proxy (behind a proxy it would
# time out and leave the container running).
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_status(url: str) -> int | None:
    try:
        with _DIRECT.open(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_for_jupyter(container, ws: Workspace, timeout_s: float = READY_TIMEOUT_S) -> str:
    """Until Jupyter answers on the published port; its token, read from the log unless we passed it."""
    host = "127.0.0.1" if ws.bind in ("0.0.0.0", "") else ws.bind
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        if container.status not in ("created", "running"):
            tail = container.logs(tail=30).decode(errors="replace")
            raise WorkspaceError(f"{ws.name} stopped ({container.status}) before Jupyter answered; its log ends:\n{tail}")
        if _http_status(f"http://{host}:{ws.jupyter_port}/api") == 200:
            if ws.token_from_env:
                return os.environ["JUPYTER_TOKEN"].strip()
            found = TOKEN_RE.search(container.logs().decode(errors="replace"))
            if found:
                return found[1]
        time.sleep(0.5)
    raise WorkspaceError(f"Jupyter in {ws.name} did not answer on {host}:{ws.jupyter_port} within {timeout_s:.0f}s; "
                         f"see `docker logs {ws.name}`")


def _run(client: docker.DockerClient, ws: Workspace, options: dict, say: Callable[[str], None]):
    line = docker_run_line(ws, options)
    say(f"starting {ws.name}: {line}")
    try:
        with engine.translated():
            return client.containers.run(ws.image, **run_kwargs(ws, options))
    except engine.EngineError as e:
        if left := engine.find_container(client, ws.name):  # created but not started, it would block the name
            left.remove(force=True)
        raise WorkspaceError(f"docker could not start {ws.name}: {e}\n  the same start by hand: {line}") from None


def start(client: docker.DockerClient, ws: Workspace, say: Callable[[str], None]) -> str:
    """Start the workspace container; returns the Jupyter URL with its token."""
    if engine.find_image(client, ws.image) is None:
        raise WorkspaceError(f"no image {ws.image}; build it first: make build TAG={ws.image.rsplit(':', 1)[1]}")
    if existing := engine.find_container(client, ws.name):
        raise WorkspaceError(f"a container named {ws.name} exists ({existing.status}); "
                             f"stop and remove it first: docker rm -f {ws.name}")
    ws.folder.mkdir(parents=True, exist_ok=True)  # made by you, so Docker does not make it as root
    options = gpu.run_options(client)
    if "device_requests" not in options:
        say("no NVIDIA container toolkit found: the workspace runs on the CPU (TORCHYARD_GPUS=all to insist)")
    container = _run(client, ws, options, say)
    token = wait_for_jupyter(container, ws)
    host = "127.0.0.1" if ws.bind in ("0.0.0.0", "") else ws.bind
    url = f"http://{host}:{ws.jupyter_port}/lab?token={token}"
    say(f"JupyterLab: {url}")
    if ws.key_file:
        say(f"SSH:        ssh -p {ws.ssh_port} {layout.USER}@{host}   (key: {ws.key_file})")
    else:
        say("SSH:        off (no ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub; PUBLIC_KEY_FILE=... names one)")
    say(f"files:      {ws.folder} is /workspace" + (f" (written as uid {ws.ids[0]})" if ws.ids else ""))
    say(f"stop:       docker stop {ws.name} && docker rm {ws.name}")
    return url
