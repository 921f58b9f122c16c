#!/usr/bin/python3 -I
"""torchyard's entrypoint, under tini (PID 1): check the settings, prepare the user and services, exec the command.

Default start (as root): check every setting first (a bad one stops the start with one line, exit 2, before
anything changes), give the user `torchyard` the ids NB_UID/NB_GID, start sshd when a public key is given
(PUBLIC_KEY, or PUBLIC_KEY_FILE), then drop to that user for good (setpriv) and exec the command in /workspace.
Started with `--user` (not root): nothing needs root, so only the command runs; SSH stays off and says so.

What runs as root here never executes, imports or reads as configuration a file the user can write: the
system Python with -I (no user site, no PYTHON* variables, no current folder on sys.path), the programs in
COMMANDS by absolute path with SYSTEM_PATH as their only PATH, and no file of the user's as a setting.
"""

import base64
import binascii
import ipaddress
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass

USER = "torchyard"
WORKSPACE = "/workspace"
KEYS_DIR = "/etc/ssh/authorized_keys"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
SSH_ENV = "/etc/ssh/torchyard-env.conf"
# The only programs this script runs, by absolute path, with SYSTEM_PATH as PATH: root's and nobody else's.
# (tests/docker/test_no_way_to_root.py plants each name in every folder the user can write.)
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
SSHD = "/usr/sbin/sshd"
SETPRIV = "/usr/bin/setpriv"
FIND = "/usr/bin/find"  # only ever run as the user (through setpriv): what can the user write or read?
COMMANDS = (SSH_KEYGEN, SSHD, SETPRIV, FIND)
PYTHON = "/opt/venv/bin/python"  # only ever run as the user (through setpriv), for the GPU start check
NVML_RECORD = "TORCHYARD_NVML_RECORD"  # a recorded NVML answer the check reads instead (smoke_tests/nvml.py)
START_CHECK_SECONDS = 15  # NVML answers in well under a second; a hung driver must not hold the start
# Not carried into SSH sessions: sshd sets the session's own, or they are this script's inputs (secrets among them).
SESSION_ONLY = {"HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "SHLVL", "TERM", "MAIL", "_",
                "PUBLIC_KEY", "PUBLIC_KEY_FILE", "NB_UID", "NB_GID",
                "JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE", "JUPYTER_PASSWORD_HASH"}

MAX_ID = 2**31 - 1
MAX_KEYS, MAX_KEYS_BYTES = 100, 128 * 1024  # 100 RSA-4096 keys take 75 KB
MAX_TOKEN, MAX_TOKEN_FILE = 1024, 4096
# The one grammar of a public key for torchyard: this check, and `make run` before it passes PUBLIC_KEY (builder/
# workspace.py loads this file, which imports nothing of torchyard's), so the host never accepts a key that the start
# then refuses. No ssh-dss: OpenSSH turned DSA off in 7.0 and removed it in 10.0.
KEY_TYPES = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"}
KEY_LINE = re.compile(r"(\S+)[ \t]+([A-Za-z0-9+/]+={0,2})(?:[ \t].*)?")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0 and C1 controls, tab allowed
HOSTNAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
# What jupyter_server.auth.passwd() makes: argon2 (today's) or the older salted hashlib digests.
PASSWORD_HASH = re.compile(r"argon2:\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+"
                           r"|(sha1|sha224|sha256|sha384|sha512|md5):[0-9a-f]+:[0-9a-f]+")
TRUE, FALSE = ("1", "true", "yes"), ("", "0", "false", "no")
MAKE_TOKEN = "$(openssl rand -hex 24)"
KEY_EXAMPLE = "-v ~/.ssh/id_ed25519.pub:/run/secrets/id_ed25519.pub:ro"


class StartError(Exception):
    """A setting the start cannot go on with: one line, exit 2."""


class NotACommand(Exception):
    """The command is nowhere on PATH: exit 127, as a shell says it."""


@dataclass(frozen=True)
class Settings:
    """What the environment asks for, checked (check_settings); None: not asked, the image's default holds."""
    uid: int | None
    gid: int | None
    keys: str  # PUBLIC_KEY, checked
    key_file: str | None  # PUBLIC_KEY_FILE: read (and checked) only by root, once the ids are known


def say(text: str) -> None:
    print(f"torchyard: {text}", file=sys.stderr, flush=True)


def shown(value: str, limit: int = 40) -> str:
    """A value as a refusal quotes it: on one line (control characters escaped), long ones cut."""
    cut = f"{value[:limit]}... ({len(value)} characters)" if len(value) > limit else value
    return repr(cut)


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env={"PATH": SYSTEM_PATH})
    if result.returncode != 0:
        raise StartError(f"`{' '.join(command)}` failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


# ---------------------------------------------------------------- the settings, all checked before anything changes
def wanted_id(environ: dict[str, str], name: str) -> int | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    # ASCII digits only: "²".isdigit() is true and int("１２") is 12; both would be a surprise as an id.
    if not re.fullmatch(r"[0-9]{1,10}", value) or not 0 < int(value) <= MAX_ID:
        raise StartError(f"{name}={shown(value)}: give a number from 1 to {MAX_ID}, e.g. {name}=$(id -{name[3].lower()}) "
                         "on the host (0 is root's, which this image never runs as)")
    return int(value)


def check_keys(text: str, source: str) -> str:
    """OpenSSH public keys, one per line ('#' comments and blank lines dropped): the lines of a .pub file."""
    if "PRIVATE KEY" in text or "PuTTY-User-Key-File" in text:  # never quoted back: it would land in the log
        raise StartError(f"{source} holds a PRIVATE key; never give one to a container. Give the public half, the "
                         "one line of the .pub file (ssh-keygen -y -f KEY prints it)")
    if len(text.encode()) > MAX_KEYS_BYTES:
        raise StartError(f"{source} is {len(text.encode())} bytes; public keys take one line each: give at most "
                         f"{MAX_KEYS} keys ({MAX_KEYS_BYTES // 1024} KiB)")
    lines = []
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        control = CONTROL.search(line)
        if control:
            raise StartError(f"{source}, line {number}: control character {control[0]!r} in {shown(line)}; give the "
                             "one line of a .pub file, e.g. `ssh-ed25519 AAAA... you@host`")
        match = KEY_LINE.fullmatch(line)
        if not match or match[1] not in KEY_TYPES:
            raise StartError(f"{source}, line {number}: not an OpenSSH public key: {shown(line)}; give the one line "
                             "of a .pub file, e.g. `ssh-ed25519 AAAA... you@host` (no authorized_keys options)")
        if not key_data_names(match[2], match[1]):
            raise StartError(f"{source}, line {number}: not a valid OpenSSH public key: {shown(line)} (its key data "
                             f"does not decode to a {match[1]} key); give the whole line of the .pub file")
        lines.append(line)
    if len(lines) > MAX_KEYS:
        raise StartError(f"{source} holds {len(lines)} keys; give at most {MAX_KEYS}")
    return "".join(f"{line}\n" for line in lines)


def key_data_names(data: str, key_type: str) -> bool:
    """The key data is base64 of the key's wire form, which starts with its type as a length-prefixed string
    (RFC 4253 6.6) and has more after it: the part of ssh-keygen's check that needs no ssh-keygen (confirm_keys
    does the rest here; the host, which may have no ssh-keygen, stops at this)."""
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    name = key_type.encode()
    return blob[:4] == len(name).to_bytes(4, "big") and blob[4:4 + len(name)] == name and len(blob) > 4 + len(name)


def confirm_keys(keys: str) -> None:
    """ssh-keygen decodes each key (as root: it wants a passwd entry, which an id from --user may lack)."""
    for line in keys.splitlines():
        if subprocess.run([SSH_KEYGEN, "-l", "-f", "-"], input=line + "\n", capture_output=True, text=True,
                          env={"PATH": SYSTEM_PATH}).returncode != 0:
            raise StartError(f"not a valid OpenSSH public key: {shown(line)} (its key data does not decode); "
                             "give the whole line of the .pub file")


def check_jupyter(environ: dict[str, str]) -> None:
    """The JUPYTER_* settings jupyter_server_config.py reads: checked here, so a bad one stops the start at once
    (whatever the command), not when Jupyter reads it. Secrets are never quoted back."""
    disable = environ.get("JUPYTER_DISABLE_AUTH", "").strip().lower()
    if disable not in TRUE + FALSE:
        raise StartError(f"JUPYTER_DISABLE_AUTH={shown(disable)}: give 1 to run Jupyter without auth (on purpose "
                         "only), or leave it unset")
    ways = [name for name in ("JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE", "JUPYTER_PASSWORD_HASH")
            if name in environ and (environ[name] or name == "JUPYTER_TOKEN")]
    ways += ["JUPYTER_DISABLE_AUTH"] if disable in TRUE else []
    if len(ways) > 1:
        raise StartError(f"{' and '.join(ways)} are set together: give one way to log in to Jupyter (a token, "
                         "a token file, a password hash, or JUPYTER_DISABLE_AUTH=1)")
    if "JUPYTER_TOKEN" in environ:
        token = environ["JUPYTER_TOKEN"].strip()
        if not token:
            raise StartError("JUPYTER_TOKEN is empty; give a token, or leave it unset for a random one "
                             "(JUPYTER_DISABLE_AUTH=1 turns auth off, on purpose only)")
        if not re.fullmatch(rf"[\x21-\x7e]{{1,{MAX_TOKEN}}}", token):
            raise StartError(f"JUPYTER_TOKEN: give printable ASCII without spaces, at most {MAX_TOKEN} characters, "
                             f"e.g. JUPYTER_TOKEN={MAKE_TOKEN}")
    if environ.get("JUPYTER_TOKEN_FILE"):
        check_file("JUPYTER_TOKEN_FILE", environ["JUPYTER_TOKEN_FILE"], MAX_TOKEN_FILE,
                   example="-v $PWD/token:/run/secrets/jupyter_token:ro, or a Docker secret")
    if environ.get("JUPYTER_PASSWORD_HASH") and not PASSWORD_HASH.fullmatch(environ["JUPYTER_PASSWORD_HASH"].strip()):
        raise StartError("JUPYTER_PASSWORD_HASH is not a hash from jupyter_server.auth.passwd() (argon2:$argon2id$... "
                         "or sha1:salt:digest), and a password itself never goes there: give the hash that "
                         "python -c \"from jupyter_server.auth import passwd; print(passwd())\" prints")
    port = environ.get("JUPYTER_PORT", "").strip()
    if port and (not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536):
        raise StartError(f"JUPYTER_PORT={shown(port)}: give a port from 1 to 65535 (Jupyter listens there inside "
                         "the container; publish it with -p)")
    for host in environ.get("JUPYTER_ALLOWED_HOSTS", "").replace(",", " ").split():
        if host == "*":
            continue
        if is_ip_address(host):
            raise StartError(f"JUPYTER_ALLOWED_HOSTS: {shown(host)} is an IP address; Jupyter accepts loopback "
                             "addresses always and others never: give this machine's name, or * to accept any Host")
        if not HOSTNAME.fullmatch(host):
            raise StartError(f"JUPYTER_ALLOWED_HOSTS: {shown(host)} is not a host name; give names such as "
                             "gpu-box or gpu-box.example.com, separated by commas, or * to accept any Host")


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def check_file(name: str, path: str, limit: int, example: str) -> None:
    """A file setting names an existing regular file of at most `limit` bytes (never a folder, a FIFO that would
    hold the start forever, or /dev/zero). Only stat: its content is read by whoever uses it."""
    if not path.startswith("/"):
        raise StartError(f"{name}={shown(path)}: give an absolute path in the container, e.g. {example}")
    try:
        st = os.stat(path)
    except OSError as e:
        raise StartError(f"{name}={shown(path)}: cannot read it ({e.strerror}); mount it, e.g. {example}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise StartError(f"{name}={shown(path)} is {kind}; give a file, e.g. {example}")
    if not 0 < st.st_size <= limit:
        raise StartError(f"{name}={shown(path)} is {st.st_size} bytes; give a file of 1 to {limit} bytes")


def check_settings(environ: dict[str, str]) -> Settings:
    check_jupyter(environ)
    key_file = environ.get("PUBLIC_KEY_FILE", "").strip() or None
    if key_file:
        check_file("PUBLIC_KEY_FILE", key_file, MAX_KEYS_BYTES, example=KEY_EXAMPLE)
    return Settings(uid=wanted_id(environ, "NB_UID"), gid=wanted_id(environ, "NB_GID"),
                    keys=check_keys(environ.get("PUBLIC_KEY", ""), "PUBLIC_KEY"), key_file=key_file)


def user_can_write(path: str, uid: int, gid: int) -> str | None:
    """The first of `path`, its target and their folders that uid:gid may write (the kernel's answer, read-only
    mounts included), or None. Such a file could be changed by a session before the next start."""
    candidates = []
    for p in (os.path.abspath(path), os.path.realpath(path)):
        while p not in candidates:
            candidates.append(p)
            p = os.path.dirname(p)
    # One line per path the user reaches, "w" or "r" first; find's exit status is left aside (a folder the user
    # cannot enter is one it cannot write in either), but no line at all means the check itself failed.
    result = subprocess.run([SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs", "--",
                             FIND, *candidates, "-maxdepth", "0", "(", "-writable", "-printf", "w%p\\0", ")",
                             "-o", "-printf", "r%p\\0"], capture_output=True, text=True, env={"PATH": SYSTEM_PATH})
    answers = [line for line in result.stdout.split("\0") if line]
    if not answers:
        raise StartError(f"cannot check whether {USER} can write {path}: {result.stderr.strip()}")
    return next((line[1:] for line in answers if line.startswith("w")), None)


def read_key_file(path: str, uid: int, gid: int) -> str:
    """PUBLIC_KEY_FILE, read by root as a setting (who may log in): so never a file the user could change."""
    writable = user_can_write(path, uid, gid)
    if writable:
        raise StartError(f"PUBLIC_KEY_FILE={shown(path)}: {USER} (uid {uid}) can write {writable}, so a session "
                         f"could change who may log in; mount the key read-only where the user cannot write, e.g. "
                         f"{KEY_EXAMPLE}, or pass it as PUBLIC_KEY")
    # O_NONBLOCK: should a FIFO have taken the file's place since check_file, the open cannot hang the start.
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY), "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise StartError(f"PUBLIC_KEY_FILE={shown(path)} is not a regular file; give a file, e.g. {KEY_EXAMPLE}")
        data = f.read(MAX_KEYS_BYTES + 1)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise StartError(f"PUBLIC_KEY_FILE={shown(path)} is not UTF-8 text; give the .pub file") from None
    return check_keys(text, f"PUBLIC_KEY_FILE ({path})")


# ---------------------------------------------------------------- root's work
def rewrite(path: str, name: str, fields: dict[int, str]) -> None:
    """Set fields of `name`'s line in /etc/passwd or /etc/group (written aside, then renamed into place)."""
    with open(path) as f:
        rows = [line.split(":") for line in f.read().splitlines()]
    for row in rows:
        if row[0] == name:
            row[:] = [fields.get(i, field) for i, field in enumerate(row)]
    write_private(f"{path}+", "".join(":".join(row) + "\n" for row in rows), 0o644)
    os.replace(f"{path}+", path)


def hand_over(home: str, old: tuple[int, int], new: tuple[int, int]) -> None:
    """What the old ids own in the home, the new ids own. Not `chown -R` (nor usermod, which does the same): root
    never follows a link the user made (fwalk works on folder descriptors, chown on the entry itself), never
    leaves the home's filesystem (a folder mounted into it is the host's), never touches what another id owns."""
    device = os.lstat(home).st_dev
    for _, folders, files, fd in os.fwalk(home, follow_symlinks=False):
        entries = {name: os.stat(name, dir_fd=fd, follow_symlinks=False) for name in folders + files}
        folders[:] = [name for name in folders if entries[name].st_dev == device]
        for name, st in entries.items():
            uid, gid = (new[0] if st.st_uid == old[0] else -1), (new[1] if st.st_gid == old[1] else -1)
            if (uid, gid) != (-1, -1):
                os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
    st = os.lstat(home)
    os.chown(home, new[0] if st.st_uid == old[0] else -1, new[1] if st.st_gid == old[1] else -1,
             follow_symlinks=False)


def adjust_ids(user: pwd.struct_passwd, uid: int, gid: int) -> pwd.struct_passwd:
    """The user with the uid/gid asked for, and what it owned in its home with them."""
    if (uid, gid) == (user.pw_uid, user.pw_gid):
        return user
    hand_over(user.pw_dir, (user.pw_uid, user.pw_gid), (uid, gid))
    rewrite("/etc/group", USER, {2: str(gid)})
    rewrite("/etc/passwd", USER, {2: str(uid), 3: str(gid)})
    say(f"user {USER} now has uid {uid}, gid {gid}")
    return pwd.getpwnam(USER)


def claim_workspace(uid: int, gid: int) -> None:
    """An empty /workspace not owned by the user (a fresh volume, or a folder Docker made as root) becomes
    the user's. A folder with files in it is the host's business: it is never changed, only reported."""
    st = os.lstat(WORKSPACE)
    if st.st_uid == uid:
        return
    if stat.S_ISDIR(st.st_mode) and not os.listdir(WORKSPACE):
        os.chown(WORKSPACE, uid, gid, follow_symlinks=False)
    else:
        say(f"{WORKSPACE} belongs to uid {st.st_uid}, not to {USER} (uid {uid}): files may not be writable there; "
            f"start with NB_UID={st.st_uid} NB_GID={st.st_gid} to work as its owner")


def sshd_setenv_line(environ: dict[str, str]) -> str:
    """One SetEnv line (sshd reads only the first) carrying the container's environment into SSH sessions,
    so `ssh … python -c 'import torch'` sees the venv, CUDA and NVIDIA settings, TORCH_HOME, as `docker exec` does."""
    pairs = []
    for name, value in sorted(environ.items()):
        if name in SESSION_ONLY or not name.replace("_", "").isalnum() or CONTROL.search(value):
            continue
        pairs.append('"%s=%s"' % (name, value.replace("\\", "\\\\").replace('"', '\\"')))
    return f"SetEnv {' '.join(pairs)}\n" if pairs else ""


def write_private(path: str, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def start_sshd(keys: str, session_env: dict[str, str]) -> None:
    os.makedirs(KEYS_DIR, mode=0o755, exist_ok=True)
    # The only file sshd reads keys from (sshd_config): root's, so no session can change who may log in.
    write_private(f"{KEYS_DIR}/{USER}", keys, 0o644)
    if not os.path.exists(HOST_KEY):  # first start of this container: its own host key
        run(SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", f"torchyard-{os.uname().nodename}", "-f", HOST_KEY)
    write_private(SSH_ENV, sshd_setenv_line(session_env), 0o600)  # may hold values passed with -e: root only
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    run(SSHD, "-t")
    # -D: stay a child (no daemon to lose); -e: log to the container's log. tini -g forwards signals to it.
    subprocess.Popen([SSHD, "-D", "-e"], env={"PATH": SYSTEM_PATH})
    fingerprint = run(SSH_KEYGEN, "-l", "-f", f"{HOST_KEY}.pub")
    say(f"sshd listens on port 22 for {USER} (keys only); host key {fingerprint.strip()}")


def user_environ(home: str) -> dict[str, str]:
    """The command's environment: the image's, with the user's HOME and ~/.local/bin first on PATH, where
    `pip install` puts the scripts of what it installs (the venv is root's: pip installs into ~/.local)."""
    return dict(os.environ, HOME=home, PATH=f"{home}/.local/bin:{os.environ.get('PATH', SYSTEM_PATH)}")


def as_root(command: list[str], settings: Settings) -> tuple[list[str], dict[str, str]]:
    user = pwd.getpwnam(USER)
    uid, gid = settings.uid or user.pw_uid, settings.gid or user.pw_gid
    keys = settings.keys
    if settings.key_file:
        keys += read_key_file(settings.key_file, uid, gid)
    confirm_keys(keys)
    environ = dict(user_environ(user.pw_dir), USER=USER, LOGNAME=USER)
    found(command, environ)
    # Checks done: from here on, changes.
    user = adjust_ids(user, uid, gid)
    claim_workspace(uid, gid)
    if keys:
        start_sshd(keys, environ)
    start_check([f"--reuid={uid}", f"--regid={gid}", "--init-groups"])
    # For good: real, effective and saved ids, the user's groups, and no way back up (no_new_privs).
    return [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--no-new-privs", "--", *command], environ


def as_user(command: list[str], settings: Settings) -> tuple[list[str], dict[str, str]]:
    uid = os.getuid()
    if settings.keys or settings.key_file:
        say(f"SSH is off: this container runs as uid {uid} (--user), and sshd needs the default start (as root, "
            "which then drops to the torchyard user; NB_UID/NB_GID set its ids). Running the command alone.")
    for name in ("NB_UID", "NB_GID"):
        if os.environ.get(name):
            say(f"{name} is ignored with --user: the ids are already those --user gave")
    home = os.environ.get("HOME", "")
    if not home or not os.access(home, os.W_OK):  # an id without a passwd entry gets HOME=/
        home = f"/tmp/home-{uid}"
        os.makedirs(home, mode=0o700, exist_ok=True)
    # The user site must exist when Python starts to be on sys.path: then a kernel sees what `%pip install` adds.
    os.makedirs(f"{home}/.local/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages", exist_ok=True)
    environ = user_environ(home)
    try:
        pwd.getpwuid(uid)
    except KeyError:  # no passwd entry: getpass.getuser() (torch.compile's cache folder, among others) reads these
        for name in ("USER", "LOGNAME"):
            environ[name] = os.environ.get(name) or f"uid-{uid}"
    found(command, environ)
    start_check([])
    return command, environ


def start_check(ids: list[str]) -> None:
    """smoke_tests.startup, as the user (`ids`: setpriv's options that drop to it, none when already the user): one warning
    when the host's driver or GPUs cannot run this image's torch, before the first CUDA error. It reads NVML only,
    prints to the container's log, and never stops or holds the start."""
    try:
        replay = {NVML_RECORD: os.environ[NVML_RECORD]} if os.environ.get(NVML_RECORD) else {}
        subprocess.run([SETPRIV, *ids, "--no-new-privs", "--", PYTHON, "-I", "-m", "smoke_tests.startup"],
                       env={"PATH": SYSTEM_PATH, **replay},
                       stdin=subprocess.DEVNULL, timeout=START_CHECK_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        say(f"the GPU start check gave no answer in {START_CHECK_SECONDS} s (NVML); starting without it")
    except OSError as e:
        say(f"the GPU start check could not run ({e.strerror}); starting without it")


def found(command: list[str], environ: dict[str, str]) -> None:
    if not command[0] or shutil.which(command[0], path=environ["PATH"]) is None:
        raise NotACommand(f"cannot start: {command[0]!r} is not a command on PATH ({environ['PATH']})")


def main(argv: list[str]) -> int:
    command = argv[1:] or ["jupyter", "lab"]
    try:
        settings = check_settings(dict(os.environ))
        final, environ = (as_root if os.geteuid() == 0 else as_user)(command, settings)
    except StartError as e:
        say(f"cannot start: {e}")
        return 2
    except NotACommand as e:
        say(str(e))
        return 127
    if os.getcwd() == "/":  # the image's WORKDIR (root's `docker exec` starts there); `docker run -w` wins
        os.chdir(WORKSPACE)
    os.execvpe(final[0], final, environ)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
