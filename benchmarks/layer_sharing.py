"""What a second image costs beside a first one: two local images pushed, the first then the second, to one
loopback registry, and the second pulled back into this engine while it holds the first.

    .venv/bin/python benchmarks/layer_sharing.py FIRST SECOND [--pull]

FIRST and SECOND are local images (torchyard:v2.6-cu124 and torchyard:v2.5-cu124; or two no-cache builds of one
tag). Prints, for each push: the layers and compressed bytes of the image, the layers the registry already had,
the bytes the engine reported moving and the growth of the registry's storage. With --pull, SECOND is removed
here (FIRST stays) and pulled back from the registry, verified against the digest its push recorded: the bytes
that pull downloaded. The layers' diff IDs, and how many of SECOND's sit on FIRST's chain, come first.
Debian's docker-registry on a free loopback port (tests/loopback.py's registry(), as in build_vs_plain.py);
everything it made is removed at the end, the two images stay (SECOND restored by the pull, under its name).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from build_vs_plain import layers as pushed_layers
from build_vs_plain import loopback  # tests/loopback.py: build_vs_plain puts the checkout's root on sys.path

from builder.image import engine, registry


def storage_bytes(folder: Path) -> int:
    if not folder.exists():  # the registry makes its storage on the first push
        return 0
    return int(subprocess.run(["du", "-sb", str(folder)], capture_output=True, text=True, check=True).stdout.split()[0])


def shared(first, second) -> int:
    return next((i for i, (x, y) in enumerate(zip(first, second)) if x != y), min(len(first), len(second)))


def main(first: str, second: str, pull: bool) -> None:
    client = engine.connect()
    a, b = client.images.get(first), client.images.get(second)
    layers_a, layers_b = a.attrs["RootFS"]["Layers"], b.attrs["RootFS"]["Layers"]
    chain = shared(layers_a, layers_b)
    print(f"{first}: {len(layers_a)} layers, image {a.id[:19]}; {second}: {len(layers_b)} layers, image {b.id[:19]}")
    print(f"{second} shares its first {chain} layers (diff IDs) with {first}; "
          f"{len(set(layers_b) & set(layers_a))} of its diff IDs are among {first}'s")
    with tempfile.TemporaryDirectory(prefix="torchyard-sharing-") as tmp, \
            loopback.registry(Path(tmp) / "registry") as server:
        tmp = Path(tmp)
        refs = []
        try:
            rows = []
            for image, tag in ((first, "first"), (second, "second")):
                before = storage_bytes(server.storage)
                shipped = registry.push(client, image, server.address, tag, say=lambda text: None, digests=tmp / "digests")
                refs.append(shipped.reference)
                layers = pushed_layers(server.address, tag)
                rows.append((image, tag, layers, shipped, storage_bytes(server.storage) - before))
            had = set(rows[0][2])
            print("| push | layers | compressed | layers the registry had | bytes the engine moved | storage growth |")
            print("| --- | --- | --- | --- | --- | --- |")
            for n, (image, tag, layers, shipped, grown) in enumerate(rows):
                known = [d for d in layers if d in had] if n else []
                print(f"| {image} | {len(layers)} | {sum(layers.values()) / 1e9:.3f} GB | {len(known)} "
                      f"({sum(layers[d] for d in known) / 1e9:.3f} GB) | {shipped.bytes / 1e9:.3f} GB | {grown / 1e9:.3f} GB |")
            second_layers = rows[1][2]
            new = sum(size for digest, size in second_layers.items() if digest not in had)
            print(f"second push: {new / 1e9:.3f} GB of layers the registry lacked = "
                  f"{100 * new / sum(second_layers.values()):.1f} % of {second}'s compressed {sum(second_layers.values()) / 1e9:.3f} GB; "
                  f"same image ID: {rows[0][3].image_id == rows[1][3].image_id}; manifests {rows[0][3].digest[:19]} / "
                  f"{rows[1][3].digest[:19]}")
            if pull:
                # SECOND leaves this engine (its layers FIRST does not hold go with it), then comes back from the registry:
                # its tags, and the builder's own image of the same layers (builder/build.py's reproducible() leaves it
                # untagged, the build cache) with its step images below it
                image = client.images.get(second)
                for ref in image.tags:
                    client.images.remove(ref)
                # every image holding a chain of SECOND's layers that is not a chain of FIRST's: the builder's own
                # image and its step images; the longest first (a child before its parent)
                own = [other for other in client.images.list(all=True)
                       if (chain_of := other.attrs["RootFS"]["Layers"]) == layers_b[:len(chain_of)]
                       and chain_of != layers_a[:len(chain_of)]]
                pending = sorted(own, key=lambda i: -len(i.attrs["RootFS"]["Layers"]))
                while pending:  # a metadata step's image has its parent's layers: order by length is not enough
                    left = []
                    for other in pending:
                        try:
                            with engine.translated():
                                client.images.remove(other.id, noprune=True)
                        except engine.NotFound:
                            pass
                        except engine.EngineError:
                            left.append(other)  # a child of it still stands
                    if len(left) == len(pending):
                        print(f"{len(left)} image(s) of {second}'s layers stay: children of other images")
                        break
                    pending = left
                held = {tuple(i.attrs["RootFS"]["Layers"]) for i in client.images.list(all=True)}
                print(f"before the pull: {sum(1 for d in layers_b if any(d in h for h in held))} of {second}'s "
                      f"{len(layers_b)} diff IDs held by an image here; chains: longest "
                      f"{max((shared(h, layers_b) for h in held), default=0)} layers")
                shipped = registry.pull(client, server.address, "second", say=lambda text: None, digests=tmp / "digests")
                client.images.get(shipped.reference).tag(*second.rsplit(":", 1))
                print(f"pull of {second} into this engine holding {first}: {shipped.bytes / 1e9:.3f} GB downloaded "
                      f"in {shipped.seconds:.0f} s (image {shipped.image_id[:19]}, as pushed: "
                      f"{shipped.image_id == rows[1][3].image_id})")
        finally:
            for ref in refs:
                try:
                    client.images.remove(ref)
                except Exception:  # noqa: BLE001 - a tag already gone
                    pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--pull", action="store_true", help="remove SECOND here and pull it back: the bytes it downloads")
    args = parser.parse_args()
    main(args.first, args.second, args.pull)
