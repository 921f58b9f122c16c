"""Ship images: push <repo>:<tag> to <REGISTRY>/torchyard:<tag>, pull it back verified, through the Docker SDK.

Credentials are the Docker config's (what `docker login` writes: $DOCKER_CONFIG/config.json or
~/.docker/config.json, credential helpers included); the SDK reads them and the engine talks to the registry.

Every push records the manifest digest the registry gave in digests/<tag>.json, one entry per registry
reference. That file lives outside images/<tag>/ on purpose: images/<tag>/ is the build's input (a push
must not change a build context), digests/ is what shipping produced, committed so that any checkout can
verify what it pulls. A pull asks the registry for the tag's digest first, refuses (pulling nothing)
when it differs from the record, then pulls by that digest, so the engine itself checks every byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import docker

from builder import reference as references
from builder import layout
from builder.heartbeat import Heartbeat
from builder.image import engine
from builder.records import published

HEARTBEAT_S = 15


class RegistryError(Exception):
    """The registry or the engine failed: exit 1."""


@dataclass(frozen=True)
class Shipped:
    reference: str  # registry/torchyard:tag
    digest: str  # the manifest digest, sha256:…
    image_id: str
    seconds: float
    bytes: int  # layer bytes the engine reported moving (0 for layers the other side already had)


def reference(registry: str, tag: str) -> str:
    return f"{references.registry(registry)}/{layout.REGISTRY_NAME}:{tag}"


def record(tag: str, shipped: Shipped, digests: Path = layout.DIGESTS) -> Path:
    entries = published.read_digests(tag, digests)
    entries[shipped.reference] = published.Pushed(digest=shipped.digest, image_id=shipped.image_id)
    return published.write_digests(tag, entries, digests)


def explain(error: str, ref: str) -> str:
    """The engine's registry error, with what it means and what to do."""
    host = ref.split("/")[0]
    if re.search(r"connection refused|no such host|i/o timeout|dial tcp|network is unreachable|server gave HTTP response",
                 error):
        return (f"the registry {host} cannot be reached ({error.strip()}); check REGISTRY= and that the registry "
                "runs (a registry outside 127.0.0.0/8 without TLS must be listed in the engine's insecure-registries)")
    if re.search(r"unauthorized|authentication required|no basic auth credentials|denied|401", error, re.I):
        return (f"the registry {host} refused the credentials for {ref} ({error.strip()}); log in with "
                f"`docker login {host}` (the Docker config $DOCKER_CONFIG/config.json or ~/.docker/config.json is read)")
    if re.search(r"manifest unknown|not found|does not exist", error, re.I):
        return f"the registry {host} has no {ref} ({error.strip()}); push it first: make push TAG={ref.rsplit(':', 1)[1]}"
    return f"{ref}: {error.strip()}"


class _Progress(Heartbeat):
    """One line per layer as it finishes, and a byte count every HEARTBEAT_S seconds meanwhile."""

    def __init__(self, say, verb: str):
        super().__init__(HEARTBEAT_S)
        self.say, self.verb = say, verb
        self.current: dict[str, int] = {}
        self.done: dict[str, int] = {}

    @property
    def bytes(self) -> int:
        return sum(self.done.values()) + sum(v for k, v in self.current.items() if k not in self.done)

    def chunk(self, chunk: dict) -> None:
        layer, status = chunk.get("id"), chunk.get("status", "")
        detail = chunk.get("progressDetail") or {}
        if layer and detail.get("current"):
            self.current[layer] = max(self.current.get(layer, 0), int(detail["current"]))
        if layer and status in ("Pushed", "Pull complete", "Layer already exists", "Already exists", "Mounted from"):
            self.done[layer] = self.current.get(layer, 0) if status in ("Pushed", "Pull complete") else 0
            self.say(f"[{self.seconds():6.1f}s] {layer}: {status.lower()}")

    def beat(self) -> None:
        self.say(f"[{self.seconds():6.1f}s] ... {self.verb} {self.bytes / 1e9:.2f} GB so far")


def _stream(stream, ref: str, progress: _Progress) -> dict:
    """Feed the engine's JSON stream to the progress; the final aux (push) or last status; errors explained."""
    aux: dict = {}
    try:
        with engine.translated():
            for chunk in stream:
                if "error" in chunk:
                    raise RegistryError(explain(chunk.get("errorDetail", {}).get("message") or chunk["error"], ref))
                aux.update(chunk.get("aux") or {})
                progress.chunk(chunk)
    except engine.EngineError as e:
        raise RegistryError(explain(str(e), ref)) from None
    return aux


def push(client: docker.DockerClient, image: str, registry: str, tag: str, say=print, digests: Path = layout.DIGESTS) -> Shipped:
    """Push the local image as <registry>/torchyard:<tag>; record and return its digest."""
    ref = reference(registry, tag)
    repository = ref.rsplit(":", 1)[0]
    published.read_digests(tag, digests)  # a malformed record refuses (exit 2) before anything moves
    local = engine.find_image(client, image)
    if local is None:
        raise RegistryError(f"no local image {image} to push; build it first: make build TAG={tag}")
    tagged_here = ref not in local.tags
    local.tag(repository, tag)
    say(f"pushing {image} ({local.attrs['Size'] / 1e9:.2f} GB unpacked) as {ref}")
    try:
        with _Progress(say, "pushed") as progress:
            aux = _stream(client.api.push(repository, tag, stream=True, decode=True), ref, progress)
    except RegistryError:
        if tagged_here:
            client.images.remove(ref)  # a failed push leaves no trace
        raise
    if "Digest" not in aux:
        raise RegistryError(f"{ref}: the engine reported no digest for the push")
    shipped = Shipped(ref, aux["Digest"], local.id, progress.seconds(), progress.bytes)
    path = record(tag, shipped, digests)
    say(f"pushed {ref}@{shipped.digest} in {shipped.seconds:.1f}s ({shipped.bytes / 1e9:.2f} GB of layers moved); "
        f"recorded in {path.relative_to(path.parent.parent)}")
    return shipped


def remote_digest(client: docker.DockerClient, ref: str) -> str:
    """The manifest digest the registry has for ref now (nothing is downloaded but the manifest)."""
    try:
        with engine.translated():
            return client.images.get_registry_data(ref).id
    except engine.EngineError as e:
        raise RegistryError(explain(str(e), ref)) from None


def pull(client: docker.DockerClient, registry: str, tag: str, say=print, digests: Path = layout.DIGESTS) -> Shipped:
    """Pull <registry>/torchyard:<tag> if, and only if, the registry's digest is the recorded one."""
    ref = reference(registry, tag)
    repository = ref.rsplit(":", 1)[0]
    entry = published.read_digests(tag, digests).get(ref)
    if entry is None:
        raise RegistryError(f"no recorded digest for {ref} in {published.digests_path(tag, digests)}: a pull is verified "
                            f"against the digest its push recorded; push from a checkout that commits digests/")
    found = remote_digest(client, ref)
    if found != entry.digest:
        raise RegistryError(f"refused: the registry's {ref} is {found}, but "
                            f"{published.digests_path(tag, digests).name} records "
                            f"{entry.digest}; the tag was pushed over since. Nothing was pulled.")
    say(f"pulling {ref} ({found}, as recorded)")
    with _Progress(say, "pulled") as progress:
        _stream(client.api.pull(repository, tag=found, stream=True, decode=True), ref, progress)
    image = client.images.get(f"{repository}@{found}")
    if image.id != entry.image_id:  # before the tag moves: a refused pull leaves the tag where it was
        raise RegistryError(f"{ref}@{found} unpacked to image {image.id}, not the recorded {entry.image_id}; "
                            f"the tag {ref} was not moved")
    image.tag(repository, tag)
    shipped = Shipped(ref, found, image.id, progress.seconds(), progress.bytes)
    say(f"pulled {ref}@{found} in {shipped.seconds:.1f}s ({shipped.bytes / 1e9:.2f} GB of layers moved); digest verified")
    return shipped
