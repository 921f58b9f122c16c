"""The statements (builder/attest/intoto.py): in-toto Statement v1 about one registry digest, SLSA Provenance v1 of the
image from what it says of itself, and the smoke report as it is, SKIPPED checks included."""

import json

import msgspec
import pytest

from builder import layout, records
from builder.attest import PROVENANCE, SBOM, SMOKE, intoto, sbom
from builder.records import builds, runs
from tests.attest.conftest import BASE_ID, IMAGE_ID, make_contents
from tests.conftest import ROOT

DIGEST = "sha256:" + "1" * 64
ABOUT = intoto.subject("127.0.0.1:5000/ml/torchyard", DIGEST)
RECORDED = ROOT / "tests" / "data" / "report" / "reports" / "v2.6-cu124"


def build_record(image_id: str = IMAGE_ID) -> builds.BuildRecord:
    return builds.BuildRecord(status="built", started="2026-11-25T21:04:05+00:00", seconds=612.5, image_id=image_id)


def as_json(statement: intoto.Statement) -> dict:
    return json.loads(msgspec.json.encode(statement))


def test_a_statement_is_in_toto_v1_about_the_digest(contents):
    data = as_json(intoto.provenance(contents, ABOUT, None))
    assert data["_type"] == "https://in-toto.io/Statement/v1"
    assert data["subject"] == [{"name": "127.0.0.1:5000/ml/torchyard", "digest": {"sha256": "1" * 64}}]
    assert data["predicateType"] == PROVENANCE == "https://slsa.dev/provenance/v1"


def test_the_provenance_names_commit_matrix_entry_context_base_and_every_locked_artifact(contents):
    predicate = as_json(intoto.provenance(contents, ABOUT, build_record()))["predicate"]
    definition = predicate["buildDefinition"]
    assert definition["buildType"] == intoto.BUILD_TYPE
    assert definition["externalParameters"]["tag"] == "v2.6-cu124"
    assert definition["externalParameters"]["matrixEntry"]["cudnn"] == "9.1.0.70"
    revision = contents.labels["org.opencontainers.image.revision"]
    assert definition["externalParameters"]["source"] == {"uri": "https://example.com/torchyard.git", "revision": revision}
    resolved = definition["resolvedDependencies"]
    source = resolved[0]
    assert source["uri"] == "git+https://example.com/torchyard.git" and source["digest"] == {"gitCommit": revision}
    assert source["annotations"] == {"revision": revision, "dirty": False}
    named = {r.get("name"): r["digest"] for r in resolved}
    assert named["build context"] == {"sha256": "d" * 64}
    assert named["base image bookworm"] == {"sha256": BASE_ID.removeprefix("sha256:")}
    for name in layout.LOCKS:
        assert named[name] == {"sha256": contents.manifest.lock.files[name]}
    artifacts = [r for r in resolved if "lock" in r.get("annotations", {})]
    locked = [p for lock in contents.locks.values() for p in lock]
    assert len(artifacts) == len(locked) > 100
    assert {(r["uri"], r["digest"]["sha256"]) for r in artifacts} == {(p.url, p.sha256) for p in locked}
    assert predicate["runDetails"]["builder"]["id"] == intoto.BUILDER_ID
    assert predicate["runDetails"]["byproducts"][0]["digest"] == {"sha256": "c" * 64}


def test_a_dirty_commit_says_so():
    contents = make_contents()
    revision = contents.labels["org.opencontainers.image.revision"]
    dirty = make_contents(labels={**contents.labels, "org.opencontainers.image.revision": revision + "-dirty"})
    [source] = [r for r in as_json(intoto.provenance(dirty, ABOUT, None))["predicate"]["buildDefinition"]
                ["resolvedDependencies"] if "gitCommit" in r["digest"]]
    assert source["digest"] == {"gitCommit": revision} and source["annotations"]["dirty"] is True


@pytest.mark.parametrize("record, times", [
    (build_record(), {"startedOn": "2026-11-25T21:04:05+00:00", "finishedOn": "2026-11-25T21:14:17.500000+00:00"}),
    (build_record("sha256:" + "0" * 64), {}),  # the last build made another image: its times are not this one's
    (None, {}),
], ids=["this image's build", "another image's build", "no build record"])
def test_the_build_times_are_the_build_records_of_this_image_only(contents, record, times):
    predicate = as_json(intoto.provenance(contents, ABOUT, record))["predicate"]
    assert predicate["runDetails"].get("metadata", {}) == times


def test_the_sbom_statement_carries_the_cyclonedx_document(contents):
    text = sbom.make(contents)
    data = as_json(intoto.sbom(text, ABOUT))
    assert data["predicateType"] == SBOM == "https://cyclonedx.org/bom"
    assert data["predicate"] == json.loads(text)


def test_the_smoke_statement_is_the_report_as_it_is_skipped_checks_included():
    report = runs.read_smoke(RECORDED / runs.SMOKE)
    data = as_json(intoto.smoke(report, ABOUT))
    assert data["predicateType"] == SMOKE
    assert data["predicate"] == json.loads(records.encode(report))
    statuses = {c["name"]: c["status"] for c in data["predicate"]["checks"]}
    assert statuses["cuda"] == statuses["cudnn conv"] == statuses["nccl all-reduce"] == "SKIPPED"
    assert intoto.verdict(report) == "PASS on CPU, 2 cores (SKIPPED: cuda, cudnn conv, nccl all-reduce)"


def test_a_gpu_verdict_names_the_devices_and_driver_and_a_required_gpu_missing_fails():
    gpus = {"devices": [{"index": i, "name": "NVIDIA H100 80GB HBM3", "capability": "9.0"} for i in range(8)],
            "driver": "550.54.15"}
    report = runs.SmokeReport(status="PASS", checks=(runs.Check(name="cuda", status="PASS", figures=gpus),))
    assert intoto.verdict(report) == "PASS on 8× NVIDIA H100 80GB HBM3, driver 550.54.15"
    required = runs.read_smoke(ROOT / "tests" / "data" / "report" / "require-gpu" / runs.SMOKE)
    assert intoto.verdict(required) == "FAIL on CPU, 2 cores"  # --require-gpu: no GPU is a FAIL, not a SKIPPED
