"""The real image (v2.6-cu124, torch from PyPI, built once per session by the `built` fixture) and its facts."""

import hashlib
import re

import docker.errors
import pytest

from builder import base, build, context, layout, network, render
from tests.docker.conftest import TAG, TEST_REPO


def test_the_image_holds_exactly_the_spec(built, run):
    out = run(built.image, "python", "-c",
              "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.version.cuda, "
              "torch.backends.cudnn.version(), torch.cuda.nccl.version())")
    assert out.split(maxsplit=4) == ["2.6.0+cu124", "0.21.0+cu124", "12.4", "90100", "(2, 21, 5)\n"]


def test_the_image_checks_itself_against_its_spec(built, run):
    out = run(built.image, "python", "/usr/share/torchyard/check_image.py", "/usr/share/torchyard/spec.json")
    assert "v2.6-cu124 matches its spec" in out


def test_labels(client, built, spec):
    labels = client.images.get(built.image).labels
    assert labels["io.torchyard.torch"] == "2.6.0"
    assert labels["io.torchyard.torchvision"] == "0.21.0"
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


def test_build_inputs_do_not_reach_the_image(client, built, run):
    out = run(built.image, "sh", "-c", f"ls {layout.BUILD_INPUTS} 2>&1; env | grep '^PIP_' ; true")
    assert "No such file or directory" in out
    # the build's pip settings (index, CA bundle, config file) stay behind; the image's own guard is all there is
    assert [line.split("=")[0] for line in out.splitlines() if line.startswith("PIP_")] == ["PIP_CONSTRAINT"]
    history = " ".join(layer["CreatedBy"] for layer in client.api.history(built.image))
    assert "build-inputs" not in history


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
    repo = f"{TEST_REPO}-broken"
    with pytest.raises(build.BuildFailed) as e:
        build.build(client, spec, repo, network.NetworkSettings(), images=images, reports=tmp_path / "reports")
    message = str(e.value)
    # step 3 of the Dockerfile's 4 plus the provenance labels the build adds
    assert re.search(r"failed at step 3/\d+: RUN echo the-failure-text && false", message)
    assert "the-failure-text" in message and "returned a non-zero code: 1" in message
    assert client.images.list(name=repo) == []
    assert {c.id for c in client.containers.list(all=True)} == containers_before
    assert "the-failure-text" in (tmp_path / "reports" / TAG / "build.log").read_text()


def test_the_ca_bundle_is_forwarded_to_the_install_stage_only(client, spec, tmp_path):
    """The install stage sees the host's CA bundle and pip settings; the stage after it does not."""
    images = tmp_path / "images"
    (images / TAG).mkdir(parents=True)
    (images / TAG / "Dockerfile").write_text(
        f"FROM {spec.base.image} AS install\nCOPY build-inputs/ {layout.BUILD_INPUTS}/\n"
        f"RUN cat {layout.BUILD_INPUTS}/pip.conf && grep -c 'BEGIN CERTIFICATE' {layout.BUILD_INPUTS}/ca-bundle.crt\n"
        f"FROM {spec.base.image}\nRUN test ! -e {layout.BUILD_INPUTS}\n")
    ca = tmp_path / "corp.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    settings = network.NetworkSettings(pip={"index-url": ["https://mirror.example/simple"]}, ca_files=(ca,))
    result = build.build(client, spec, f"{TEST_REPO}-ca", settings, images=images, reports=tmp_path / "reports")
    try:
        log = result.log.read_text()
        assert f"cert = {layout.BUILD_INPUTS}/ca-bundle.crt" in log
        assert "index-url = https://mirror.example/simple" in log
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
