"""The PyTorch-index path end to end: `make lock`, `make fetch` and `make build` of a tag whose torch comes from the
PyTorch wheel index, against a loopback stand-in of download.pytorch.org/whl (TORCHYARD_TORCH_INDEX, with a user
and password it requires), and check_image.py passing on the image the build made.

The stand-in (tests/torch_index.py) is laid out as the real index and serves what it would: torch and torchvision
as torch-2.6.0+cu124-cp311-cp311-linux_x86_64.whl (PyPI's own bytes, relabelled), the nvidia-* wheels and the other
dependencies it mirrors as the very files PyPI has, 403 for nvidia-ml-py. Which tag: PyPI's torch 2.6.0 is a cu124
build (torch/version.py: 2.6.0+cu124, CUDA 12.4), so its index form is honest only as cu124; served as cu126 or
cu118 it would be a wheel that lies about its CUDA, and check_image.py would check the lie. The test's clone
records 2.6.0 as a release PyPI does not carry (compat.yaml's pypi: null, as for a release candidate), which makes
its v2.6-cu124 an index variant: torch from /whl/cu124. The shipped matrix and compat are untouched.

The configured index (PIP_INDEX_URL) is a second loopback index, on another address, serving the artifacts of the
committed v2.6-cu124 locks: nvidia-ml-py and the workspace's packages resolve to the versions the session's image
holds. The test's wheel cache links this machine's, so the fetch downloads torch and torchvision alone, and the
build takes every layer below torch's (the base's steps and the 13 nvidia-* wheels: the same files, the same
steps) from the session build's cache: only torch's, the workspace's and the later steps run.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from builder import layout
from builder.image import layers
from builder.wheels import cache as wheel_cache
from builder.wheels import lockfile
from tests import loopback, torch_index
from tests.conftest import ROOT, copy_checkout
from tests.docker.conftest import TAG, TEST_REPO, linked_cache
from tests.docker.test_credentials import isolated_pip_env, secrets_in_files

USER, PASSWORD = "mirror-user", "s3cret-torch-index-pw"
REPO = f"{TEST_REPO}-torch-index"
PYPI_LOCKS = [ROOT / "images" / TAG / name for name in layout.LOCKS]  # the session image's, all from PyPI
SPENT: dict[str, tuple[float, int, int]] = {}  # step -> (seconds, bytes of wheels, of all the indexes served): figures


@pytest.fixture(scope="module")
def indexes(built, tmp_path_factory):
    """The stand-in PyTorch index on 127.0.0.1 (credentials required) and the configured index on 127.0.0.2, both
    serving from this machine's wheel cache, which the session build filled."""
    first, workspace = (lockfile.read(path) for path in PYPI_LOCKS)
    relabelled = tmp_path_factory.mktemp("relabelled")
    started = time.monotonic()
    pytorch = torch_index.variant_page(first, wheel_cache.folder(), "cu124", relabelled)
    SPENT["relabel"] = (time.monotonic() - started, 0, 0)
    with loopback.index({"/whl/cu124": pytorch}, credentials=(USER, PASSWORD), absent=torch_index.ABSENT) as mirror, \
            loopback.index({"/simple": torch_index.pypi_page(first + workspace, wheel_cache.folder())},
                           host="127.0.0.2") as pypi:
        yield mirror, pypi, {w.project: w for w in pytorch}


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The repository's files as a fresh clone has them, its matrix the one tag, its compat.yaml recording 2.6.0 as
    a release PyPI does not carry: its v2.6-cu124 takes torch from the PyTorch wheel index."""
    where = tmp_path_factory.mktemp("clone") / "torchyard"
    copy_checkout(where)
    (where / "matrix.yaml").write_text(f'default: {TAG}\nimages:\n  {TAG}: {{torch: "2.6.0"}}\n')
    facts = where / "builder" / "matrix" / "compat.yaml"
    facts.write_text(torch_index.without_pypi_wheel(facts.read_text(), "2.6.0"))
    (where / ".venv").symlink_to(ROOT / ".venv")  # the Makefile's environment: this checkout's
    return where


def make(clone: Path, target: str, cache: Path, indexes) -> tuple[subprocess.CompletedProcess, float, int]:
    """`make <target> TAG=…` in the clone with the two indexes set as a user sets them; the result, its seconds and
    the bytes of wheels the indexes served meanwhile."""
    mirror, pypi, _ = indexes
    before = len(mirror.seen), len(pypi.seen)
    env = isolated_pip_env(TORCHYARD_CACHE=str(cache), PIP_INDEX_URL=f"{pypi.url}/simple",
                           TORCHYARD_TORCH_INDEX=mirror.url.replace("http://", f"http://{USER}:{PASSWORD}@") + "/whl")
    started = time.monotonic()
    result = subprocess.run(["make", "-s", "-o", ".venv/.installed", target, f"TAG={TAG}", f"REPO={REPO}"], cwd=clone,
                            env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - started
    SPENT[target] = (seconds, mirror.served(before[0]) + pypi.served(before[1]),
                     mirror.served(before[0], wheels=False) + pypi.served(before[1], wheels=False))
    return result, seconds, SPENT[target][1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return linked_cache(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def locked(clone, cache, indexes):
    result, _, _ = make(clone, "lock", cache, indexes)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def fetched(clone, cache, indexes, locked):
    return make(clone, "fetch", cache, indexes)


@pytest.fixture(scope="module")
def index_build(client, clone, cache, indexes, fetched):
    yield make(clone, "build", cache, indexes)
    for image in client.images.list(name=REPO):
        client.images.remove(image.id, force=True)


def test_make_lock_takes_torch_and_what_the_index_mirrors_from_it_and_the_rest_from_the_configured_index(
        clone, indexes, locked):
    mirror, pypi, served = indexes
    first = lockfile.load(clone / "images" / TAG / layout.LOCK_FILE, TAG)
    assert first.indexes == (f"{mirror.url}/whl/cu124", f"{pypi.url}/simple")  # no user, no password
    by_name = {p.name: p for p in first.packages}
    torch = by_name["torch"]
    assert (torch.version, torch.sha256, torch.url) == (
        "2.6.0+cu124", served["torch"].sha256, f"{mirror.url}/whl/cu124/torch-2.6.0%2Bcu124-cp311-cp311-linux_x86_64.whl")
    assert by_name["torchvision"].version == "0.21.0+cu124"
    assert by_name["nvidia-ml-py"].url.startswith(f"{pypi.url}/simple/")  # the PyTorch index holds none
    assert all(p.url.startswith(f"{mirror.url}/whl/cu124/") for p in first.packages if p.name != "nvidia-ml-py")
    # The same nvidia-* files as the session image's lock: the same layers.
    pypi_first = {p.name: p.sha256 for p in lockfile.read(PYPI_LOCKS[0])}
    cuda = [p for p in first.packages if layers.is_cuda_library(p)]
    assert len(cuda) == 13 and all(pypi_first[p.name] == p.sha256 for p in cuda)
    asked = {(path, status) for _, path, _, _, status, _ in mirror.seen}
    assert ("/whl/cu124/nvidia-ml-py/", 403) in asked and ("/whl/cu124/torch/", 200) in asked
    assert {auth for _, _, auth, *_ in pypi.seen} == {None}  # the mirror's credentials go to the mirror alone


def test_make_fetch_downloads_only_the_index_wheels_the_cache_lacks(clone, cache, indexes, fetched):
    result, _, served = fetched
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    _, _, listed = indexes
    assert served == sum(listed[p].file.stat().st_size for p in ("torch", "torchvision"))
    for project in ("torch", "torchvision"):
        assert wheel_cache.file_sha256(wheel_cache.path(listed[project].sha256, cache / "sha256")) == listed[project].sha256
    archs = json.loads((clone / "images" / TAG / layout.ARCHS_FILE).read_text())  # read from the index's torch wheel
    assert (archs["torch"], archs["wheel_sha256"]) == ("2.6.0+cu124", listed["torch"].sha256)
    assert archs["archs"] == ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]  # the cu124 build's


def test_make_build_installs_the_index_wheels_and_check_image_passes(client, run, index_build):
    result, _, served = index_build
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert served == 0  # the build reads the wheel cache alone
    assert "check_image.py" in result.stdout  # the build step that fails a wrong image ran, and passed
    out = run(f"{REPO}:{TAG}", "python", "-c", "import torch, torchvision; "
              "print(torch.__version__, torchvision.__version__, torch.version.cuda, torch.cuda._is_compiled())")
    assert out.split() == ["2.6.0+cu124", "0.21.0+cu124", "12.4", "True"]


def test_the_build_takes_every_layer_below_torchs_from_the_session_builds_cache(client, spec, clone, built, index_build):
    """Every step below torch's (the base's, the 13 nvidia-* wheels') comes from the build cache, and its layers are
    the session image's, blob for blob; torch's step and those above it run."""
    steps = re.split(r"^Step \d+/\d+ : ", (clone / "reports" / TAG / "build.log").read_text(), flags=re.M)[1:]
    torch_step = next(n for n, step in enumerate(steps) if "'torch==2.6.0+cu124 --hash=" in step)
    assert sum(step.startswith("RUN ") and "'nvidia-" in step.split("\n")[0] for step in steps[:torch_step]) == 13
    assert all(" ---> Using cache" in step for step in steps[1:torch_step])  # all but FROM
    assert " ---> Using cache" not in steps[torch_step]
    ours, session = (client.images.get(image).attrs["RootFS"]["Layers"] for image in (f"{REPO}:{TAG}", built.image))
    below = len(client.images.get(spec.base.image).attrs["RootFS"]["Layers"]) + sum(
        step.startswith(("RUN ", "COPY ")) for step in steps[:torch_step])
    assert ours[:below] == session[:below] and ours[below] != session[below]


def test_the_mirrors_credentials_are_nowhere(client, clone, locked, fetched, index_build):
    for folder in ("images", "reports"):
        assert secrets_in_files(clone / folder, (PASSWORD, f"{USER}:")) == [], folder
    for output in (locked.stdout, locked.stderr, fetched[0].stdout, fetched[0].stderr,
                   index_build[0].stdout, index_build[0].stderr):
        assert PASSWORD not in output and f"{USER}:" not in output
    shown = json.dumps(client.api.inspect_image(f"{REPO}:{TAG}")) + json.dumps(client.api.history(f"{REPO}:{TAG}"))
    assert PASSWORD not in shown and USER not in shown
    labels = client.images.get(f"{REPO}:{TAG}").labels
    assert labels["io.torchyard.torch"] == "2.6.0" and not any(USER in v or PASSWORD in v for v in labels.values())
    print("\n[loopback PyTorch index] " + ", ".join(f"{step}: {s:.1f} s, {wheels / 1e6:.1f} MB of wheels and "
                                                    f"{(sent - wheels) / 1e3:.0f} kB of pages and metadata served"
                                                    for step, (s, wheels, sent) in SPENT.items()))
