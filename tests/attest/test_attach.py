"""What `make smoke` and `make push` do about attestations without a signing key (builder/attest/attach.py): the
smoke statement of a pushed image is written, nothing is attached, and each says so. (With a key they attach: the
registry tests, tests/attest/test_referrers.py and tests/docker/test_attest.py.)"""

import json

from builder.attest import SMOKE, attach
from builder.image import registry
from builder.records import published, runs
from tests.conftest import ROOT

RECORDED = ROOT / "tests" / "data" / "report" / "reports" / "v2.6-cu124"
TAG = "v2.6-cu124"


def test_a_smoke_run_of_a_pushed_image_writes_its_statement_for_each_recorded_digest(tmp_path):
    report = runs.read_smoke(RECORDED / runs.SMOKE)
    digest = "sha256:" + "9" * 64
    registry.record(TAG, registry.Shipped(f"127.0.0.1:5000/ml/torchyard:{TAG}", digest, report.image_id, 0, 0), tmp_path)
    registry.record(TAG, registry.Shipped(f"registry.example.com/torchyard:{TAG}", "sha256:" + "8" * 64,
                                          "sha256:" + "0" * 64, 0, 0), tmp_path)  # another image: not this run's
    said = []
    made = attach.after_smoke(TAG, report, tmp_path, None, None, tmp_path / "reports", say=said.append)
    assert made == [f"127.0.0.1:5000/ml/torchyard:{TAG}"]
    statement = json.loads((tmp_path / "reports" / TAG / published.SMOKE_STATEMENT).read_text())
    assert statement["subject"] == [{"name": "127.0.0.1:5000/ml/torchyard", "digest": {"sha256": "9" * 64}}]
    assert statement["predicateType"] == SMOKE and statement["predicate"]["status"] == "PASS"
    assert said == [f"wrote smoke.intoto.json for 127.0.0.1:5000/ml/torchyard:{TAG}@{digest[:19]}…; not attached: "
                    "SIGNING_KEY (TORCHYARD_SIGNING_KEY) is not set"]
    assert not (tmp_path / "reports" / TAG / published.ATTESTED).exists()


def test_registry_limits_the_smoke_statement_to_that_registry_and_an_unpushed_image_gets_none(tmp_path):
    report = runs.read_smoke(RECORDED / runs.SMOKE)
    registry.record(TAG, registry.Shipped(f"127.0.0.1:5000/torchyard:{TAG}", "sha256:" + "9" * 64, report.image_id,
                                          0, 0), tmp_path)
    assert attach.after_smoke(TAG, report, tmp_path, "registry.example.com/ml", None, tmp_path / "r", say=print) == []
    assert attach.after_smoke(TAG, report, tmp_path / "none", None, None, tmp_path / "r", say=print) == []
    assert not (tmp_path / "r").exists()


def test_a_push_without_a_key_attests_nothing_and_says_so(tmp_path):
    said = []
    shipped = registry.Shipped(f"127.0.0.1:5000/torchyard:{TAG}", "sha256:" + "9" * 64, "sha256:" + "1" * 64, 0, 0)
    assert attach.after_push(None, shipped, TAG, None, tmp_path, say=said.append) is None
    assert said[0].startswith("attested nothing: SIGNING_KEY (TORCHYARD_SIGNING_KEY) is not set")
    assert list(tmp_path.iterdir()) == []


def test_registry_of_a_reference():
    assert attach.registry_of("127.0.0.1:5000/ml/torchyard:v2.6-cu124") == ("127.0.0.1:5000/ml", "127.0.0.1:5000/ml/torchyard")
    assert attach.registry_of("registry.example.com/torchyard:v2.6-cu124") == ("registry.example.com",
                                                                             "registry.example.com/torchyard")
