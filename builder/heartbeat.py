"""A context manager that calls beat() every few seconds on a background thread, for long engine calls."""

from __future__ import annotations

import threading
import time


class Heartbeat:
    def __init__(self, every_s: float):
        self.started = time.monotonic()
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self.beat()

    def beat(self) -> None:
        raise NotImplementedError
