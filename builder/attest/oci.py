"""The registry's HTTP API (the OCI distribution spec), as much as attestations need: manifests and blobs read and
written, and the referrers API asked. requests, which the Docker SDK already brings, speaks it.

Credentials are the Docker config's (what `docker login` wrote, credential helpers included), read through the
Docker SDK's own resolver, and sent as the registry's 401 challenge asks: Basic (an htpasswd registry), or Bearer
with a token fetched from the challenge's realm (Docker Hub, GHCR, most others). They are never put in a URL or a
message. A registry on loopback is spoken to over plain HTTP, as Docker allows; any other over HTTPS, with the CA
that /etc/docker/certs.d/<host>/ca.crt names (as Docker), else REQUESTS_CA_BUNDLE or SSL_CERT_FILE, else the
system's bundle.

Everything a registry answers is input: each body is read to a byte cap, a blob is checked against its digest, and
OCI's JSON is converted to strict schemas (Descriptor, Manifest, Index) before use.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

import docker.auth
import docker.errors
import msgspec
import requests

from builder import records, urls
from builder.attest import AttestError
from builder.inputs import printable

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
MAX_MANIFEST_BYTES = 4 * 2**20  # the OCI spec's own limit for a manifest
TIMEOUT_S = 60
DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


class _Shape(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, rename="camel"):
    pass


class Descriptor(_Shape, kw_only=True):
    media_type: str
    digest: records.Sha256
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] = {}
    data: str | None = None  # the content itself, base64 (OCI 1.1: the empty config carries "e30=")


class Manifest(_Shape, kw_only=True):
    schema_version: int
    media_type: str | None = None
    artifact_type: str | None = None
    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    annotations: dict[str, str] = {}


class Index(_Shape, kw_only=True):
    schema_version: int  # no default: a field at its default is not written, and these must be
    media_type: str | None = None
    manifests: tuple[Descriptor, ...] = ()


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def encode(value) -> bytes:
    return msgspec.json.encode(value)


class Registry:
    """<registry>/torchyard in one registry (registry: host[:port][/namespace], as REGISTRY= gives it)."""

    def __init__(self, registry: str, name: str):
        host, _, namespace = registry.partition("/")
        self.host = host
        self.repository = f"{namespace}/{name}" if namespace else name
        if host in DOCKER_HUB:  # Docker Hub's API has a host of its own
            host = "registry-1.docker.io"
        loopback = urls.is_loopback(urls.origin(f"http://{host}")[1])
        self.base = f"{'http' if loopback else 'https'}://{host}/v2/{self.repository}"
        self.session = requests.Session()
        self.session.trust_env = not loopback  # no proxy between this machine and its own registry
        self.session.verify = self._ca(host)
        self._authorization: str | None = None

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    @staticmethod
    def _ca(host: str) -> str | bool:
        for path in (Path("/etc/docker/certs.d") / host / "ca.crt", os.environ.get("REQUESTS_CA_BUNDLE"),
                     os.environ.get("SSL_CERT_FILE"), SYSTEM_CA):
            if path and Path(path).is_file():
                return str(path)
        return True

    def _credentials(self) -> tuple[str, str] | None:
        """(user, password) the Docker config holds for this registry, or None."""
        try:
            config = docker.auth.load_config()
            found = docker.auth.resolve_authconfig(config, None if self.host in DOCKER_HUB else self.host) or {}
        except docker.errors.DockerException as e:
            raise AttestError(f"the Docker config's credential helper failed for {self.host} ({e.__class__.__name__}); "
                              f"log in again: docker login {self.host}") from None
        user, password = found.get("username") or found.get("Username"), found.get("password") or found.get("Password")
        return (user, password) if user and password else None

    def _authenticate(self, challenge: str, write: bool) -> None:
        scheme = challenge.split(" ", 1)[0].lower()
        credentials = self._credentials()
        if scheme == "basic":
            if not credentials:
                raise self._refused("no credentials in the Docker config")
            self._authorization = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
            return
        if scheme != "bearer":
            raise AttestError(f"the registry {self.host} asks for {printable(scheme)[:40]} authentication, which "
                              "torchyard does not speak (Basic and Bearer)")
        params = dict(CHALLENGE_RE.findall(challenge))
        realm = params.pop("realm", "")
        if urls.unfetchable(realm):
            raise AttestError(f"the registry {self.host} names no usable token service ({printable(realm)[:80]})")
        params["scope"] = f"repository:{self.repository}:{'pull,push' if write else 'pull'}"
        try:
            answer = self.session.get(realm, params=params, auth=credentials, timeout=TIMEOUT_S)
        except requests.RequestException as e:
            raise AttestError(f"the token service of {self.host} cannot be reached ({e.__class__.__name__})") from None
        if answer.status_code in (401, 403):
            raise self._refused(f"its token service answered {answer.status_code}")
        try:
            token = answer.json().get("token") or answer.json().get("access_token")
        except ValueError:
            token = None
        if not token:
            raise AttestError(f"the token service of {self.host} gave no token (HTTP {answer.status_code})")
        self._authorization = f"Bearer {token}"

    def _refused(self, why: str) -> AttestError:
        return AttestError(f"the registry {self.host} refused access to {self.repository} ({why}); log in with "
                           f"`docker login {self.host}` (the Docker config $DOCKER_CONFIG/config.json or "
                           "~/.docker/config.json is read)")

    def request(self, method: str, path: str, *, write: bool = False, limit: int = MAX_MANIFEST_BYTES,
                **kwargs) -> tuple[requests.Response, bytes]:
        """One call (path relative to /v2/<repository>/, or a URL the registry gave), authenticated as its 401
        asks; (the answer, its body read to `limit` bytes)."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base}/{path}"
        given = kwargs.pop("headers", {})
        for attempt in (1, 2):
            headers = {**given, **({"Authorization": self._authorization} if self._authorization else {})}
            try:
                answer = self.session.request(method, url, headers=headers, timeout=TIMEOUT_S, stream=True, **kwargs)
                body = _bounded(answer, limit)
            except requests.RequestException as e:
                raise AttestError(f"the registry {self.host} cannot be reached ({e.__class__.__name__}: "
                                  f"{printable(str(e))[:160]}); check REGISTRY= and that the registry runs") from None
            if answer.status_code != 401 or attempt == 2:
                break
            self._authenticate(answer.headers.get("WWW-Authenticate", ""), write)
        if answer.status_code in (401, 403):
            raise self._refused(f"HTTP {answer.status_code} for {method} {path.split('?')[0][:80]}")
        return answer, body

    def _failed(self, what: str, answer: requests.Response, body: bytes) -> AttestError:
        return AttestError(f"the registry {self.host} refused {what} (HTTP {answer.status_code}: "
                           f"{printable(body.decode('utf-8', 'replace'))[:300]})")

    def manifest(self, reference: str) -> tuple[bytes, str] | None:
        """The manifest (or index) at a tag or digest, with its media type; None when there is none."""
        answer, body = self.request("GET", f"manifests/{reference}", headers={"Accept": ACCEPT})
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise self._failed(f"the manifest {reference}", answer, body)
        if reference.startswith("sha256:") and digest_of(body) != reference:
            raise AttestError(f"the registry {self.host} answered {reference} with other bytes ({digest_of(body)})")
        return body, answer.headers.get("Content-Type", "").split(";")[0]

    def descriptor(self, digest: str) -> Descriptor | None:
        """The descriptor of the manifest at digest (what a referrer names as its subject); None when there is none."""
        found = self.manifest(digest)
        if found is None:
            return None
        body, media_type = found
        return Descriptor(media_type=media_type or DOCKER_MANIFEST, digest=digest, size=len(body))

    def blob(self, digest: str, limit: int) -> bytes | None:
        answer, body = self.request("GET", f"blobs/{digest}", limit=limit)
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise self._failed(f"the blob {digest}", answer, body)
        if digest_of(body) != digest:
            raise AttestError(f"the registry {self.host} answered the blob {digest} with other bytes")
        return body

    def put_blob(self, data: bytes, media_type: str) -> Descriptor:
        digest = digest_of(data)
        answer, _ = self.request("HEAD", f"blobs/{digest}", write=True)
        if answer.status_code != 200:
            answer, body = self.request("POST", "blobs/uploads/", write=True)
            if answer.status_code != 202 or "Location" not in answer.headers:
                raise self._failed("an upload", answer, body)
            location = requests.compat.urljoin(self.base + "/", answer.headers["Location"])
            answer, body = self.request("PUT", location, write=True, params={"digest": digest}, data=data,
                                        headers={"Content-Type": "application/octet-stream"})
            if answer.status_code != 201:
                raise self._failed(f"the blob {digest}", answer, body)
        return Descriptor(media_type=media_type, digest=digest, size=len(data))

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> str:
        answer, reply = self.request("PUT", f"manifests/{reference}", write=True, data=body,
                                     headers={"Content-Type": media_type})
        if answer.status_code != 201:
            raise self._failed(f"the manifest {reference}", answer, reply)
        return digest_of(body)

    def referrers(self, digest: str) -> bytes | None:
        """The referrers API's index for digest (OCI 1.1), or None where the registry has no such API (404)."""
        answer, body = self.request("GET", f"referrers/{digest}", headers={"Accept": OCI_INDEX})
        return body if answer.status_code == 200 and answer.headers.get("Content-Type", "").startswith(OCI_INDEX) else None


def _bounded(answer: requests.Response, limit: int) -> bytes:
    chunks, size = [], 0
    for chunk in answer.iter_content(64 * 1024):
        size += len(chunk)
        if size > limit:
            answer.close()
            raise AttestError(f"{answer.url.split('?')[0]} answered more than {limit:,} bytes, more than it may")
        chunks.append(chunk)
    return b"".join(chunks)
