"""The wheel cache: every locked artifact, fetched once by the host and kept by its sha256.

`make fetch` (and `make build`, for what is missing) downloads each artifact a tag's locks name, with the host's
CA bundle and the credentials of the index it comes from (sent to that origin only, never on a redirect to
another), checks its sha256 and only then renames it into place: nothing half-written or unchecked ever has a
name in the cache. An entry is hashed again before each build, so a corrupt one is fetched anew. One cache serves
every tag (the cu12 nvidia-* wheels are the same for several torch releases), and a filled cache builds with no
index reachable: the build reads it from builder/wheels/serve.py, on loopback.

    <cache>/sha256/<hex>      the artifact whose sha256 is <hex> (its file name is in the lock)
    <cache>/sha256/.<hex16>-….part   a download under way, locked (flock) by the process writing it

A download stops at the size its lock gives (no server fills the disk), and its .part file goes on any exit: an
error, a stop, SIGINT or SIGTERM (while `make fetch` runs them in its main thread). One that a killed process left
(SIGKILL, a build's fetch thread) is removed by the next fetch, once no process holds its lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import signal
import socket
import ssl
import stat
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from builder import layout, urls
from builder.heartbeat import Heartbeat
from builder.matrix.types import ImageSpec
from builder.units import human
from builder.wheels import lockfile
from builder.wheels.lockfile import Locked
from builder.wheels.network import NetworkSettings

WORKERS = 4  # downloads at once: enough to fill the link with a few large wheels
CHUNK = 1 << 20
ATTEMPTS = 3  # a dropped connection is tried again; a wrong sha256 is not
HEARTBEAT_S = 5
TIMEOUT_S = 60  # per read, not per file
MAX_REDIRECTS = 5
PART_GRACE_S = 60  # a .part file younger than this may be one another process has just made and not yet locked


class FetchError(Exception):
    pass


class _Stopped(Exception):
    """Another download failed: this one gives up too."""


@dataclass(frozen=True)
class Wanted:
    package: Locked
    lock: str  # the lock file that names it (images/<tag>/<file>), for messages
    tag: str


@dataclass(frozen=True)
class Fetched:
    files: int  # artifacts the locks name (each once)
    downloaded: int  # of them, fetched now
    bytes: int  # bytes downloaded now
    seconds: float


def folder(env: dict[str, str] | None = None) -> Path:
    return layout.cache_dir(env) / "sha256"


def path(sha256: str, cache: Path) -> Path:
    """The entry of an artifact; only a sha256 that is one (64 lowercase hex digits) names a path."""
    if not lockfile.SHA256_RE.fullmatch(sha256):
        raise ValueError(f"not a sha256: {sha256!r}")  # lockfile.read refuses such a lock first: a bug if reached
    return cache / sha256


def file_sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def wanted(specs: list[ImageSpec], images: Path | None = None) -> list[Wanted]:
    """Each artifact the tags' locks name, once (by sha256), in lock order."""
    images = images or layout.IMAGES
    seen: dict[str, Wanted] = {}
    for spec in specs:
        for file in layout.LOCKS:
            where = images / spec.tag / file
            for package in lockfile.read(where):
                seen.setdefault(package.sha256, Wanted(package, f"images/{spec.tag}/{file}", spec.tag))
    return list(seen.values())


def intact(sha256: str, cache: Path) -> bool | None:
    """True: in the cache with its sha256; None: absent; False: there but corrupt."""
    file = path(sha256, cache)
    if not file.is_file():
        return None
    return file_sha256(file) == sha256


class _Progress(Heartbeat):
    def __init__(self, say, files: int):
        super().__init__(HEARTBEAT_S)
        self.say, self.files = say, files
        self.done = self.finished = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n

    def finish(self) -> None:
        with self._lock:
            self.finished += 1

    def line(self) -> str:
        rate = self.done / max(self.seconds(), 1e-3)
        return f"{human(self.done)} ({human(rate)}/s), {self.finished} of {self.files} files"

    def beat(self) -> None:
        self.say(f"[{self.seconds():6.1f}s] fetching: {self.line()}")


class _Connections(threading.local):
    """One kept-alive connection per host and download thread: a lock's hundred small wheels then cost one DNS
    lookup and one TLS handshake per thread, not one each. HTTPS_PROXY/HTTP_PROXY and NO_PROXY are honoured as
    urllib would."""

    def __init__(self, context: ssl.SSLContext, every: weakref.WeakSet, guard: threading.Lock):
        self.context, self.open = context, {}
        self.every, self.guard = every, guard  # every thread's sockets, for close_all

    def get(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        """GET url, following redirects; the Authorization header goes to the first origin only."""
        for _ in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            for attempt in (1, 2):  # a kept-alive connection the server has closed is opened again, once
                connection = self._connection(parts)
                try:
                    connection.request("GET", target, headers=headers)
                    with self.guard:  # the socket, not the connection: a response that closes it keeps reading it
                        self.every.add(connection.sock)
                    response = connection.getresponse()
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    self.drop(parts)
                    if attempt == 2:
                        raise
            if response.status not in (301, 302, 303, 307, 308):
                return response
            response.read()
            following = urllib.parse.urljoin(url, response.getheader("Location", ""))
            if why := urls.unfetchable(following):  # never file:, ftp: or plain http off loopback
                raise FetchError(f"{urls.redact(url)} redirects to {urls.redact(following)}, {why}: refused")
            moved = urllib.parse.urlsplit(following)
            if (moved.scheme, moved.netloc) != (parts.scheme, parts.netloc):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = following
        raise urllib.error.URLError(f"more than {MAX_REDIRECTS} redirects")

    def _connection(self, parts: urllib.parse.SplitResult) -> http.client.HTTPConnection:
        key = (parts.scheme, parts.hostname, parts.port)
        if key not in self.open:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            proxy = None if urllib.request.proxy_bypass(parts.hostname or "") else urllib.request.getproxies().get(parts.scheme)
            where = urllib.parse.urlsplit(proxy) if proxy else None
            host, connect_port = (where.hostname, where.port or 80) if where else (parts.hostname, port)
            if parts.scheme == "https":
                connection = http.client.HTTPSConnection(host, connect_port, timeout=TIMEOUT_S, context=self.context)
            else:
                connection = http.client.HTTPConnection(host, connect_port, timeout=TIMEOUT_S)
            if where:
                connection.set_tunnel(parts.hostname, port)
            self.open[key] = connection
        return self.open[key]

    def drop(self, parts: urllib.parse.SplitResult) -> None:
        connection = self.open.pop((parts.scheme, parts.hostname, parts.port), None)
        if connection is not None:
            connection.close()


class _Pool:
    """The download threads' connections (each thread its own), and a way to cut them all at once: a stop then
    ends a read that waits on a silent server now, not after TIMEOUT_S."""

    def __init__(self, context: ssl.SSLContext):
        self.every: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.guard = threading.Lock()
        self.local = _Connections(context, self.every, self.guard)

    def close_all(self) -> None:
        with self.guard:
            for sock in list(self.every):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _download(item: Wanted, cache: Path, network: NetworkSettings, connections: _Connections,
              progress: _Progress, stop: threading.Event) -> None:
    package = item.package
    headers = {"User-Agent": "torchyard", **network.authorization(package.url)}
    target = path(package.sha256, cache)
    for attempt in range(1, ATTEMPTS + 1):
        got = 0
        fd, tmp = tempfile.mkstemp(prefix=f".{package.sha256[:16]}-", suffix=".part", dir=cache)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held while it is written: no other fetch takes it for a dead one's
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                response = connections.get(package.url, headers)
                if stop.is_set():  # stopped while it connected: its socket may have come after close_all cut the rest
                    raise _Stopped()
                if response.status != 200:
                    response.read()
                    raise urllib.error.HTTPError(urls.redact(package.url), response.status, response.reason,
                                                 response.headers, None)
                announced = response.getheader("Content-Length")
                if announced and announced.isdigit() and int(announced) != package.size:
                    raise FetchError(_wrong_size(item, f"the server announces {announced} bytes"))
                while block := response.read(min(CHUNK, package.size + 1 - got)):  # never past size + 1 bytes
                    if stop.is_set():
                        raise _Stopped()
                    got += len(block)
                    if got > package.size:
                        raise FetchError(_wrong_size(item, "the server sends more"))
                    out.write(block)
                    digest.update(block)
                    progress.add(len(block))
            if got != package.size:
                raise FetchError(_wrong_size(item, f"the server sent {got} bytes"))
            if digest.hexdigest() != package.sha256:
                raise FetchError(
                    f"the sha256 of {package.name} {package.version} ({package.filename}) is {digest.hexdigest()}, "
                    f"but {item.lock} says {package.sha256}: either the lock was edited or the index serves another "
                    f"file; `make lock TAG={item.tag}` re-resolves after review. Nothing was kept.")
            os.replace(tmp, target)  # only a checked file gets the name
            return
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            connections.drop(urllib.parse.urlsplit(package.url))
            progress.add(-got)
            if stop.is_set():
                raise _Stopped() from None  # a connection close_all cut
            reason = (f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError)
                      else getattr(e, "reason", None) or e)
            if (isinstance(e, urllib.error.HTTPError) and e.code < 500) or attempt == ATTEMPTS:
                raise FetchError(f"cannot fetch {package.name} {package.version} from {urls.redact(package.url)} "
                                 f"(named by {item.lock}): {urls.redact(str(reason))}") from None
        except BaseException:
            connections.drop(urllib.parse.urlsplit(package.url))  # a half-read response: the connection is spent
            progress.add(-got)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _wrong_size(item: Wanted, what: str) -> str:
    p = item.package
    return (f"{p.name} {p.version} ({p.filename}) is {p.size} bytes by {item.lock}, but {what}: either the lock was "
            f"edited or the index serves another file; `make lock TAG={item.tag}` re-resolves after review. "
            "Nothing was kept.")


def remove_abandoned(cache: Path, grace_s: float = PART_GRACE_S) -> int:
    """Remove the .part files that killed fetches left (SIGKILL, a build's fetch thread under SIGTERM): each that
    no process holds locked and that is older than grace_s (a fetch locks its own right after making it). Never
    follows a symlink; returns how many went."""
    removed = 0
    for part in cache.glob(".*.part"):
        try:
            fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # gone meanwhile, or a symlink: not ours
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or time.time() - info.st_mtime < grace_s:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live fetch's
            with contextlib.suppress(FileNotFoundError):
                if os.stat(part, follow_symlinks=False).st_ino == info.st_ino:  # the file we locked, not a new one
                    os.unlink(part)
                    removed += 1
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def _signals_stop(stop: threading.Event) -> Iterator[list[int]]:
    """While `make fetch` downloads in its main thread, SIGINT and SIGTERM (CI cancelling a job, `docker stop`) set
    `stop`; the fetch raises KeyboardInterrupt once its downloads have stopped and removed their .part files. A
    handler that raised at once could raise inside concurrent.futures' own locking and leave a download thread
    waiting forever. Only the main thread can set a handler: a build's fetch thread relies on remove_abandoned."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum, frame):
        caught.append(signum)
        stop.set()

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s, was in previous.items():
        if was is not signal.SIG_IGN:  # a background job's ignored SIGINT stays ignored
            signal.signal(s, handler)
    try:
        yield caught
    finally:
        for s, was in previous.items():
            signal.signal(s, was)


def fetch(items: list[Wanted], network: NetworkSettings, say=print, cache: Path | None = None,
          workers: int = WORKERS, ready=lambda sha256: None, stop: threading.Event | None = None) -> Fetched:
    """Make every artifact present and intact in the cache; FetchError naming the package and its lock when one
    cannot be fetched or differs from its lock (the other downloads then stop, leaving nothing half-written).
    ready(sha256) is called for each artifact as soon as it is known intact (a build may read it from then on);
    setting `stop` makes the downloads give up."""
    cache = cache or folder()
    cache.mkdir(parents=True, exist_ok=True)
    if removed := remove_abandoned(cache):
        say(f"removed {removed} partial download(s) that an interrupted fetch left in {cache}")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:  # hashing releases the GIL: checks run side by side
        states = list(pool.map(lambda item: intact(item.package.sha256, cache), items))
    missing = []
    for item, state in zip(items, states):
        if state is False:
            say(f"the cached {item.package.filename} is corrupt (not the sha256 {item.lock} names); fetching it again")
            path(item.package.sha256, cache).unlink()
        if state:
            ready(item.package.sha256)
        else:
            missing.append(item)
    if not missing:
        return Fetched(len(items), 0, 0, time.monotonic() - started)
    say(f"fetching {len(missing)} of {len(items)} artifacts into {cache}")
    connections = _Pool(network.tls_context())
    stop = stop or threading.Event()
    with _signals_stop(stop) as caught, _Progress(say, len(missing)) as progress, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        def one(item: Wanted) -> None:
            _download(item, cache, network, connections.local, progress, stop)
            ready(item.package.sha256)
            progress.finish()

        futures = [pool.submit(one, item) for item in sorted(missing, key=lambda i: i.package.name)]
        try:
            while True:  # in steps, so that a stop (a signal's, or the build's) is seen while downloads run
                done, running = wait(futures, timeout=0.25, return_when=FIRST_EXCEPTION)
                if not running or stop.is_set() or any(f.exception() for f in done):
                    break
        finally:
            if not all(f.done() and not f.exception() for f in futures):  # a failure, a stop, or interrupted
                stop.set()  # the other downloads stop and leave nothing behind
                connections.close_all()
                pool.shutdown(cancel_futures=True)
        if caught:
            raise KeyboardInterrupt(f"signal {caught[0]}")
        # The cause first: a download that the stop cut (_Stopped) failed because another one did, and a download
        # listed before the one that failed may be cut before the failure is read (seen under make mutation).
        failed = sorted((f.exception() for f in futures if not f.cancelled() and f.exception()),
                        key=lambda e: isinstance(e, _Stopped))
        if failed:
            raise failed[0]
    say(f"fetched {progress.line()} in {progress.seconds():.1f}s")
    return Fetched(len(items), len(missing), progress.done, time.monotonic() - started)
