"""URLs as torchyard prints, logs, labels and writes them: never with the credentials they were given with.

An index URL (`https://alice:s3cret@mirror.example/simple`), a git origin (`https://x-access-token:TOKEN@…`)
or a Debian mirror may carry a user and password or a token in its userinfo. The credential is for the one
place that needs it (pip's request, the clone); everywhere else the URL appears without it. Tokens often
stand where the user name goes, so the whole userinfo goes, not only the password.

Redaction parses, as urllib.parse.urlsplit does, rather than matching what a password usually looks like: after
each `://` the authority runs to the next '/' (or space), and everything in it up to its last '@' is the userinfo.
So a userinfo holding any character RFC 3986 allows there (unreserved, sub-delims such as ' ( ) * + , ; =, ':',
percent-escapes), and the quotes and brackets a user may type raw (" < >), goes whole. The authority ends only at
'/' (not also at '?' or '#', as RFC 3986 says): a '?' or '#' typed raw into a password then hides the rest of the
userinfo rather than showing it.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import urllib.parse

# user:password@host given where no URL was expected (REGISTRY=alice:s3cret@host/ns): a token of the text
_TOKEN_RE = re.compile(r"\S+")
# where a bare user:password@host starts inside a token: after a '=', a quote or a bracket (KEY='u:p@host')
_BARE_START = "=\"'<([{,"
# name:tag@sha256:<hex> is an image reference, not a userinfo: after the '@' stands a digest, not a host named sha256
# with a port (digits alone)
_DIGEST_RE = re.compile(r"sha256:(?![0-9]{1,5}(?:/|$))")
LOOPBACK_NAMES = ("localhost",)


def redact(text: str) -> str:
    """A URL, or every URL in a text (a log line, a message, a command's output), without its userinfo:
    https://user:pw@host/x -> https://host/x, and user:pw@host -> host."""
    return _TOKEN_RE.sub(lambda token: _redact_token(token[0]), text)


def _redact_token(token: str) -> str:
    if "://" in token:
        out, rest = [], token
        while (mark := rest.find("://")) >= 0:
            out.append(rest[: mark + 3])
            rest = rest[mark + 3:]
            authority = rest.split("/", 1)[0]
            if "@" in authority:
                rest = rest[authority.rindex("@") + 1:]
        return "".join(out) + rest
    return _redact_bare(token)


def _redact_bare(token: str) -> str:
    """user:password@host[/…] inside a token without a scheme; git@host:org/repo and name:tag@sha256:… stay."""
    head = token.split("/", 1)[0]
    at = head.rfind("@")
    if at <= 0 or _DIGEST_RE.match(head, at + 1):
        return token
    colon = head.find(":", 0, at)
    if colon < 0:
        return token  # no password: git@github.com:org/repo.git
    start = max(head.rfind(c, 0, colon) for c in _BARE_START) + 1
    if start >= colon:
        return token
    return token[:start] + token[at + 1:]


def credentials(url: str) -> tuple[str, str, str] | None:
    """(host[:port], user, password) of a URL that carries them, percent-decoded; None when it carries none."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return None
    return parts.netloc.rsplit("@", 1)[1], urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")


def without_credentials(url: str) -> str:
    """The URL as urllib.parse parses it, rebuilt from its scheme, host, port, path and query, without userinfo: what
    a request or a resolver is handed (the credentials go separately, as basic_auth's header or a netrc), so no
    part of a password can ever be read as the host name."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def basic_auth(url: str) -> dict[str, str]:
    """An Authorization header for the URL's credentials (urllib takes none from a URL), or {}."""
    found = credentials(url)
    if not found:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(f"{found[1]}:{found[2]}".encode()).decode()}


def origin(url: str) -> tuple[str, str | None, int | None]:
    """(scheme, host, port) as credentials are scoped: a header given for one origin goes to no other."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unfetchable(url: str) -> str | None:
    """Why an artifact may not be fetched from this URL (a lock's, or where a redirect leads), or None: https, or
    http on a loopback host only (a test's server, a local mirror); never file:, ftp: or any other scheme, and no
    credentials (they come from the host's settings, for the index's own origin)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - a port that is no number from 0 to 65535 raises ValueError
    except ValueError:
        return "not a URL"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return "plain http to a host other than loopback (an artifact comes over https)"
    if parts.scheme not in ("http", "https"):
        return f"a {parts.scheme or 'scheme-less'} URL (an artifact comes over https)"
    if not parts.hostname:
        return "a URL without a host"
    if "@" in parts.netloc:
        return "a URL with credentials in it (they belong in the host's pip settings)"
    return None
