"""No way to root: nothing that runs as root (the entrypoint, sshd, the HEALTHCHECK, `docker exec`) executes, imports
or reads as a setting a file the default user can write. Proved against the real image, as a hostile user would try:

1. As `torchyard`, find every folder it can write (`find /` as the user) and plant in each an executable under
   every command name the image has (the entrypoint's COMMANDS and every file of every folder on PATH), Python
   modules under every standard-library name and more (sitecustomize, usercustomize, a .pth), a key in
   ~/.ssh/authorized_keys and links from the home to /etc. Each plant records the uid that ran it.
2. Make root work: `docker restart` (tini, the entrypoint, sshd, setpriv), SSH logins, HEALTHCHECK runs,
   `docker exec` as root, and a fresh start from the planted container with other ids (the home handed over,
   /etc/passwd changed, the host key made anew, a key file checked).
3. No record says uid 0; records by the user prove the plants were live.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder import layout
from tests.docker.containers import Containers, ssh
from tests.host.test_workspace import load_template

RECORDS = "/tmp/plant-records"
NEW_UID, NEW_GID = 4321, 4322
MAX_FOLDERS = 100  # the user's own (home, /workspace, temporary folders) are a few dozen; more is a regression
# What the planted executables and modules do: write "uid path" into a new file under RECORDS, then (executables)
# run the real command, so the user's own work goes on and a plant found on the user's PATH is seen running.
SYSTEM_PATH = f"{layout.VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RECORD_SH = f"""#!/bin/sh
printf '%s %s\\n' "$(/usr/bin/id -u)" "$0" > "$(/usr/bin/mktemp {RECORDS}/sh.XXXXXXXX)"
PATH={SYSTEM_PATH} exec "${{0##*/}}" "$@"
"""
RECORD_PY = f"""import os as _os
try:
    _fd = _os.open("{RECORDS}/py." + _os.urandom(8).hex(), _os.O_WRONLY | _os.O_CREAT | _os.O_EXCL, 0o644)
    _os.write(_fd, f"{{_os.getuid()}} {{__file__}}\\n".encode())
    _os.close(_fd)
except OSError:
    pass
"""
RECORD_PTH = ("import os; fd = os.open('{records}/pth.' + os.urandom(8).hex(), os.O_WRONLY | os.O_CREAT, 0o644); "
              "os.write(fd, f'{{os.getuid()}} {folder}/zz_planted.pth\\n'.encode()); os.close(fd)\n")

# Runs as the user inside the container (the system Python): finds what it can write and plants there.
PLANT = textwrap.dedent("""
    import json, os, subprocess, sys
    records, commands, path, record_sh, record_py, record_pth, limit = sys.argv[1:8]
    os.makedirs(records, exist_ok=True)
    os.chmod(records, 0o777)
    names = {os.path.basename(c) for c in commands.split(",")}
    for folder in path.split(":"):
        names.update(os.listdir(folder) if os.path.isdir(folder) else [])
    modules = set(sys.stdlib_module_names) | {"sitecustomize", "usercustomize", "torch", "numpy", "jupyter_server",
                                              "ipykernel", "smoke_tests", "pip", "setuptools"}
    found = subprocess.run(["find", "/", "(", "-path", "/proc", "-o", "-path", "/sys", ")", "-prune", "-o",
                            "-writable", "(", "-type", "d", "-printf", "d %p\\\\n", "-o", "-type", "f",
                            "-printf", "f %p\\\\n", ")"], capture_output=True, text=True).stdout.splitlines()
    folders = [line[2:] for line in found if line.startswith("d ") and not line[2:].startswith(records)]
    files = [line[2:] for line in found if line.startswith("f ")]
    planted = {}
    for folder in folders if len(folders) <= int(limit) else []:  # thousands: the venv is the user's again
        count = 0
        for name, text, mode in [*((n, record_sh, 0o755) for n in names),
                                 *((m + ".py", record_py, 0o644) for m in modules),
                                 ("zz_planted.pth", record_pth.format(records=records, folder=folder), 0o644)]:
            try:
                fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                try:
                    os.write(fd, text.encode())
                finally:
                    os.close(fd)
            except OSError:  # a name already there, or a folder that holds no files (/dev/mqueue)
                continue
            count += 1
        planted[folder] = count
    print(json.dumps({"folders": folders, "files": files, "planted": planted, "names": len(names)}))
""")


@dataclass(frozen=True)
class Planted:
    folders: list[str]  # every folder the user can write
    files: list[str]  # every file the user can write
    planted: dict[str, int]  # folder -> files planted there
    names: int  # command names planted in each folder
    records: list[tuple[int, str]]  # (uid, plant) of every plant that ran, in both containers
    first: object  # the planted container, restarted
    second: object  # a fresh start of the planted container (committed) with NB_UID/NB_GID and a key file
    host_folder: Path  # mounted into the second's home, holding a file of uid 1000
    root_path: str  # PATH of root's `docker exec`
    root_sys_path: list[str]  # sys.path of root's `python` in `docker exec`


def in_container(container, *argv: str, user: str = "root", workdir: str | None = None) -> str:
    result = container.exec_run(list(argv), user=user, workdir=workdir)
    assert result.exit_code == 0, (argv, result.output.decode(errors="replace"))
    return result.output.decode()


def sh(container, command: str, user: str = "root", workdir: str | None = None) -> str:
    return in_container(container, "/bin/sh", "-c", command, user=user, workdir=workdir)


def wait_for(container, text: str, times: int = 1, timeout_s: float = 60) -> None:
    """Until the container's log says `text` for the `times`th time."""
    deadline = time.monotonic() + timeout_s
    while container.logs().decode(errors="replace").count(text) < times:
        container.reload()
        assert container.status == "running" and time.monotonic() < deadline, container.logs().decode(errors="replace")
        time.sleep(0.25)


def wait_for_healthy(container, timeout_s: float = 30) -> None:
    """Docker resets the health to "starting" at every start: "healthy" means a HEALTHCHECK ran since and passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        health = container.attrs["State"].get("Health", {})
        if health.get("Status") == "healthy":
            return
        time.sleep(0.5)
    pytest.fail(f"not healthy within {timeout_s}s: {health}")


@pytest.fixture(scope="module")
def planted(client, built, keys, tmp_path_factory) -> Planted:
    entrypoint = load_template("entrypoint.py")
    first_image, committed = Containers(client, built.image), None
    try:
        first = first_image.start("sleep", "infinity", environment={"PUBLIC_KEY": keys.public})
        wait_for(first.container, "sshd listens")
        user = str(layout.UID)
        image_path = sh(first.container, "echo $PATH").strip()
        found = json.loads(in_container(first.container, "/usr/bin/python3", "-c", PLANT, RECORDS,
                                        ",".join(entrypoint.COMMANDS), image_path, RECORD_SH, RECORD_PY, RECORD_PTH,
                                        str(MAX_FOLDERS), user=user))
        assert len(found["folders"]) <= MAX_FOLDERS, \
            f"the user can write {len(found['folders'])} folders, e.g. {sorted(found['folders'])[::500]}"
        # sshd must not take the user's own list of keys; root must not follow the user's links.
        stranger = Path(f"{keys.stranger}.pub").read_text().strip()
        sh(first.container, f"mkdir -p -m 700 ~/.ssh && echo '{stranger}' > ~/.ssh/authorized_keys && "
                            "chmod 600 ~/.ssh/authorized_keys && cp ~/.local/bin/id ~/.ssh/rc && "
                            "ln -s /etc ~/etc-link && ln -s /etc/shadow ~/shadow-link", user=user)
        # The user's own Python sees the plants: in its site (usercustomize, the .pth) and in its current folder.
        sh(first.container, "python -c 'import colorsys'", user=user, workdir="/workspace")  # not imported at start

        first.container.restart(timeout=10)
        wait_for(first.container, "sshd listens", times=2)
        assert ssh(first.ssh_port, keys.user, keys.known_hosts, "id -u").stdout.strip() == user
        assert ssh(first.ssh_port, keys.stranger, keys.known_hosts, "true").returncode == 255
        wait_for_healthy(first.container)
        root_path = sh(first.container, "python -c 'import json, torch' && pip --version >/dev/null && echo $PATH")
        root_sys_path = json.loads(sh(first.container, "python -c 'import json, sys; print(json.dumps(sys.path))'"))

        # A fresh start of what the user left behind, with other ids: every step of the root phase runs again.
        sh(first.container, "rm /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub")
        committed = first.container.commit()
        host_folder = tmp_path_factory.mktemp("mounted-in-home")
        (host_folder / "theirs").write_text("a host file of uid 1000\n")
        os.chown(host_folder / "theirs", layout.UID, layout.GID)
        key_file = host_folder.parent / f"{host_folder.name}.pub"
        key_file.write_text(keys.public + "\n")
        second_image = Containers(client, committed.id)
        try:
            second = second_image.start(
                "sleep", "infinity",
                environment={"NB_UID": str(NEW_UID), "NB_GID": str(NEW_GID), "PUBLIC_KEY_FILE": "/run/secrets/key.pub"},
                volumes={str(host_folder): {"bind": f"{layout.HOME}/mounted", "mode": "rw"},
                         str(key_file): {"bind": "/run/secrets/key.pub", "mode": "ro"}})
            wait_for(second.container, "sshd listens")
            assert ssh(second.ssh_port, keys.user, keys.known_hosts, "id -u").stdout.strip() == str(NEW_UID)
            wait_for_healthy(second.container)
            records = []
            for line in sh(second.container, f"cat {RECORDS}/*").splitlines():
                uid, plant = line.split(" ", 1)
                records.append((int(uid), plant))
            yield Planted(found["folders"], found["files"], found["planted"], found["names"], records,
                          first.container, second.container, host_folder, root_path.strip(),
                          ["/" if p == "" else p for p in root_sys_path])  # "": the current folder, /
        finally:
            second_image.remove_all()
    finally:
        first_image.remove_all()
        if committed is not None:
            client.images.remove(committed.id, force=True)


def test_the_user_writes_only_its_own_folders_and_none_is_on_roots_path(planted):
    assert {"/tmp", "/var/tmp", "/workspace", layout.HOME, f"{layout.HOME}/.local/bin"} <= set(planted.folders)
    assert not any(f == layout.VENV or f.startswith(f"{layout.VENV}/") for f in planted.folders + planted.files)
    assert set(planted.root_path.split(":")).isdisjoint(planted.folders)
    assert set(planted.root_sys_path).isdisjoint(planted.folders)
    mine = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/lock/", "/workspace/", f"{layout.HOME}/")
    assert [f for f in planted.files if not f.startswith(mine)] == []
    assert planted.names > 500  # every command name of the image, the entrypoint's among them
    assert all(planted.planted[f] > planted.names for f in ("/tmp", "/workspace", f"{layout.HOME}/.local/bin"))


def test_no_plant_ran_as_root(planted):
    assert len(planted.records) > 0
    assert [plant for uid, plant in planted.records if uid == 0] == []


def test_the_plants_were_live_for_the_user(planted):
    ran = set(planted.records)
    site = f"{layout.HOME}/.local/lib/python3.11/site-packages"
    assert (layout.UID, f"{layout.HOME}/.local/bin/sleep") in ran  # the user's command, after the restart
    assert (NEW_UID, f"{layout.HOME}/.local/bin/sleep") in ran  # and with the new ids
    assert (layout.UID, f"{site}/usercustomize.py") in ran and (layout.UID, f"{site}/zz_planted.pth") in ran
    assert (layout.UID, "/workspace/colorsys.py") in ran
    assert any(uid == layout.UID and plant.endswith(".ssh/rc") for uid, plant in ran)  # sshd ran it, as the user


def test_new_ids_hand_over_only_what_the_user_owned(planted):
    listing = sh(planted.second, f"stat -c '%u:%g %n' {layout.HOME} {layout.HOME}/.local/bin/sleep "
                                 f"{layout.HOME}/etc-link /etc/shadow /etc/passwd /etc")
    owners = dict(reversed(line.split(" ", 1)) for line in listing.splitlines())
    assert owners[layout.HOME] == owners[f"{layout.HOME}/.local/bin/sleep"] == f"{NEW_UID}:{NEW_GID}"
    assert owners[f"{layout.HOME}/etc-link"] == f"{NEW_UID}:{NEW_GID}"  # the link itself, never what it points to
    assert owners["/etc/shadow"].startswith("0:") and owners["/etc/passwd"] == "0:0" and owners["/etc"] == "0:0"
    theirs = (planted.host_folder / "theirs").stat()
    assert (theirs.st_uid, theirs.st_gid) == (layout.UID, layout.GID)  # a folder mounted into the home is the host's


def test_docker_exec_is_root_in_slash_with_only_roots_files_on_its_paths(planted):
    assert sh(planted.first, "id -u; pwd; echo $HOME").split() == ["0", "/", "/root"]
    assert sh(planted.first, "id -un; pwd", user=layout.USER).split() == [layout.USER, "/"]
