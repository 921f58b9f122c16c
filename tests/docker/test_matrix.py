"""`make matrix` against the real engine and the session's image: what is current is not redone, what changed is.

Lean on purpose (CI's budget): no second build, size or smoke run. The records that make steps current are the
files a real run writes, naming the session image's real ID; the image's labels and inputs are real.
"""

import base64
import json
import shutil
import urllib.request

import pytest

from builder import layout
from builder.image import size
from builder.matrix_run import plan
from builder.matrix_run.run import Runner
from builder.records import builds, runs
from builder.report import rows as report_rows
from builder.wheels import network
from tests.conftest import ROOT
# The session's loopback registry (docker-registry with htpasswd) and a logged-in client: the `server` and
# `logged_in` fixtures of tests/docker/conftest.py.
from tests.docker.conftest import PASSWORD, TAG, TEST_REPO, USER

RECORDED = ROOT / "tests" / "data" / "report" / "reports" / TAG


@pytest.fixture
def reports(tmp_path, built):
    """reports/<tag>/ as a finished run leaves it for the session's image: build.json from its real build, and
    size, compressed and smoke records (recorded from a real run of this tag) naming its image ID."""
    folder = tmp_path / TAG
    folder.mkdir()
    shutil.copy(built.log.parent / builds.BUILD, folder / builds.BUILD)
    for name in (builds.SIZE, builds.COMPRESSED, runs.SMOKE):
        data = json.loads((RECORDED / name).read_text())
        data["image_id"] = built.image_id
        (folder / name).write_text(json.dumps(data))
    return tmp_path


@pytest.fixture
def runner(client, shipped, reports, monkeypatch):
    monkeypatch.setenv("TORCHYARD_GPUS", "none")  # as the recorded smoke run: on the CPU
    lines = []
    return Runner(shipped, client, TEST_REPO, reports, network.host_settings(), say=lines.append), lines


def test_a_current_tag_is_not_redone(runner, spec, reports):
    run, lines = runner
    assert run.run([spec]) == 0, "\n".join(lines)
    text = "\n".join(lines)
    assert f"  {TAG}: everything current" in text
    for step in ("build", "size ", "smoke"):
        assert any(f" {step} current" in line for line in lines), (step, text)
    assert "matrix: 1 passed, 0 failed, 0 not buildable here" in text
    assert json.loads((reports / TAG / runs.RUN).read_text())["result"] == report_rows.PASSED
    page = (reports / "index.html").read_text()
    assert f'data-tag="{TAG}"' in page and "row-passed" in page


def test_changed_inputs_make_the_image_not_current(runner, client, spec, tmp_path):
    run, _ = runner
    assert plan.image_current(spec, plan.image_here(client, TEST_REPO, spec, layout.IMAGES))[0]
    images = tmp_path / "images"
    shutil.copytree(layout.IMAGES / TAG, images / TAG)
    run.images = images
    dockerfile = images / TAG / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "# changed\n")
    current, why = plan.image_current(spec, plan.image_here(client, TEST_REPO, spec, images))
    assert not current and why == "its inputs changed since the image was built"
    assert run.plan([spec]).todo[TAG] == ["build", "size", "smoke"]


def test_a_smoke_report_of_another_image_or_run_is_not_current(runner, spec, reports, built):
    run, _ = runner
    path = reports / TAG / "smoke.json"
    data = json.loads(path.read_text())
    assert plan.smoke_current(plan.measured(reports, TAG), built.image_id, run.gpus, run.require_gpu)
    for change in ({"image_id": "sha256:" + "0" * 64}, {"status": "FAIL"}, {"gpus_passed": True}, {"require_gpu": True},
                   {"data": "/data/imagenette"}):
        path.write_text(json.dumps({**data, **change}))
        assert not plan.smoke_current(plan.measured(reports, TAG), built.image_id, run.gpus, run.require_gpu), change
    assert run.plan([spec]).todo[TAG] == ["smoke"]


def test_the_compressed_size_is_what_a_push_sends(client, logged_in, server, spec, tmp_path):
    """The base image (one 127 MB layer, so the test stays cheap) measured here and pushed for real: the
    registry's manifest says how many gzipped bytes arrived. Docker's gzip is Go's, ours zlib's, both level 6."""
    measured = size.compressed(client, spec.base.image, "base", tmp_path, say=lambda _: None)
    reference = f"{server}/torchyard-compressed-test:base"
    client.images.get(spec.base.image).tag(reference)
    logged_in.images.push(reference)
    request = urllib.request.Request(f"http://{server}/v2/torchyard-compressed-test/manifests/base", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json",
        "Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    manifest = json.loads(opener.open(request, timeout=30).read())
    sent = sum(layer["size"] for layer in manifest["layers"])
    assert len(manifest["layers"]) == len(measured.layers) == 1
    assert measured.total == pytest.approx(sent, rel=0.05), (measured.total, sent)
    # Measured once per layer: a second image sharing it costs no second compression.
    again = size.compressed(client, spec.base.image, "base-again", tmp_path, say=pytest.fail)
    assert again.total == measured.total


def test_a_known_layer_is_recognised_not_compressed_again(client, spec, tmp_path, monkeypatch):
    """An image on the base plus one small layer: after the base was measured, only the new layer is compressed."""
    import io

    size.compressed(client, spec.base.image, "base", tmp_path, say=lambda _: None)
    dockerfile = io.BytesIO(f"FROM {spec.base.image}\nRUN echo torchyard > /layer-of-its-own\n".encode())
    image, _ = client.images.build(fileobj=dockerfile, tag=f"{TEST_REPO}-one-more-layer:test", rm=True)
    try:
        deflated = []
        real = size._deflated
        monkeypatch.setattr(size, "_deflated", lambda chunk: deflated.append(len(chunk)) or real(chunk))
        measured = size.compressed(client, image.id, "one-more-layer", tmp_path, say=lambda _: None)
        assert len(measured.layers) == 2 and measured.layers[0] == tuple(json.loads(
            (tmp_path / "base" / builds.COMPRESSED).read_text())["layers"][0])
        assert 0 < sum(deflated) < 100_000  # the small layer only, not the base's 127 MB
    finally:
        client.images.remove(image.id, force=True)
