"""The engine boundary without an engine: the stream reader over chunks as the SDK yields them, and the SDK's errors
turned into ours (the SDK's own exception objects, as its HTTP layer makes them). tests/docker/test_engine.py asks a
real engine."""

import io
import tarfile

import docker.errors
import pytest

from builder.image import engine


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def chunked(data: bytes, sizes) -> list[bytes]:
    chunks, at = [], 0
    for size in sizes:
        chunks.append(data[at:at + size])
        at += size
    return chunks + [data[at:]]


FILES = {"a.txt": b"alpha\n", "dir/b.bin": bytes(range(256)) * 40, "empty": b""}


@pytest.mark.parametrize("sizes", [(), (1, 0, 0, 511, 513), (7,) * 300, (0, 10_000, 0)],
                         ids=["one chunk", "tiny and empty chunks", "many odd chunks", "empty around a large one"])
def test_a_tar_streams_through_the_reader_whatever_the_chunks(sizes):
    data = tar_of(FILES)
    with tarfile.open(fileobj=engine.reader(chunked(data, sizes), 64), mode="r|") as tar:
        read = {member.name: tar.extractfile(member).read() for member in tar}
    assert read == FILES


def test_the_reader_ends_once_the_chunks_end_and_stays_ended():
    stream = engine.Stream([b"ab", b"", b"cde"])
    buffer = bytearray(4)
    assert stream.readinto(buffer) == 2 and buffer[:2] == b"ab"
    assert stream.readinto(buffer) == 3 and buffer[:3] == b"cde"
    assert stream.readinto(buffer) == 0
    assert stream.readinto(buffer) == 0


def test_a_read_smaller_than_a_chunk_keeps_the_rest():
    stream = engine.Stream([b"abcdef"])
    buffer = bytearray(4)
    assert stream.readinto(buffer) == 4 and bytes(buffer) == b"abcd"
    assert stream.readinto(buffer) == 2 and buffer[:2] == b"ef"


@pytest.mark.parametrize("raised, ours, message", [
    (docker.errors.ImageNotFound("404 Client Error: Not Found", explanation="No such image: x:y"), engine.NotFound,
     "No such image: x:y"),
    (docker.errors.NotFound("404 Client Error: Not Found", explanation="No such container: c"), engine.NotFound,
     "No such container: c"),
    (docker.errors.APIError("409 Client Error: Conflict", explanation="conflict: unable to remove"), engine.EngineError,
     "conflict: unable to remove"),
    (docker.errors.APIError("500 Server Error: no explanation"), engine.EngineError, "500 Server Error: no explanation"),
])
def test_the_sdks_api_errors_come_out_as_ours_in_the_engines_words(raised, ours, message):
    with pytest.raises(engine.EngineError) as caught:
        with engine.translated():
            raise raised
    assert type(caught.value) is ours
    assert str(caught.value) == message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no SDK traceback behind it


@pytest.mark.parametrize("raised", [ValueError("ours"), docker.errors.ContainerError("c", 1, ["true"], "i", b"")])
def test_other_errors_pass_through_untranslated(raised):
    with pytest.raises(type(raised)):
        with engine.translated():
            raise raised
