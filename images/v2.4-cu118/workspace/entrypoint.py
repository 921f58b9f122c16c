#!/usr/bin/python3 -I
"""torchyard's entrypoint, under tini (PID 1): prepare the user and services, then exec the command.

Default start (as root): give the user `torchyard` the ids NB_UID/NB_GID, start sshd when a public key is
given (PUBLIC_KEY, or PUBLIC_KEY_FILE), then drop to that user for good (setpriv) and exec the command.
Started with `--user` (not root): nothing needs root, so only the command runs; SSH stays off and says so.
Runs with the system Python (-I: no user site, no PYTHON* variables), so a broken venv cannot break the start.
"""

import os
import pwd
import shutil
import subprocess
import sys

USER = "torchyard"
WORKSPACE = "/workspace"
KEYS_DIR = "/etc/ssh/authorized_keys"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
SSH_ENV = "/etc/ssh/torchyard-env.conf"
# Not carried into SSH sessions: sshd sets the session's own, or they are this script's inputs (secrets among them).
SESSION_ONLY = {"HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "SHLVL", "TERM", "MAIL", "_",
                "PUBLIC_KEY", "PUBLIC_KEY_FILE", "NB_UID", "NB_GID",
                "JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE", "JUPYTER_PASSWORD_HASH"}


class StartError(Exception):
    pass


def say(text: str) -> None:
    print(f"torchyard: {text}", file=sys.stderr, flush=True)


def run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise StartError(f"`{' '.join(command)}` failed: {(result.stderr or result.stdout).strip()}")


def wanted_id(name: str, current: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return current
    if not value.isdigit() or not 0 < int(value) < 2**31:
        raise StartError(f"{name}={value!r}: give a number from 1 to {2**31 - 1} (e.g. {name}=$(id -{name[3].lower()}) "
                         "on the host); 0 would run as root, which this image does not do")
    return int(value)


def adjust_ids() -> pwd.struct_passwd:
    """The user with the uid/gid asked for; its home follows (usermod moves the home's ownership)."""
    user = pwd.getpwnam(USER)
    uid, gid = wanted_id("NB_UID", user.pw_uid), wanted_id("NB_GID", user.pw_gid)
    if gid != user.pw_gid:
        run("groupmod", "--non-unique", "--gid", str(gid), USER)
        run("usermod", "--gid", str(gid), USER)
    if uid != user.pw_uid:
        run("usermod", "--non-unique", "--uid", str(uid), USER)
    if (uid, gid) != (user.pw_uid, user.pw_gid):
        run("chown", "-R", f"{uid}:{gid}", user.pw_dir)
        say(f"user {USER} now has uid {uid}, gid {gid}")
    return pwd.getpwnam(USER)


def claim_workspace(uid: int, gid: int) -> None:
    """An empty /workspace not owned by the user (a fresh volume, or a folder Docker made as root) becomes
    the user's. A folder with files in it is the host's business: it is never changed, only reported."""
    st = os.stat(WORKSPACE)
    if st.st_uid == uid:
        return
    if not os.listdir(WORKSPACE):
        os.chown(WORKSPACE, uid, gid)
    else:
        say(f"{WORKSPACE} belongs to uid {st.st_uid}, not to {USER} (uid {uid}): files may not be writable there; "
            f"start with NB_UID={st.st_uid} NB_GID={st.st_gid} to work as its owner")


def public_keys() -> str:
    """PUBLIC_KEY (the keys themselves) and PUBLIC_KEY_FILE (a mounted file of them), checked by ssh-keygen."""
    keys = os.environ.get("PUBLIC_KEY", "").strip()
    path = os.environ.get("PUBLIC_KEY_FILE", "").strip()
    if path:
        try:
            with open(path) as f:
                keys = f"{keys}\n{f.read().strip()}".strip()
        except OSError as e:
            raise StartError(f"PUBLIC_KEY_FILE={path}: cannot read it ({e.strerror}); mount it, e.g. "
                             f"`-v ~/.ssh/id_ed25519.pub:{path}:ro`") from None
    lines = [line.strip() for line in keys.splitlines() if line.strip() and not line.startswith("#")]
    for line in lines:
        check = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=line + "\n", capture_output=True, text=True)
        if check.returncode != 0:
            shown = line if len(line) < 60 else line[:57] + "..."
            raise StartError(f"not an OpenSSH public key: {shown!r} (from PUBLIC_KEY/PUBLIC_KEY_FILE); give the "
                             "one line of a .pub file, e.g. `ssh-ed25519 AAAA... you@host`, never a private key")
    return "".join(f"{line}\n" for line in lines)


def sshd_setenv_line(environ: dict[str, str]) -> str:
    """One SetEnv line (sshd reads only the first) carrying the container's environment into SSH sessions,
    so `ssh … python -c 'import torch'` sees the venv, CUDA and NVIDIA settings, TORCH_HOME, as `docker exec` does."""
    pairs = []
    for name, value in sorted(environ.items()):
        if name in SESSION_ONLY or not name.replace("_", "").isalnum() or "\n" in value:
            continue
        pairs.append('"%s=%s"' % (name, value.replace("\\", "\\\\").replace('"', '\\"')))
    return f"SetEnv {' '.join(pairs)}\n" if pairs else ""


def write_private(path: str, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def start_sshd(keys: str, user: pwd.struct_passwd) -> None:
    os.makedirs(KEYS_DIR, mode=0o755, exist_ok=True)
    write_private(f"{KEYS_DIR}/{USER}", keys, 0o644)  # root-owned: the session cannot rewrite who may log in
    if not os.path.exists(HOST_KEY):  # first start of this container: its own host key
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"torchyard-{os.uname().nodename}", "-f", HOST_KEY)
    session_env = dict(os.environ, HOME=user.pw_dir)
    write_private(SSH_ENV, sshd_setenv_line(session_env), 0o600)  # may hold values passed with -e: root only
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    run("/usr/sbin/sshd", "-t")
    # -D: stay a child (no daemon to lose); -e: log to the container's log. tini -g forwards signals to it.
    subprocess.Popen(["/usr/sbin/sshd", "-D", "-e"])
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", f"{HOST_KEY}.pub"], capture_output=True, text=True).stdout
    say(f"sshd listens on port 22 for {USER} (keys only); host key {fingerprint.strip()}")


def as_root(command: list[str]) -> list[str]:
    user = adjust_ids()
    claim_workspace(user.pw_uid, user.pw_gid)
    keys = public_keys()
    if keys:
        start_sshd(keys, user)
    os.environ.update(HOME=user.pw_dir, USER=USER, LOGNAME=USER)
    # For good: real, effective and saved ids, the user's groups, and no way back up (no_new_privs).
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--no-new-privs",
            "--", *command]


def as_user(command: list[str]) -> list[str]:
    uid = os.getuid()
    if os.environ.get("PUBLIC_KEY") or os.environ.get("PUBLIC_KEY_FILE"):
        say(f"SSH is off: this container runs as uid {uid} (--user), and sshd needs the default start (as root, "
            "which then drops to the torchyard user; NB_UID/NB_GID set its ids). Running the command alone.")
    for name in ("NB_UID", "NB_GID"):
        if os.environ.get(name):
            say(f"{name} is ignored with --user: the ids are already those --user gave")
    home = os.environ.get("HOME", "")
    if not home or not os.access(home, os.W_OK):  # an id without a passwd entry gets HOME=/
        home = f"/tmp/home-{uid}"
        os.makedirs(home, mode=0o700, exist_ok=True)
        os.environ["HOME"] = home
    try:
        pwd.getpwuid(uid)
    except KeyError:  # no passwd entry: getpass.getuser() (torch.compile's cache folder, among others) reads these
        for name in ("USER", "LOGNAME"):
            os.environ.setdefault(name, f"uid-{uid}")
    return command


def main(argv: list[str]) -> int:
    command = argv[1:] or ["jupyter", "lab"]
    if shutil.which(command[0]) is None:
        say(f"cannot start: {command[0]!r} is not a command on PATH ({os.environ.get('PATH', '')})")
        return 127
    try:
        final = as_root(command) if os.geteuid() == 0 else as_user(command)
    except StartError as e:
        say(f"cannot start: {e}")
        return 2
    os.execvp(final[0], final)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
