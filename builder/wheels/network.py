"""The host's pip and TLS settings that locking and fetching honour: CA bundles, indexes, mirrors.

They are used on the host only (`make lock`, `make fetch`, and `make build` for what the wheel cache lacks); no
build ever sees them. Local paths (find-links folders, file:// indexes) are left out and reported: a lock names
URLs that every machine can fetch.
"""

from __future__ import annotations

import configparser
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from dataclasses import dataclass, field
from pathlib import Path

from builder import inputs, urls
from builder.inputs import InputError, shown
from builder.urls import redact

# pip's own names for the settings we forward; extra-index-url and trusted-host hold several values.
FORWARDED = ("index-url", "extra-index-url", "trusted-host", "timeout", "retries")
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
TORCH_INDEX = "https://download.pytorch.org/whl"


class NetworkError(InputError):
    pass


@dataclass(frozen=True)
class NetworkSettings:
    pip: dict[str, list[str]] = field(default_factory=dict)  # setting -> values, in pip's names
    ca_files: tuple[Path, ...] = ()
    torch_index: str = TORCH_INDEX  # the PyTorch wheel index or a mirror of it; /<cuXYZ> is appended
    ignored: tuple[str, ...] = ()  # settings left out, with why

    def torch_index_url(self, variant: str) -> str:
        """The PyTorch wheel index of a CUDA variant (cu124, …): the one place its URL is made."""
        return f"{self.torch_index}/{variant}"

    def tls_context(self) -> ssl.SSLContext:
        """The default trust plus every CA file the host names: what `make lock` and `make fetch` connect with."""
        context = ssl.create_default_context()
        for ca in self.ca_files:
            context.load_verify_locations(cafile=str(ca))
        return context

    def authorization(self, url: str) -> dict[str, str]:
        """The Authorization header for a URL: the credentials of the configured index on the URL's own origin
        (scheme, host and port), or none. A lock keeps URLs without credentials; the host's settings hold them."""
        for index in [*self.pip.get("index-url", []), *self.pip.get("extra-index-url", []), self.torch_index]:
            if urls.origin(index) == urls.origin(url) and (header := urls.basic_auth(index)):
                return header
        return {}

    def request(self, url: str, method: str = "GET") -> urllib.request.Request:
        """A request for a URL as urllib.parse reads it, without its userinfo (so no part of a password is ever
        taken for the host name), with the credentials for its origin as a header that no redirect carries on."""
        request = urllib.request.Request(urls.without_credentials(url), method=method, headers={"User-Agent": "torchyard"})
        for name, value in {**self.authorization(url), **urls.basic_auth(url)}.items():
            request.add_unredirected_header(name, value)
        return request

    def open(self, request: urllib.request.Request, timeout: float) -> urllib.response.addinfourl:
        """urlopen with the host's TLS trust, following a redirect only to where an artifact may come from
        (urls.unfetchable: https, or http on loopback; never file: or ftp:)."""
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.tls_context()), _SafeRedirects())
        return opener.open(request, timeout=timeout)

    def ca_bundle(self) -> str:
        """Every CA file the host names, concatenated (each in full, once)."""
        return "".join(p.read_text().rstrip("\n") + "\n" for p in self.ca_files)


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if why := urls.unfetchable(newurl):
            raise urllib.error.HTTPError(redact(req.full_url), code, f"redirected to {redact(newurl)}, {why}: refused",
                                         headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def pip_config_files(env: dict[str, str], home: Path) -> list[Path]:
    """pip's configuration files, lowest priority first (pip's documented order)."""
    xdg_dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    files = [Path(d) / "pip" / "pip.conf" for d in reversed(xdg_dirs)]
    files += [Path("/etc/pip.conf"), home / ".pip" / "pip.conf",
              Path(env.get("XDG_CONFIG_HOME", home / ".config")) / "pip" / "pip.conf"]
    if env.get("PIP_CONFIG_FILE") and env["PIP_CONFIG_FILE"] != os.devnull:
        files.append(Path(env["PIP_CONFIG_FILE"]))
    return files


def read_pip_settings(env: dict[str, str], home: Path) -> dict[str, str]:
    """pip's effective settings for `cert`, `find-links` and FORWARDED: files, then PIP_* variables."""
    settings: dict[str, str] = {}
    if env.get("PIP_CONFIG_FILE") == os.devnull:
        files = []  # pip's documented switch for "no config files"
    else:
        files = pip_config_files(env, home)
    for path in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as e:
            raise NetworkError(f"{path}: cannot parse pip configuration: {redact(str(e))[:300]}") from None
        except UnicodeDecodeError as e:
            raise NetworkError(f"{path}: pip configuration that is not UTF-8 (byte 0x{e.object[e.start]:02x}); "
                               "save it as UTF-8") from None
        for section in ("global", "install"):
            if parser.has_section(section):
                settings.update(parser.items(section))
    for key in ("cert", "find-links", *FORWARDED):
        value = env.get("PIP_" + key.upper().replace("-", "_"))
        if value:
            settings[key] = value
    return settings


def host_settings(env: dict[str, str] | None = None, home: Path | None = None) -> NetworkSettings:
    """The settings a build and a lock forward, each checked: a malformed one is a NetworkError (exit 2)."""
    env = dict(os.environ if env is None else env)
    home = home or Path.home()
    pip = read_pip_settings(env, home)
    ignored: list[str] = []

    forwarded: dict[str, list[str]] = {}
    for key in FORWARDED:
        values = pip.get(key, "").split()
        usable = [v for v in values if not _is_local(v)]
        ignored += [f"pip {key} {redact(v)} (a local path: a lock names URLs every machine can fetch)" for v in values if _is_local(v)]
        if usable:
            forwarded[key] = [_check_pip_value(key, v, len(usable)) for v in usable]
    if pip.get("find-links"):
        ignored += [f"pip find-links {redact(v)} (a local folder: a lock names URLs every machine can fetch)" for v in pip["find-links"].split()]

    ca_files: list[Path] = []
    for name, value in [("pip cert", pip.get("cert"))] + [(v, env.get(v)) for v in CA_VARIABLES]:
        if not value:
            continue
        path = _ca_file(name, value)
        if path.resolve() not in [p.resolve() for p in ca_files]:
            ca_files.append(path)

    torch_index = env.get("TORCHYARD_TORCH_INDEX", TORCH_INDEX)
    return NetworkSettings(
        pip=forwarded,
        ca_files=tuple(ca_files),
        torch_index=inputs.url(torch_index, "TORCHYARD_TORCH_INDEX").rstrip("/"),
        ignored=tuple(ignored),
    )


HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                     r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?", re.ASCII)


def _check_pip_value(key: str, value: str, count: int) -> str:
    """Each value that reaches the build's pip.conf and the lock's pip command, by its own grammar."""
    what = f"pip {key}"
    if key == "index-url" and count > 1:
        raise NetworkError(f"{what} holds {count} URLs; it takes one (more go in extra-index-url)")
    if key in ("index-url", "extra-index-url"):
        return inputs.url(value, what)
    if key == "trusted-host" and not HOST_RE.fullmatch(value):
        raise NetworkError(f"{what}={shown(value)} is not host[:port]")
    if key in ("timeout", "retries") and not re.fullmatch(r"[0-9]{1,6}(\.[0-9]{1,3})?" if key == "timeout" else "[0-9]{1,4}",
                                                         value, re.ASCII):
        raise NetworkError(f"{what}={shown(value)} is not a number of {'seconds' if key == 'timeout' else 'retries'}")
    return value


def _ca_file(name: str, value: str) -> Path:
    """A CA bundle the build and the lock trust: a readable PEM file (text with at least one certificate)."""
    path = Path(value)
    if not path.is_file():
        raise NetworkError(f"{name} names {shown(value)}, which is not a file; fix the setting or unset it")
    try:
        text = path.read_bytes().decode("ascii")
    except OSError as e:
        raise NetworkError(f"{name} names {path}, which cannot be read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise NetworkError(f"{name} names {path}, which is not a PEM bundle (binary; a DER certificate converts "
                           "with `openssl x509 -inform der -in FILE -out FILE.pem`)") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise NetworkError(f"{name} names {path}, which holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return path


def _is_local(value: str) -> bool:
    return value.startswith(("file:", "/", ".", "~"))
