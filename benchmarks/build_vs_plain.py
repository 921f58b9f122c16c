"""A torchyard image beside a plain image with the same content, built in the same run, and what a
workspace-only change costs on push.

    .venv/bin/python benchmarks/build_vs_plain.py [TAG]

1. torchyard, cold: an empty wheel cache (a temporary TORCHYARD_CACHE) and no build cache: the fetch (beside the
   build's first steps) and the build, timed together (what `make build` does on a fresh machine).
2. torchyard with the wheel cache filled, still without build cache; then a no-op rebuild.
3. plain: the same base, the same Debian packages plus Debian's python3-pip, then ONE `pip install` of every
   locked package at its locked version (both locks), as most projects write it (the proxy's CA in a layer),
   without build cache.
4. The sizes (unpacked, as `docker images` says), and torchyard's compressed size: the sum of the layers a
   registry holds after a push (Debian's docker-registry on loopback).
5. A workspace-only change (one more package in requirements-workspace.txt, locked and fetched), built with the
   build cache and pushed after the first: the bytes that push moves against the image's.

Prints a markdown table; removes what it made (images, registry, caches); the base stays.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from builder import layout
from builder.image import base, build, engine, registry, render, steps
from builder.matrix.load import load
from builder.matrix.types import ImageSpec
from builder.wheels import lock, lockfile, network

# Run as a script, only benchmarks/ is on sys.path (builder is installed): the checkout's root gives tests/loopback.py.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import loopback  # noqa: E402

REPO = "torchyard-bench"
EXTRA_WORKSPACE_PACKAGE = "einops==0.8.1"


def plain_dockerfile(spec: ImageSpec, pins: list[str]) -> str:
    packages = [*steps.apt_packages(spec), *steps.WORKSPACE_APT_PACKAGES, *steps.COMPILE_APT_PACKAGES, *steps.TOOLS]
    return (f"FROM {spec.base.image}\n"
            f"RUN apt-get update && apt-get install -y --no-install-recommends python3-pip {' '.join(packages)} "
            "&& rm -rf /var/lib/apt/lists/*\n"
            # the proxy's CA, as a plain Dockerfile has to carry it (into a layer)
            "COPY ca-bundle.crt /etc/pip-ca.crt\n"
            "ENV PIP_CERT=/etc/pip-ca.crt PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1\n"
            f"RUN pip install --no-cache-dir --no-deps {' '.join(pins)}\n")


def size_gb(client, image: str) -> float:
    return client.images.get(image).attrs["Size"] / 1e9


def layers(address: str, tag: str) -> dict[str, int]:
    """digest -> compressed size of each layer of torchyard:<tag> in the (loginless) registry at address."""
    request = urllib.request.Request(f"http://{address}/v2/{layout.REGISTRY_NAME}/manifests/{tag}",
                                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    return {layer["digest"]: layer["size"] for layer in json.loads(opener.open(request, timeout=30).read())["layers"]}


def timed_build(client, spec, repo, settings, **kwargs) -> tuple[build.BuildResult, float]:
    started = time.monotonic()
    result = build.build(client, spec, repo, settings, say=lambda text: None, **kwargs)
    seconds = time.monotonic() - started  # the fetch of what the cache lacks included
    print(f"built {result.image} in {seconds:.0f} s", file=sys.stderr, flush=True)  # kept if a later step fails
    return result, seconds


def main(tag: str | None) -> None:
    client = engine.connect()
    spec = load(layout.MATRIX).select(tag)[0]
    settings = network.host_settings()
    base.ensure(client, spec.base)
    render.write(spec)
    made: list[build.BuildResult] = []
    with tempfile.TemporaryDirectory(prefix="torchyard-bench-") as tmp:
        tmp = Path(tmp)
        wheels = tmp / "cache"
        cold, cold_s = timed_build(client, spec, f"{REPO}-cold", settings, nocache=True, cache=wheels, reports=tmp / "r")
        cold_size = size_gb(client, cold.image)
        build.remove(client, cold)  # the shared disk: the second build is the same image
        filled, filled_s = timed_build(client, spec, REPO, settings, nocache=True, cache=wheels, reports=tmp / "r")
        made.append(filled)
        noop, noop_s = timed_build(client, spec, REPO, settings, cache=wheels, reports=tmp / "r")

        plain_images = tmp / "images"
        (plain_images / spec.tag).mkdir(parents=True)
        pins = [f"{p.name}=={p.version}" for file in layout.LOCKS for p in lockfile.read(layout.tag_dir(spec.tag) / file)]
        (plain_images / spec.tag / "Dockerfile").write_text(plain_dockerfile(spec, pins))
        (plain_images / spec.tag / "ca-bundle.crt").write_text(settings.ca_bundle())
        plain, plain_s = timed_build(client, spec, f"{REPO}-plain", settings, images=plain_images,
                                     reports=tmp / "reports", nocache=True)
        plain_size = size_gb(client, plain.image)
        build.remove(client, plain)  # the shared disk

        # A workspace-only change: one more package, locked (torch's lock must come out as committed) and fetched.
        changed_images = tmp / "changed"
        shutil.copytree(layout.tag_dir(spec.tag), changed_images / spec.tag)
        # render writes requirements-workspace.txt from its one list: the change is one more entry there, rendered,
        # locked, and rendered again as `make lock` does (the wheel layers follow the new locks)
        render.WORKSPACE_REQUIREMENTS.append(EXTRA_WORKSPACE_PACKAGE)
        try:
            render.write(spec, changed_images)
            for one in lock.resolve(spec, settings, changed_images):
                lockfile.write(one, changed_images)
            render.write(spec, changed_images)
        finally:
            render.WORKSPACE_REQUIREMENTS.remove(EXTRA_WORKSPACE_PACKAGE)
        torch_lock_moved = ((changed_images / spec.tag / layout.LOCK_FILE).read_text()
                            != (layout.tag_dir(spec.tag) / layout.LOCK_FILE).read_text())
        changed, changed_s = timed_build(client, spec, f"{REPO}-changed", settings, images=changed_images,
                                         reports=tmp / "reports", cache=wheels)
        made.append(changed)

        pushed = []  # the registry's tags made here, removed even when a push fails
        with loopback.registry(tmp / "registry") as server:
            try:
                for image, tag in ((filled.image, spec.tag), (changed.image, f"{spec.tag}-changed")):
                    pushed.append(registry.push(client, image, server.address, tag, say=lambda text: None,
                                                digests=tmp / "digests").reference)
                first_layers = layers(server.address, spec.tag)
                changed_layers = layers(server.address, f"{spec.tag}-changed")
                compressed, changed_compressed = sum(first_layers.values()), sum(changed_layers.values())
                sent = sum(size for digest, size in changed_layers.items() if digest not in first_layers)
            finally:
                for ref in pushed:
                    client.images.remove(ref)
        fetched = sum(p.stat().st_size for p in wheels.iterdir())

        print(f"| image ({spec.tag}) | build | size | compressed (pushed layers) |")
        print("| --- | --- | --- | --- |")
        print(f"| torchyard, empty wheel cache (fetches {fetched / 1e9:.2f} GB beside its first steps) | {cold_s:.0f} s | "
              f"{cold_size:.2f} GB | |")
        print(f"| torchyard, filled wheel cache | {filled_s:.0f} s | {size_gb(client, filled.image):.2f} GB | "
              f"{compressed / 1e9:.2f} GB |")
        print(f"| torchyard, nothing changed | {noop_s:.1f} s | | |")
        print(f"| plain: the same Debian packages, then one `pip install` of the {len(pins)} locked pins | {plain_s:.0f} s | "
              f"{plain_size:.2f} GB | |")
        print(f"\ncold / plain: {cold_s / plain_s:.2f}x; filled / plain: {filled_s / plain_s:.2f}x; "
              f"size / plain: {size_gb(client, filled.image) / plain_size:.3f}")
        print(f"workspace-only change ({EXTRA_WORKSPACE_PACKAGE}{'; NOTE: torch lock moved too' if torch_lock_moved else ''}): "
              f"rebuilt in {changed_s:.0f} s ({changed.cached}/{changed.steps} steps from cache); its push sent "
              f"{sent / 1e6:.1f} MB of {changed_compressed / 1e9:.2f} GB compressed ({sent / changed_compressed:.1%})")
    for result in made:
        build.remove(client, result)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
