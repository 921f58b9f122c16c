"""The stand-in for the PyTorch wheel index that the loopback-index build (tests/docker/test_torch_index.py) locks,
fetches and builds against: its wheels (PyPI's, relabelled with the CUDA variant they are) and its layout."""

import base64
import csv
import hashlib
import importlib.metadata
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile

import pytest

from builder.wheels import cache as wheel_cache
from builder.wheels.lockfile import Locked
from tests import loopback, torch_index

PYPI_NAME = "pkg-1.0-cp311-cp311-manylinux1_x86_64.whl"  # as PyPI names it; its WHEEL says linux_x86_64
FILES = {"pkg/__init__.py": b"__version__ = '1.0+cu124'\n", "pkg/_C.so": bytes(range(256)) * 64, "pkg/a,b.txt": b"x"}


@pytest.fixture
def pypi_wheel(tmp_path):
    """A wheel as PyPI has torch's: a binary, a file whose name needs CSV quoting, the .dist-info entries first."""
    made = loopback.wheel(tmp_path, "pkg", "1.0", "dep", tag="cp311-cp311-linux_x86_64", files=FILES)
    with zipfile.ZipFile(tmp_path / made) as source:  # .dist-info first, as in torch's wheel
        entries = sorted(source.infolist(), key=lambda i: ".dist-info/" not in i.filename)
        with zipfile.ZipFile(tmp_path / PYPI_NAME, "w", zipfile.ZIP_DEFLATED) as out:
            for entry in entries:
                out.writestr(entry, source.read(entry))
    return tmp_path / PYPI_NAME


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_a_relabelled_wheel_is_the_same_files_under_the_local_version_its_record_true(pypi_wheel, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    made = torch_index.relabel(pypi_wheel, PYPI_NAME, "cu124", out)
    assert made.name == "pkg-1.0+cu124-cp311-cp311-linux_x86_64.whl"  # the WHEEL file's tags, as the index has them
    with zipfile.ZipFile(pypi_wheel) as before, zipfile.ZipFile(made) as after:
        assert after.testzip() is None
        old, new = before.infolist(), after.infolist()
        assert [i.filename.replace("pkg-1.0.dist-info/", "pkg-1.0+cu124.dist-info/") for i in old] == [
            i.filename for i in new]
        for a, b in zip(old, new):
            if not b.filename.endswith(("/METADATA", "/RECORD")):  # copied as they were, compressed bytes and all
                assert (a.CRC, a.compress_size, a.compress_type, before.read(a)) == (
                    b.CRC, b.compress_size, b.compress_type, after.read(b)), b.filename
        metadata = after.read("pkg-1.0+cu124.dist-info/METADATA").decode()
        assert "\nVersion: 1.0+cu124\n" in metadata and "Requires-Dist: dep\n" in metadata
        record = list(csv.reader(io.StringIO(after.read("pkg-1.0+cu124.dist-info/RECORD").decode())))
        assert sorted(row[0] for row in record) == sorted(after.namelist())
        for path, digest, size in record:
            if path.endswith("/RECORD"):
                assert (digest, size) == ("", "")
            else:
                assert (digest, size) == (record_hash(after.read(path)), str(len(after.read(path)))), path


def test_pip_installs_the_relabelled_wheel_as_that_version(pypi_wheel, tmp_path):
    made = torch_index.relabel(pypi_wheel, PYPI_NAME, "cu124", tmp_path)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-index", "--no-compile", "--target", str(target), str(made)], check=True, timeout=120)
    installed = next(importlib.metadata.distributions(path=[str(target)]))
    assert (installed.metadata["Name"], installed.version) == ("pkg", "1.0+cu124")
    assert (target / "pkg" / "_C.so").read_bytes() == FILES["pkg/_C.so"]


def test_a_wheel_without_its_version_in_metadata_is_not_relabelled(tmp_path):
    made = loopback.wheel(tmp_path, "pkg", "1.0")
    with pytest.raises(ValueError, match="its METADATA names no Version: 2.0"):
        torch_index.relabel(tmp_path / made, "pkg-2.0-py3-none-any.whl", "cu124", tmp_path)


def test_a_variants_page_holds_torch_relabelled_what_the_index_mirrors_as_it_is_and_nothing_else(tmp_path):
    """From a lock's PyPI artifacts in a wheel cache: torch and torchvision in their index form, nvidia-* and
    numpy as the same files, nvidia-ml-py (not on the real index) absent."""
    cache = tmp_path / "cache"
    cache.mkdir()
    locked = []
    for name, version in [("torch", "2.6.0"), ("torchvision", "0.21.0"), ("nvidia_cublas_cu12", "12.4.5.8"),
                          ("numpy", "2.4.6"), ("nvidia_ml_py", "13.615.71")]:
        listed = loopback.Listed.of(tmp_path / loopback.wheel(tmp_path, name, version, tag="cp311-cp311-linux_x86_64"))
        (cache / listed.sha256).write_bytes(listed.file.read_bytes())
        locked.append(Locked(name.replace("_", "-"), version, listed.sha256,
                             f"https://files.example/{listed.name.replace('linux', 'manylinux1')}", 1))
    page = torch_index.variant_page(locked, cache, "cu124", tmp_path)
    assert sorted(w.name for w in page) == [
        "numpy-2.4.6-cp311-cp311-manylinux1_x86_64.whl", "nvidia_cublas_cu12-12.4.5.8-cp311-cp311-manylinux1_x86_64.whl",
        "torch-2.6.0+cu124-cp311-cp311-linux_x86_64.whl", "torchvision-0.21.0+cu124-cp311-cp311-linux_x86_64.whl"]
    same = {w.name: w for w in page if "+" not in w.name}
    assert {w.sha256 for w in same.values()} == {p.sha256 for p in locked if p.name in ("numpy", "nvidia-cublas-cu12")}
    assert all(w.file == wheel_cache.path(w.sha256, cache) for w in same.values())  # the cache's own bytes


def get(url: str, auth: str | None = "Basic " + base64.b64encode(b"u:p").decode(), accept: str | None = None):
    request = urllib.request.Request(url, headers={k: v for k, v in (("Authorization", auth), ("Accept", accept)) if v})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers.get("Content-Type"), response.read()


def status(url: str, auth: str | None = "Basic " + base64.b64encode(b"u:p").decode()) -> int:
    try:
        get(url, auth)
    except urllib.error.HTTPError as e:
        return e.code
    return 200


def test_the_index_is_laid_out_as_download_pytorch_org(pypi_wheel, tmp_path):
    relabelled = loopback.Listed.of(torch_index.relabel(pypi_wheel, PYPI_NAME, "cu124", tmp_path))
    other = loopback.Listed.of(tmp_path / loopback.wheel(tmp_path, "dep", "1.0"))
    with loopback.index({"/whl/cu124": [relabelled, other]}, credentials=("u", "p"), absent=torch_index.ABSENT,
                        pep691=True) as served:
        root = f"{served.url}/whl/cu124"
        assert status(f"{root}/", auth=None) == 401
        assert b'<a href="dep/">dep</a><br/>' in get(f"{root}/")[1] and b'<a href="pkg/">' in get(f"{root}/")[1]
        kind, page = get(f"{root}/pkg/")
        meta = hashlib.sha256(relabelled.metadata).hexdigest()
        assert kind == "text/html" and (
            f'<a href="/whl/cu124/pkg-1.0%2Bcu124-cp311-cp311-linux_x86_64.whl#sha256={relabelled.sha256}" '
            f'data-dist-info-metadata="sha256={meta}" data-core-metadata="sha256={meta}">'
            "pkg-1.0+cu124-cp311-cp311-linux_x86_64.whl</a><br/>").encode() in page
        assert get(f"{root}/pkg-1.0%2Bcu124-cp311-cp311-linux_x86_64.whl.metadata")[1] == relabelled.metadata
        assert get(f"{root}/pkg-1.0%2Bcu124-cp311-cp311-linux_x86_64.whl")[1] == relabelled.file.read_bytes()
        assert status(f"{root}/nvidia-ml-py/") == 403 and status(f"{served.url}/simple/dep/") == 404
        kind, data = get(f"{root}/dep/", accept=f"{loopback.JSON}, text/html;q=0.01")
        assert kind == loopback.JSON and json.loads(data)["files"] == [{
            "filename": "dep-1.0-py3-none-any.whl", "url": "/whl/cu124/dep-1.0-py3-none-any.whl",
            "hashes": {"sha256": other.sha256}, "size": other.file.stat().st_size,
            "core-metadata": {"sha256": hashlib.sha256(other.metadata).hexdigest()}}]
    assert served.served() == relabelled.file.stat().st_size  # the wheels' bytes, not the pages'
