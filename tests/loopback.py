"""A real HTTP server on the loopback, for the tests that talk to an index or to an artifact's server."""

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def serving(**methods: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """Serve on 127.0.0.1 at a free port, each request answered by the given method (do_HEAD=, do_GET=: called with
    the handler), logging nothing; yields http://127.0.0.1:<port>, and shuts the server down and closes it after."""
    handler = type("Handler", (http.server.BaseHTTPRequestHandler,), {**methods, "log_message": lambda self, *_: None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
