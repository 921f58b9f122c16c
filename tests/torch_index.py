"""A stand-in for the PyTorch wheel index (download.pytorch.org/whl), made from PyPI's wheels in the wheel cache.

The real index lays each CUDA variant out as /whl/<variant>/<project>/ (PEP 503 pages, written by pytorch/test-infra's
s3_management/manage.py), its files at /whl/<variant>/<file, '+' as %2B>; it names torch and torchvision with a local
version (torch-2.6.0+cu124-cp311-cp311-linux_x86_64.whl, the tags of the wheel's own WHEEL file), mirrors the
packages of manage.py's PACKAGE_ALLOW_LIST (the nvidia-* wheels, numpy, sympy, …: the same files as PyPI's) and
answers 403 for a project it lacks (nvidia-ml-py among them).

PyPI's torch 2.6.0 is the cu124 build (torch/version.py says 2.6.0+cu124, CUDA 12.4; torchvision 0.21.0's says
0.21.0+cu124), so its index form is the same bytes under the version it already reports: relabel() rewrites the
version in METADATA, the .dist-info folder's name and RECORD (the changed files' hashes recomputed) and copies every
other entry's compressed bytes as they are. Relabelled as any other variant it would be a wheel that lies about its
CUDA, so the stand-in only ever serves a variant as the wheel's own.
"""

from __future__ import annotations

import base64
import copy
import csv
import hashlib
import io
import re
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from builder.wheels import cache as wheel_cache
from builder.wheels.lockfile import Locked
from tests.loopback import Listed, core_metadata

# The projects of torch's locks that pytorch/test-infra's s3_management/manage.py (PACKAGE_ALLOW_LIST) puts on the
# index; nvidia-ml-py (the smoke suite's NVML binding) and the workspace's packages are not among them.
MIRRORED = frozenset({
    "torch", "torchvision", "triton", "filelock", "fsspec", "jinja2", "markupsafe", "mpmath", "networkx", "numpy",
    "pillow", "sympy", "typing-extensions",
    *(f"nvidia-{lib}-cu12" for lib in ("cublas", "cuda-cupti", "cuda-nvrtc", "cuda-runtime", "cudnn", "cufft",
                                       "cufile", "curand", "cusolver", "cusparse", "cusparselt", "nccl", "nvtx",
                                       "nvjitlink")),
})
RELABELLED = frozenset({"torch", "torchvision"})  # what the index names with the CUDA variant (+cu124)
ABSENT = 403  # what download.pytorch.org answers for a project it does not hold (an S3 key that is not there)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _copy_raw(source: zipfile.ZipFile, out: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> None:
    """One entry under `name`, its compressed bytes copied as they are: recompressing torch's 1.5 GB would take
    minutes. zipfile has no public call for it; its own header writer and central directory do the rest."""
    source.fp.seek(info.header_offset)
    fixed = source.fp.read(zipfile.sizeFileHeader)
    name_length, extra_length = struct.unpack("<HH", fixed[26:30])
    source.fp.seek(info.header_offset + zipfile.sizeFileHeader + name_length + extra_length)
    entry = copy.copy(info)
    entry.filename, entry.orig_filename = name, name
    entry.flag_bits &= ~0x08  # sizes and CRC go in the header: no data descriptor follows the data
    entry.extra = b""
    entry.header_offset = out.fp.tell()
    out.fp.write(entry.FileHeader())
    left = info.compress_size
    while left:
        block = source.fp.read(min(left, 1 << 20))
        out.fp.write(block)
        left -= len(block)
    out.filelist.append(entry)
    out.NameToInfo[name] = entry
    out.start_dir = out.fp.tell()


def relabel(source: Path, filename: str, local: str, folder: Path) -> Path:
    """The PyTorch wheel index's form of a PyPI wheel (source, named filename on PyPI): version V becomes V+local in
    the file name, METADATA, the .dist-info folder and RECORD; the file name takes the tags of the wheel's WHEEL file
    (PyPI's were renamed manylinux1 on upload, the index's were not). Returns the new wheel, in folder."""
    name, version, _, _ = parse_wheel_filename(filename)
    with zipfile.ZipFile(source) as wheel:
        info = next(i.filename.split("/")[0] for i in wheel.infolist() if i.filename.endswith(".dist-info/METADATA")
                    and i.filename.count("/") == 1)
        dist = info.removesuffix(".dist-info").rsplit("-", 1)[0]  # the name as the wheel spells it
        new_version = f"{version}+{local}"
        new_info = f"{dist}-{new_version}.dist-info"
        tags = [line.split(":", 1)[1].strip() for line in wheel.read(f"{info}/WHEEL").decode().splitlines()
                if line.startswith("Tag:")]
        parts = [".".join(dict.fromkeys(tag.split("-")[i] for tag in tags)) for i in range(3)]
        target = folder / f"{filename.split('-', 1)[0]}-{new_version}-{'-'.join(parts)}.whl"
        metadata, found = re.subn(rf"^Version: {re.escape(str(version))}$", f"Version: {new_version}",
                                  wheel.read(f"{info}/METADATA").decode(), count=1, flags=re.M)
        if not found:
            raise ValueError(f"{filename}: its METADATA names no Version: {version}")
        metadata = metadata.encode()
        record = _record(wheel.read(f"{info}/RECORD").decode(), info, new_info, metadata)
        with zipfile.ZipFile(target, "w") as out:
            for entry in wheel.infolist():
                renamed = new_info + entry.filename[len(info):] if entry.filename.startswith(f"{info}/") else entry.filename
                if renamed in (f"{new_info}/METADATA", f"{new_info}/RECORD"):
                    made = zipfile.ZipInfo(renamed, entry.date_time)
                    made.external_attr, made.compress_type = entry.external_attr, zipfile.ZIP_DEFLATED
                    out.writestr(made, metadata if renamed.endswith("METADATA") else record)
                else:
                    _copy_raw(wheel, out, entry, renamed)
    return target


def _record(text: str, info: str, new_info: str, metadata: bytes) -> bytes:
    rows = []
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        if row[0].startswith(f"{info}/"):
            row[0] = new_info + row[0][len(info):]
        if row[0] == f"{new_info}/METADATA":
            row[1:] = [_record_hash(metadata), str(len(metadata))]
        rows.append(row)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def without_pypi_wheel(compat_text: str, release: str) -> str:
    """compat.yaml's text with the release recorded as PyPI does not carry it (pypi: null, as a release candidate only
    the PyTorch wheel index has): each of its variants then takes torch from that index. For the test's own clone:
    v2.6-cu124 from /whl/cu124, served the bytes that are a cu124 build."""
    lines = compat_text.split("\n")
    start = lines.index(f'  "{release}":')
    end = next((n for n in range(start + 1, len(lines)) if not lines[n].startswith("    ")), len(lines))
    at = next(n for n in range(start, end) if lines[n].startswith("    pypi: "))
    lines[at] = "    pypi: null"
    return "\n".join(lines)


def variant_page(packages: Iterable[Locked], cache: Path, variant: str, folder: Path) -> list[Listed]:
    """What /whl/<variant>/ lists of these locked PyPI artifacts (all in the wheel cache): torch and torchvision
    relabelled +<variant> (made in folder), the others the index mirrors as they are (the cache's own files)."""
    listed = []
    for p in packages:
        project = canonicalize_name(p.name)
        if project not in MIRRORED:
            continue
        file = wheel_cache.path(p.sha256, cache)
        if project in RELABELLED:
            made = relabel(file, p.filename, variant, folder)
            listed.append(Listed.of(made))
        else:
            listed.append(Listed(file, p.filename, p.sha256, core_metadata(file)))
    return listed


def pypi_page(packages: Iterable[Locked], cache: Path) -> list[Listed]:
    """These locked artifacts as PyPI lists them (the cache's files under their PyPI names)."""
    return [Listed(wheel_cache.path(p.sha256, cache), p.filename, p.sha256, core_metadata(wheel_cache.path(p.sha256, cache)))
            for p in packages]
