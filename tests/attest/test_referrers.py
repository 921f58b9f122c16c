"""Attestations beside a digest in a real registry (Debian's docker-registry on loopback, htpasswd auth, no engine:
the image is a small manifest pushed here), through torchyard's own registry client: attach, list, verify, and each
way verification fails that the docker test (tests/docker/test_attest.py) does not reach."""

import hashlib
import json
import os
import zlib

import pytest

from builder.attest import PROVENANCE, SBOM, SMOKE, AttestError, dsse, intoto, referrers, sbom, verify
from builder.attest.oci import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Descriptor, Index, Manifest, Registry, encode
from builder.records import runs
from tests import loopback
from tests.attest.conftest import make_contents
from tests.conftest import ROOT
from tests.docker.conftest import PASSWORD, USER

SMOKE_REPORT = ROOT / "tests" / "data" / "report" / "reports" / "v2.6-cu124" / runs.SMOKE


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if loopback.registry_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("needs Debian's docker-registry (.ci/run installs it)")
        pytest.skip("no docker-registry here (apt-get install docker-registry)")
    with loopback.registry(tmp_path_factory.mktemp("registry"), login=(USER, PASSWORD)) as served:
        yield served.address


@pytest.fixture
def logged_in(server, tmp_path, monkeypatch):
    """A Docker config that holds the registry's login, as `docker login` writes it."""
    import base64
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {server: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))


def push_image(client: Registry, label: str) -> str:
    """A small image manifest (a config blob, no layer); its digest."""
    config = client.put_blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"l": label}},
                                         "rootfs": {"type": "layers", "diff_ids": []}}).encode(),
                             "application/vnd.docker.container.image.v1+json")
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": [],
                       "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size}}).encode()
    return client.put_manifest(label, body, DOCKER_MANIFEST)


@pytest.fixture
def image(server, logged_in, request):
    client = Registry(f"{server}/t{zlib.crc32(request.node.name.encode())}", "torchyard")  # a repository per test
    return client, push_image(client, "v1")


def statements(client: Registry, digest: str) -> dict[str, intoto.Statement]:
    about = intoto.subject(client.name, digest)
    contents = make_contents()
    return {PROVENANCE: intoto.provenance(contents, about, None), SBOM: intoto.sbom(sbom.make(contents), about),
            SMOKE: intoto.smoke(runs.read_smoke(SMOKE_REPORT), about)}


@pytest.fixture
def signer(keys):
    return dsse.signer(str(keys["ed25519"]))


@pytest.fixture
def public(keys):
    return dsse.public_key(str(keys["ed25519"].with_suffix(".pub")))


def attach_all(client, digest, signer, only=(PROVENANCE, SBOM, SMOKE)) -> dict[str, str]:
    return {kind: referrers.attach(client, digest, dsse.sign(statement, signer), kind, "2026-12-01T00:00:00+00:00")
            for kind, statement in statements(client, digest).items() if kind in only}


def problems(client, digest, key) -> list[str]:
    with pytest.raises(AttestError) as failed:
        verify.verify(client, f"{client.name}:v1", digest, key)
    return str(failed.value).splitlines()[1:]


def test_attached_statements_verify_and_say_what_they_say(image, signer, public):
    client, digest = image
    attach_all(client, digest, signer)
    checked = verify.verify(client, f"{client.name}:v1", digest, public)
    assert sorted(c.predicate_type for c in checked) == sorted((PROVENANCE, SBOM, SMOKE))
    lines = verify.summary(checked)
    assert lines[0].startswith("provenance: commit ") and "build times not recorded" in lines[0]
    assert "inside the nvidia wheels: CUDA runtime 12.4.127, cuDNN 9.1.0.70, NCCL 2.21.5" in lines[2]
    assert lines[3].startswith("smoke: PASS on CPU, 2 cores (SKIPPED: cuda, cudnn conv, nccl all-reduce)")


def test_attaching_a_kind_again_replaces_its_entry_in_the_fallback_index(image, signer, public):
    client, digest = image
    first = attach_all(client, digest, signer)
    again = attach_all(client, digest, signer, only=(SMOKE,))
    listed, others = referrers.listed(client, digest)
    assert others == 0
    assert sorted(d.digest for d in listed) == sorted([first[PROVENANCE], first[SBOM], again[SMOKE]])
    assert len(verify.verify(client, f"{client.name}:v1", digest, public)) == 3


def test_a_missing_kind_is_named(image, signer, public):
    client, digest = image
    attach_all(client, digest, signer, only=(PROVENANCE, SBOM))
    assert problems(client, digest, public) == ["  no smoke attestation"]


def test_an_attestation_without_an_envelope_is_unsigned(image, signer, public):
    """A referrer that carries the bare statement, no DSSE envelope: nothing says who made it."""
    client, digest = image
    attach_all(client, digest, signer, only=(PROVENANCE, SBOM))
    bare = client.put_blob(encode(statements(client, digest)[SMOKE]), "application/vnd.in-toto+json")
    manifest = encode(Manifest(schema_version=2, media_type=OCI_MANIFEST, artifact_type=referrers.ENVELOPE,
                               config=referrers.EMPTY_CONFIG, layers=(bare,), subject=client.descriptor(digest),
                               annotations={referrers.PREDICATE: SMOKE}))
    client.put_blob(referrers.EMPTY, referrers.EMPTY_CONFIG.media_type)
    stored = client.put_manifest(f"sha256:{hashlib.sha256(manifest).hexdigest()}", manifest, OCI_MANIFEST)
    index = referrers._fallback(client, digest)
    entry = Descriptor(media_type=OCI_MANIFEST, digest=stored, size=len(manifest), artifact_type=referrers.ENVELOPE,
                       annotations={referrers.PREDICATE: SMOKE})
    client.put_manifest(referrers.fallback_tag(digest), encode(Index(schema_version=2, media_type=OCI_INDEX,
                                                                     manifests=(*index.manifests, entry))), OCI_INDEX)
    assert problems(client, digest, public) == [
        f"  smoke attestation {stored[:19]}… is unsigned: its manifest holds no DSSE envelope "
        "(application/vnd.dsse.envelope.v1+json)"]


def test_an_attestation_attached_to_another_image_but_listed_here_is_named(image, signer, public):
    client, digest = image
    other = push_image(client, "v2")
    attach_all(client, digest, signer, only=(PROVENANCE, SBOM))
    elsewhere = attach_all(client, other, signer, only=(SMOKE,))[SMOKE]
    [moved] = [d for d in referrers._fallback(client, other).manifests]
    index = referrers._fallback(client, digest)
    client.put_manifest(referrers.fallback_tag(digest), encode(Index(schema_version=2, media_type=OCI_INDEX,
                                                                     manifests=(*index.manifests, moved))), OCI_INDEX)
    assert problems(client, digest, public) == [
        f"  smoke attestation {elsewhere[:19]}… is attached to another digest (its OCI subject is {other}, not {digest})"]


def test_no_attestations_and_no_image_are_named(image, public):
    client, digest = image
    with pytest.raises(AttestError, match=f"has no attestations in the registry: neither its referrers API nor the tag "
                                          f"{referrers.fallback_tag(digest)} lists any"):
        verify.verify(client, f"{client.name}:v1", digest, public)
    with pytest.raises(AttestError, match="has no manifest sha256:0+ to attach to: push the image first"):
        referrers.attach(client, "sha256:" + "0" * 64, b"{}", SMOKE, "now")


def test_the_registry_refuses_without_the_login_and_says_docker_login(server, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with pytest.raises(AttestError, match=f"refused access to torchyard \\(no credentials in the Docker config\\); "
                                          f"log in with `docker login {server}`"):
        Registry(server, "torchyard").manifest("v1")


def test_an_unreachable_registry_is_named(logged_in):
    nowhere = f"127.0.0.1:{loopback.free_port()}"
    with pytest.raises(AttestError, match=f"the registry {nowhere} cannot be reached"):
        Registry(nowhere, "torchyard").manifest("v1")


@pytest.mark.parametrize("command", ["k8s", "slurm"])
def test_a_cluster_job_with_key_is_printed_only_for_a_digest_that_verifies(image, signer, keys, tmp_path, capsys,
                                                                          command):
    from builder import cli
    from builder.image import registry as pushing
    client, digest = image
    reference = f"{client.name}:v2.6-cu124"
    pushing.record("v2.6-cu124", pushing.Shipped(reference, digest, "sha256:" + "1" * 64, 0, 0), tmp_path)
    args = [command, "--tag", "v2.6-cu124", "--registry", client.name.rsplit("/", 1)[0], "--digests", str(tmp_path),
            "--key", str(keys["ed25519"].with_suffix(".pub"))]
    assert cli.main(args) == 1  # nothing attached yet
    out, err = capsys.readouterr()
    assert out == "" and "has no attestations in the registry" in err
    attach_all(client, digest, signer)
    assert cli.main(args) == 0
    out, err = capsys.readouterr()
    assert f"{reference}@{digest}" in out or digest.removeprefix("sha256:") in out
    assert f"verified {reference}@{digest} with ed25519 key" in err
