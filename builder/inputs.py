"""Values from outside (the command line, the environment, files a user edits): how a refusal shows them,
and the grammars of the settings that are no URL, image reference or matrix value.

A refusal is an InputError: the CLI exits 2 and has written nothing.
"""

from __future__ import annotations

import ipaddress
import os
import re
import reprlib
import urllib.parse
from pathlib import Path

from builder.urls import redact

# Characters a folder given to `docker run -v` and printed in a pasteable `docker run` line may hold: no ':'
# (the -v separator), no shell metacharacters, no control characters.
PATH_RE = re.compile(r"[\w ./+@%,=~-]+")
PORT_RE = re.compile(r"[0-9]{1,5}", re.ASCII)
COUNT_RE = re.compile(r"[0-9]{1,9}", re.ASCII)
SPACE_OR_CONTROL_RE = re.compile(r"[\x00-\x20\x7f-\x9f]")
SHOWN_CHARACTERS = 120
# Linux's limits on a path (limits.h): a name is at most NAME_MAX bytes, a path fewer than PATH_MAX (its NUL counted).
# Past them every system call fails (ENAMETOOLONG), so a longer one is refused before it is used.
NAME_MAX, PATH_MAX = 255, 4096
_bounded = reprlib.Repr()
_bounded.maxstring = _bounded.maxother = 60
_bounded.maxlevel = 3


class InputError(ValueError):
    """A value from outside is malformed: exit 2, nothing written."""


def shown(value) -> str:
    """A value as a message shows it: repr'd (control characters visible), without URL credentials, and
    cut to SHOWN_CHARACTERS (a 10 MB value or an alias bomb is never formatted whole)."""
    if isinstance(value, str):
        text = repr(redact(value[: SHOWN_CHARACTERS * 4]))
        more = len(value) > SHOWN_CHARACTERS * 4
    else:
        text, more = _bounded.repr(value), False
    if len(text) > SHOWN_CHARACTERS or more:
        size = f"{len(value)} characters" if isinstance(value, str) else "cut"
        return f"{text[:SHOWN_CHARACTERS]}... ({size})"
    return text


def printable(text: str) -> str:
    """text with every control character (a terminal's escape sequences, newlines, C1 codes) shown escaped, as
    repr() shows it: for recorded strings printed to a terminal or a report (an NVML device name, a build error)."""
    return SPACE_OR_CONTROL_RE.sub(lambda m: " " if m[0] == " " else repr(m[0])[1:-1], text)


def mountable(value: str, what: str) -> str:
    """A host path as `docker run -v` takes it and a pasted `docker run` line shows it."""
    if not value or not PATH_RE.fullmatch(value):
        raise InputError(f"{what}={shown(value)}: a path here may hold letters, digits, spaces and . / _ + @ % , = ~ -, "
                         "but no ':' (Docker's -v separator), shell metacharacters or control characters")
    return value


def folder(value: str | Path, what: str, must_exist: bool = False) -> Path:
    """A folder: an existing one, or (unless must_exist) one that can be made: a path the kernel takes (each name at
    most NAME_MAX bytes, the whole at most PATH_MAX), where nothing that is not a folder stands where it or a parent
    would be."""
    if str(value) == "":  # Path("") is the current folder: `make report REPORTS=` would write into the checkout
        raise InputError(f"{what} is empty; name a folder, or leave {what} out for its default")
    given = Path(value)
    whole = given.absolute()
    if "\0" in str(value):
        raise InputError(f"{what}={shown(str(value))}: a path holds no NUL character")
    long_name = next((name for name in whole.parts if len(os.fsencode(name)) > NAME_MAX), None)
    if long_name is not None:
        raise InputError(f"{what}={shown(str(value))}: the name {shown(long_name)} is {len(os.fsencode(long_name))} bytes; "
                         f"a file or folder name here is at most {NAME_MAX} bytes")
    if len(os.fsencode(str(whole))) >= PATH_MAX:
        raise InputError(f"{what}={shown(str(value))}: the path is {len(os.fsencode(str(whole)))} bytes as an absolute "
                         f"path; give one shorter than {PATH_MAX} bytes")
    try:
        if must_exist and not given.is_dir():
            raise InputError(f"{what}={shown(str(value))}: not a folder" + ("" if given.exists() else " (it does not exist)"))
        for part in (whole, *whole.parents):
            if part.exists() and not part.is_dir():
                raise InputError(f"{what}={shown(str(value))}: {shown(str(part))} exists and is not a folder; name a folder")
    except OSError as e:  # a folder on the way that cannot be searched (EACCES), a loop of links (ELOOP)
        raise InputError(f"{what}={shown(str(value))}: cannot look at it ({e.strerror}); name a folder you can use") from None
    return given


def url(value: str, what: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """One absolute URL of one of schemes, with a host (the message shows it without its credentials)."""
    example = f"{schemes[-1]}://host/path"
    if SPACE_OR_CONTROL_RE.search(value):
        raise InputError(f"{what}={shown(value)} holds a space or control character; give one URL like {example}")
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port  # a port that is no number from 0 to 65535 raises ValueError
    except ValueError as e:
        # not urllib's words: they quote the port, which a password with a raw '/', '?' or '#' in it becomes
        why = "its port is not a number from 1 to 65535" if "port" in str(e).lower() else "its host part does not parse"
        raise InputError(f"{what}={shown(value)} is not a URL ({why}); give one like {example}") from None
    if port == 0:
        raise InputError(f"{what}={shown(value)} is not a URL (its port is not a number from 1 to 65535); "
                         f"give one like {example}")
    if parts.scheme not in schemes or not parts.hostname:
        raise InputError(f"{what}={shown(value)} is not a {'/'.join(schemes)} URL with a host; give one like {example}")
    return value


def port(value, what: str) -> int:
    text = str(value).strip()
    if not PORT_RE.fullmatch(text) or not 0 < int(text) < 65536:
        raise InputError(f"{what}={shown(value)}: give a port number from 1 to 65535")
    return int(text)


def count(value, what: str, upper: int, meaning: str) -> int:
    """A whole number from 1 to upper, in ASCII digits (NODES=, GPUS=, an all-reduce size)."""
    text = str(value).strip()
    if not COUNT_RE.fullmatch(text) or not 1 <= int(text) <= upper:
        raise InputError(f"{what}={shown(value)}: give {meaning} as a whole number from 1 to {upper}, e.g. {what}=2")
    return int(text)


def address(value: str, what: str) -> str:
    """An IP address to publish ports on (Docker takes no host names there)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InputError(f"{what}={shown(value)}: give an IP address, e.g. 127.0.0.1 (this machine only) "
                         "or 0.0.0.0 (every interface)") from None


def flag(value: str, what: str) -> bool:
    """A make-style switch: empty or 0 is off, 1 is on."""
    text = value.strip().lower()
    if text in ("", "0", "no", "false"):
        return False
    if text in ("1", "yes", "true"):
        return True
    raise InputError(f"{what}={shown(value)}: give 1 to turn it on, or leave it empty")
