"""Attestations against the session's loopback registry (Debian's docker-registry 2.8, which has no referrers API:
the tag-schema fallback carries them): the session's `make smoke` attached its smoke result (tests/docker/conftest.py),
`make push` with SIGNING_KEY attaches the provenance and the SBOM, and `make verify-image` with the public key passes
and says what they say. The registry's own API shows the artifacts. A tampered attestation, one signed by another key,
one for another digest and a registry without attestations each fail with their own message; those cases run on
copies of the image in repositories of their own (same digest, blobs mounted, nothing pushed again), so the session's
stays clean.

Cost: one `make push` of layers the registry has (seconds) and a few CLI runs; the push and the smoke run are the
session's.
"""

import base64
import json
import os
import shutil
import subprocess

import pytest
import requests
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from builder import layout, records
from builder.attest import PROVENANCE, SBOM, SMOKE, dsse, intoto, referrers
from builder.attest.oci import ACCEPT, Registry
from builder.image import registry
from builder.records import builds, published
from builder.wheels import lockfile
from tests.docker.conftest import PASSWORD, TAG, TEST_REPO, USER


@pytest.fixture(scope="module")
def env(digests, docker_config, smoke_reports) -> dict:
    return {**os.environ, "TORCHYARD_REPORTS": str(smoke_reports), "TORCHYARD_DIGESTS": str(digests),
            "DOCKER_CONFIG": str(docker_config)}


def make(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", *args, f"TAG={TAG}", f"REPO={TEST_REPO}"], cwd=layout.ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def attested(built, pushed, smoke_run, smoke_reports, env, server, signing_keys):
    """`make push` with SIGNING_KEY after the session's build and smoke run, reports/ shared as a user's is."""
    shutil.copy(built.log.parent / builds.BUILD, smoke_reports / TAG / builds.BUILD)
    done = make(env, "push", f"REGISTRY={server}", f"SIGNING_KEY={signing_keys['signing']}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def verify_image(env: dict, registry_: str, key) -> subprocess.CompletedProcess:
    return make(env, "verify-image", f"REGISTRY={registry_}", f"KEY={key}")


@pytest.fixture(scope="module")
def api(server):
    """The registry's HTTP API, spoken here with requests alone (not torchyard's client)."""
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    session.trust_env = False
    return session, f"http://{server}/v2"


def test_push_attaches_provenance_sbom_and_smoke_and_verify_image_passes(attested, smoke_run, env, server, pushed,
                                                                         signing_keys, client, built):
    for kind in ("provenance", "sbom", "smoke"):
        assert f"attached the {kind} attestation to {server}/torchyard:{TAG}" in attested.stdout
    assert f"attached the smoke attestation to {server}/torchyard:{TAG}" in smoke_run[0].stdout  # make smoke's own
    done = verify_image(env, server, signing_keys["signing.pub"])
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"verified {server}/torchyard:{TAG}@{pushed.digest}: 3 attestations, each signed by ed25519 key" in out
    labels = client.images.get(built.image).labels
    assert f"provenance: commit {labels['org.opencontainers.image.revision']}, tag {TAG}, built " in out
    for name in layout.LOCKS:
        assert f"{name} sha256:{lockfile.sha256_text((layout.IMAGES / TAG / name).read_text())}" in out
    # on this CPU machine the GPU checks were SKIPPED, and the attestation says so
    assert "smoke: PASS on CPU, " in out and "(SKIPPED: cuda, cudnn conv, nccl all-reduce" in out
    assert "  cuda: SKIPPED (no GPU: " in out and "  resnet50 amp: PASS" in out
    print(out)


def test_the_registry_api_shows_the_three_attestations_beside_the_digest(attested, api, pushed):
    session, base = api
    assert session.get(f"{base}/torchyard/referrers/{pushed.digest}").status_code == 404  # docker-registry 2.8
    answer = session.get(f"{base}/torchyard/manifests/{referrers.fallback_tag(pushed.digest)}",
                         headers={"Accept": ACCEPT})
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    index = answer.json()
    print(json.dumps(index, indent=1))
    assert {d["annotations"][referrers.PREDICATE] for d in index["manifests"]} == {PROVENANCE, SBOM, SMOKE}
    for descriptor in index["manifests"]:
        assert descriptor["artifactType"] == "application/vnd.dsse.envelope.v1+json"
        manifest = session.get(f"{base}/torchyard/manifests/{descriptor['digest']}", headers={"Accept": ACCEPT}).json()
        assert manifest["subject"]["digest"] == pushed.digest
        assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
        [layer] = manifest["layers"]
        envelope = session.get(f"{base}/torchyard/blobs/{layer['digest']}").json()
        assert envelope["payloadType"] == "application/vnd.in-toto+json" and len(envelope["signatures"]) == 1
        statement = json.loads(base64.b64decode(envelope["payload"]))
        assert statement["subject"] == [{"name": f"{pushed.reference.rsplit(':', 1)[0]}",
                                         "digest": {"sha256": pushed.digest.removeprefix("sha256:")}}]


def test_skopeo_shows_the_same_index(attested, api, pushed, server):
    """What a person checking by hand sees (docs/attestations.md); skopeo is not in CI's packages, so this runs where
    it is installed."""
    if shutil.which("skopeo") is None:
        pytest.skip("no skopeo here (apt-get install skopeo)")
    session, base = api
    tag = referrers.fallback_tag(pushed.digest)
    shown = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
                            f"docker://{server}/torchyard:{tag}"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.encode() == session.get(f"{base}/torchyard/manifests/{tag}", headers={"Accept": ACCEPT}).content
    print(shown.stdout)


def test_the_sbom_validates_and_lists_every_package_of_the_manifest(attested, smoke_reports, built, run, env, tmp_path):
    text = (smoke_reports / TAG / published.SBOM).read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    manifest = json.loads(run(built.image, "cat", f"{layout.SHARE}/manifest.json"))
    bom = json.loads(text)
    purls = [c["purl"] for c in bom["components"] if "purl" in c]
    python = {**manifest["python_packages"], **manifest["venv_bootstrap"]}
    assert sorted(p for p in purls if p.startswith("pkg:pypi/")) == sorted(f"pkg:pypi/{n}@{v}" for n, v in python.items())
    assert sum(p.startswith("pkg:deb/debian/") for p in purls) == len(manifest["debian_packages"]) > 100
    assert "pkg:deb/debian/libc6@" in text and "arch=amd64&distro=bookworm" in text
    by_name = {c["name"]: c for c in bom["components"]}
    torch = by_name["torch"]
    locked = {p.name: p for p in lockfile.read(layout.IMAGES / TAG / layout.LOCK_FILE)}
    assert torch["hashes"] == [{"alg": "SHA-256", "content": locked["torch"].sha256}]
    assert torch["licenses"] and manifest["python_licenses"]["torch"]
    inside = {c["name"]: c["version"] for wheel in bom["components"] for c in wheel.get("components", ())}
    spec = manifest["spec"]
    assert inside == {"CUDA runtime": spec["cuda_runtime"], "cuDNN": spec["cudnn"], "NCCL": spec["nccl"]}
    assert by_name["bookworm"]["version"] == manifest["base"]["image_id"]
    # make sbom of the same image gives the same bytes
    done = make({**env, "TORCHYARD_REPORTS": str(tmp_path)}, "sbom")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / TAG / published.SBOM).read_text() == text


def test_the_provenance_names_the_commit_every_locked_artifact_the_base_and_the_build_times(attested, smoke_reports,
                                                                                           client, built, pushed):
    statement = json.loads((smoke_reports / TAG / published.PROVENANCE_STATEMENT).read_text())
    assert statement["subject"][0]["digest"] == {"sha256": pushed.digest.removeprefix("sha256:")}
    assert statement["predicateType"] == PROVENANCE
    definition = statement["predicate"]["buildDefinition"]
    labels = client.images.get(built.image).labels
    assert definition["externalParameters"]["source"]["revision"] == labels["org.opencontainers.image.revision"]
    assert definition["externalParameters"]["matrixEntry"]["tag"] == TAG
    resolved = {d.get("uri") or d.get("name"): d["digest"] for d in definition["resolvedDependencies"]}
    for name in layout.LOCKS:
        for p in lockfile.read(layout.IMAGES / TAG / name):
            assert resolved[p.url] == {"sha256": p.sha256}
    assert resolved["build context"] == {"sha256": labels["io.torchyard.context.sha256"]}
    assert resolved["base image bookworm"] == {"sha256": labels["io.torchyard.base.id"].removeprefix("sha256:")}
    times = statement["predicate"]["runDetails"]["metadata"]
    assert times["startedOn"] < times["finishedOn"]


# ---------------------------------------------------------------- what fails, each on a copy of its own


def copy_image(api, digest: str, namespace: str, with_attestations: bool) -> None:
    """<namespace>/torchyard:TAG as the same manifest (so the same digest), its blobs mounted from torchyard;
    with_attestations: the referrers and their fallback index too."""
    session, base = api

    def copy(reference: str, tag: str | None = None) -> None:
        answer = session.get(f"{base}/torchyard/manifests/{reference}", headers={"Accept": ACCEPT})
        assert answer.status_code == 200, answer.text
        manifest = answer.json()
        for blob in [manifest.get("config"), *manifest.get("layers", ())]:
            if blob:
                mounted = session.post(f"{base}/{namespace}/torchyard/blobs/uploads/",
                                       params={"mount": blob["digest"], "from": "torchyard"})
                assert mounted.status_code == 201, mounted.text
        for child in manifest.get("manifests", ()):
            copy(child["digest"])
        stored = session.put(f"{base}/{namespace}/torchyard/manifests/{tag or reference}", data=answer.content,
                             headers={"Content-Type": answer.headers["Content-Type"]})
        assert stored.status_code == 201, stored.text

    copy(digest, TAG)
    if with_attestations:
        copy(referrers.fallback_tag(digest))


@pytest.fixture
def copied(api, attested, pushed, server, env, tmp_path, monkeypatch, docker_config):
    """copied(namespace, with_attestations): the image copied there, its digest recorded for it; (the make
    environment that verifies it, the registry client that tampers with it)."""
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))  # the in-process client reads the login too

    def copied(namespace: str, with_attestations: bool = True):
        copy_image(api, pushed.digest, namespace, with_attestations)
        shipped = registry.Shipped(f"{server}/{namespace}/torchyard:{TAG}", pushed.digest, pushed.image_id, 0, 0)
        registry.record(TAG, shipped, tmp_path / namespace)
        return {**env, "TORCHYARD_DIGESTS": str(tmp_path / namespace)}, Registry(f"{server}/{namespace}", "torchyard")

    return copied


def envelope_of(client: Registry, digest: str, predicate_type: str) -> dict:
    [descriptor] = [d for d in referrers.listed(client, digest)[0] if d.annotations[referrers.PREDICATE] == predicate_type]
    return json.loads(referrers.envelope(client, descriptor, digest, 2**24))


def failed(done: subprocess.CompletedProcess) -> bool:
    """verify-image exited 1 (make itself exits 2 whenever a recipe fails; the CLI's status is in its line)."""
    return done.returncode != 0 and "verify-image] Error 1" in done.stderr and "Traceback" not in done.stderr


def failure(done: subprocess.CompletedProcess) -> list[str]:
    """The problems a failed verify-image listed, one a line."""
    assert failed(done), done.stdout + done.stderr
    return [line.strip() for line in done.stderr.splitlines()[1:] if line.startswith("  ")]


def test_a_registry_without_attestations_says_so(copied, server, signing_keys, pushed):
    environment, _ = copied("bare", with_attestations=False)
    done = verify_image(environment, f"{server}/bare", signing_keys["signing.pub"])
    assert failed(done), done.stderr
    assert (f"{server}/bare/torchyard:{TAG}@{pushed.digest} has no attestations in the registry: neither its referrers "
            f"API nor the tag {referrers.fallback_tag(pushed.digest)} lists any") in done.stderr


def test_a_tampered_attestation_fails_and_is_named(copied, server, signing_keys, pushed):
    """The smoke result edited after signing, to claim a GPU check passed: its signature no longer matches."""
    environment, client = copied("tampered")
    envelope = envelope_of(client, pushed.digest, SMOKE)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    cuda = next(c for c in statement["predicate"]["checks"] if c["name"] == "cuda")
    assert cuda["status"] == "SKIPPED"
    cuda["status"] = "PASS"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    manifest = referrers.attach(client, pushed.digest, json.dumps(envelope).encode(), SMOKE, "2030-01-01T00:00:00+00:00")
    [problem] = failure(verify_image(environment, f"{server}/tampered", signing_keys["signing.pub"]))
    assert problem.startswith(f"smoke attestation {manifest[:19]}… does not verify: its signature by ed25519 key ")
    assert problem.endswith("does not match its content (it was changed after signing)")


def test_an_attestation_signed_by_another_key_fails_and_is_named(copied, server, signing_keys, pushed, smoke_reports):
    environment, client = copied("stranger")
    statement = records.read(smoke_reports / TAG / published.PROVENANCE_STATEMENT, intoto.Statement)
    stranger = dsse.signer(str(signing_keys["stranger"]))
    manifest = referrers.attach(client, pushed.digest, dsse.sign(statement, stranger), PROVENANCE, "2030-01-01T00:00:00")
    [problem] = failure(verify_image(environment, f"{server}/stranger", signing_keys["signing.pub"]))
    assert problem == (f"provenance attestation {manifest[:19]}… is signed by another key "
                       f"({stranger.public_key.keyid[:16]}), not by KEY's ed25519 key "
                       f"{dsse.public_key(str(signing_keys['signing.pub'])).keyid[:16]}")


def test_an_attestation_for_another_digest_fails_and_is_named(copied, server, signing_keys, pushed, smoke_reports):
    """Signed with the right key, attached beside this digest, but its statement is about another image."""
    environment, client = copied("elsewhere")
    other = "sha256:" + "5" * 64
    statement = records.read(smoke_reports / TAG / published.SMOKE_STATEMENT, intoto.Statement)
    moved = intoto.Statement(type=intoto.STATEMENT_V1, subject=(intoto.subject(statement.subject[0].name, other),),
                             predicate_type=SMOKE, predicate=statement.predicate)
    envelope = dsse.sign(moved, dsse.signer(str(signing_keys["signing"])))
    manifest = referrers.attach(client, pushed.digest, envelope, SMOKE, "2030-01-01T00:00:00")
    [problem] = failure(verify_image(environment, f"{server}/elsewhere", signing_keys["signing.pub"]))
    assert problem == (f"smoke attestation {manifest[:19]}… is signed, but for another digest: its statement's "
                       f"subject is {other}, not {pushed.digest}")


def test_the_right_attestations_checked_with_another_key_all_fail(attested, env, server, signing_keys):
    problems = failure(verify_image(env, server, signing_keys["stranger.pub"]))
    assert len(problems) == 3 and all("is signed by another key" in p for p in problems)
