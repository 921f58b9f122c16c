"""Credentials stay where they were given: `make lock` and `make fetch` against a real index that needs
them (pypiserver with an htpasswd file), then `make build` with no index configured at all, in a clone whose
git origin carries a token. The password and the token are in no file under images/, reports/ or digests/, in
no output or build log, and in nothing `docker inspect` or `docker history` shows of the final image.

The index listens on 127.0.0.1 only: the host locks and fetches; no build ever talks to an index. It serves one
real wheel itself (einops, an extra package of the test's matrix), so the lock names an artifact on the
credentialed host, and sends everything else to PyPI (pypiserver's fallback redirect, which carries no
credentials). The wheel cache is the test's own, seeded with links to this machine's (the session build filled
it), so einops is fetched from the index every run. The build is the real one of v2.6-cu124 plus einops: torch's
step runs anew (its lock differs from the session image's by einops): about 2 minutes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from builder import layout
from builder.urls import redact
from builder.wheels import cache as wheel_cache
from builder.wheels import lock, lockfile
from tests.conftest import ROOT, copy_checkout
from tests.docker.conftest import TAG, TEST_REPO, linked_cache
from tests.loopback import free_port

USER, PASSWORD = "alice", "s3cret-index-pw"
TOKEN = "ghp-s3cret-origin-token"
ORIGIN = "git.example.com/team/torchyard.git"
WHEEL = "einops==0.8.1"  # small, pure Python, in neither of the tag's locks
REPO = f"{TEST_REPO}-credentials"


def isolated_pip_env(**more: str) -> dict[str, str]:
    """This process's environment without the machine's pip settings (its local wheel folders and indexes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TORCHYARD_"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, **more}


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """pypiserver on 127.0.0.1 with htpasswd auth for listing and downloads; yields its simple URL
    without credentials and the folder of its log."""
    from passlib.apache import HtpasswdFile

    root = tmp_path_factory.mktemp("index")
    packages = root / "packages"
    ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")  # a TLS-inspecting proxy's
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(packages),
                    "--index-url", lock.PYPI_SIMPLE, *(["--cert", ca] if ca else []), WHEEL],
                   env=isolated_pip_env(), check=True, capture_output=True, timeout=300)
    passwords = HtpasswdFile(str(root / "htpasswd"), new=True)
    passwords.set_password(USER, PASSWORD)
    passwords.save()
    address = "127.0.0.1"
    port = free_port(address)
    log = root / "pypiserver.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "pypiserver", "run", "--host", address, "--port", str(port),
         "--passwords", str(root / "htpasswd"), "--authenticate", "download,list,update",
         "--fallback-url", "https://pypi.org/simple/", "--log-file", str(log), "-v", str(packages)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://{address}:{port}/simple/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1)
                pytest.fail("the index answered without credentials; it must ask for them")
            except urllib.error.HTTPError as e:
                assert e.code == 401
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"pypiserver did not answer: {log.read_text()[-2000:] if log.exists() else ''}")
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The repository's files (tracked and new, as a fresh clone has them) in a git repository whose origin
    carries a token; its matrix holds the one tag, with einops from the credentialed index."""
    where = tmp_path_factory.mktemp("clone") / "torchyard"
    copy_checkout(where)
    (where / "matrix.yaml").write_text(f'default: {TAG}\nimages:\n  {TAG}: {{torch: "2.6.0", extra_packages: ["{WHEEL}"]}}\n')
    (where / ".venv").symlink_to(ROOT / ".venv")  # the Makefile's environment: this checkout's
    git = ["git", "-C", str(where), "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "test"], check=True)
    subprocess.run([*git, "remote", "add", "origin", f"https://x-access-token:{TOKEN}@{ORIGIN}"], check=True)
    return where


@pytest.fixture(scope="module")
def cache(tmp_path_factory, index):
    """The test's own wheel cache (TORCHYARD_CACHE), linked to this machine's; never what the credentialed index
    serves itself (einops), which the fetch must get from there."""
    _, log = index
    served = {wheel_cache.file_sha256(wheel) for wheel in (log.parent / "packages").iterdir()}
    return linked_cache(tmp_path_factory.mktemp("cache"), leave_out=served)


def make(clone: Path, target: str, cache: Path, index_url: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """`make <target> TAG=…` in the clone, pip's index set as a user sets it (PIP_INDEX_URL with user:password@),
    or none at all."""
    if index_url:
        env.update(PIP_INDEX_URL=index_url, PIP_TRUSTED_HOST=redact(index_url).split("/")[2])
    environment = isolated_pip_env(TORCHYARD_CACHE=str(cache), **env)
    # on make's command line: a REPO in the environment (the Makefile's variable) would win over TORCHYARD_REPO
    return subprocess.run(["make", "-s", "-o", ".venv/.installed", target, f"TAG={TAG}", f"REPO={REPO}"], cwd=clone,
                          env=environment, capture_output=True, text=True, timeout=1800)


def with_credentials(url: str, password: str = PASSWORD) -> str:
    return url.replace("http://", f"http://{USER}:{password}@")


def secrets_in_files(folder: Path, secrets: tuple[str, ...] = (PASSWORD, TOKEN)) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
            and any(secret.encode() in p.read_bytes() for secret in secrets)]


@pytest.fixture(scope="module")
def locked(clone, index, cache):
    url, _ = index
    result = make(clone, "lock", cache, with_credentials(url))
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def fetched(clone, index, cache, locked):
    url, log = index
    served_before = log.stat().st_size
    result = make(clone, "fetch", cache, with_credentials(url))
    return result, log.read_text()[served_before:]  # what the index served to the fetch


@pytest.fixture(scope="module")
def credentialed_build(client, clone, index, cache, fetched):
    """`make build` with no index configured (no PIP_INDEX_URL, no pip.conf): the filled cache is all it reads."""
    _, log = index
    served_before = log.stat().st_size
    result = make(clone, "build", cache)
    yield result, log.read_text()[served_before:]  # what the index served during the build
    for image in client.images.list(name=REPO):
        client.images.remove(image.id, force=True)


def test_a_wrong_password_is_refused_without_printing_it(clone, index, cache):
    url, _ = index
    result = make(clone, "lock", cache, with_credentials(url, "not-the-password"))
    assert "] Error 1" in result.stderr  # the CLI's status (make itself exits 2 whenever a recipe fails)
    assert re.search(r"refused the credentials in its URL \(HTTP 40[13]\)", result.stdout), result.stdout
    assert url in result.stdout and "not-the-password" not in result.stdout + result.stderr


def test_make_lock_resolves_against_the_credentialed_index_and_records_it_without_them(clone, index, locked):
    url, _ = index
    text = (clone / "images" / TAG / layout.LOCK_FILE).read_text()
    assert f"# resolved against: {url}\n" in text
    host = url.split("/")[2]
    assert f"# http://{host}/packages/einops-0.8.1-py3-none-any.whl" in text  # served by the index itself
    assert "einops==0.8.1 --hash=sha256:" in text
    assert PASSWORD not in locked.stdout + locked.stderr and USER not in text


def test_make_fetch_downloads_from_the_credentialed_index_on_the_host(clone, fetched, cache):
    result, served = fetched
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "einops-0.8.1-py3-none-any.whl" in served, served[-2000:]  # with the password: the index asks for it
    sha256 = next(p.sha256 for p in lockfile.read(clone / "images" / TAG / layout.LOCK_FILE) if p.name == "einops")
    assert wheel_cache.file_sha256(cache / "sha256" / sha256) == sha256


def test_make_build_with_no_index_at_all_installs_from_the_filled_cache(client, credentialed_build):
    built, served = credentialed_build
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert served == ""  # no request reached the index during the build
    out = client.containers.run(f"{REPO}:{TAG}", ["python", "-c", "import einops; print(einops.__version__)"], remove=True)
    assert out.decode().strip() == "0.8.1"


def test_the_password_and_the_token_are_nowhere(client, clone, locked, fetched, credentialed_build):
    built, _ = credentialed_build
    for folder in ("images", "reports", "digests"):
        assert secrets_in_files(clone / folder) == [], folder
    for output in (locked.stdout, locked.stderr, fetched[0].stdout, fetched[0].stderr, built.stdout, built.stderr):
        assert PASSWORD not in output and TOKEN not in output
    inspected = json.dumps(client.api.inspect_image(f"{REPO}:{TAG}"))
    history = json.dumps(client.api.history(f"{REPO}:{TAG}"))
    assert PASSWORD not in inspected + history and TOKEN not in inspected + history
    assert f"{USER}:" not in inspected + history
    labels = client.images.get(f"{REPO}:{TAG}").labels
    assert labels["org.opencontainers.image.source"] == f"https://{ORIGIN}"  # the place, without the key
    assert (clone / "reports" / TAG / "build.log").is_file()
