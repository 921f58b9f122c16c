"""The matrix report made from RECORDED results (tests/data/report: the JSON a real `make matrix` run of
v2.6-cu124 and v2.15-cu132 wrote on a 2-core CPU machine, package lists trimmed), against the shipped matrix."""

import json
import re
import shutil
from datetime import datetime, timezone

import pytest

import msgspec

from builder import records
from builder.records import published, runs
from builder.report import charts, page
from builder.report import rows as report_rows
from tests.conftest import ROOT

RECORDED = ROOT / "tests" / "data" / "report"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def reports(tmp_path):
    """A copy of the recorded reports/ to change."""
    return shutil.copytree(RECORDED / "reports", tmp_path / "reports")


def collect(shipped, reports, digests=None):
    return report_rows.collect(shipped, reports=reports, digests=digests or reports / "no-digests", now=NOW)


def rows(made) -> dict[str, report_rows.Row]:
    return {r.tag: r for r in made.rows}


def test_one_row_per_tag_in_matrix_order(shipped, reports):
    made = collect(shipped, reports)
    assert [r.tag for r in made.rows] == list(shipped.specs)


def test_the_two_tags_run_here_passed_with_their_figures(shipped, reports):
    by_tag = rows(collect(shipped, reports))
    for tag in ("v2.6-cu124", "v2.15-cu132"):
        row = by_tag[tag]
        assert row.state == report_rows.PASSED, row.note
        assert row.build.status == "built" and row.build.seconds > 0
        assert 5e9 < row.size < 8e9 and 2e9 < row.compressed < row.size
        checks = {c.name: c for c in row.smoke.checks}
        assert checks["cuda"].status == "SKIPPED" and checks["cuda"].headline == "no GPU"
        assert checks["resnet50 amp"].headline.endswith(" images/s") and checks["resnet50 amp"].value > 0
        assert checks["gloo all-reduce"].headline.startswith("busbw ")
        assert row.smoke.device.startswith("CPU, ") and row.smoke.driver is None
        assert row.smoke.of_last_build


def test_every_other_tag_keeps_its_facts_and_says_why_it_was_not_built(shipped, reports):
    by_tag = rows(collect(shipped, reports))
    index_variant = by_tag["v2.6-cu126"]
    assert index_variant.state == report_rows.NOT_HERE
    assert "images/v2.6-cu126/requirements.lock is missing" in index_variant.note
    assert (index_variant.torch, index_variant.cuda, index_variant.cudnn) == ("2.6.0", "12.6", "9.5.1.17")
    pypi_not_run = by_tag["v2.8-cu128"]
    assert pypi_not_run.state == report_rows.NOT_RUN and pypi_not_run.lock_sha256
    assert by_tag["v2.6-cu124"].archs[-1] == "sm_90" and by_tag["v2.7-cu118"].archs[-2:] == ("sm_37", "sm_90")
    assert by_tag["v2.8-cu128"].archs[-1] == "sm_120"  # its build script's list ([bcs])


def test_a_smoke_report_of_an_earlier_image_is_kept_but_not_counted(shipped, reports):
    smoke = reports / "v2.6-cu124" / "smoke.json"
    data = json.loads(smoke.read_text())
    smoke.write_text(json.dumps({**data, "image_id": "sha256:" + "1" * 64}))
    row = rows(collect(shipped, reports))["v2.6-cu124"]
    assert row.state == report_rows.UNTESTED and "earlier image" in row.note
    assert not row.smoke.of_last_build and row.smoke.started == data["started"]  # still shown, with its date


def test_a_failed_smoke_check_fails_the_tag_and_is_named(shipped, reports):
    shutil.copy(RECORDED / "require-gpu" / "smoke.json", reports / "v2.15-cu132" / "smoke.json")
    row = rows(collect(shipped, reports))["v2.15-cu132"]
    assert row.state == report_rows.FAILED
    assert row.note == "smoke: cuda, cudnn conv, nccl all-reduce, resnet50 amp, deit-s amp failed"  # --require-gpu on a CPU
    assert {c.name: c.status for c in row.smoke.checks}["cuda"] == "FAIL"


def test_a_failed_build_fails_the_tag_even_with_older_results(shipped, reports):
    record = reports / "v2.6-cu124" / "build.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "status": "failed", "image_id": None, "failed_step": "7/21",
                                  "error": "The command '/bin/sh -c …' returned a non-zero code: 1"}))
    row = rows(collect(shipped, reports))["v2.6-cu124"]
    assert row.state == report_rows.FAILED and "returned a non-zero code" in row.note


def test_over_its_size_budget_fails_the_tag(shipped, reports, write_matrix):
    from builder.matrix.load import load

    text, changed = re.subn(r"(?m)^(  v2\.6-cu124: \{.*size_budget: )[0-9.]+GB", r"\g<1>4GB", (ROOT / "matrix.yaml").read_text())
    assert changed == 1
    tight = load(write_matrix(text))
    row = rows(collect(tight, reports))["v2.6-cu124"]
    assert row.state == report_rows.FAILED and "over its size budget of 4.00 GB" in row.note


def test_pushed_digests_are_shown_and_an_earlier_images_is_marked(shipped, reports, tmp_path):
    digests = tmp_path / "digests"
    digests.mkdir()
    built = json.loads((reports / "v2.6-cu124" / "build.json").read_text())
    (digests / "v2.6-cu124.json").write_text(json.dumps({
        "127.0.0.1:5000/torchyard:v2.6-cu124": {"digest": "sha256:" + "a" * 64, "image_id": built["image_id"]},
        "registry.example.com/ml/torchyard:v2.6-cu124": {"digest": "sha256:" + "b" * 64, "image_id": "sha256:" + "0" * 64}}))
    row = rows(collect(shipped, reports, digests))["v2.6-cu124"]
    assert [(p["reference"].split("/")[0], p["of_last_build"]) for p in row.pushed] == [
        ("127.0.0.1:5000", True), ("registry.example.com", False)]


def test_the_json_holds_every_row_and_reads_back(shipped, reports):
    made = collect(shipped, reports)
    page.write(made, reports)
    data = json.loads((reports / "matrix.json").read_text())
    assert len(data["rows"]) == len(shipped.specs)
    v26 = next(r for r in data["rows"] if r["tag"] == "v2.6-cu124")
    assert v26["state"] == "passed" and v26["smoke"]["checks"][0]["name"] == "environment"


def test_the_markdown_has_a_line_per_tag(shipped, reports):
    text = page.markdown(collect(shipped, reports))
    body = [line for line in text.splitlines() if line.startswith("| v")]
    assert len(body) == len(shipped.specs)
    line = next(line for line in body if line.startswith("| v2.6-cu124 |"))
    assert "| passed |" in line and "images/s" in line and "CPU, " in line


def test_the_page_fetches_nothing(shipped, reports):
    html = page.html(collect(shipped, reports))
    # No script, style, image, font or frame from anywhere: the only URL is SVG's namespace name.
    assert not re.search(r"""(src|href)\s*=|url\(|@import|<link""", html, re.I)
    assert set(re.findall(r"https?://[^\s\"'<]+", html)) <= {"http://www.w3.org/2000/svg"}


def test_an_empty_reports_folder_still_makes_a_report(shipped, tmp_path):
    made = collect(shipped, tmp_path)
    assert {r.state for r in made.rows} == {report_rows.NOT_HERE, report_rows.NOT_RUN}
    assert "No image measured yet" in page.html(made)


def test_a_broken_record_is_skipped_not_fatal(shipped, reports):
    (reports / "v2.6-cu124" / "smoke.json").write_text("{broken")
    (reports / "v2.15-cu132" / "size.json").write_text("[]")
    by_tag = rows(collect(shipped, reports))
    assert by_tag["v2.6-cu124"].smoke is None and by_tag["v2.6-cu124"].state == report_rows.UNTESTED
    assert by_tag["v2.15-cu132"].size is None


@pytest.mark.parametrize("check, text, value", [
    ({"name": "cudnn conv", "status": "PASS", "figures": {"bfloat16": {"tflops": 405.7}, "ratio_to_matmul": 0.513}},
     "bf16 406 TFLOP/s, 0.51× matmul", 405.7),
    ({"name": "nccl all-reduce", "status": "PASS", "figures": {"world_size": 8, "sizes": [{"busbw_gbs": 361.2}]}},
     "busbw 361.2 GB/s", 361.2),
    ({"name": "nccl all-reduce", "status": "PASS", "figures": {"world_size": 1, "sizes": [{"busbw_gbs": None}]}},
     "1 rank: no traffic", None),
    ({"name": "cuda", "status": "PASS", "figures": {"devices": [{"name": "NVIDIA H200", "capability": "9.0"}]}},
     "1× NVIDIA H200 sm_90", None),
    ({"name": "compile", "status": "FAIL", "reason": "compiled output differs from eager", "figures": {}},
     "compiled output differs from eager", None),
    ({"name": "torchaudio", "status": "PASS", "figures": {"audio": {
        "cpu": {"resample_ms": 12.34, "spectrogram_ms": 3.21, "peak_hz": 1000.0},
        "cuda": {"resample_ms": 0.41, "spectrogram_ms": 0.18, "vs_cpu": {"resample": 1e-7}}}}},
     "cuda: resample 0.4 ms, spectrogram 0.2 ms", 0.41),
    ({"name": "torchaudio", "status": "PASS", "figures": {"audio": {"cpu": {"resample_ms": 12.34, "spectrogram_ms": 3.21}}}},
     "cpu: resample 12.3 ms, spectrogram 3.2 ms", 12.34),
    ({"name": "torchaudio", "status": "SKIPPED", "reason": "this image carries no torchaudio", "figures": {}},
     "skipped", None),
])
def test_each_check_has_its_headline(check, text, value):
    assert report_rows.headline(msgspec.convert(check, runs.Check)) == (text, value)


def test_chart_ticks_are_round_numbers():
    assert [charts.nice_step(t) for t in (6.2, 95, 3600, 0.9)] == [2, 20, 1000, 0.2]


def test_the_attested_smoke_verdict_is_shown_beside_the_local_one_and_the_sbom_is_linked(shipped, reports):
    verdict = "PASS on CPU, 2 cores (SKIPPED: cuda, cudnn conv, nccl all-reduce)"
    records.write_report(reports, "v2.6-cu124", published.ATTESTED, {"127.0.0.1:5000/torchyard:v2.6-cu124": published.Attachment(
        digest="sha256:" + "a" * 64, keyid="k" * 64, date="2026-11-26T10:00:00+00:00",
        artifacts={"urn:torchyard:smoke-report:v1": "sha256:" + "b" * 64}, smoke=verdict)})
    (reports / "v2.6-cu124" / published.SBOM).write_text("{}")
    made = collect(shipped, reports)
    row = rows(made)["v2.6-cu124"]
    assert row.sbom == "v2.6-cu124/sbom.cdx.json" and row.attested[0]["smoke"] == verdict
    assert rows(made)["v2.15-cu132"].sbom is None and rows(made)["v2.15-cu132"].attested == ()
    columns, table = page.table(made)
    keys = [c["key"] for c in columns]
    cells = dict(zip(keys, next(r for r in table if r["tag"] == "v2.6-cu124")["cells"]))
    assert keys.index("attested") == keys.index("measured") + 1  # beside the local verdict
    assert cells["attested"]["text"] == "PASS · signed" and verdict in cells["attested"]["title"]
    assert cells["sbom"]["href"] == "v2.6-cu124/sbom.cdx.json"
    html = page.html(made)
    # a link to the file beside the page, opened only when clicked: nothing is fetched when the page opens
    assert re.findall(r"""href\s*=\s*"([^"]*)\"""", html) == ["v2.6-cu124/sbom.cdx.json"]
    line = next(line for line in page.markdown(made).splitlines() if line.startswith("| v2.6-cu124 |"))
    assert line.endswith(f"| {verdict} | [CycloneDX](v2.6-cu124/sbom.cdx.json) |")


def test_a_broken_attested_record_is_named_and_the_report_goes_on(shipped, reports):
    (reports / "v2.6-cu124" / published.ATTESTED).write_text('{"r": {"digest": "sha256:1"}}')
    row = rows(collect(shipped, reports))["v2.6-cu124"]
    assert row.attested == () and row.broken[0].startswith("reports/v2.6-cu124/attested.json is broken (")
