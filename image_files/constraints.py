"""The pip constraints of a torchyard image, written at build time from its locks:

    python /usr/share/torchyard/constraints.py /usr/share/torchyard

PIP_CONSTRAINT and UV_CONSTRAINT name the file, so `pip install` (and uv) keep the torch stack as it was built: a
request that needs another torch, torchvision, torchaudio or CUDA wheel fails instead of replacing them (the torchyard_pip_guard
module then says why and what to do). Everything else (numpy, pandas, jinja2, ...) upgrades as usual.

Which packages: the roots spec.json names ("constrained": torch, torchvision, torchaudio where the tag has it, and
-devel's compiler wheels), and,
transitively, every package a constrained one pins with `==` in its metadata. For torch that is triton, the nvidia-*
CUDA wheels (cuDNN, cuBLAS, NCCL, ...) and sympy: packages torch is built against or loads at a fixed version, so
another version breaks it although pip would install it without a word. Versions come from the locks (the manifest
step before this one proved the installed packages equal them). `===` (string equality) rather than `==`: under
`==2.6.0`, torch 2.6.0+cu118 from another index would be accepted in place of the PyPI build.
"""

import importlib.metadata
import json
import os
import re
import sys

from manifest import LOCK_ENTRY, LOCK_FILES, canonical

EXACT_PIN = re.compile(r"^\s*([A-Za-z0-9._-]+)\s*(?:\[[^\]]*\])?\s*\(?\s*={2,3}\s*([^\s;,()=]+)\s*\)?\s*(?:;|$)")


def exact_pins(package: str) -> set[str]:
    """Names the package's metadata requires at one exact version (whatever the marker)."""
    pins = set()
    for requirement in importlib.metadata.requires(package) or []:
        found = EXACT_PIN.match(requirement)
        if found:
            pins.add(canonical(found[1]))
    return pins


def closure(roots: list[str], locked: dict[str, str]) -> list[str]:
    """The roots and everything they pin exactly, transitively, that the locks hold."""
    wanted, todo = set(), [canonical(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in wanted or name not in locked:
            continue
        wanted.add(name)
        todo += exact_pins(name)
    return sorted(wanted)


def main(share: str) -> int:
    with open(os.path.join(share, "spec.json")) as f:
        spec = json.load(f)
    locked = {}
    for name in LOCK_FILES:
        with open(os.path.join(share, name)) as f:
            locked.update({canonical(n): v for n, v in LOCK_ENTRY.findall(f.read())})
    missing = [r for r in spec["constrained"] if canonical(r) not in locked]
    if missing:
        print(f"constraints: {', '.join(missing)} not in the locks; nothing to constrain them to", file=sys.stderr)
        return 1
    names = closure(spec["constrained"], locked)
    lines = [
        f"# torchyard {spec['tag']}: the torch stack as built (torch {spec['torch']}, CUDA {spec['cuda']}).",
        "# pip and uv read this file through PIP_CONSTRAINT and UV_CONSTRAINT, so no install replaces these packages.",
        f"# Another torch: use the torchyard tag built with it. Knowingly, as root, for one command: PIP_CONSTRAINT= pip install ...",
        *(f"{name}==={locked[name]}" for name in names),
    ]
    with open(os.path.join(share, "constraints.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"constraints: {len(names)} packages pinned ({', '.join(names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
