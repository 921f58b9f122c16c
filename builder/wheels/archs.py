"""The GPU architectures a torch wheel carries kernels for, read from the wheel file itself: no GPU, no install.

torch/lib/libtorch_cuda.so keeps its kernels in the ELF section .nv_fatbin: a run of fatbinaries, each a 16-byte
header (magic 0xBA55ED50, version, header size, size of what follows) and entries, each with its own header
(kind 1 = PTX, 2 = cubin; the SM number at byte 28) and payload. Reading those headers, and skipping the
payloads, gives the same set torch._C._cuda_getArchFlags() reports: sm_XY per cubin arch, compute_XY per PTX arch.
The library is streamed out of the wheel's zip (two passes: the section table is at the end of the file, the
kernels near the start), never unpacked to disk.

`make fetch` records the list in images/<tag>/archs.json, with the sha256 of the torch wheel it was read from;
`make doctor` prefers it to compat.yaml's list while that wheel is still the one the tag's lock names.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import IO

from builder import layout
from builder.files import write_atomic
from builder.matrix.compat import ARCH_NAME
from builder.wheels import lockfile

LIBRARY = "torch/lib/libtorch_cuda.so"
FATBIN_MAGIC = 0xBA55ED50
KINDS = {1: "compute", 2: "sm"}
ENTRY_HEADER_MIN = 32  # kind, version, header size, payload size, 8 more bytes, the arch at byte 28
ENTRY_HEADER_MAX = 1 << 16
SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
TAIL = 1 << 20


class WheelArchsError(Exception):
    pass


def _read(f: IO[bytes], n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise WheelArchsError(f"{LIBRARY} ends inside {what}")
    return data


def _sections(f: IO[bytes]) -> dict[str, tuple[int, int]]:
    """name -> (offset, size) of each ELF section."""
    header = _read(f, 64, "the ELF header")
    if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        raise WheelArchsError(f"{LIBRARY} is not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", header, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", header, 0x3A)
    if shentsize != SECTION_HEADER.size or not 0 < shnum < 1 << 16 or shstrndx >= shnum:
        raise WheelArchsError(f"{LIBRARY}: its ELF section table is not one this reader knows")
    # The linker writes the section names just before the section table: one read of the file's tail gets both,
    # where seeking back for the names would inflate the whole member once more.
    start = max(0, shoff - TAIL)
    f.seek(start)
    tail = _read(f, shoff - start + shentsize * shnum, "the ELF section table")
    raw = [SECTION_HEADER.unpack_from(tail, shoff - start + i * shentsize) for i in range(shnum)]
    names_at, names_size = raw[shstrndx][4], raw[shstrndx][5]
    if names_size > 1 << 24:
        raise WheelArchsError(f"{LIBRARY}: its section name table is {names_size} bytes, too large to be one")
    if start <= names_at and names_at + names_size <= shoff:
        names = tail[names_at - start:names_at - start + names_size]
    else:
        f.seek(names_at)
        names = _read(f, names_size, "the section name table")
    found = {}
    for name_at, _, _, _, offset, size, *_ in raw:
        end = names.find(b"\0", name_at)
        if name_at < names_size and end >= 0:
            found[names[name_at:end].decode("ascii", "replace")] = (offset, size)
    return found


def fatbin_archs(f: IO[bytes], size: int) -> tuple[str, ...]:
    """The archs of the fatbinaries in the next `size` bytes of f (a .nv_fatbin section), headers only."""
    seen: set[tuple[str, int]] = set()
    at = 0
    while at + 16 <= size:
        magic, _version, header_size = struct.unpack("<IHH", _read(f, 8, "a fatbinary header"))
        at += 8
        if magic != FATBIN_MAGIC:  # padding between fatbinaries: they start 8-byte aligned
            continue
        fat_size, = struct.unpack("<Q", _read(f, 8, "a fatbinary header"))
        at += 8
        if header_size < 16 or at - 16 + header_size + fat_size > size:
            raise WheelArchsError(f"{LIBRARY}: a fatbinary at byte {at - 16} of .nv_fatbin claims more than the section holds")
        f.seek(f.tell() + header_size - 16)
        at += header_size - 16
        end = at + fat_size
        while at < end:
            kind, _, entry_size, payload = struct.unpack("<HHIQ", _read(f, 16, "a fatbinary entry header"))
            if not ENTRY_HEADER_MIN <= entry_size <= ENTRY_HEADER_MAX or at + entry_size + payload > end or kind not in KINDS:
                raise WheelArchsError(f"{LIBRARY}: the fatbinary entry at byte {at} of .nv_fatbin is not one this reader "
                                      f"knows (kind {kind}, header {entry_size} bytes)")
            rest = _read(f, entry_size - 16, "a fatbinary entry header")
            arch, = struct.unpack_from("<I", rest, 28 - 16)
            seen.add((KINDS[kind], arch))
            f.seek(f.tell() + payload)
            at += entry_size + payload
    if not seen:
        raise WheelArchsError(f"{LIBRARY}: .nv_fatbin holds no fatbinary")
    # torch's order: every cubin arch, then every PTX arch, each ascending
    return tuple(f"{kind}_{arch}" for kind, arch in sorted(seen, key=lambda s: (s[0] == "compute", s[1])))


def read(wheel: Path) -> tuple[str, ...]:
    """The sm_XY/compute_XY list of a torch wheel file, from the fatbinary headers of its libtorch_cuda.so."""
    try:
        with zipfile.ZipFile(wheel) as z:
            if LIBRARY not in z.namelist():
                raise WheelArchsError(f"{wheel.name} has no {LIBRARY}: not a CUDA build of torch")
            with z.open(LIBRARY) as f:
                sections = _sections(f)
            if ".nv_fatbin" not in sections:
                raise WheelArchsError(f"{LIBRARY} in {wheel.name} has no .nv_fatbin section: no GPU kernels")
            offset, size = sections[".nv_fatbin"]
            with z.open(LIBRARY) as f:  # a fresh stream: seeking back in a deflated member reads it again anyway
                f.seek(offset)
                return fatbin_archs(f, size)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise WheelArchsError(f"{wheel.name}: {e}") from None


def torch_entry(tag: str, images: Path = layout.IMAGES) -> lockfile.Locked | None:
    """torch's entry in the tag's lock, None when the tag has no lock."""
    path = images / tag / layout.LOCK_FILE
    if not path.is_file():
        return None
    return next((p for p in lockfile.read(path) if lockfile.canonical(p.name) == "torch"), None)


def record(tag: str, cache: Path, images: Path = layout.IMAGES) -> tuple[str, ...] | None:
    """Read the archs of the torch wheel the tag's lock names, from the wheel cache, into images/<tag>/archs.json.
    None when there is nothing to read (no lock, or its torch wheel is not in the cache); the file is left alone
    when it already belongs to that wheel."""
    torch = torch_entry(tag, images)
    if torch is None or not (cache / torch.sha256).is_file():
        return None
    known = recorded(tag, images)
    if known is not None:
        return known
    archs = read(cache / torch.sha256)
    write_atomic(images / tag / layout.ARCHS_FILE, json.dumps({
        "torch": torch.version, "wheel_sha256": torch.sha256, "archs": list(archs),
        "source": f"fatbinary headers of {LIBRARY} in the locked torch wheel (builder/wheels/archs.py)"}, indent=1) + "\n")
    return archs


def recorded(tag: str, images: Path = layout.IMAGES) -> tuple[str, ...] | None:
    """The archs recorded from the wheel the tag's lock names now; None when none are, or the record is of another
    wheel (the lock changed since) or is not one record() writes."""
    path = images / tag / layout.ARCHS_FILE
    torch = torch_entry(tag, images)
    if torch is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        archs = data["archs"]
        if (data["wheel_sha256"] == torch.sha256 and isinstance(archs, list) and archs
                and all(isinstance(a, str) and ARCH_NAME.fullmatch(a) for a in archs)):
            return tuple(archs)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def record_each(specs, cache: Path, say=print) -> None:
    """`make fetch`'s last step: the GPU archs of each fetched torch wheel, read from the wheel into
    images/<tag>/archs.json, so that `make doctor` judges the tag by its own wheel, not by the build scripts' list in
    compat.yaml."""
    for spec in specs:
        try:
            archs = record(spec.tag, cache)
        except WheelArchsError as e:
            say(f"{spec.tag}: GPU archs not read from its torch wheel ({e}); compat.yaml's list stands")
            continue
        if archs:
            say(f"{spec.tag}: GPU archs of its torch wheel: {' '.join(archs)} (images/{spec.tag}/{layout.ARCHS_FILE})")
