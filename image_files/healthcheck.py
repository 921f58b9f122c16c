#!/usr/bin/python3 -I
"""torchyard's HEALTHCHECK: every service this container runs answers. Cheap (it runs every few seconds):
plain sockets and /proc, no imports beyond the standard few.

Jupyter (when a Jupyter server process runs): GET /api on JUPYTER_PORT (default 8888) gives 200; it needs no token.
sshd (when its listener runs): port 22 is listening. Read from /proc/net, not by connecting: every connection
would put a line in sshd's log.
A container running only the user's command (`docker run IMAGE python train.py`) has nothing to check: healthy.

Docker runs it as root, so it opens nothing of the user's: the system Python with -I (no user site, no PYTHON*
variables, no current folder or script folder on sys.path), the standard library, /proc and a socket.
JUPYTER_PORT was checked by the entrypoint at start (the container's environment cannot change after).
"""

import os
import socket
import sys

JUPYTER_ARGS = (b"jupyter-lab", b"jupyter-server", b"jupyter-notebook")
LISTEN = "0A"  # the TCP state in /proc/net/tcp


def processes() -> list[list[bytes]]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found.append(f.read().split(b"\0"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def jupyter_answers(port: int) -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /api HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            status = s.recv(64).split(b"\r\n", 1)[0]
    except OSError as e:
        return f"Jupyter on port {port} does not answer: {e}"
    return None if status.split()[1:2] == [b"200"] else f"Jupyter on port {port} answered {status!r}"


def listening(port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            continue
        if any(row[1].endswith(f":{port:04X}") and row[3] == LISTEN for row in rows):
            return None
    return f"nothing listens on port {port}"


def main() -> int:
    running = processes()
    problems = []
    if any(os.path.basename(arg) in JUPYTER_ARGS for argv in running for arg in argv[:2]):
        problems.append(jupyter_answers(int(os.environ.get("JUPYTER_PORT") or 8888)))
    # sshd renames its listener "sshd: /usr/sbin/sshd -D -e [listener] ..."; sessions are "sshd: user@..."
    if any(b"/usr/sbin/sshd -D" in b" ".join(argv) for argv in running):
        problems.append(listening(22))
    problems = [p for p in problems if p]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
