"""The image installs exactly its lock, says so in its manifest, and a tampered lock fails the build."""

import json
import re

import pytest

from builder import layout
from builder.image import build, render
from builder.wheels import cache as wheel_cache
from builder.wheels import lockfile, network
from tests.conftest import ROOT
from tests.docker.conftest import TAG, TEST_REPO


@pytest.fixture(scope="module")
def manifest(built, run_module):
    return json.loads(run_module(built.image, "cat", f"{layout.SHARE}/manifest.json"))


@pytest.fixture(scope="module")
def run_module(client):
    def run(image: str, *command: str) -> str:
        return client.containers.run(image, list(command), remove=True, stdout=True, stderr=True).decode()
    return run


def test_the_manifest_lists_exactly_the_locked_python_packages(manifest):
    locked = {**lockfile.packages(ROOT / "images" / TAG / layout.LOCK_FILE),
              **lockfile.packages(ROOT / "images" / TAG / layout.WORKSPACE_LOCK_FILE)}
    assert "torch" in locked and "jupyterlab" in locked
    assert manifest["python_packages"] == dict(sorted(locked.items()))
    assert manifest["lock"]["packages"] == len(locked)
    assert set(manifest["venv_bootstrap"]) == {"pip", "setuptools"}


def test_the_manifest_records_debian_packages_and_the_base(client, manifest, spec):
    debian = manifest["debian_packages"]
    assert re.match(r"^3\.11\.", debian["python3.11"]) and "ca-certificates" in debian and "dpkg" in debian
    assert manifest["base"] == {"ref": "bookworm", "image_id": client.images.get(spec.base.image).id}
    assert manifest["tag"] == TAG and manifest["spec"]["torch"] == "2.6.0"


def test_labels_summarise_the_manifest(client, built, manifest):
    labels = client.images.get(built.image).labels
    assert labels["io.torchyard.lock.sha256"] == manifest["lock"]["sha256"]
    assert labels["io.torchyard.lock.packages"] == str(manifest["lock"]["packages"])
    assert labels["io.torchyard.base.id"] == manifest["base"]["image_id"]
    assert labels["io.torchyard.manifest"] == f"{layout.SHARE}/manifest.json"


def test_a_tampered_hash_fails_the_build_and_names_the_package(client, built, spec, tmp_path):
    """The tag's real lock with one hash of the workspace lock changed: the host's fetch downloads that wheel,
    refuses it, keeps nothing under either hash, and the build never starts."""
    images = tmp_path / "images"
    render.write(spec, images)
    for name in (layout.LOCK_FILE, layout.WORKSPACE_LOCK_FILE):
        (images / TAG / name).write_text((ROOT / "images" / TAG / name).read_text())
    real = (images / TAG / layout.WORKSPACE_LOCK_FILE).read_text()
    entry = next(line for line in real.splitlines() if line.startswith("ipykernel=="))
    (images / TAG / layout.WORKSPACE_LOCK_FILE).write_text(
        real.replace(entry, re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, entry)))
    repo = f"{TEST_REPO}-tampered"
    with pytest.raises(wheel_cache.FetchError) as failed:
        build.build(client, spec, repo, network.host_settings(), images=images, reports=tmp_path / "reports",
                    cache=tmp_path / "cache")
    message = str(failed.value)
    assert "the sha256 of ipykernel 7.4.0 (ipykernel-7.4.0-py3-none-any.whl) is " in message
    assert f"but images/{TAG}/requirements-workspace.lock says {'0' * 64}" in message
    assert [p.name for p in (tmp_path / "cache").iterdir() if "ipykernel" in p.name or p.name == "0" * 64] == []
    assert client.images.list(name=repo) == []


def test_a_tag_without_a_lock_is_refused_before_any_work(client, shipped, tmp_path):
    variant = shipped.specs["v2.6-cu118"]  # its torch index is not reachable here, so it has no lock
    with pytest.raises(lockfile.LockError, match="requirements.lock is missing.*download.pytorch.org"):
        build.build(client, variant, f"{TEST_REPO}-unlocked", network.host_settings(), reports=tmp_path)
