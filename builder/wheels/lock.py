"""images/<tag>/requirements.txt -> images/<tag>/requirements.lock: every package with version, its one wheel and sha256.

uv resolves (`uv pip compile`: it reads wheel metadata by HTTP range requests, so a tag locks in seconds where
pip downloaded every wheel, ~3 GB a tag, from an index without PEP 658 metadata) for the image's platform and
Python (markers are evaluated for the image's Python, not this machine's), against the configured index (for an
index variant, the PyTorch wheel index first: indexes()) and nothing else: no uv.toml or pip.conf, no UV_* or PIP_*
variable, no local wheel folder of this machine reaches it (only the CA bundle, to get through a TLS-inspecting
proxy, and index credentials through a private netrc; the indexes go in a uv.toml of its own). Of the
wheels uv lists for a package, the lock keeps the one the image's pip would choose. A tag locked before keeps the
versions its locks hold wherever its requirements still allow them (uv's preferences, as `uv pip compile` keeps an
output file's pins), so a relock changes what its inputs changed and nothing else; upgrade=True (UPGRADE=1) resolves
everything to the newest again. The build then installs with
`--require-hashes --no-deps` from the lock, so a changed artifact fails the build, and an extra index cannot
substitute a package (dependency confusion).

What a lock file holds, and reading it back, is builder/wheels/lockfile.py's.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import subprocess
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uv
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from builder import layout, urls
from builder.inputs import shown
from builder.matrix.types import PYPI_INDEX, ImageSpec
from builder.wheels import lockfile
from builder.wheels.network import NetworkSettings

# Two locks (layout.LOCKS): torch and what it needs, the first pip step; then the workspace's packages (JupyterLab,
# …), a second pip step, so changing them keeps torch's layer cached. The second is resolved with the first lock's
# versions as constraints (one consistent set), minus what the first holds.
PYPI_SIMPLE = "https://pypi.org/simple"
# glibc of each Debian suite: the newest manylinux tag its pip accepts. Images are linux/amd64 only. uv names
# platforms up to manylinux_2_40: for trixie (2.41) that leaves out only wheels that need glibc 2.41.
GLIBC_MINOR = {"bookworm": 36, "trixie": 41}
UV_NEWEST_MANYLINUX = 40
OLDEST_MANYLINUX_MINOR = 5
LEGACY_MANYLINUX = {"manylinux2014_x86_64": 17, "manylinux2010_x86_64": 12, "manylinux1_x86_64": 5}  # PEP 600's aliases
UV_TIMEOUT_S = 600
INDEX_STRATEGY = "first-index"  # uv's default, named: each package from the first index that has it (indexes())


def supported_tags(spec: ImageSpec) -> list[Tag]:
    """The wheel tags the image's pip accepts, in pip's order of preference (packaging.tags, as pip itself): CPython
    of the base, manylinux up to the base's glibc (newest first, the legacy aliases in between), then linux."""
    version = tuple(int(part) for part in spec.python.split("."))
    platforms = []
    for minor in range(GLIBC_MINOR[spec.base.suite], OLDEST_MANYLINUX_MINOR - 1, -1):
        platforms.append(f"manylinux_2_{minor}_x86_64")
        platforms += [alias for alias, same in LEGACY_MANYLINUX.items() if same == minor]
    platforms.append("linux_x86_64")
    abi = f"cp{version[0]}{version[1]}"
    return [*cpython_tags(version, [abi], platforms), *compatible_tags(version, abi, platforms)]


def choose_wheel(wheels: list[dict], spec: ImageSpec) -> dict | None:
    """Of the wheels uv lists for one package (every one the platform accepts), the one pip would install: the
    best-ranked tag; None when none fits."""
    rank = {tag: n for n, tag in enumerate(supported_tags(spec))}
    best = None
    for wheel in wheels:
        name = wheel.get("name") or wheel.get("url", "").rsplit("/", 1)[-1]
        try:
            tags = parse_wheel_filename(urllib.parse.unquote(name))[3]
        except InvalidWheelFilename:
            continue
        score = min((rank[t] for t in tags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, wheel)
    return best[1] if best else None


def indexes(spec: ImageSpec, network: NetworkSettings) -> list[str]:
    """The indexes torch's step resolves against, in the order uv searches them (first-index: each package from the
    first index that has it, so nothing an earlier index holds can come from a later one): for index variants the
    PyTorch wheel index, then the configured ones. That index mirrors torch's own dependencies (the nvidia-* wheels,
    numpy, …) but not the smoke suite's nvidia-ml-py or an entry's extra_packages: those come from the configured
    index."""
    configured = _configured_indexes(network)
    if spec.index != PYPI_INDEX:
        return [network.torch_index_url(spec.cuda_variant), *configured]
    return configured


def _configured_indexes(network: NetworkSettings) -> list[str]:
    """The forwarded indexes in the order uv searches them: pip's extra-index-url ones, then its index-url (else
    PyPI), the default, last (uv gives an extra index precedence over the default one)."""
    return [*network.pip.get("extra-index-url", []), *(network.pip.get("index-url") or [PYPI_SIMPLE])[:1]]


@functools.cache
def uv_binary() -> str:
    """uv's binary from its wheel, found once before any thread runs (Python 3.11's sysconfig, which find_uv_bin
    reads, is not safe to initialise from several threads at once)."""
    return uv.find_uv_bin()


def uv_command(spec: ImageSpec, requirements: Path, output: Path, config: Path, network: NetworkSettings,
               cache: Path, constraints: Path | None = None) -> list[str]:
    """uv's command line: the image's platform and Python, the indexes of the uv.toml at config (uv_indexes: only
    the file named here is read, --no-config keeps every other out)."""
    glibc = min(GLIBC_MINOR[spec.base.suite], UV_NEWEST_MANYLINUX)
    command = [uv_binary(), "pip", "compile", "--quiet", "--no-progress", "--color", "never",
               "--no-config", "--config-file", str(config), "--no-python-downloads", "--no-header",
               "--format", "pylock.toml", "--python-version", spec.python, "--python-platform",
               f"x86_64-manylinux_2_{glibc}", "--only-binary", ":all:", "--cache-dir", str(cache),
               "--index-strategy", INDEX_STRATEGY]
    for host in network.pip.get("trusted-host", []):
        command += ["--allow-insecure-host", host]
    if constraints is not None:
        command += ["--constraints", str(constraints)]
    return command + ["--output-file", str(output), str(requirements)]


def uv_indexes(index: list[str], network: NetworkSettings) -> str:
    """The indexes as a uv.toml gives them (uv's command line cannot give an index ignore-error-codes): in the order
    searched, the last the default; the PyTorch wheel index (or its mirror) with its 403s ignored. It answers 403, not 404, for a
    project it does not hold (nvidia-ml-py: an S3 key that is not there), which uv takes for a refusal that ends the
    search (uv exempts download.pytorch.org by its name, never a mirror of it)."""
    torch = urls.without_credentials(network.torch_index) + "/"
    lines = []
    for n, url in enumerate(index, 1):
        lines += ["[[index]]", f"url = {_toml_string(url)}"]
        lines += ["ignore-error-codes = [403]"] if url.startswith(torch) else []
        lines += ["default = true"] if n == len(index) else []
    return "\n".join(lines) + "\n"


def _toml_string(text: str) -> str:
    """A TOML basic string (a URL: inputs.url let no space or control character through)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def clean_environment(env: dict[str, str], ca_bundle: Path | None) -> dict[str, str]:
    """This process's environment without pip's or uv's settings (no PIP_*, no UV_*, no CA variable or netrc of its
    own); the CA bundle of the host's settings as SSL_CERT_FILE, which uv reads."""
    dropped = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "VIRTUAL_ENV", "CONDA_PREFIX", "NETRC")
    clean = {k: v for k, v in env.items() if not k.startswith(("PIP_", "UV_")) and k not in dropped}
    if ca_bundle is not None:
        clean["SSL_CERT_FILE"] = str(ca_bundle)
    return clean


def from_pylock(spec: ImageSpec, data: dict, input_sha256: str, index: list[str],
                leave_out: frozenset[str] = frozenset(), size_of=None) -> lockfile.Lock:
    """uv's pylock.toml -> a Lock: each package with the one wheel the image's pip would choose, its sha256 and size.
    size_of(url) gives the size of a wheel the index listed without one (a PEP 503 HTML index, as the PyTorch
    wheel index, carries none)."""
    packages = []
    for entry in data.get("packages", []):
        name = lockfile.canonical(entry["name"])
        if name in leave_out:
            continue
        wheel = choose_wheel(entry.get("wheels", []), spec)
        if wheel is None:
            raise lockfile.LockError(f"{spec.tag}: no wheel of {name} {entry.get('version')} fits {platform_note(spec)}")
        sha256 = wheel.get("hashes", {}).get("sha256")
        if not sha256 or "url" not in wheel:
            raise lockfile.LockError(f"{spec.tag}: the index gave no sha256 or URL for {name} {entry.get('version')} "
                            f"({urls.redact(wheel.get('url', wheel.get('name', '?')))}); a lock needs both for every artifact")
        url = urllib.parse.urlsplit(wheel["url"])._replace(fragment="").geturl()  # #sha256=… repeats the hash
        size = wheel.get("size")
        if size is None and size_of is not None and not urls.unfetchable(url):
            size = size_of(url)
        if size is None:
            raise lockfile.LockError(f"{spec.tag}: the index lists {name} {entry.get('version')} with no size "
                            f"({urls.redact(url)}); a lock needs each artifact's size")
        locked = lockfile.Locked(name, str(entry["version"]), str(sha256), urls.redact(url), size)
        if found := lockfile.artifact_problem(locked):
            raise lockfile.LockError(f"{spec.tag}: the index gave {name} {entry.get('version')} as "
                            f"{shown(urls.redact(wheel['url']))}, which a lock cannot hold: {found}")
        packages.append(locked)
    packages.sort(key=lambda p: p.name)
    return lockfile.Lock(spec.tag, input_sha256, tuple(urls.redact(i) for i in index), platform_note(spec),
                         tuple(packages))


def platform_note(spec: ImageSpec) -> str:
    return (f"CPython {spec.python}, linux/amd64, Debian {spec.base.suite} "
            f"(glibc 2.{GLIBC_MINOR[spec.base.suite]}), wheels only")


def kept(path: Path) -> dict[str, str]:
    """name -> version of the lock at path, for uv to prefer; {} where there is none, or none this tool reads (a
    broken or older lock is what a relock replaces, so it must not stop one)."""
    try:
        return lockfile.packages(path) if path.is_file() else {}
    except lockfile.LockError:
        return {}


def preferences(versions: dict[str, str]) -> str:
    """A pylock.toml naming only packages and versions: written where uv is to write its output, it is what uv
    prefers (each is kept where the requirements allow it, else resolved anew). Names and versions are a lock's,
    which lockfile.read parsed strictly; JSON's quoting is TOML's for them."""
    entries = "".join(f"\n[[packages]]\nname = {json.dumps(name)}\nversion = {json.dumps(version)}\n"
                      for name, version in sorted(versions.items()))
    return 'lock-version = "1.0"\ncreated-by = "torchyard"\n' + entries


def _run_uv(spec: ImageSpec, requirements: Path, index: list[str], network: NetworkSettings, cache: Path,
            constraints: str | None = None, prefer: dict[str, str] | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="torchyard-lock-") as tmp:
        ca = None
        if network.ca_files:
            ca = Path(tmp) / "ca-bundle.crt"
            ca.write_text(network.ca_bundle())
        output = Path(tmp) / "pylock.toml"
        if prefer:
            output.write_text(preferences(prefer))
        constraints_file = None
        if constraints is not None:
            constraints_file = Path(tmp) / "constraints.txt"
            constraints_file.write_text(constraints)
        env = {**clean_environment(dict(os.environ), ca), **_netrc(index, Path(tmp))}
        shown = " ".join(urls.redact(i) for i in index)
        index = [urls.without_credentials(i) for i in index]  # the credentials went to the netrc
        config = Path(tmp) / "uv.toml"
        config.write_text(uv_indexes(index, network))
        command = uv_command(spec, requirements, output, config, network, cache, constraints_file)
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=UV_TIMEOUT_S, env=env, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise lockfile.LockError(f"{spec.tag}: uv did not finish resolving within {UV_TIMEOUT_S}s "
                                     f"against {shown}") from None
        if result.returncode != 0:
            raise lockfile.LockError(f"{spec.tag}: cannot resolve {requirements.name} against {shown}:\n"
                            + urls.redact(_complaint(result.stderr, spec)))
        return tomllib.loads(output.read_text())


def _netrc(index: list[str], folder: Path) -> dict[str, str]:
    """The index URLs' credentials in a netrc that only this user can read, for uv (it reads the file NETRC names,
    never the machine's ~/.netrc here): they stay off uv's command line, which every user of the machine can see."""
    entries = []
    for url in index:
        if found := urls.credentials(url):
            _, user, password = found
            host = urllib.parse.urlsplit(url).hostname  # a netrc names machines without their port
            if any(c.isspace() or c in "\"'#" for c in user + password):
                raise lockfile.LockError(f"the credentials for {host} hold a space, quote or '#', "
                                         "which a netrc cannot carry")
            entries.append(f"machine {host} login {user} password {password}\n")
    if not entries:
        return {}
    path = folder / "netrc"
    path.touch(mode=0o600)
    path.write_text("".join(entries))
    return {"NETRC": str(path)}


def resolve(spec: ImageSpec, network: NetworkSettings, images: Path = layout.IMAGES,
            upgrade: bool = False) -> tuple[lockfile.Lock, lockfile.Lock]:
    """The tag's two locks: torch's step (requirements.txt) and the workspace's step (resolve_workspace), each keeping
    what the tag's lock holds unless upgrade."""
    requirements = images / spec.tag / layout.REQUIREMENTS
    for path in (requirements, images / spec.tag / layout.WORKSPACE_REQUIREMENTS):
        if not path.is_file():
            raise lockfile.LockError(f"{path} is missing; run `make render` first")
    index = indexes(spec, network)
    prefer = {} if upgrade else kept(images / spec.tag / layout.LOCK_FILE)
    first = from_pylock(spec, _run_uv(spec, requirements, index, network, _uv_cache(), prefer=prefer),
                        lockfile.sha256_text(requirements.read_text()), index,
                        size_of=lambda url: content_length(url, network))
    return first, resolve_workspace(spec, first, network, images, upgrade)


def resolve_workspace(spec: ImageSpec, first: lockfile.Lock, network: NetworkSettings,
                      images: Path = layout.IMAGES, upgrade: bool = False) -> lockfile.Lock:
    """The workspace step's lock, resolved against the configured index (never the PyTorch wheel index) with torch's
    lock's versions as constraints, holding only what that lock does not."""
    workspace = images / spec.tag / layout.WORKSPACE_REQUIREMENTS
    workspace_index = _configured_indexes(network)
    prefer = {} if upgrade else kept(images / spec.tag / layout.WORKSPACE_LOCK_FILE)
    data = _run_uv(spec, workspace, workspace_index, network, _uv_cache(),
                   constraints="".join(f"{p.name}=={p.version}\n" for p in first.packages), prefer=prefer)
    second = from_pylock(spec, data, lockfile.sha256_text(workspace.read_text() + first.text()), workspace_index,
                         leave_out=frozenset(p.name for p in first.packages),
                         size_of=lambda url: content_length(url, network))
    return dataclasses.replace(second, source=f"{layout.WORKSPACE_REQUIREMENTS} + {layout.LOCK_FILE}",
                               file=layout.WORKSPACE_LOCK_FILE)


def _uv_cache() -> Path:
    return layout.cache_dir() / "uv"  # wheel metadata uv read before: a second lock asks the index less


def _complaint(stderr: str, spec: ImageSpec) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    text = "\n".join(f"    {line}" for line in lines[-12:])
    if spec.index != PYPI_INDEX and re.search(r"dns error|failed to lookup|Connection refused|error sending request|"
                                              r"was not found in the package registry|not found in", stderr, re.I):
        text += (f"\n  {spec.tag} takes torch from the PyTorch wheel index ({spec.cuda_variant}), which this machine "
                 "cannot reach; lock it where download.pytorch.org (or a mirror named by TORCHYARD_TORCH_INDEX) answers")
    return text


def unreachable(url: str, network: NetworkSettings, timeout: float = 10) -> str | None:
    """Why an index cannot be reached or refuses its credentials (a fast check before pip's retries), or None.
    The request goes to the host urllib.parse reads from the URL, the credentials beside it as a header."""
    request = network.request(url.rstrip("/") + "/", method="HEAD")
    try:
        network.open(request, timeout).close()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            given = "refused the credentials in its URL" if urls.credentials(url) else "wants credentials"
            return f"it {given} (HTTP {e.code}); put the user and password in the index URL of your pip configuration"
        return None  # it answered
    except (urllib.error.URLError, OSError, ValueError) as e:
        return urls.redact(str(getattr(e, "reason", e)))
    return None


def content_length(url: str, network: NetworkSettings, timeout: float = 30) -> int:
    """An artifact's size by a HEAD request (for an index that lists wheels without their size)."""
    try:
        with network.open(network.request(url, method="HEAD"), timeout) as response:
            length = response.headers.get("Content-Length", "")
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise lockfile.LockError(f"cannot learn the size of {urls.redact(url)}: "
                                 f"{urls.redact(str(getattr(e, 'reason', e)))}") from None
    if not re.fullmatch(r"[0-9]{1,12}", length, re.ASCII):
        raise lockfile.LockError(f"{urls.redact(url)}: the index names no size for it (no Content-Length); "
                                 "a lock needs one")
    return int(length)


def lock_all(specs: list[ImageSpec], network: NetworkSettings, say=print, images: Path = layout.IMAGES,
             workers: int = 4, upgrade: bool = False) -> list[str]:
    """Lock each spec, several at once (uv mostly waits on the network; more than a few at once only adds DNS
    time-outs here); returns the tags that could not be locked."""
    uv_binary()  # before the threads (see there)
    probes = list(dict.fromkeys(index for s in specs for index in indexes(s, network)))
    with ThreadPoolExecutor(max_workers=8) as pool:  # side by side: an unreachable index costs a DNS failure each
        down: dict[str, str | None] = dict(zip(probes, pool.map(lambda url: unreachable(url, network), probes)))

    def one(spec: ImageSpec) -> str | None:
        searched = indexes(spec, network)
        index = next((i for i in searched if down[i]), None)
        if index is not None:
            torch_index = spec.index != PYPI_INDEX and index == searched[0]
            return (f"not locked: {spec.tag}: its index {urls.redact(index)} cannot be used: {down[index]}"
                    + (". Lock it where the PyTorch wheel index (or a mirror named by TORCHYARD_TORCH_INDEX) answers; "
                       "until then building it is refused" if torch_index else ""))
        started = time.monotonic()
        try:
            made = resolve(spec, network, images, upgrade)
        except lockfile.LockError as e:
            return f"not locked: {e}"
        changed = [lockfile.write(one, images) for one in made]  # the workspace lock's input covers the first: write both
        say(f"locked {spec.tag}: {len(made[0].packages)} + {len(made[1].packages)} (workspace) packages "
            f"in {time.monotonic() - started:.1f}s"
            f"{'' if any(changed) else ' (unchanged)'}")
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        refusals = dict(zip([s.tag for s in specs], pool.map(one, specs)))
    for refusal in filter(None, refusals.values()):
        say(refusal)
    return [tag for tag, refusal in refusals.items() if refusal]
