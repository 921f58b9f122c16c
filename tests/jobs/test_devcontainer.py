"""`make devcontainer`: the devcontainer.json it writes (the image by digest when pushed, else the local one; the
workspace as `make run` starts it), where it writes it, and what it refuses to overwrite. The real Dev Containers
CLI opens what it writes in tests/docker/test_devcontainer.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder import layout
from builder.host import gpu, workspace
from builder.inputs import InputError
from builder.jobs import devcontainer
from tests.conftest import ROOT
from tests.jobs.test_cluster import DIGEST, record

TAG = "v2.6-cu124"


def parsed(text: str) -> dict:
    """devcontainer.json is JSON with comments: ours are whole lines at the top."""
    assert text.startswith(devcontainer.MARKER)
    return json.loads("".join(line for line in text.splitlines(keepends=True) if not line.startswith("//")))


def make_devcontainer(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    # DOCKER_HOST points nowhere: writing the file needs no engine
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith("TORCHYARD_")},
                   "DOCKER_HOST": "unix:///nonexistent/docker.sock", **env}
    return subprocess.run([sys.executable, "-m", "builder", "devcontainer", *args], cwd=cwd, capture_output=True,
                          text=True, env=environment, timeout=60)


def test_an_image_never_pushed_is_the_local_one(tmp_path):
    img = devcontainer.image(TAG, "torchyard", None, tmp_path)
    assert (img.reference, img.pinned) == (f"torchyard:{TAG}", False)
    assert "only where that image is built" in img.note


def test_a_pushed_image_is_pulled_by_its_recorded_digest(tmp_path):
    record(tmp_path, TAG, f"registry.example.com:5000/ml/torchyard:{TAG}")
    img = devcontainer.image(TAG, "torchyard", None, tmp_path)
    assert (img.reference, img.pinned) == (f"registry.example.com:5000/ml/torchyard:{TAG}@{DIGEST}", True)
    assert devcontainer.image(TAG, "torchyard", "registry.example.com:5000/ml", tmp_path) == img


def test_a_registry_without_a_recorded_push_is_refused_not_pulled_unpinned(tmp_path):
    with pytest.raises(InputError, match=f"records no push of {TAG} to registry.example.com/torchyard:{TAG}; push it "
                                         "first .* or leave REGISTRY out to use the local image torchyard:"):
        devcontainer.image(TAG, "torchyard", "registry.example.com", tmp_path)
    record(tmp_path, TAG, f"other.example.com/torchyard:{TAG}")
    with pytest.raises(InputError, match=f"the registry it records \\(other.example.com/torchyard:{TAG}\\)"):
        devcontainer.image(TAG, "torchyard", "registry.example.com", tmp_path)
    record(tmp_path, TAG, f"third.example.com/torchyard:{TAG}")
    with pytest.raises(InputError, match="records 2 registries .* choose one with REGISTRY="):
        devcontainer.image(TAG, "torchyard", None, tmp_path)


def test_the_workspace_is_the_one_make_run_starts():
    config = parsed(devcontainer.text(TAG, devcontainer.Image(f"torchyard:{TAG}", False, "the local image")))
    # the user and its uid: the host user's, so files made in the mounted folder are the person's
    assert (config["remoteUser"], config["updateRemoteUserUID"]) == (layout.USER, True)
    assert config["overrideCommand"] is False  # the image's entrypoint starts it: root only until it drops
    assert config["workspaceFolder"] == layout.WORKSPACE
    assert config["workspaceMount"] == "source=${localWorkspaceFolder},target=/workspace,type=bind"
    # /dev/shm as `make run` sizes it: the same flag its pasteable `docker run` line holds
    ws = workspace.plan(f"torchyard:{TAG}", TAG, Path("ws"), "127.0.0.1", 8888, 2222, environ={}, home=Path("/nonexistent"))
    line = workspace.docker_run_line(ws, {"shm_size": gpu.SHM_SIZE})
    [shm] = config["runArgs"]
    assert shm.replace("=", " ") in line and shm == "--shm-size=8g"
    # GPUs when the engine can give them, and a CPU laptop opens it too: no --gpus in runArgs
    assert config["hostRequirements"] == {"gpu": "optional"}
    assert config["forwardPorts"] == [layout.JUPYTER_PORT]
    assert config["portsAttributes"] == {"8888": {"label": "JupyterLab", "onAutoForward": "notify"}}
    vscode = config["customizations"]["vscode"]
    assert vscode["extensions"] == ["ms-python.python", "ms-toolsai.jupyter"]
    assert vscode["settings"] == {"python.defaultInterpreterPath": "/opt/venv/bin/python"}


def test_written_atomically_replacing_only_its_own_file(tmp_path):
    path = tmp_path / "dc" / devcontainer.FILE
    first = devcontainer.text(TAG, devcontainer.image(TAG, "torchyard", None, tmp_path))
    assert devcontainer.write(path, first) is True
    assert path.read_text() == first and oct(path.stat().st_mode & 0o777) == "0o644"
    assert devcontainer.write(path, first) is False
    record(tmp_path, TAG, f"registry.example.com/torchyard:{TAG}")
    pinned = devcontainer.text(TAG, devcontainer.image(TAG, "torchyard", None, tmp_path))
    assert devcontainer.write(path, pinned) is True and parsed(path.read_text())["image"].endswith(DIGEST)
    assert [p.name for p in path.parent.iterdir()] == [devcontainer.FILE]  # no temporary file left


@pytest.mark.parametrize("standing", ["users", "link", "folder", "fifo"])
def test_what_it_did_not_write_is_refused_and_left_alone(tmp_path, standing):
    path = tmp_path / devcontainer.FILE
    theirs = '{"image": "mine"}\n'
    if standing == "users":
        path.write_text(theirs)
    elif standing == "link":
        (tmp_path / "elsewhere.json").write_text(devcontainer.MARKER + "\n{}")
        path.symlink_to(tmp_path / "elsewhere.json")
    elif standing == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    with pytest.raises(InputError, match="DEVCONTAINER_DIR="):
        devcontainer.write(path, devcontainer.text(TAG, devcontainer.Image("torchyard:x", False, "the local image")))
    if standing == "users":
        assert path.read_text() == theirs
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [devcontainer.FILE] + (["elsewhere.json"] if standing == "link" else []))


def test_make_devcontainer_writes_to_dot_devcontainer_tag_by_default(tmp_path):
    done = make_devcontainer(cwd=tmp_path, TORCHYARD_DIGESTS=str(tmp_path / "digests"))
    assert done.returncode == 0, done.stderr
    path = tmp_path / ".devcontainer" / TAG / devcontainer.FILE
    assert parsed(path.read_text())["image"] == f"torchyard:{TAG}"
    assert f"wrote .devcontainer/{TAG}/devcontainer.json: {TAG} from the local image torchyard:{TAG}" in done.stdout
    assert f"devcontainer up --workspace-folder {tmp_path} --config .devcontainer/{TAG}/devcontainer.json" in done.stdout
    again = make_devcontainer(cwd=tmp_path, TORCHYARD_DIGESTS=str(tmp_path / "digests"))
    assert again.returncode == 0 and again.stdout.startswith("unchanged:")


def test_make_devcontainer_takes_a_folder_repo_and_registry(tmp_path):
    (tmp_path / "digests").mkdir()
    record(tmp_path / "digests", TAG, f"127.0.0.1:5000/torchyard:{TAG}")
    done = make_devcontainer(f"--devcontainer-dir={tmp_path / 'out'}", TORCHYARD_DIGESTS=str(tmp_path / "digests"),
                             TORCHYARD_REGISTRY="127.0.0.1:5000", TORCHYARD_REPO="mine")
    assert done.returncode == 0, done.stderr
    assert parsed((tmp_path / "out" / devcontainer.FILE).read_text())["image"] == f"127.0.0.1:5000/torchyard:{TAG}@{DIGEST}"
    assert "pinned by the digest" in done.stdout


@pytest.mark.parametrize("args, env, says", [
    ((), {"TORCHYARD_TAG": "all"}, "writes one devcontainer.json: give one TAG, not 'all'"),
    ((), {"TORCHYARD_TAG": "v9.9-cu999"}, "v9.9-cu999"),
    ((), {"TORCHYARD_REGISTRY": "https://user:pw@example.com"}, "REGISTRY="),
    ((), {"TORCHYARD_REPO": "Bad Repo"}, "REPO="),
    (("--devcontainer-dir=blocked/sub",), {}, "exists and is not a folder"),
    ((), {"TORCHYARD_DIGESTS": "bad-digests"}, "v2.6-cu124.json"),
])
def test_bad_requests_are_refused_with_exit_2_and_nothing_written(tmp_path, args, env, says):
    (tmp_path / "blocked").write_text("a file, not a folder")
    (tmp_path / "bad-digests").mkdir()
    (tmp_path / "bad-digests" / f"{TAG}.json").write_text('{"not a reference": {}}')
    before = sorted(tmp_path.rglob("*"))
    done = make_devcontainer(*args, cwd=tmp_path, **{"TORCHYARD_DIGESTS": str(tmp_path / "digests"), **env})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert says in done.stderr and "Traceback" not in done.stderr
    assert sorted(tmp_path.rglob("*")) == before
