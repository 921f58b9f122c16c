"""Reading and writing the files torchyard owns, safely.

read_bounded(): a file that is expected is a regular file (never a FIFO, a device or a folder, which would block
or never end), read to at most a byte cap that is enforced while reading (st_size says 0 for /dev/zero and a pipe),
and, where a symlink would be an attack, not through a symlink. json_depth() bounds how deeply a JSON text nests
before any parser recurses into it.

write_atomic(): no reader ever sees half a file. The text goes to a new, uniquely named temporary file beside the
target (created with O_EXCL|O_NOFOLLOW: nothing that already stands there, a planted symlink least of all, is
written through), which then replaces the target in one rename (a rename replaces a symlink at the target, it
never writes through one). The temporary file is removed on any exit: an exception, Ctrl-C, or SIGTERM once
exit_on_sigterm() has made SIGTERM an exception. open_fresh() is the same for a log written as it grows.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import signal
import stat
from pathlib import Path

CHUNK = 64 * 1024
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class Refused(ValueError):
    """A file is not what was expected (no regular file, too large, nested too deeply): its message says why."""


class TooLarge(Refused):
    """A file holds more than the cap."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_bounded(path: Path, limit: int, follow_symlinks: bool = True) -> bytes:
    """The bytes of the regular file at path, at most `limit` of them: Refused when it is anything else (a FIFO, a
    device, a folder; a symlink unless follow_symlinks) or longer; OSError when it cannot be opened (FileNotFoundError
    when it does not exist)."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer (for a regular file the flag means nothing)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP and not follow_symlinks:
            raise Refused(f"{path} is a symlink; it is read only as a regular file of its own") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise Refused(f"{path} is {_kind(mode)}, not a regular file")
    with os.fdopen(fd, "rb", buffering=0) as f:
        chunks, size = [], 0
        while size <= limit:  # the cap holds whatever the file's size says (a file can grow while it is read)
            chunk = f.read(min(CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    if size > limit:
        raise TooLarge(f"{path} is larger than {limit:,} bytes, the most such a file holds")
    return b"".join(chunks)


def json_depth(data: bytes, limit: int) -> int:
    """How deeply the JSON text nests ([ and { outside strings); Refused past limit, before any parser recurses."""
    depth = deepest = 0
    for match in _STRING_OR_BRACKET.finditer(data):
        token = match[0]
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                raise Refused(f"nested more than {limit} levels deep")
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _temporary(path: Path) -> tuple[int, Path]:
    """A new file beside path, named uniquely, that nothing stood at: (its descriptor, its path)."""
    for _ in range(100):
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(6)}.partial")
        try:
            return os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def write_atomic(path: Path, data: str | bytes, mode: int | None = None) -> Path:
    """Replace path with data (text is UTF-8) in one rename; mode, when given, is the new file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if mode is not None:
                os.fchmod(f.fileno(), mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def open_fresh(path: Path, mode: str = "w"):
    """A new file at path, open for writing (a log written as it grows): whatever stood there (an older log, a
    symlink, a FIFO) is removed first, and the file is created with O_EXCL|O_NOFOLLOW, so nothing is written
    through a link."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "errors": "replace"}))


class Terminated(SystemExit):
    """SIGTERM, raised where the main thread is, so that every `finally` runs (temporary files are removed)."""


def _terminated(signum, frame) -> None:
    raise Terminated(128 + signum)


def exit_on_sigterm() -> None:
    """Make SIGTERM end the process as Ctrl-C does, by an exception (exit 143), rather than at once."""
    signal.signal(signal.SIGTERM, _terminated)
