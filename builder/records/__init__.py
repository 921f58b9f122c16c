"""Every record torchyard writes and later reads back: its file name, its schema, its reader and its writer, in this
package alone. Other modules ask it; none names a record's file or parses one. Each record has one place, by what
it is about; this module is what they share: BrokenRecord, the bounded strict read and the atomic write.

builds.py: what a build made and measured
    reports/<tag>/build.json           BuildRecord  the last build (builder/image/build.py)
    reports/<tag>/size.json            SizeReport   bytes per layer and package (builder/image/size.py); size.baseline.json too
    reports/<tag>/compressed.json      Compressed   what a push sends (builder/image/size.py)
    reports/<tag>/verify.json          (written)    a rebuild compared (builder/image/verify.py); nothing reads it back
runs.py: what ran
    reports/<tag>/smoke.json           SmokeReport  the smoke suite's report (builder/host/smoke.py)
    reports/<tag>/smoke-nodes<N>.json  SmokeReport  node 0's report of a run across N containers (builder/jobs/multinode.py)
    reports/<tag>/run.json             Outcome      the last `make matrix` verdict (builder/matrix_run/run.py)
    reports/timings.json               Timings      step -> tag -> seconds (builder/matrix_run/progress.py)
published.py: what went to a registry
    digests/<tag>.json                 Digests      what each push recorded (builder/image/registry.py)
    reports/<tag>/attested.json        Attested     what was signed and attached beside each pushed digest (builder/attest/)
    reports/<tag>/sbom.cdx.json, provenance.intoto.json, smoke.intoto.json   (written) the statements attached

Read back from elsewhere: the image's own manifest.json (builds.ImageManifest: image_files/manifest.py writes it at
build time), and what a registry serves beside a digest, parsed(): the standard formats an attestation is made of
(in-toto Statement, DSSE envelope, SLSA Provenance) have their schemas in builder/attest/intoto.py, OCI's in
builder/attest/oci.py.

The NVML recording (TORCHYARD_NVML_RECORD) is read inside images as well, where only the standard library is:
smoke_tests/nvml.py keeps its own bounded, validated reader.

Every record is input, however it got there (a pull request, a hand edit, a full disk): read() opens it as a
regular file of its own (no symlink, FIFO or device), reads at most a byte cap, refuses nesting deeper than
MAX_DEPTH before any parser recurses, then converts it to its typed schema strictly ("9" is no number, true no
count), then lets the schema check what a type cannot say (Record.checked). A record that does not parse raises
BrokenRecord, naming the file, the field ($.checks[0].seconds) and what was expected: the report, the doctor and
`make matrix` show the tag's record as broken and go on; a command that cannot go on without it (push, pull, k8s,
slurm) exits 2.

Why msgspec: one typed Struct both encodes a record on write and decodes it on read, so the two cannot drift; its
strict conversion refuses what a dict lookup would let through (a string where a number belongs) and names the
field path in its error; it is one small, compiled dependency with no dependencies of its own. pydantic v2 does
the same with a larger runtime (pydantic-core, typing-extensions, annotated-types) and lax coercion by default.
Records are parsed by the standard library's json first (it reads the NaN a Python writer may have put in a
loss figure, where msgspec's JSON decoder refuses it), then converted by msgspec.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec

from builder import files
from builder import reference as references
from builder.inputs import InputError, printable

MAX_BYTES = 4 * 2**20  # a smoke report with every figure is ~10 KB, a size report ~50 KB
MAX_DEPTH = 32  # the deepest record nests 6 levels
FIX = "remove it (the step that wrote it writes it again: make matrix TAG=<tag>)"

Sha256 = Annotated[str, msgspec.Meta(pattern=f"^{references.SHA256}$")]  # sha256:<64 lowercase hex>, nothing else
T = TypeVar("T")


class BrokenRecord(InputError):
    """A record does not parse: which file, which field, what was expected (exit 2 where a command needs it)."""

    def __init__(self, path: Path, problem: str, fix: str):
        self.path, self.problem, self.fix = path, printable(problem)[:300], fix
        super().__init__(f"{path} is broken: {self.problem}; {fix}")

    def short(self, folder: str) -> str:
        """The sentence a report shows: the record named as folder/<name>, never by this machine's path."""
        return f"{folder}/{self.path.name} is broken ({self.problem})"


class Record(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A record's fields by name, in any order; a field at its default is not written."""

    def checked(self, path: Path, fix: str):
        """What its types cannot say, checked once it is converted: BrokenRecord naming path when it is not so."""
        return self


def report_path(reports: Path, tag: str, name: str) -> Path:
    """reports/<tag>/<name>: where a tag's record of that name lives."""
    return reports / tag / name


def at(message: str, prefix: str) -> str:
    """msgspec's '… - at `$.x`' of a value converted alone, as the path in the whole record."""
    return message.replace("`$", f"`{prefix}", 1) if "`$" in message else f"{message} - at `{prefix}`"


def _parse(raw: bytes, path: Path, fix: str = FIX):
    try:
        files.json_depth(raw, MAX_DEPTH)
        # NaN and Infinity (Python's json writes them for a diverged loss) read as null: no figure of a report is one
        return json.loads(raw.decode("utf-8"), parse_constant=lambda _: None)
    except files.Refused as e:
        raise BrokenRecord(path, f"{e} (a record is at most {MAX_DEPTH})", fix) from None
    except UnicodeDecodeError as e:
        raise BrokenRecord(path, f"not UTF-8 (byte {e.start})", fix) from None
    except ValueError as e:  # JSONDecodeError, or an integer of more digits than Python converts
        raise BrokenRecord(path, f"not JSON ({str(e)[:120]})", fix) from None


def _convert(data, schema: type[T], path: Path, fix: str) -> T:
    try:
        value = msgspec.convert(data, schema, strict=True)
    except msgspec.ValidationError as e:
        raise BrokenRecord(path, str(e), fix) from None
    return value.checked(path, fix) if isinstance(value, Record) else value


def parsed(raw: bytes, schema: type[T], origin: Path, fix: str) -> T:
    """Bytes read elsewhere (a container's, a registry's) as schema: BrokenRecord naming origin when they are not."""
    if len(raw) > MAX_BYTES:
        raise BrokenRecord(origin, f"larger than {MAX_BYTES:,} bytes", fix)
    return _convert(_parse(raw, origin, fix), schema, origin, fix)


def read(path: Path, schema: type[T], fix: str = FIX, limit: int = MAX_BYTES) -> T | None:
    """The record at path as `schema`, or None when there is none; BrokenRecord when it is not one."""
    try:
        raw = files.read_bounded(path, limit, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except files.Refused as e:
        raise BrokenRecord(path, str(e).removeprefix(f"{path} "), fix) from None
    except OSError as e:
        raise BrokenRecord(path, f"cannot be read ({e.strerror})", fix) from None
    return _convert(_parse(raw, path, fix), schema, path, fix)


def read_report(reports: Path, tag: str, name: str, schema: type[T]) -> T | None:
    """reports/<tag>/<name> as schema."""
    return read(report_path(reports, tag, name), schema)


def encode(value) -> bytes:
    """A record's JSON as written: indented, one trailing newline."""
    return msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"


def write(path: Path, value) -> Path:
    """Write the record (a Struct, or the dict and dataclass values of the unread ones) whole, in one rename."""
    return files.write_atomic(path, encode(value))


def write_report(reports: Path, tag: str, name: str, value) -> Path:
    return write(report_path(reports, tag, name), value)
