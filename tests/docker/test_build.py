"""The real image (v2.6-cu124, torch from PyPI, built once per session by the `built` fixture) and its facts."""

import hashlib
import re
import shutil

import docker.errors
import pytest

from builder import layout
from builder.image import base, build, context, render
from builder.wheels import lock, lockfile, network
from tests.conftest import ROOT
from tests.docker.conftest import TAG, TEST_REPO


def test_the_image_holds_exactly_the_spec(built, run):
    out = run(built.image, "python", "-c",
              "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.version.cuda, "
              "torch.backends.cudnn.version(), torch.cuda.nccl.version())")
    assert out.split(maxsplit=4) == ["2.6.0+cu124", "0.21.0+cu124", "12.4", "90100", "(2, 21, 5)\n"]


def test_the_image_checks_itself_against_its_spec(built, run):
    out = run(built.image, "python", "/usr/share/torchyard/check_image.py", "/usr/share/torchyard/spec.json")
    assert "v2.6-cu124 matches its spec" in out
    assert re.search(r"^ok +torchaudio +2\.6\.0$", out, re.M), out  # imported: its library loads with torch's


def test_labels(client, built, spec):
    labels = client.images.get(built.image).labels
    assert labels["io.torchyard.torch"] == "2.6.0"
    assert labels["io.torchyard.torchvision"] == "0.21.0"
    assert labels["io.torchyard.torchaudio"] == "2.6.0"
    assert labels["io.torchyard.cuda"] == "12.4"
    assert labels["io.torchyard.cudnn"] == "9.1.0.70"
    assert labels["io.torchyard.nccl"] == "2.21.5"
    assert labels["io.torchyard.python"] == "3.11"
    assert labels["io.torchyard.driver.min"] == "525.60.13"
    assert labels["io.torchyard.archs"] == " ".join(spec.archs)
    for key in ("title", "version", "revision", "created", "source"):
        assert labels[f"org.opencontainers.image.{key}"], key
    assert labels["org.opencontainers.image.version"] == TAG


def test_every_carried_file_arrives_once_with_its_mode_and_the_context_hash_is_labelled(client, built, spec, run):
    """Each file of layout.carried() is in the image at its target, root's, with the list's mode and the repository's
    content; the label is the hash of the context a build would assemble now."""
    labels = client.images.get(built.image).labels
    assert labels[build.CONTEXT_LABEL] == context.assemble(spec).sha256
    files = [(item, layout.ROOT / item.source) for item in layout.carried(spec.python)
             if not item.generated and (layout.ROOT / item.source).is_file()]
    script = ("import hashlib, os, sys\nfor path in sys.argv[1:]:\n    s = os.stat(path)\n"
              "    print(path, oct(s.st_mode & 0o7777), s.st_uid, s.st_gid, hashlib.sha256(open(path, 'rb').read()).hexdigest())")
    out = run(built.image, "python", "-c", script, *(item.target for item, _ in files), f"{layout.SHARE}/matrix.json",
              f"{layout.site_packages(spec.python)}/smoke_tests/verdicts.py")
    expected = [f"{item.target} {'0o755' if item.executable else '0o644'} 0 0 {hashlib.sha256(source.read_bytes()).hexdigest()}"
                for item, source in files]
    expected.append(f"{layout.SHARE}/matrix.json 0o644 0 0 {hashlib.sha256(render.siblings(spec).encode()).hexdigest()}")
    verdicts = layout.SMOKE_TESTS / "verdicts.py"
    expected.append(f"{layout.site_packages(spec.python)}/smoke_tests/verdicts.py 0o644 0 0 "
                    f"{hashlib.sha256(verdicts.read_bytes()).hexdigest()}")
    assert out.splitlines() == expected


def test_nothing_of_the_hosts_pip_settings_reaches_the_image(client, built, run):
    out = run(built.image, "sh", "-c", "env | grep '^PIP_'; ls -d /etc/pip.conf /etc/xdg/pip $HOME/.config/pip "
                                       "/etc/torchyard-build 2>&1; grep -c torchyard-wheels /etc/hosts; true")
    # the image's own guard is its only pip setting; no pip configuration file; the wheel server's name was the build's
    assert [line.split("=")[0] for line in out.splitlines() if line.startswith("PIP_")] == ["PIP_CONSTRAINT"]
    assert out.count("No such file or directory") == 4, out
    assert out.splitlines()[-1] == "0", out
    history = " ".join(layer["CreatedBy"] for layer in client.api.history(built.image))
    assert "--index-url" not in history and "cert" not in history.replace("ca-certificates", "")


def test_the_full_log_is_kept(built):
    log = built.log.read_text()
    assert f"Step {built.steps}/{built.steps}" in log
    assert "Successfully installed" in log and "torch-2.6.0" in log  # pip's own output
    assert f"Successfully tagged {built.image}" in log
    assert built.cached == 0


def test_a_rebuild_with_nothing_changed_is_all_cache(client, built, spec, tmp_path):
    again = build.build(client, spec, TEST_REPO, network.host_settings(), reports=tmp_path)
    froms = render.render(spec)["Dockerfile"].count("\nFROM ")
    assert again.image_id == built.image_id
    assert again.cached == again.steps - froms  # every step but the FROM lines said "Using cache"


def test_a_workspace_only_change_shares_every_layer_up_to_torchs(client, built, spec, tmp_path):
    """One more workspace package (locked against the committed torch lock, fetched): the rebuild reuses the cached
    steps, so the image shares every layer (diff_id) up to and including torch's, and only what follows is new."""
    images = tmp_path / "images"
    shutil.copytree(ROOT / "images" / TAG, images / TAG)
    with (images / TAG / layout.WORKSPACE_REQUIREMENTS).open("a") as f:
        f.write("einops==0.8.1\n")
    settings = network.host_settings()
    torch_lock = lockfile.load(images / TAG / layout.LOCK_FILE, TAG)
    lockfile.write(lock.resolve_workspace(spec, torch_lock, settings, images), images)
    changed = build.build(client, spec, f"{TEST_REPO}-workspace", settings, images=images, reports=tmp_path / "reports")
    try:
        dockerfile = (images / TAG / layout.DOCKERFILE).read_text().replace("\\\n", "").splitlines()
        torch_step = max(i for i, line in enumerate(dockerfile) if "-r /dev/stdin" in line)  # torch's lock's last layer
        base_layers = len(client.images.get(spec.base.image).attrs["RootFS"]["Layers"])
        shared = base_layers + sum(line.startswith(("RUN ", "COPY ")) for line in dockerfile[:torch_step + 1])
        before = client.images.get(built.image).attrs["RootFS"]["Layers"]
        after = client.images.get(changed.image).attrs["RootFS"]["Layers"]
        assert after[:shared] == before[:shared]
        assert after[shared] != before[shared]  # the workspace's lock, then its layer and what follows
        assert "einops" in lockfile.packages(images / TAG / layout.WORKSPACE_LOCK_FILE)
    finally:
        build.remove(client, changed)


def test_the_local_base_records_how_it_was_made(client, spec):
    labels = client.images.get(spec.base.image).labels
    assert labels["io.torchyard.base.suite"] == "bookworm"
    assert labels["io.torchyard.base.source_date_epoch"] == base.SOURCE_DATE_EPOCH


def test_a_failed_build_names_the_step_tags_nothing_and_leaves_no_containers(client, spec, tmp_path):
    images = tmp_path / "images"
    (images / TAG).mkdir(parents=True)
    (images / TAG / "Dockerfile").write_text(
        f"FROM {spec.base.image}\nRUN echo preparing\nRUN echo the-failure-text && false\nRUN echo never\n")
    containers_before = {c.id for c in client.containers.list(all=True)}
    images_before = {i.id for i in client.images.list(all=True)}
    repo = f"{TEST_REPO}-broken"
    with pytest.raises(build.BuildFailed) as e:
        build.build(client, spec, repo, network.NetworkSettings(), images=images, reports=tmp_path / "reports")
    message = str(e.value)
    # step 3 of the Dockerfile's 4 plus the provenance labels the build adds
    assert re.search(r"failed at step 3/\d+: RUN echo the-failure-text && false", message)
    assert "the-failure-text" in message and "returned a non-zero code: 1" in message
    assert client.images.list(name=repo) == []
    assert {c.id for c in client.containers.list(all=True)} == containers_before
    assert {i.id for i in client.images.list(all=True)} == images_before  # not even the step it committed before
    assert "the-failure-text" in (tmp_path / "reports" / TAG / "build.log").read_text()


def test_the_build_reaches_the_wheel_server_by_its_name(client, spec, tmp_path):
    """The build runs on the host's network with torchyard-wheels mapped to the loopback server of this build."""
    images = tmp_path / "images"
    (images / TAG).mkdir(parents=True)
    request = 'exec 3<>/dev/tcp/torchyard-wheels/3141; printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3; cat <&3'
    (images / TAG / "Dockerfile").write_text(f"FROM {spec.base.image}\nRUN bash -c '{request}'\n")
    result = build.build(client, spec, f"{TEST_REPO}-wheels", network.NetworkSettings(), images=images,
                         reports=tmp_path / "reports", nocache=True)
    try:
        log = result.log.read_text()
        assert "HTTP/1.0 200 OK" in log and "<!DOCTYPE html>" in log, log[-2000:]
    finally:
        build.remove(client, result)


def test_removing_a_build_leaves_its_base_and_the_bases_tag(client, spec, tmp_path):
    """A base with no other child (as torchyard-base:trixie-non-free after its one -devel image) survives remove()."""
    made = tmp_path / "base"
    made.mkdir()
    (made / "Dockerfile").write_text(f"FROM {spec.base.image}\nLABEL io.torchyard.test=a-lone-base\n")
    lone, _ = client.images.build(path=str(made), tag=f"{TEST_REPO}-lone-base:test", rm=True)
    images = tmp_path / "images"
    (images / TAG).mkdir(parents=True)
    (images / TAG / "Dockerfile").write_text(f"FROM {TEST_REPO}-lone-base:test\nRUN echo a step > /step\n")
    try:
        result = build.build(client, spec, f"{TEST_REPO}-child", network.NetworkSettings(), images=images,
                             reports=tmp_path / "reports")
        build.remove(client, result)
        assert client.images.list(name=f"{TEST_REPO}-child") == []
        assert client.images.get(f"{TEST_REPO}-lone-base:test").id == lone.id
    finally:
        try:
            client.images.remove(lone.id, force=True)
        except docker.errors.ImageNotFound:
            pass  # the failure above: remove() took it
