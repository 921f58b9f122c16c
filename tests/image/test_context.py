"""The build context: images/<tag>/ plus the one list of carried files, the same bytes for the same sources; its
hash leaves the host's build inputs out; the revision label says -dirty when any of its sources has uncommitted
changes (in a real temporary git repository)."""

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile

import pytest

from builder import layout
from builder.inputs import InputError
from builder.image import base, build, context, render, steps


@pytest.fixture
def spec(shipped):
    return shipped.specs["v2.6-cu124"]


def members(tar: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as opened:
        return {m.name: m for m in opened.getmembers()}


def read(tar: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tar)) as opened:
        return opened.extractfile(name).read()


def copy_sources(spec, root):
    """A repository holding exactly what the context is made of."""
    for item in layout.carried(spec.python):
        if item.generated:
            continue
        source, target = layout.ROOT / item.source, root / item.source
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    shutil.copy(layout.MATRIX, root / layout.MATRIX.name)
    (root / "images" / spec.tag).mkdir(parents=True)
    for name in layout.LOCKS:  # first: the Dockerfile's layers follow torch's lock
        shutil.copy(layout.IMAGES / spec.tag / name, root / "images" / spec.tag / name)
    render.write(spec, root / "images")


def test_the_context_is_the_tags_folder_and_every_carried_file(spec):
    made = context.assemble(spec)
    names = set(made.files)
    assert {"Dockerfile", "spec.json", "requirements.txt", *layout.LOCKS} <= names
    image = f"{steps.ROOTFS}/image"  # what every image carries, at its place in the image (steps.trees)
    for item in layout.carried(spec.python):
        assert image + item.target in names or any(n.startswith(image + item.target + "/") for n in names), item
        assert item.generated or not any(n == item.source or n.startswith(item.source + "/") for n in names), item
    assert f"{image}{layout.site_packages(spec.python)}/smoke_tests/__main__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert read(made.tar, f"{image}{layout.SHARE}/{layout.LOCK_FILE}") == (layout.IMAGES / spec.tag / layout.LOCK_FILE).read_bytes()
    # Every COPY of the Dockerfile names a file or folder the context holds: nothing reaches a build another way.
    sent = set(members(made.tar))
    for line in (layout.IMAGES / spec.tag / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and not line.startswith("COPY --from="):
            for source in line.split()[1:-1]:
                assert source.rstrip("/") in sent, line


def test_the_same_sources_give_the_same_bytes_with_fixed_times_owners_and_modes(spec):
    first, second = context.assemble(spec), context.assemble(spec)
    assert first.tar == second.tar and first.sha256 == second.sha256
    found = members(first.tar)
    image = f"{steps.ROOTFS}/image"
    assert found[image + layout.ENTRYPOINT].mode == 0o755 and found[image + layout.HEALTHCHECK].mode == 0o755
    assert found[f"{image}/etc/ssh/sshd_config.d/torchyard.conf"].mode == 0o644
    # every folder on the way to a file is in the tar, so the COPY gives each the fixed time too
    assert found[f"{image}/usr"].isdir() and found[f"{image}{layout.site_packages(spec.python)}/smoke_tests"].isdir()
    assert {(m.uid, m.gid, m.mtime) for m in found.values()} == {(0, 0, int(base.SOURCE_DATE_EPOCH))}


def test_a_mode_in_the_checkout_changes_nothing(spec, tmp_path):
    """The modes come from the list, not from a checkout's umask or a stray chmod."""
    root = tmp_path / "repo"
    copy_sources(spec, root)
    before = context.assemble(spec, images=root / "images", root=root)
    (root / "images" / spec.tag / "requirements.txt").chmod(0o755)
    (root / "image_files" / "entrypoint.py").chmod(0o600)
    assert context.assemble(spec, images=root / "images", root=root).tar == before.tar


@pytest.mark.parametrize("where", ["images/v2.6-cu124/extra", "smoke_tests/extra.py", "image_files/entrypoint.py"])
def test_a_symlink_among_the_sources_is_refused_by_name_and_its_target_never_read(spec, tmp_path, where):
    """A committed link to a host file (a key, /etc/shadow) must not carry that file into the engine's context."""
    root = tmp_path / "repo"
    copy_sources(spec, root)
    secret = tmp_path / "host-secret"
    secret.write_text("not for the image\n")
    link = root / where
    link.unlink(missing_ok=True)
    link.symlink_to(secret)
    with pytest.raises(InputError, match=f"{re.escape(str(link))} is a symlink") as refused:
        context.assemble(spec, images=root / "images", root=root)
    assert "not for the image" not in str(refused.value)


def test_a_source_past_the_cap_or_not_a_regular_file_is_refused(spec, tmp_path, monkeypatch):
    root = tmp_path / "repo"
    copy_sources(spec, root)
    monkeypatch.setattr(context, "MAX_SOURCE_BYTES", 1000)
    with pytest.raises(InputError, match="larger than 1,000 bytes"):
        context.assemble(spec, images=root / "images", root=root)
    monkeypatch.undo()
    fifo = root / "images" / spec.tag / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="FIFO"):  # opening it must not wait for a writer
        context.assemble(spec, images=root / "images", root=root)


def test_a_one_line_change_to_a_carried_file_changes_the_context(spec, tmp_path):
    root = tmp_path / "repo"
    copy_sources(spec, root)
    before = context.assemble(spec, images=root / "images", root=root)
    assert before.sha256 == context.assemble(spec).sha256  # the copy is what the repository builds
    with (root / "image_files/entrypoint.py").open("a") as f:
        f.write("# one more line\n")
    after = context.assemble(spec, images=root / "images", root=root)
    assert before.sha256 != after.sha256 and before.files == after.files


def test_what_is_sent_is_what_is_hashed_and_nothing_of_the_hosts_settings(spec):
    """No CA bundle, pip setting or credential goes to the engine: the context is the sources, and its hash is the
    hash of exactly the bytes sent."""
    made = context.assemble(spec)
    assert hashlib.sha256(made.tar).hexdigest() == made.sha256
    with tarfile.open(fileobj=io.BytesIO(made.tar)) as tar:
        assert sorted(m.name for m in tar.getmembers() if m.isfile()) == sorted(made.files)


def test_every_context_carries_the_matrix_and_its_hash_follows_it(shipped, spec):
    """matrix.json (the tags a start warning can name) is made for each build, not committed per tag; a new tag in
    the matrix changes every image's context."""
    made = context.assemble(spec)
    tags = [entry["tag"] for entry in json.loads(read(made.tar, f"{steps.ROOTFS}/image{layout.SHARE}/matrix.json"))]
    assert tags == list(shipped.specs)
    fewer = dataclasses.replace(spec, siblings=spec.siblings[:-1])
    assert context.assemble(fewer).sha256 != made.sha256
    assert not any(p.name == "matrix.json" for p in layout.IMAGES.rglob("*"))


def test_the_revision_says_dirty_when_a_source_has_uncommitted_changes(spec, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    copy_sources(spec, repo)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "sources"], check=True)
    monkeypatch.setattr(layout, "ROOT", repo)
    clean = build.provenance_labels(context.assemble(spec, images=repo / "images", root=repo))
    assert not clean["org.opencontainers.image.revision"].endswith("-dirty")
    for changed in (repo / "image_files/entrypoint.py", repo / "smoke_tests/verdicts.py",
                    repo / "images" / spec.tag / "spec.json", repo / "matrix.yaml"):
        original = changed.read_text()
        changed.write_text(original + "\n")
        made = context.assemble(spec, images=repo / "images", root=repo)
        labels = build.provenance_labels(made)
        assert labels["org.opencontainers.image.revision"].endswith("-dirty"), changed
        assert labels[build.CONTEXT_LABEL] == made.sha256
        changed.write_text(original)
    (repo / "README.md").write_text("not a source of any image\n")
    assert not build.provenance_labels(context.assemble(spec, images=repo / "images", root=repo))[
        "org.opencontainers.image.revision"].endswith("-dirty")


def test_the_image_side_reads_the_carried_files_where_the_list_puts_them(spec):
    """smoke_tests/ runs inside the image and does not import builder: its paths must match the list's targets."""
    from smoke_tests import environment, startup

    targets = {item.target for item in layout.carried(spec.python)}
    assert f"{layout.SHARE}/{startup.MATRIX_FILE}" in targets
    assert str(environment.SPEC) == f"{layout.SHARE}/{layout.SPEC}"


def test_a_dockerfile_that_copies_no_tree_gets_only_its_folder(spec, tmp_path):
    """A tag folder with a hand-written Dockerfile (the docker tests' small builds) needs no lock: the context holds the
    trees its Dockerfile copies, and no other."""
    (tmp_path / spec.tag).mkdir()
    (tmp_path / spec.tag / "Dockerfile").write_text("FROM scratch\n")
    assert context.assemble(spec, images=tmp_path).files == ("Dockerfile",)
    (tmp_path / spec.tag / "Dockerfile").write_text(f"FROM scratch\nCOPY {steps.ROOTFS}/workspace/ /\n")
    with pytest.raises(FileNotFoundError, match="no requirements-workspace.lock"):
        context.assemble(spec, images=tmp_path)
