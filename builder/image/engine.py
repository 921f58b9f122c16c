"""The Docker engine boundary: the one connection to the engine, its errors in our own types, and one reader of its
byte streams.

The rest of builder/ keeps the SDK's objects (a client, its images and containers are passed around as they are) but
never catches the SDK's exceptions: a call whose failure it handles runs inside `translated()`, so it catches
EngineError (the engine refused or failed; the message is the engine's own explanation) or NotFound.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import docker
import docker.errors

CHUNK = 1 << 20  # what a stream is read in: large enough that a multi-GB `docker save` is not a million calls


class EngineError(Exception):
    """The engine is not there, or refused or failed a call; str() says why in the engine's words."""


class NotFound(EngineError):
    """No such image, container, or path in a container."""


def connect() -> docker.DockerClient:
    """A client for the engine DOCKER_HOST names (or the local socket), or a clear error."""
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except (docker.errors.DockerException, OSError) as e:
        raise EngineError(f"no Docker engine answers at {where} ({e.__class__.__name__}). Start one: on Debian "
                          "`apt-get install docker.io` then `dockerd &` (or `systemctl start docker`).") from None


@contextmanager
def translated() -> Iterator[None]:
    """The SDK's API errors raised in the block as NotFound or EngineError, with the engine's explanation."""
    try:
        yield
    except docker.errors.NotFound as e:  # ImageNotFound too
        raise NotFound(str(e.explanation or e)) from None
    except docker.errors.APIError as e:
        raise EngineError(str(e.explanation or e)) from None


def _found(get, ref: str):
    try:
        with translated():
            return get(ref)
    except NotFound:
        return None


def find_image(client: docker.DockerClient, ref: str):
    """The image ref names (a tag or an ID), or None when the engine has none."""
    return _found(client.images.get, ref)


def find_container(client: docker.DockerClient, name: str):
    """The container of that name or ID, or None."""
    return _found(client.containers.get, name)


def read_file(container, path: str, limit: int = 16 * 1024 * 1024) -> bytes | None:
    """One regular file's bytes from a container (running or stopped), or None when it has no such file; at most
    `limit` bytes are taken from the engine (what a container wrote is input: it may be anything, of any size)."""
    try:
        with translated():
            stream, _ = container.get_archive(path)
    except NotFound:
        return None
    chunks, size = [], 0
    for chunk in stream:  # a tar of one file: its header, the bytes, padding (a few KB above the file itself)
        size += len(chunk)
        if size > limit + 64 * 1024:
            raise EngineError(f"{path} in container {container.name} is larger than {limit:,} bytes")
        chunks.append(chunk)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        member = tar.getmembers()[0]
        if not member.isreg():
            raise EngineError(f"{path} in container {container.name} is not a regular file")
        if member.size > limit:
            raise EngineError(f"{path} in container {container.name} is larger than {limit:,} bytes")
        return tar.extractfile(member).read()


class Stream(io.RawIOBase):
    """The engine's byte chunks (`docker save`, `docker export`) as a file tarfile can read in stream mode."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks, self._rest = iter(chunks), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._rest:  # an empty chunk is not the end
            self._rest = next(self._chunks, None)
            if self._rest is None:
                self._rest = b""
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n], self._rest = self._rest[:n], self._rest[n:]
        return n


def reader(chunks: Iterable[bytes], size: int = CHUNK) -> io.BufferedReader:
    """A buffered file over the engine's chunks, for tarfile.open(fileobj=..., mode='r|')."""
    return io.BufferedReader(Stream(chunks), size)
