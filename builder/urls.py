"""URLs as torchyard prints, logs, labels and writes them: never with the credentials they were given with.

An index URL (`https://alice:s3cret@mirror.example/simple`), a git origin (`https://x-access-token:TOKEN@…`)
or a Debian mirror may carry a user and password or a token in its userinfo. The credential is for the one
place that needs it (pip's request, the clone); everywhere else the URL appears without it. Tokens often
stand where the user name goes, so the whole userinfo goes, not only the password.
"""

from __future__ import annotations

import base64
import re
import urllib.parse

# scheme://userinfo@ anywhere in a text; the userinfo runs to the authority's last '@' (greedy within it)
_USERINFO_RE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#\"'<>]*@")
# user:password@host without a scheme (a host given where a URL was not expected); not name:tag@sha256:<hex>
_BARE_USERINFO_RE = re.compile(r"(?<![\w@:/.%+-])[^\s/@:\"'<>=]+:[^\s/@\"'<>]*@(?![A-Za-z][A-Za-z0-9]*:[0-9a-fA-F]{32})")


def redact(text: str) -> str:
    """A URL, or every URL in a text (a log line, a message, a command's output), without its userinfo:
    https://user:pw@host/x -> https://host/x, and user:pw@host -> host."""
    return _BARE_USERINFO_RE.sub("", _USERINFO_RE.sub(r"\g<scheme>", text))


def credentials(url: str) -> tuple[str, str, str] | None:
    """(host[:port], user, password) of a URL that carries them, percent-decoded; None when it carries none."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return None
    return parts.netloc.rsplit("@", 1)[1], urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")


def basic_auth(url: str) -> dict[str, str]:
    """An Authorization header for the URL's credentials (urllib takes none from a URL), or {}."""
    found = credentials(url)
    if not found:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(f"{found[1]}:{found[2]}".encode()).decode()}
