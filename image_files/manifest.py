"""What a torchyard image is made of, written at build time to /usr/share/torchyard/manifest.json:

    python /usr/share/torchyard/manifest.py /usr/share/torchyard

tag and spec, the locks' sha256, every installed Python package (importlib.metadata) and Debian package
(dpkg-query) with its version, each Python package's license as its wheel's metadata declares it (the SBOM's, `make
sbom`), and the base. Exits 1, failing the build, when the Python packages
installed differ from the lock (pip and setuptools, which `python3 -m venv` brings, are listed apart).
Everything is sorted and carries no time, so the same inputs give the same file.
"""

import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys

VENV_BOOTSTRAP = ("pip", "setuptools")  # from Debian's python3-venv, not from the lock
LOCK_FILES = ("requirements.lock", "requirements-workspace.lock")  # torch's pip step, then the workspace's
LOCK_ENTRY = re.compile(r"^([A-Za-z0-9._-]+)==(\S+) --hash=sha256:", re.M)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def debian_packages() -> dict:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}:${Architecture}\t${Version}\t${db:Status-Abbrev}\n"],
                         capture_output=True, text=True, check=True).stdout
    rows = (line.split("\t") for line in out.splitlines())
    return dict(sorted((name.removesuffix(":all").removesuffix(":amd64"), version)
                       for name, version, status in rows if status.startswith("ii")))


def declared_license(metadata) -> str | None:
    """A package's license as its metadata declares it: the SPDX License-Expression (PEP 639), else a one-line License
    field (some carry the whole license text there, which is no name), else its License :: classifiers' names."""
    expression = (metadata.get("License-Expression") or "").strip()
    if expression:
        return expression
    text = (metadata.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 100 and text.upper() not in ("UNKNOWN", "NONE"):
        return text
    names = [c.split(" :: ")[-1] for c in metadata.get_all("Classifier") or () if c.startswith("License :: ")]
    return " OR ".join(sorted(set(names))) or None


def main(share: str) -> int:
    with open(os.path.join(share, "spec.json")) as f:
        spec = json.load(f)
    locks = {}
    for name in LOCK_FILES:
        with open(os.path.join(share, name), "rb") as f:
            locks[name] = f.read()
    lock = b"".join(locks.values())
    locked = {canonical(name): version for name, version in LOCK_ENTRY.findall(lock.decode())}
    distributions = list(importlib.metadata.distributions())
    installed = {canonical(d.metadata["Name"]): d.version for d in distributions}
    licenses = {canonical(d.metadata["Name"]): declared_license(d.metadata) for d in distributions}
    # A bootstrap package the lock names (setuptools in a -devel venv of Python 3.12+, where venv brings none) is checked.
    python = dict(sorted((n, v) for n, v in installed.items() if n not in VENV_BOOTSTRAP or n in locked))
    problems = [f"{n}: locked {v}, installed {python.get(n, 'nothing')}" for n, v in sorted(locked.items()) if python.get(n) != v]
    problems += [f"{n} {v}: installed but not in the lock" for n, v in python.items() if n not in locked]
    if problems:
        print("the installed Python packages differ from requirements.lock:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    manifest = {
        "tag": spec["tag"],
        "spec": spec,
        # sha256 of both files in install order (the io.torchyard.lock.sha256 label), and of each
        "lock": {"sha256": hashlib.sha256(lock).hexdigest(), "packages": len(locked),
                 "files": {name: hashlib.sha256(data).hexdigest() for name, data in locks.items()}},
        "python_packages": python,
        "python_licenses": {n: licenses[n] for n in python if licenses.get(n)},
        "venv_bootstrap": {n: installed[n] for n in VENV_BOOTSTRAP if n in installed and n not in locked},
        "debian_packages": debian_packages(),
        "base": {"ref": spec["base"], "image_id": os.environ.get("TORCHYARD_BASE_ID") or "not recorded"},
    }
    with open(os.path.join(share, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"manifest: {len(python)} Python packages (as locked), {len(manifest['debian_packages'])} Debian packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
