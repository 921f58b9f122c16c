"""Bad settings for the entrypoint, in the real image: each stops the start with ONE line saying what was wrong and
what would be right, exit 2, within seconds and 200 MB, and changes nothing in the container (`docker diff`).

Each case runs `docker run IMAGE true` with one bad setting: the entrypoint checks every setting before it acts,
whatever the command, so no Jupyter needs to start. The host-side table (matrix, CLI, environment) is elsewhere.
"""

from __future__ import annotations

import base64
import os
import secrets
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
import pytest

from builder import layout

SECONDS, MEMORY = 5, "200m"
SECRET = "hunter2-not-a-hash"


@dataclass(frozen=True)
class Case:
    id: str
    env: dict[str, str]
    says: str  # what the one line must contain
    files: dict[str, bytes | str] = field(default_factory=dict)  # name -> content, mounted under /run/secrets/
    writable_by_user: bool = False  # mount the files read-write and owned by the user (else read-only, root's)
    user: str | None = None
    hidden: tuple[str, ...] = ()  # values the log must never show (secrets)


# A real public key (its private half was thrown away) and something shaped like a private key: the entrypoint must
# refuse it without quoting a byte of its body.
PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBXve+qAXayajaRpdwN1K/qOk4Hz+V91ojd3vk1nvXN table@torchyard"
PRIVATE_BODY = base64.b64encode(secrets.token_bytes(60)).decode()
PRIVATE = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PRIVATE_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"

CASES = [
    # ids
    Case("uid superscript two", {"NB_UID": "\u00b2"}, "NB_UID='\u00b2': give a number from 1 to 2147483647"),
    Case("uid fullwidth digits", {"NB_UID": "\uff11\uff12"}, "NB_UID='\uff11\uff12': give a number"),
    Case("uid zero", {"NB_UID": "0"}, "NB_UID='0': give a number from 1"),
    Case("uid negative", {"NB_UID": "-5"}, "NB_UID='-5': give a number"),
    Case("uid words", {"NB_UID": "abc"}, "NB_UID='abc': give a number"),
    Case("uid too large", {"NB_UID": "99999999999"}, "NB_UID='99999999999': give a number"),
    Case("uid 100k digits", {"NB_UID": "1" * 100_000}, "(100000 characters)': give a number"),
    Case("gid words", {"NB_GID": "staff"}, "NB_GID='staff': give a number"),
    Case("gid zero", {"NB_GID": "0"}, "NB_GID='0': give a number"),
    # PUBLIC_KEY
    Case("key is a password", {"PUBLIC_KEY": "hunter2"}, "PUBLIC_KEY, line 1: not an OpenSSH public key: 'hunter2'"),
    Case("key is a private key", {"PUBLIC_KEY": PRIVATE}, "PUBLIC_KEY holds a PRIVATE key", hidden=(PRIVATE_BODY,)),
    Case("key with an escape sequence", {"PUBLIC_KEY": PUBLIC + " \x1b[31mred"},
         "PUBLIC_KEY, line 1: control character '\\x1b'"),
    Case("key with a carriage return inside", {"PUBLIC_KEY": PUBLIC.replace(" ", "\r", 1)},
         "PUBLIC_KEY, line 1: control character '\\r'"),
    Case("key with authorized_keys options", {"PUBLIC_KEY": f'command="/bin/sh" {PUBLIC}'},
         "not an OpenSSH public key: 'command=\"/bin/sh\""),
    Case("key whose data does not decode", {"PUBLIC_KEY": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBROKEN me"},
         "not a valid OpenSSH public key"),
    Case("key of 100 KB on one line", {"PUBLIC_KEY": "ssh-ed25519 " + "A" * 100_000},
         "(100012 characters)'"),
    Case("101 keys", {"PUBLIC_KEY": "\n".join([PUBLIC] * 101)}, "PUBLIC_KEY holds 101 keys; give at most 100"),
    Case("a second line that is no key", {"PUBLIC_KEY": f"{PUBLIC}\n  # mine\nnot-a-key"},
         "PUBLIC_KEY, line 3: not an OpenSSH public key: 'not-a-key'"),
    # PUBLIC_KEY_FILE
    Case("key file is a folder", {"PUBLIC_KEY_FILE": "/etc"}, "PUBLIC_KEY_FILE='/etc' is a folder; give a file"),
    Case("key file is missing", {"PUBLIC_KEY_FILE": "/run/secrets/none.pub"},
         "PUBLIC_KEY_FILE='/run/secrets/none.pub': cannot read it (No such file or directory); mount it"),
    Case("key file is /dev/zero", {"PUBLIC_KEY_FILE": "/dev/zero"}, "PUBLIC_KEY_FILE='/dev/zero' is not a regular file"),
    Case("key file is relative", {"PUBLIC_KEY_FILE": "id_ed25519.pub"},
         "PUBLIC_KEY_FILE='id_ed25519.pub': give an absolute path in the container"),
    Case("key file the user can write", {"PUBLIC_KEY_FILE": "/run/secrets/key.pub"}, "can write /run/secrets/key.pub",
         files={"key.pub": PUBLIC}, writable_by_user=True),
    Case("key file is not UTF-8", {"PUBLIC_KEY_FILE": "/run/secrets/key.pub"},
         "PUBLIC_KEY_FILE='/run/secrets/key.pub' is not UTF-8 text", files={"key.pub": b"\xff\xfe" + PUBLIC.encode()}),
    Case("key file of 200 KB", {"PUBLIC_KEY_FILE": "/run/secrets/key.pub"},
         "is 204800 bytes; give a file of 1 to 131072 bytes", files={"key.pub": b"#" * 204800}),
    Case("key file holds a private key", {"PUBLIC_KEY_FILE": "/run/secrets/key"},
         "PUBLIC_KEY_FILE (/run/secrets/key) holds a PRIVATE key", files={"key": PRIVATE}, hidden=(PRIVATE_BODY,)),
    # Jupyter
    Case("blank token", {"JUPYTER_TOKEN": "  "}, "JUPYTER_TOKEN is empty; give a token"),
    Case("token with a space", {"JUPYTER_TOKEN": "open sesame"}, "JUPYTER_TOKEN: give printable ASCII without spaces",
         hidden=("sesame",)),
    Case("token of 2000 characters", {"JUPYTER_TOKEN": "t" * 2000}, "at most 1024 characters"),
    Case("token and password hash", {"JUPYTER_TOKEN": "abc", "JUPYTER_PASSWORD_HASH": "sha1:ab:cd"},
         "JUPYTER_TOKEN and JUPYTER_PASSWORD_HASH are set together: give one way to log in"),
    Case("auth off and a token", {"JUPYTER_DISABLE_AUTH": "1", "JUPYTER_TOKEN": "abc"},
         "JUPYTER_TOKEN and JUPYTER_DISABLE_AUTH are set together"),
    Case("auth off maybe", {"JUPYTER_DISABLE_AUTH": "maybe"}, "JUPYTER_DISABLE_AUTH='maybe': give 1"),
    Case("token file is a folder", {"JUPYTER_TOKEN_FILE": "/etc"}, "JUPYTER_TOKEN_FILE='/etc' is a folder"),
    Case("token file is missing", {"JUPYTER_TOKEN_FILE": "/run/secrets/token"},
         "JUPYTER_TOKEN_FILE='/run/secrets/token': cannot read it (No such file or directory)"),
    Case("token file is /dev/zero", {"JUPYTER_TOKEN_FILE": "/dev/zero"}, "is not a regular file"),
    Case("token file of 1 MB", {"JUPYTER_TOKEN_FILE": "/run/secrets/token"}, "is 1048576 bytes; give a file of 1 to 4096",
         files={"token": b"x" * 1048576}),
    Case("password instead of its hash", {"JUPYTER_PASSWORD_HASH": SECRET},
         "JUPYTER_PASSWORD_HASH is not a hash from jupyter_server.auth.passwd()", hidden=(SECRET,)),
    Case("port words", {"JUPYTER_PORT": "http"}, "JUPYTER_PORT='http': give a port from 1 to 65535"),
    Case("port too large", {"JUPYTER_PORT": "70000"}, "JUPYTER_PORT='70000': give a port"),
    Case("allowed host with a bang", {"JUPYTER_ALLOWED_HOSTS": "gpu-box, evil!"},
         "JUPYTER_ALLOWED_HOSTS: 'evil!' is not a host name"),
    Case("allowed host an IP address", {"JUPYTER_ALLOWED_HOSTS": "10.0.0.7"},
         "JUPYTER_ALLOWED_HOSTS: '10.0.0.7' is an IP address"),
    Case("checked with --user too", {"JUPYTER_PORT": "0"}, "JUPYTER_PORT='0': give a port", user="2345:2345"),
]


def ran_seconds(container) -> float:
    """From start to exit, as the engine recorded them (the API's own latency left out)."""
    state = container.attrs["State"]
    started, finished = (datetime.fromisoformat(state[key][:26].rstrip("Z") + "+00:00")  # nanoseconds cut to micro
                         for key in ("StartedAt", "FinishedAt"))
    return (finished - started).total_seconds()


def mount(case: Case, tmp_path: Path) -> dict:
    volumes = {}
    for name, content in case.files.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        if case.writable_by_user:
            os.chown(path, layout.UID, layout.GID)
        volumes[str(path)] = {"bind": f"/run/secrets/{name}", "mode": "rw" if case.writable_by_user else "ro"}
    return volumes


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_setting_stops_the_start_with_one_line(client, built, tmp_path, case):
    container = client.containers.create(built.image, ["true"], environment=case.env, volumes=mount(case, tmp_path),
                                         user=case.user, mem_limit=MEMORY, memswap_limit=MEMORY)
    try:
        container.start()
        status = container.wait(timeout=30)["StatusCode"]
        out = container.logs().decode(errors="replace")
        assert status == 2, out
        container.reload()
        assert ran_seconds(container) < SECONDS
        assert out.count("\n") == 1 and out.startswith("torchyard: cannot start: "), out
        assert case.says in out
        assert " give " in out or "e.g." in out  # what would be right
        for secret in case.hidden:
            assert secret not in out
        mounted = {"/run", "/run/secrets", *(f"/run/secrets/{name}" for name in case.files)}  # Docker made these
        assert [change for change in container.diff() or [] if change["Path"] not in mounted] == [], \
            "a refused start changed the container"
    finally:
        container.remove(force=True, v=True)


def test_the_table_is_as_large_as_promised():
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


# ---------------------------------------------------------------- what must still start
def test_comment_lines_blank_lines_and_crlf_in_the_keys_are_fine(run, built):
    text = f"# my laptop\r\n  # indented comment\r\n\r\n  {PUBLIC}  \r\n"
    out = run(built.image, "cat", "/etc/ssh/authorized_keys/torchyard", environment={"PUBLIC_KEY": text})
    assert [line for line in out.splitlines() if "ssh-ed25519" in line or "#" in line] == [PUBLIC]


def test_a_read_only_key_file_outside_the_users_folders_is_read(run, built, tmp_path):
    (tmp_path / "key.pub").write_text(PUBLIC + "\n")
    os.chown(tmp_path / "key.pub", layout.UID, layout.GID)  # the host user's file, as with -v ~/.ssh/…:ro
    out = run(built.image, "cat", "/etc/ssh/authorized_keys/torchyard",
              environment={"PUBLIC_KEY_FILE": "/run/secrets/key.pub"},
              volumes={str(tmp_path / "key.pub"): {"bind": "/run/secrets/key.pub", "mode": "ro"}})
    assert PUBLIC in out.splitlines()


def test_a_command_that_is_not_there_says_so_with_127(client, built):
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run(built.image, ["no-such-command"], remove=True)
    assert e.value.exit_status == 127
    assert b"'no-such-command' is not a command on PATH" in e.value.stderr
