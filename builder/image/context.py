"""A tag's build context: images/<tag>/ plus what every image carries (layout.carried, the one list), as a tar
made here rather than by the SDK, so that the same sources give the same bytes: every file at a fixed time,
owned by root, with the mode the list gives (a checkout's umask or a stray chmod changes nothing). Its sha256
is the image's io.torchyard.context.sha256 label, which `make matrix` compares to decide a build is current.

Nothing of the host's settings is in it: no CA bundle, pip setting or credential (the build reads its wheels from
the host's cache on loopback, builder/wheels/serve.py).
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from builder import files, layout
from builder.image import render, steps
from builder.inputs import InputError
from builder.image.base import SOURCE_DATE_EPOCH
from builder.matrix.types import ImageSpec

SKIP = ("__pycache__", ".pytest_cache")  # what a checkout accumulates that no image needs
# The largest source is a rendered Dockerfile (~28 KB); a lock of a few hundred wheels stays far below this.
MAX_SOURCE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Context:
    tar: bytes  # what the engine gets
    sha256: str  # of that tar
    files: tuple[str, ...]  # the sources' paths inside the context
    sources: tuple[Path, ...]  # where they come from in the repository (for the revision's -dirty)


def _files_under(folder: Path) -> list[Path]:
    # symlinks, FIFOs and devices are listed, not skipped, so that read_source refuses them by name (a committed link
    # to a host file must not carry that file into the engine's context)
    return sorted(p for p in folder.rglob("*")
                  if (p.is_symlink() or not p.is_dir())
                  and not any(part in SKIP or part.endswith(".pyc") for part in p.relative_to(folder).parts))


def read_source(path: Path) -> bytes:
    """A source's bytes: a regular file of its own (never through a symlink), at most MAX_SOURCE_BYTES."""
    try:
        return files.read_bounded(path, MAX_SOURCE_BYTES, follow_symlinks=False)
    except (files.Refused, OSError) as e:
        raise InputError(f"not building from {path}: {e}; a build context holds regular files of the "
                         f"repository only") from None


def members(spec: ImageSpec, images: Path = layout.IMAGES, root: Path = layout.ROOT) -> dict[str, tuple[bytes, bool]]:
    """context path -> (content, executable): every file of images/<tag>/ at its path there, and each tree the
    Dockerfile copies (steps.trees) at rootfs/<tree>/<its path in the image>, made of those files and the carried
    ones: a carried file reaches the build only in its tree."""
    folder = layout.tag_dir(spec.tag, images)
    # archs.json is the doctor's (make fetch writes it): no image needs it, and fetching must not change a context
    own = {p.relative_to(folder).as_posix(): (read_source(p), False) for p in _files_under(folder)
           if p.name != layout.ARCHS_FILE}
    sources = dict(own)
    for item in layout.carried(spec.python):
        source = root / item.source
        if item.generated:
            sources[item.source] = (generated(spec, item.source).encode(), item.executable)
        elif source.is_dir():
            sources.update({p.relative_to(root).as_posix(): (read_source(p), item.executable) for p in _files_under(source)})
        else:
            sources[item.source] = (read_source(source), item.executable)
    found = dict(own)
    dockerfile = own.get(layout.DOCKERFILE, (b"", False))[0].decode(errors="replace")
    copied = set(re.findall(rf"^COPY {steps.ROOTFS}/([a-z]+)/ /$", dockerfile, re.M))  # the trees it copies, no other
    for tree, entries in steps.trees(spec).items():
        if tree not in copied:
            continue
        for source, target in entries:
            matched = {path: value for path, value in sources.items() if path == source or path.startswith(source + "/")}
            if not matched:  # steps.trees names a file the tag's folder lacks (a lock not written yet)
                raise FileNotFoundError(f"the build context has no {source} for {target} (images/{spec.tag}/ or a carried file)")
            found.update({f"{steps.ROOTFS}/{tree}{target}{path[len(source):]}": value for path, value in matched.items()})
    return found


def generated(spec: ImageSpec, name: str) -> str:
    if name == "matrix.json":
        return render.siblings(spec)
    raise ValueError(f"no generator for the carried file {name}")  # a new generated entry in layout.carried needs one


def sources(spec: ImageSpec, images: Path = layout.IMAGES, root: Path = layout.ROOT) -> tuple[Path, ...]:
    """The repository paths the context is made from: a generated file comes from matrix.yaml."""
    carried = tuple(root / item.source for item in layout.carried(spec.python) if not item.generated)
    made_from = (root / layout.MATRIX.name,) if any(item.generated for item in layout.carried(spec.python)) else ()
    return (layout.tag_dir(spec.tag, images), *carried, *made_from)


def _tar(files: dict[str, tuple[bytes, bool]]) -> bytes:
    buffer = io.BytesIO()
    folders = sorted({parent.as_posix() for name in files for parent in Path(name).parents if parent.as_posix() != "."})
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in folders:
            info = tarfile.TarInfo(name)
            info.type, info.mtime, info.mode = tarfile.DIRTYPE, int(SOURCE_DATE_EPOCH), 0o755
            tar.addfile(info)
        for name in sorted(files):
            data, executable = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(SOURCE_DATE_EPOCH), 0o755 if executable else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def assemble(spec: ImageSpec, images: Path = layout.IMAGES, root: Path = layout.ROOT) -> Context:
    files = members(spec, images, root)
    tar = _tar(files)
    return Context(tar, hashlib.sha256(tar).hexdigest(), tuple(sorted(files)), sources(spec, images, root))
