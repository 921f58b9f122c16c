"""Is a rebuild the same image? Rebuild a tag without cache under another name and compare it with the
existing image: the package sets of both manifests, every file's content (sha256 of the bytes, link
targets, modes and owners; timestamps are ignored), and the layers themselves (diff IDs: the sha256 of each
layer's tar, which holds every file's time too), naming each package and file that differs and, for the
first layer that differs, the entries of its tar that make it differ (name, type, mode, owner, mtime, size,
content).

Files are read from `docker export` of a created (never started) container of each image, layers from
`docker save`, both streamed through tarfile, so nothing is unpacked to disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

import docker

from builder import layout, records
from builder.image import engine
from builder.records import builds

# Written by the engine into every container's filesystem, whatever the image holds.
ENGINE_FILES = {".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab"}


@dataclass(frozen=True)
class Comparison:
    first: str
    second: str
    same_image_id: bool
    same_layers: int  # layers (diff IDs) in common, from the bottom
    layers: tuple[int, int]
    packages: tuple[str, ...]  # 'python foo: 1.0 vs 1.1', 'debian bar: only in first'
    files: tuple[str, ...]  # 'path: content differs', 'path: only in second'
    file_count: int
    # the first layer whose diff ID differs (0 = the bottom one), None when every layer is the same bytes
    first_differing_layer: int | None = None
    layer_entries: tuple[str, ...] = ()  # what in that layer's tar differs: 'path: mtime 1735689600 vs 1765099000'

    @property
    def identical_contents(self) -> bool:
        return not self.packages and not self.files

    @property
    def identical_layers(self) -> bool:
        return self.first_differing_layer is None

    @property
    def identical(self) -> bool:
        return self.identical_contents and self.identical_layers

    def summary(self, limit: int = 40) -> str:
        lines = [f"{self.first} vs {self.second}: "
                 + ("identical package sets and file contents" if self.identical_contents else "they differ")
                 + f" ({self.file_count} paths compared; image ID {'identical' if self.same_image_id else 'differs'}; "
                 f"{self.same_layers} of {max(self.layers)} layers identical)"]
        if self.first_differing_layer is not None:
            lines.append(f"  layer {self.first_differing_layer + 1} of {max(self.layers)} is the first whose bytes differ"
                         + (f"; {len(self.layer_entries)} entries of its tar differ:" if self.layer_entries else
                            " (its entries were not compared)"))
            lines += [f"    {item}" for item in self.layer_entries[:limit]]
            if len(self.layer_entries) > limit:
                lines.append(f"    ... and {len(self.layer_entries) - limit} more (all in the JSON report)")
        for title, items in (("packages", self.packages), ("files", self.files)):
            if items:
                lines.append(f"  {len(items)} {title} differ:")
                lines += [f"    {item}" for item in items[:limit]]
                if len(items) > limit:
                    lines.append(f"    ... and {len(items) - limit} more (all in the JSON report)")
        return "\n".join(lines)


def file_hashes(client: docker.DockerClient, image: str) -> dict[str, str]:
    """path -> 'type mode uid:gid sha256-or-link-target' for every path of the image's filesystem."""
    container = client.containers.create(image)  # never started: export reads its filesystem
    entries: dict[str, str] = {}
    try:
        stream = engine.reader(client.api.export(container.id, chunk_size=engine.CHUNK))
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                path = member.name.rstrip("/")
                if path in ENGINE_FILES or not path:
                    continue
                if member.isfile():
                    digest = hashlib.sha256()
                    handle = tar.extractfile(member)
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                    content = digest.hexdigest()
                elif member.issym() or member.islnk():
                    content = "-> " + member.linkname
                else:
                    content = ""
                entries[path] = f"{member.type.decode()} {member.mode:o} {member.uid}:{member.gid} {content}"
    finally:
        container.remove(force=True)
    return entries


class _Hashing(io.RawIOBase):
    """Reads through a file object, hashing what passes (a layer's tar: its sha256 is the layer's diff ID)."""

    def __init__(self, handle):
        self.handle, self.digest = handle, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        data = self.handle.read(len(target))
        target[:len(data)] = data
        self.digest.update(data)
        return len(data)


LAYER_FIELDS = ("type", "mode", "owner", "mtime", "size", "content")


def _entries(layer) -> dict[str, tuple[str, ...]]:
    """path -> (type, mode, uid:gid, mtime, size, sha256-or-link-target) of every entry of a layer's tar."""
    entries: dict[str, tuple[str, ...]] = {}
    with tarfile.open(fileobj=layer, mode="r|") as tar:
        for member in tar:
            if member.isfile():
                digest, handle = hashlib.sha256(), tar.extractfile(member)
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                content = digest.hexdigest()
            else:
                content = "-> " + member.linkname if member.issym() or member.islnk() else ""
            entries[member.name.rstrip("/")] = (member.type.decode(), f"{member.mode:o}", f"{member.uid}:{member.gid}",
                                                str(member.mtime), str(member.size), content)
    return entries


def layer_entries(client: docker.DockerClient, image: str, diff_id: str) -> dict[str, tuple[str, ...]]:
    """The entries of the image's layer with this diff ID, read from `docker save` as it streams: each layer's tar
    is read through and hashed (its sha256 is its diff ID), and the one that matches is kept."""
    stream = engine.reader(client.api.get_image(image, chunk_size=engine.CHUNK))
    with tarfile.open(fileobj=stream, mode="r|") as saved:
        for member in saved:
            # docker save: <v1 id>/layer.tar (Docker < 25) or blobs/sha256/<diff id> (the OCI layout of Docker >= 25)
            if not member.isfile() or not (member.name.endswith("/layer.tar") or member.name.startswith("blobs/")):
                continue
            hashing = _Hashing(saved.extractfile(member))
            try:
                entries = _entries(io.BufferedReader(hashing, 1 << 20))
            except tarfile.TarError:
                continue  # a blob that is not a tar (a config, a manifest)
            for _ in iter(lambda: hashing.read(1 << 20), b""):
                pass  # the tar's end blocks count too
            if f"sha256:{hashing.digest.hexdigest()}" == diff_id:
                return entries
    raise engine.EngineError(f"no layer with diff ID {diff_id} in `docker save {image}`")


def _differences(first: dict, second: dict, how, prefix: str = "/", show_value: bool = False) -> list[str]:
    """Every key of either, in order, that is only in one or differs: '<prefix><key>: only in the first' (or second;
    with show_value, the key's value follows it), or '<prefix><key>: ' and what how(first's, second's) says."""
    problems = []
    for key in sorted(first.keys() | second.keys()):
        if key not in second:
            problems.append(f"{prefix}{key}{f' {first[key]}' if show_value else ''}: only in the first")
        elif key not in first:
            problems.append(f"{prefix}{key}{f' {second[key]}' if show_value else ''}: only in the second")
        elif first[key] != second[key]:
            problems.append(f"{prefix}{key}: {how(first[key], second[key])}")
    return problems


def diff_layer(first: dict[str, tuple[str, ...]], second: dict[str, tuple[str, ...]]) -> list[str]:
    """What differs between two layers' tars, entry by entry, with both values (whiteouts show as .wh.<name>)."""
    def how(a: tuple[str, ...], b: tuple[str, ...]) -> str:
        return ", ".join(f"{name} {x if name != 'content' else x[:12]} vs {y if name != 'content' else y[:12]}"
                         for name, x, y in zip(LAYER_FIELDS, a, b) if x != y)
    return _differences(first, second, how)


def manifest(client: docker.DockerClient, image: str) -> dict:
    out = client.containers.run(image, ["cat", f"{layout.SHARE}/manifest.json"], remove=True)
    return json.loads(out)


def diff_packages(first: dict, second: dict) -> list[str]:
    problems = []
    for kind in ("python_packages", "venv_bootstrap", "debian_packages"):
        problems += _differences(first.get(kind, {}), second.get(kind, {}), lambda a, b: f"{a} vs {b}",
                                 prefix=f"{kind.split('_')[0]} ", show_value=True)
    return problems


def diff_files(first: dict[str, str], second: dict[str, str]) -> list[str]:
    def how(a: str, b: str) -> str:
        what = [name for name, x, y in zip(("type", "mode", "owner", "content"), a.split(" ", 3), b.split(" ", 3))
                if x != y]
        return f"{', '.join(what)} differ{'s' if len(what) == 1 else ''}"
    return _differences(first, second, how)


def compare(client: docker.DockerClient, first: str, second: str, with_manifest: bool = True) -> Comparison:
    a, b = client.images.get(first), client.images.get(second)
    layers_a, layers_b = a.attrs["RootFS"]["Layers"], b.attrs["RootFS"]["Layers"]
    common = next((i for i, (x, y) in enumerate(zip(layers_a, layers_b)) if x != y), min(len(layers_a), len(layers_b)))
    packages = diff_packages(manifest(client, first), manifest(client, second)) if with_manifest else []
    files_a, files_b = file_hashes(client, first), file_hashes(client, second)
    differing, entries = None, []
    if layers_a != layers_b:
        differing = common
        if common < len(layers_a) and common < len(layers_b):  # else one image has layers the other lacks on top
            entries = diff_layer(layer_entries(client, first, layers_a[common]),
                                 layer_entries(client, second, layers_b[common]))
    return Comparison(first, second, a.id == b.id, common, (len(layers_a), len(layers_b)), tuple(packages),
                      tuple(diff_files(files_a, files_b)), len(files_a.keys() | files_b.keys()), differing,
                      tuple(entries))


def write(comparison: Comparison, tag: str, reports: Path) -> Path:
    return records.write_report(reports, tag, builds.VERIFY,
                                {**asdict(comparison), "identical_contents": comparison.identical_contents,
                                 "identical_layers": comparison.identical_layers})
