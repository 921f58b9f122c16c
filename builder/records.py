"""Every record torchyard writes and later reads back: its file name, its schema, its reader and its writer, here
alone. Other modules ask this one; none names a record's file or parses one.

    digests/<tag>.json                 Digests      what each push recorded (builder/image/registry.py)
    reports/<tag>/build.json           BuildRecord  the last build (builder/image/build.py)
    reports/<tag>/size.json            SizeReport   bytes per layer and package (builder/image/size.py); size.baseline.json too
    reports/<tag>/compressed.json      Compressed   what a push sends (builder/image/size.py)
    reports/<tag>/smoke.json           SmokeReport  the smoke suite's report (builder/host/smoke.py)
    reports/<tag>/smoke-nodes<N>.json  SmokeReport  node 0's report of a run across N containers (builder/jobs/multinode.py)
    reports/<tag>/run.json             Outcome      the last `make matrix` verdict (builder/matrix_run/run.py)
    reports/<tag>/verify.json          (written)    a rebuild compared (builder/image/verify.py); nothing reads it back
    reports/timings.json               Timings      step -> tag -> seconds (builder/matrix_run/progress.py)
    reports/<tag>/attested.json        Attested     what was signed and attached beside each pushed digest (builder/attest/)
    reports/<tag>/sbom.cdx.json, provenance.intoto.json, smoke.intoto.json   (written) the statements attached

Read back from elsewhere: the image's own manifest.json (ImageManifest: image_files/manifest.py writes it at build
time), and what a registry serves beside a digest, parsed(): the standard formats an attestation is made of (in-toto
Statement, DSSE envelope, SLSA Provenance) have their schemas in builder/attest/intoto.py, OCI's in builder/attest/oci.py.

The NVML recording (TORCHYARD_NVML_RECORD) is read inside images as well, where only the standard library is:
smoke_tests/nvml.py keeps its own bounded, validated reader.

Every record is input, however it got there (a pull request, a hand edit, a full disk): read() opens it as a
regular file of its own (no symlink, FIFO or device), reads at most a byte cap, refuses nesting deeper than
MAX_DEPTH before any parser recurses, then converts it to its typed schema strictly ("9" is no number, true no
count). A record that does not parse raises BrokenRecord, naming the file, the field ($.checks[0].seconds) and
what was expected: the report, the doctor and `make matrix` show the tag's record as broken and go on; a command
that cannot go on without it (push, pull, k8s, slurm) exits 2.

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
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from builder import files, layout
from builder import reference as references
from builder.inputs import InputError, printable, shown

MAX_BYTES = 4 * 2**20  # a smoke report with every figure is ~10 KB, a size report ~50 KB
DIGESTS_MAX_BYTES = 256 * 1024  # a few hundred bytes per registry
MAX_DEPTH = 32  # the deepest record nests 6 levels

BUILD, SIZE, SIZE_BASELINE, COMPRESSED = "build.json", "size.json", "size.baseline.json", "compressed.json"
SMOKE, RUN, VERIFY, TIMINGS = "smoke.json", "run.json", "verify.json", "timings.json"
ATTESTED, SBOM, PROVENANCE_STATEMENT, SMOKE_STATEMENT = ("attested.json", "sbom.cdx.json", "provenance.intoto.json",
                                                         "smoke.intoto.json")

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


class _Record(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A record's fields by name, in any order; a field at its default is not written."""


# ---------------------------------------------------------------- digests/<tag>.json


class Pushed(_Record, kw_only=True):
    digest: Sha256  # the manifest digest the registry gave
    image_id: Sha256


Digests = dict[str, Pushed]  # <REGISTRY>/torchyard:<tag> -> what was pushed there


def digests_path(tag: str, digests: Path = layout.DIGESTS) -> Path:
    return digests / f"{tag}.json"


def read_digests(tag: str, digests: Path = layout.DIGESTS) -> Digests:
    """reference -> Pushed as digests/<tag>.json records them ({} when there is none); BrokenRecord when malformed."""
    path = digests_path(tag, digests)
    fix = f"restore it from git (`git checkout -- {path.parent.name}/{path.name}`) or remove it"
    entries = {}
    for ref, entry in (read(path, dict[str, Any], fix, DIGESTS_MAX_BYTES) or {}).items():
        where = f"$[{shown(ref)}]"  # the key named in full where msgspec would say $[...]
        # the key reaches other engines (a Kubernetes manifest, an sbatch script: builder/jobs/cluster.py) as the image
        found = references.parse(ref)
        if found is None or not found.domain or found.path.rsplit("/", 1)[-1] != layout.REGISTRY_NAME \
                or found.tag != tag or found.digest:
            raise BrokenRecord(path, f"the key {where} is not a reference {tag} is pushed as "
                                     f"(<REGISTRY>/{layout.REGISTRY_NAME}:{tag}, e.g. "
                                     f"registry.example.com/ml/{layout.REGISTRY_NAME}:{tag})", fix)
        try:
            entries[ref] = msgspec.convert(entry, Pushed, strict=True)
        except msgspec.ValidationError as e:
            raise BrokenRecord(path, _at(str(e), where) + ' ({"digest": "sha256:<64 hex>", "image_id": "sha256:<64 hex>"})',
                               fix) from None
    return entries


def write_digests(tag: str, entries: Digests, digests: Path = layout.DIGESTS) -> Path:
    return write(digests_path(tag, digests), dict(sorted(entries.items())))


# ---------------------------------------------------------------- reports/<tag>/build.json


class BuildRecord(_Record, kw_only=True):
    image: str | None = None
    status: Literal["built", "failed"]
    started: str
    seconds: float
    steps: int = 0
    cached: int = 0
    image_id: Sha256 | None = None
    context_sha256: str | None = None
    failed_step: str | None = None
    instruction: str | None = None
    error: str | None = None


# ---------------------------------------------------------------- reports/<tag>/size.json, size.baseline.json


class Layer(_Record, kw_only=True):
    size: int
    instruction: str


class SizeReport(_Record, kw_only=True):
    tag: str
    image: str
    image_id: str
    total: int
    layers: tuple[Layer, ...]  # oldest first, only those that add bytes
    packages: dict[str, int]  # name -> bytes, largest first


def largest_image(reports: Path) -> tuple[int | None, str | None, tuple[str, ...]]:
    """The largest image measured here (size reports), as (bytes, tag, the size records that are broken)."""
    best: tuple[int | None, str | None] = (None, None)
    broken = []
    for path in sorted(reports.glob(f"*/{SIZE}")):
        try:
            found = read(path, SizeReport)
        except BrokenRecord as e:
            broken.append(e.short(f"{reports.name}/{path.parent.name}"))
            continue
        if found and (best[0] is None or found.total > best[0]):
            best = (found.total, path.parent.name)
    return (*best, tuple(broken))


# ---------------------------------------------------------------- reports/<tag>/compressed.json


class Compressed(_Record, kw_only=True):
    tag: str
    image_id: str
    total: int  # the sum of the image's gzipped layers: the bytes a push to an empty registry sends
    layers: tuple[tuple[str, int, int], ...]  # (diff_id, bytes, gzipped bytes), oldest first
    method: str = ""


# ---------------------------------------------------------------- reports/<tag>/smoke.json, smoke-nodes<N>.json


class Check(_Record, kw_only=True):
    name: str
    status: Literal["PASS", "FAIL", "SKIPPED"]
    reason: str = ""
    figures: dict[str, Any] = {}  # every figure the check measured, kept whole; Figures is what is read of them
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    gpu: bool = False


class SmokeReport(_Record, kw_only=True):
    suite: str = ""
    started: str = ""
    host: str | None = None
    image: str | None = None
    require_gpu: bool = False
    host_gpus: str | None = None
    gpus: str | None = None  # older reports' name for host_gpus
    seconds: float | None = None
    status: Literal["PASS", "FAIL"]
    checks: tuple[Check, ...]
    # written on the host after the run (builder/host/smoke.py): how it ran, so `make matrix` can tell if it is current
    image_id: Sha256 | None = None
    reproducer: str | None = None
    host_nvml: dict[str, Any] | None = None
    host_toolkit: bool | None = None
    gpus_passed: bool | None = None
    data: str | None = None


class Device(_Record, kw_only=True):
    index: int = 0
    name: str
    capability: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,3}\.[0-9]{1,3}$")]  # '9.0'


class Tflops(_Record, kw_only=True):
    tflops: float


class Transfer(_Record, kw_only=True):
    busbw_gbs: float | None = None


class AudioRun(_Record, kw_only=True):
    resample_ms: float
    spectrogram_ms: float


class Figures(_Record, kw_only=True):
    """The figures of a check that the report, the doctor and `make matrix` read, typed: other keys are kept in
    the record but not read."""
    torch: str | None = None  # environment
    cpus: int | None = None
    devices: tuple[Device, ...] = ()  # cuda
    driver: str | None = None
    arch_list: tuple[str, ...] = ()
    bfloat16: Tflops | None = None  # cudnn conv
    ratio_to_matmul: float | None = None
    sizes: tuple[Transfer, ...] = ()  # the all-reduces
    world_size: int = 1
    images_per_s: float | None = None  # the fine-tunes
    audio: dict[str, AudioRun] = {}  # torchaudio: per device (cpu, cuda)


def figures(check: Check) -> Figures:
    """check's figures as read_smoke() has checked them (a check built in memory is checked here)."""
    return msgspec.convert(check.figures, Figures)


def nodes_name(nodes: int) -> str:
    return f"smoke-nodes{nodes}.json"


def _figures_checked(report: SmokeReport, path: Path, fix: str) -> SmokeReport:
    for i, check in enumerate(report.checks):
        try:
            figures(check)
        except msgspec.ValidationError as e:
            raise BrokenRecord(path, _at(str(e), f"$.checks[{i}].figures"), fix) from None
    return report


def read_smoke(path: Path) -> SmokeReport | None:
    report = read(path, SmokeReport)
    return _figures_checked(report, path, _FIX) if report else None


def smoke_from_suite(raw: bytes, origin: Path, **written) -> SmokeReport:
    """The suite's JSON as it left the container (origin: where it came from), with what the host adds (written):
    BrokenRecord when it is not a report (the suite runs in the image: its output is input too)."""
    fix = "the suite wrote no report this toolkit reads; see the run's log"
    report = _figures_checked(parsed(raw, SmokeReport, origin, fix), origin, fix)
    return msgspec.structs.replace(report, **written)


# ---------------------------------------------------------------- reports/<tag>/run.json


class Step(_Record, kw_only=True):
    name: str
    status: str  # matrix_run's DONE, CURRENT (not redone), FAILED, REFUSED
    seconds: float
    note: str


class Outcome(_Record, kw_only=True):
    tag: str
    result: str  # report.PASSED, report.FAILED or report.NOT_HERE
    reason: str
    fix: str | None
    steps: tuple[Step, ...]
    date: str


# ---------------------------------------------------------------- reports/timings.json

Timings = dict[str, dict[str, float]]  # step -> tag -> seconds it took the last time it did work


# ---------------------------------------------------------------- attestations (builder/attest/)


class Attachment(_Record, kw_only=True):
    digest: Sha256  # the image's manifest digest in that registry: the statements' subject
    keyid: str  # the signing key's (securesystemslib's: the sha256 of the public key's canonical form)
    date: str
    artifacts: dict[str, Sha256]  # predicate type -> the referrer manifest that carries its envelope
    smoke: str | None = None  # the attested smoke verdict ("PASS on CPU, 2 cores"), which the report shows


Attested = dict[str, Attachment]  # <REGISTRY>/torchyard:<tag> -> what was attached beside its digest


class ManifestLock(_Record, kw_only=True):
    sha256: str
    packages: int
    files: dict[str, str]  # lock file name -> its sha256


class ManifestBase(_Record, kw_only=True):
    ref: str
    image_id: str  # sha256:…, or "not recorded"


class ImageManifest(_Record, kw_only=True):
    """/usr/share/torchyard/manifest.json as image_files/manifest.py writes it inside every image."""
    tag: str
    spec: dict[str, Any]  # the image's spec.json: its matrix entry with the compatibility facts
    lock: ManifestLock
    python_packages: dict[str, str]
    python_licenses: dict[str, str] = {}  # none in images built before licenses were recorded
    venv_bootstrap: dict[str, str] = {}
    debian_packages: dict[str, str]
    base: ManifestBase


def parsed(raw: bytes, schema: type[T], origin: Path, fix: str) -> T:
    """Bytes read elsewhere (a container's, a registry's) as schema: BrokenRecord naming origin when they are not."""
    if len(raw) > MAX_BYTES:
        raise BrokenRecord(origin, f"larger than {MAX_BYTES:,} bytes", fix)
    return _convert(_parse(raw, origin, fix), schema, origin, fix)


def read_attested(tag: str, reports: Path) -> Attested:
    return read(report_path(reports, tag, ATTESTED), Attested) or {}


# ---------------------------------------------------------------- reading and writing

_FIX = "remove it (the step that wrote it writes it again: make matrix TAG=<tag>)"


def report_path(reports: Path, tag: str, name: str) -> Path:
    """reports/<tag>/<name>: where a tag's record of that name lives."""
    return reports / tag / name


def _at(message: str, prefix: str) -> str:
    """msgspec's '… - at `$.x`' of a value converted alone, as the path in the whole record."""
    return message.replace("`$", f"`{prefix}", 1) if "`$" in message else f"{message} - at `{prefix}`"


def _parse(raw: bytes, path: Path, fix: str = _FIX):
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
        return msgspec.convert(data, schema, strict=True)
    except msgspec.ValidationError as e:
        raise BrokenRecord(path, str(e), fix) from None


def read(path: Path, schema: type[T], fix: str = _FIX, limit: int = MAX_BYTES) -> T | None:
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
    """reports/<tag>/<name> as schema (smoke reports have their figures checked too)."""
    path = report_path(reports, tag, name)
    return read_smoke(path) if schema is SmokeReport else read(path, schema)


def encode(value) -> bytes:
    """A record's JSON as written: indented, one trailing newline."""
    return msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"


def write(path: Path, value) -> Path:
    """Write the record (a Struct, or the dict and dataclass values of the unread ones) whole, in one rename."""
    return files.write_atomic(path, encode(value))


def write_report(reports: Path, tag: str, name: str, value) -> Path:
    return write(report_path(reports, tag, name), value)
