"""Real servers on the loopback, for the tests that talk to an index, an artifact's server or a registry: one answering
each request with the test's own method (serving), a package index of real wheels (index; wheel makes tiny ones), and
Debian's docker-registry (registry; the benchmarks start it too)."""

import base64
import contextlib
import csv
import hashlib
import html
import http.server
import io
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import parse_wheel_filename

JSON = "application/vnd.pypi.simple.v1+json"  # PEP 691


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on host now (a loopback address): the OS's pick, released for the caller's server to bind."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(host: str = "127.0.0.1", **methods: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """Serve on host (a loopback address) at a free port, each request answered by the given method (do_HEAD=,
    do_GET=: called with the handler), logging nothing; yields http://<host>:<port>, and shuts the server down and
    closes it after."""
    handler = type("Handler", (http.server.BaseHTTPRequestHandler,), {**methods, "log_message": lambda self, *_: None})
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def wheel(folder: Path, name: str, version: str, requires: str = "", tag: str = "py3-none-any",
          files: Mapping[str, bytes] | None = None) -> str:
    """A real (tiny) wheel of the name and version in folder, its RECORD complete (each file's hash and size); its
    file name. files: the package's own (default: an empty {name}/__init__.py)."""
    filename = f"{name}-{version}-{tag}.whl"
    info = f"{name}-{version}.dist-info"
    contents = {**(files or {f"{name}/__init__.py": b""}),
                f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                     + (f"Requires-Dist: {requires}\n" if requires else "")).encode(),
                f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()}
    record = io.StringIO()
    csv.writer(record, lineterminator="\n").writerows(
        [*([path, "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode(), len(data)]
           for path, data in contents.items()), [f"{info}/RECORD", "", ""]])
    with zipfile.ZipFile(folder / filename, "w", zipfile.ZIP_DEFLATED) as whl:
        for path, data in {**contents, f"{info}/RECORD": record.getvalue().encode()}.items():
            whl.writestr(path, data)
    return filename


@dataclass(frozen=True)
class Listed:
    """A wheel an index lists: the file, the name it has there, its sha256 and (PEP 658) its core metadata."""

    file: Path
    name: str
    sha256: str
    metadata: bytes | None = None

    @classmethod
    def of(cls, file: Path, name: str | None = None) -> "Listed":
        """A wheel as an index lists it, its METADATA served beside it (as PyPI and the PyTorch index do)."""
        digest = hashlib.sha256()
        with file.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        return cls(file, name or file.name, digest.hexdigest(), core_metadata(file))

    @property
    def project(self) -> str:
        return parse_wheel_filename(self.name)[0]


def core_metadata(wheel: Path) -> bytes:
    """A wheel's METADATA, which an index serves beside it (PEP 658)."""
    with zipfile.ZipFile(wheel) as z:
        return z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1))


@dataclass
class Requests:
    """What an index was asked and what it sent: (method, path, Authorization header, Accept header, status, body
    bytes) per request, in order."""

    url: str  # http://<host>:<port>, no credentials
    seen: list[tuple[str, str, str | None, str | None, int, int]] = field(default_factory=list)

    def served(self, since: int = 0, wheels: bool = True) -> int:
        """Bytes of wheels sent (or, wheels=False, of everything: pages and metadata too) since the given number of
        requests."""
        return sum(sent for _, path, _, _, _, sent in self.seen[since:] if path.endswith(".whl") or not wheels)


def index(pages: Mapping[str, Sequence[Listed]], *, files: str | None = None, host: str = "127.0.0.1",
          credentials: tuple[str, str] | None = None, absent: int = 404, pep691: bool = False):
    """A simple repository API (PEP 503) of real wheels on loopback, as the context manager it is: pages maps a root
    ('/whl/cu124', '/simple') and project to what it lists, as {root: [Listed, ...]}; each root answers
    <root>/ (its projects) and <root>/<project>/ (their wheels, with sha256 and PEP 658 metadata attributes),
    its files lie at <files or root>/<name, %2B for a '+'> and <…>.metadata. `absent` answers a project it lacks
    (download.pytorch.org: 403); credentials, when given, are required (401 without them); with pep691, a client
    that prefers JSON (uv asks for it first) gets PEP 691 JSON (with PEP 700's sizes). Yields its Requests."""
    return _index(pages, files, host, credentials, absent, pep691)


@contextlib.contextmanager
def _index(pages, files, host, credentials, absent, pep691) -> Iterator[Requests]:
    requests = Requests("")
    handler = type("Handler", (_IndexHandler,), {
        "routes": _routes(pages, files), "roots": tuple(f"{root}/" for root in pages), "absent": absent,
        "pep691": pep691, "requests": requests,
        "expected": "Basic " + base64.b64encode(":".join(credentials).encode()).decode() if credentials else None})
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    requests.url = f"http://{host}:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield requests
    finally:
        server.shutdown()
        server.server_close()


def _routes(pages: Mapping[str, Sequence[Listed]], files: str | None) -> dict[str, tuple[str, object]]:
    """path -> (what it is, what it needs): the roots' pages, each project's page, each file and its metadata."""
    routes: dict[str, tuple[str, object]] = {}
    for root, listed in pages.items():
        at = files or root
        projects: dict[str, list[Listed]] = {}
        for one in listed:
            projects.setdefault(one.project, []).append(one)
            routes[f"{at}/{urllib.parse.quote(one.name)}"] = ("file", one)
            if one.metadata is not None:
                routes[f"{at}/{urllib.parse.quote(one.name)}.metadata"] = ("metadata", one.metadata)
        routes[f"{root}/"] = ("projects", sorted(projects))
        for project, wheels in projects.items():
            routes[f"{root}/{project}/"] = ("project", (project, at, sorted(wheels, key=lambda w: w.name)))
    return routes


class _IndexHandler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[str, object]]
    roots: tuple[str, ...]
    expected: str | None  # the Authorization header wanted, if any
    absent: int
    pep691: bool
    requests: Requests

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        status, sent = self._route(path, body)
        self.requests.seen.append((self.command, path, self.headers.get("Authorization"), self.headers.get("Accept"),
                                   status, sent))

    def _route(self, path: str, body: bool) -> tuple[int, int]:
        if self.expected and self.headers.get("Authorization") != self.expected:
            return self._empty(401, {"WWW-Authenticate": 'Basic realm="index"'})
        what, payload = self.routes.get(path, (None, None))
        if what is None:
            return self._empty(self.absent if path.startswith(self.roots) else 404)
        if what == "file":
            size = payload.file.stat().st_size
            self._headers("application/octet-stream", size)
            if body:
                with payload.file.open("rb") as f:
                    shutil.copyfileobj(f, self.wfile, 1 << 20)
            return 200, size if body else 0
        if what == "metadata":
            kind, data = "application/octet-stream", payload
        else:  # a page: JSON for a client that asks for it first (PEP 691), when the index offers it
            wants_json = self.pep691 and JSON in (self.headers.get("Accept") or "").split(",")[0]
            kind, text = (_page_json if wants_json else _page_html)(what, payload)
            data = text.encode()
        self._headers(kind, len(data))
        if body:
            self.wfile.write(data)
        return 200, len(data) if body else 0

    def _empty(self, status: int, headers: Mapping[str, str] | None = None) -> tuple[int, int]:
        self.send_response(status)
        for name, value in {**(headers or {}), "Content-Length": "0"}.items():
            self.send_header(name, value)
        self.end_headers()
        return status, 0

    def _headers(self, kind: str, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _page_html(what: str, payload) -> tuple[str, str]:
    """A page as download.pytorch.org writes it (pytorch/test-infra's s3_management/manage.py): absolute hrefs with
    #sha256=, data-dist-info-metadata and data-core-metadata (PEP 714) where a .metadata file is served."""
    lines = ["<!DOCTYPE html>", "<html>", "  <body>"]
    if what == "projects":
        lines += [f'    <a href="{p}/">{p}</a><br/>' for p in payload]
    else:
        project, at, wheels = payload
        lines.append(f"    <h1>Links for {project}</h1>")
        for w in wheels:
            meta = "" if w.metadata is None else hashlib.sha256(w.metadata).hexdigest()
            attributes = f' data-dist-info-metadata="sha256={meta}" data-core-metadata="sha256={meta}"' if meta else ""
            href = html.escape(f"{at}/{urllib.parse.quote(w.name)}#sha256={w.sha256}")
            lines.append(f'    <a href="{href}"{attributes}>{html.escape(w.name)}</a><br/>')
    return "text/html", "\n".join([*lines, "  </body>", "</html>", ""])


def _page_json(what: str, payload) -> tuple[str, str]:
    if what == "projects":
        return JSON, json.dumps({"meta": {"api-version": "1.1"}, "projects": [{"name": p} for p in payload]})
    project, at, wheels = payload
    files = [{"filename": w.name, "url": f"{at}/{urllib.parse.quote(w.name)}", "hashes": {"sha256": w.sha256},
              "size": w.file.stat().st_size,
              **({"core-metadata": {"sha256": hashlib.sha256(w.metadata).hexdigest()}} if w.metadata else {})}
             for w in wheels]
    versions = sorted({str(parse_wheel_filename(w.name)[1]) for w in wheels})
    return JSON, json.dumps({"meta": {"api-version": "1.1"}, "name": project, "versions": versions, "files": files})


# ---------------------------------------------------------------- Debian's docker-registry

READY_S = 30  # it answers in well under a second; this is for a machine loaded by other builds


class RegistryError(RuntimeError):
    """The registry could not be started: not installed, or it did not answer (the message holds its log's tail)."""


@dataclass(frozen=True)
class ServedRegistry:
    """A docker-registry serving on loopback: address is host:port, as `make push REGISTRY=` takes it (no scheme);
    folder holds its config.yml, htpasswd (with a login), registry.log and its storage, data/."""

    address: str
    folder: Path

    @property
    def storage(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "registry.log"


def registry_binary() -> str | None:
    """Debian's docker-registry (apt-get install docker-registry), also where /usr/bin is not on PATH; None without."""
    found = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    return found if Path(found).is_file() else None


def bcrypt_line(user: str, password: str) -> str:
    """An htpasswd line of bcrypt's lowest cost (2^4 rounds): the registry checks it on every request, which at the
    default cost takes a quarter of a second here (a test-only password: its cost protects nothing)."""
    try:
        import crypt  # libxcrypt's bcrypt ($2b$), which the registry's htpasswd accepts; gone in Python 3.13
        return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}"
    except ImportError:
        return subprocess.run(["htpasswd", "-nbB", "-C", "4", user, password], capture_output=True, text=True,
                              check=True).stdout.strip()  # apache2-utils


@contextlib.contextmanager
def registry(folder: Path, *, login: tuple[str, str] | None = None, delete: bool = False) -> Iterator[ServedRegistry]:
    """Debian's docker-registry (distribution 2.8) on a free 127.0.0.1 port, everything it writes in folder (made if
    missing; its own). login: htpasswd auth for that user and password (none without it); delete: the storage
    accepts DELETE (off by default, as in the registry). Yields once its /v2/ answers (200, or 401 with a login);
    raises RegistryError when the binary is missing or it exits or stays silent for READY_S seconds. Always stopped
    on exit (killed if it does not end within 30 s of SIGTERM)."""
    binary = registry_binary()
    if binary is None:
        raise RegistryError("needs Debian's docker-registry: apt-get install docker-registry (.ci/run installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    served = ServedRegistry(f"127.0.0.1:{free_port()}", folder)
    auth = ""
    if login is not None:
        (folder / "htpasswd").write_text(bcrypt_line(*login) + "\n")
        auth = f"auth: {{htpasswd: {{realm: torchyard-test, path: {folder / 'htpasswd'}}}}}\n"
    (folder / "config.yml").write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {served.storage}}}, delete: {{enabled: {str(delete).lower()}}}}}\n"
        f'http: {{addr: "{served.address}", secret: loopback-only}}\n' + auth)
    with served.log.open("w") as log:
        process = subprocess.Popen([binary, "serve", str(folder / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for(served, process)
            yield served
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(served: ServedRegistry, process: subprocess.Popen) -> None:
    """Until the registry's /v2/ answers at all (any HTTP status is the registry's own: the opener skips the
    machine's proxy settings); RegistryError with its log's tail when it exits first or READY_S pass."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + READY_S
    while process.poll() is None and time.monotonic() < deadline:
        try:
            opener.open(f"http://{served.address}/v2/", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # 401: it answers, and wants the login
        except OSError:
            time.sleep(0.1)
    said = "exited" if process.poll() is not None else f"did not answer on {served.address} within {READY_S} s"
    raise RegistryError(f"docker-registry {said}; its log ends: {served.log.read_text()[-2000:]}")
