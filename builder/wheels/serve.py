"""The wheel cache, served to one build on loopback: the build's pip installs from here with --no-index and
every sha256 required, so no index, CA bundle, pip setting or credential is ever inside a build.

The build may start before every artifact is in the cache: the server answers a request for one not yet fetched
when the fetch has it (Arrivals), so downloading overlaps the build's first steps.

The Dockerfile names the server http://torchyard-wheels:3141/. Each build binds a fresh random address of
127.0.0.0/8 and the engine maps the name to it (`extra_hosts`, the build on the host's network), so builds side
by side never collide and the Dockerfile's text, and so the build cache, stays the same.

    /                        the page pip's --find-links reads: a link to every artifact of the build's locks
    /<sha256>/<file name>    that artifact, from the cache
"""

from __future__ import annotations

import contextlib
import errno
import html
import random
import shutil
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from builder.wheels import cache as wheel_cache

HOST = "torchyard-wheels"
PORT = 3141
URL = f"http://{HOST}:{PORT}/"
ADDRESS_TRIES = 20
WAIT_S = 1800  # how long a request waits for its artifact to arrive in the cache


class ServeError(Exception):
    pass


class Arrivals:
    """Which artifacts the fetch has put in the cache (checked), and whether it gave up."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._ready: set[str] = set()
        self._failed = False

    def arrived(self, sha256: str) -> None:
        with self._changed:
            self._ready.add(sha256)
            self._changed.notify_all()

    def failed(self) -> None:
        with self._changed:
            self._failed = True
            self._changed.notify_all()

    def wait(self, sha256: str, timeout: float = WAIT_S) -> bool:
        """True once the artifact is in the cache; False when the fetch failed first, or after the timeout."""
        with self._changed:
            self._changed.wait_for(lambda: sha256 in self._ready or self._failed, timeout)
            return sha256 in self._ready


def _handler(items: list[wheel_cache.Wanted], cache: Path, arrivals: Arrivals) -> type[BaseHTTPRequestHandler]:
    files = {f"/{i.package.sha256}/{urllib.parse.quote(i.package.filename)}": wheel_cache.path(i.package.sha256, cache)
             for i in items}
    links = "".join(f'<a href="{html.escape(link)}#sha256={link.split("/")[1]}">'
                    f'{html.escape(urllib.parse.unquote(link.rsplit("/", 1)[1]))}</a>\n' for link in sorted(files))
    page = f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            where = urllib.parse.urlsplit(self.path).path
            if where == "/":
                self._headers(len(page), "text/html")
                if body:
                    self.wfile.write(page)
            elif where in files:
                if not arrivals.wait(where.split("/")[1]):
                    self.send_error(503, "the fetch of this artifact failed; see the fetch's message")
                    return
                self._headers(files[where].stat().st_size, "application/octet-stream")
                if body:
                    with files[where].open("rb") as f:
                        shutil.copyfileobj(f, self.wfile, wheel_cache.CHUNK)
            else:
                self.send_error(404, "not a file of this build's locks")

        def _headers(self, length: int, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def log_message(self, format: str, *args) -> None:
            pass  # the build log shows what pip fetched

    return Handler


@contextlib.contextmanager
def serving(items: list[wheel_cache.Wanted], cache: Path, arrivals: Arrivals) -> Iterator[str]:
    """Serve these artifacts from the cache while the block runs, each once `arrivals` has it; yields the loopback
    address HOST is to map to. Only what the locks name is served, and only on loopback."""
    handler = _handler(items, cache, arrivals)
    server = None
    for _ in range(ADDRESS_TRIES):
        address = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        try:
            server = ThreadingHTTPServer((address, PORT), handler)
            break
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise ServeError(f"cannot serve the wheel cache on {address}:{PORT}: {e.strerror}") from None
    if server is None:
        raise ServeError(f"port {PORT} is taken on every loopback address tried (another program listens on "
                         f"0.0.0.0:{PORT}?); the build reads its wheels from there")
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield address
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
