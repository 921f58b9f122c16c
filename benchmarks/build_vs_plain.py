"""Cold build, no-op rebuild and size of a torchyard image beside a plain `pip install` image.

    .venv/bin/python benchmarks/build_vs_plain.py [TAG]

Both start from the same base in the same run; both are built without cache. The plain image is
what most projects write: the base, Debian's python3-pip, then `pip install torch==… torchvision==…`.
Prints a markdown table; the images it makes are removed at the end.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from builder import base, build, layout, matrix, network, render

REPO = "torchyard-bench"


def plain_dockerfile(spec: matrix.ImageSpec) -> str:
    return (f"FROM {spec.base.image}\n"
            "RUN apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*\n"
            # the proxy's CA, as a plain Dockerfile has to carry it (into a layer)
            "COPY build-inputs/ca-bundle.crt /etc/pip-ca.crt\n"
            "ENV PIP_CERT=/etc/pip-ca.crt PIP_BREAK_SYSTEM_PACKAGES=1\n"
            f"RUN pip install torch=={spec.torch} torchvision=={spec.torchvision}\n")


def size_gb(client, image: str) -> float:
    return client.images.get(image).attrs["Size"] / 1e9


def main(tag: str) -> None:
    client = build.connect()
    spec = matrix.load(layout.ROOT / "matrix.yaml").select(tag)[0]
    settings = network.host_settings()
    base.ensure(client, spec.base)
    render.write(spec)
    quiet = lambda text: None  # noqa: E731

    cold = build.build(client, spec, REPO, settings, say=quiet, nocache=True)
    noop = build.build(client, spec, REPO, settings, say=quiet)

    with tempfile.TemporaryDirectory() as tmp:
        plain_images = Path(tmp) / "images"
        (plain_images / spec.tag).mkdir(parents=True)
        (plain_images / spec.tag / "Dockerfile").write_text(plain_dockerfile(spec))
        plain = build.build(client, spec, f"{REPO}-plain", settings, say=quiet, images=plain_images,
                            reports=Path(tmp) / "reports", nocache=True)
        plain_size = size_gb(client, plain.image)

    print(f"| image ({spec.tag}) | cold build | no-op rebuild | size |")
    print("| --- | --- | --- | --- |")
    print(f"| torchyard | {cold.seconds:.0f} s | {noop.seconds:.1f} s | {size_gb(client, cold.image):.2f} GB |")
    print(f"| plain pip install | {plain.seconds:.0f} s | | {plain_size:.2f} GB |")
    for result in (noop, cold, plain):
        build.remove(client, result)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
