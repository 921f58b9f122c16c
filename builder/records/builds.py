"""Records of what a build made and measured: reports/<tag>/build.json, size.json (and size.baseline.json),
compressed.json and verify.json, and the manifest.json every image carries of itself. Read and written through
builder/records/ (its __init__ says how a record is read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from builder.records import BrokenRecord, Record, Sha256, read

BUILD, SIZE, SIZE_BASELINE, COMPRESSED = "build.json", "size.json", "size.baseline.json", "compressed.json"
VERIFY = "verify.json"  # written (builder/image/verify.py); nothing reads it back


# ---------------------------------------------------------------- reports/<tag>/build.json


class BuildRecord(Record, kw_only=True):
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


class Layer(Record, kw_only=True):
    size: int
    instruction: str


class SizeReport(Record, kw_only=True):
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


class Compressed(Record, kw_only=True):
    tag: str
    image_id: str
    total: int  # the sum of the image's gzipped layers: the bytes a push to an empty registry sends
    layers: tuple[tuple[str, int, int], ...]  # (diff_id, bytes, gzipped bytes), oldest first
    method: str = ""


# ---------------------------------------------------------------- the image's own manifest.json


class ManifestLock(Record, kw_only=True):
    sha256: str
    packages: int
    files: dict[str, str]  # lock file name -> its sha256


class ManifestBase(Record, kw_only=True):
    ref: str
    image_id: str  # sha256:…, or "not recorded"


class ImageManifest(Record, kw_only=True):
    """/usr/share/torchyard/manifest.json as image_files/manifest.py writes it inside every image."""
    tag: str
    spec: dict[str, Any]  # the image's spec.json: its matrix entry with the compatibility facts
    lock: ManifestLock
    python_packages: dict[str, str]
    python_licenses: dict[str, str] = {}  # none in images built before licenses were recorded
    venv_bootstrap: dict[str, str] = {}
    debian_packages: dict[str, str]
    base: ManifestBase
