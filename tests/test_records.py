"""Every record torchyard reads back is input (builder/records/, builder/files.py): a broken one is named with its
field and what was expected, never a traceback; reads are bounded; writes never follow a symlink.

Each reproduction of issue 20 that needs no engine is here, on real files (FIFOs, symlinks, a sparse 300 MB file).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import msgspec
import pytest

from builder import files, layout, records
from builder.host import doctor
from builder.image import render
from builder.records import builds, published, runs
from builder.report import page, rows
from smoke_tests import nvml
from tests.conftest import ROOT

RECORDED = ROOT / "tests" / "data" / "report"
TAG = "v2.6-cu124"
DEEP = "[" * 100_000 + "]" * 100_000
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def reports(tmp_path):
    """A copy of the recorded reports/ to break."""
    return shutil.copytree(RECORDED / "reports", tmp_path / "reports")


def edit(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def cli(*args, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock", **(env or {})},
                          timeout=120, **kwargs)


# ---------------------------------------------------------------- what the tool wrote reads back


def test_every_recorded_report_still_loads():
    schemas = {builds.BUILD: builds.BuildRecord, builds.SIZE: builds.SizeReport,
               builds.COMPRESSED: builds.Compressed, runs.SMOKE: runs.SmokeReport, runs.RUN: runs.Outcome}
    found = 0
    for path in sorted(RECORDED.rglob("*.json")):
        found += records.read_report(path.parent.parent, path.parent.name, path.name, schemas[path.name]) is not None
    assert found == 11


def test_a_record_round_trips_through_its_one_schema(reports):
    smoke = records.read_report(reports, TAG, runs.SMOKE, runs.SmokeReport)
    records.write_report(reports, "copy", runs.SMOKE, smoke)
    assert records.read_report(reports, "copy", runs.SMOKE, runs.SmokeReport) == smoke
    # every figure is kept, not only the typed ones the report reads
    assert "losses" in json.loads((reports / "copy" / runs.SMOKE).read_text())["checks"][5]["figures"]


# ---------------------------------------------------------------- make report goes on, naming the broken record

BROKEN = [
    (runs.SMOKE, lambda d: d.update(checks="all fine"), "Expected `array`, got `str` - at `$.checks`"),
    (runs.SMOKE, lambda d: d["checks"][5]["figures"].update(images_per_s="fast"),
     "Expected `float | null`, got `str` - at `$.checks[5].figures.images_per_s`"),
    (builds.BUILD, lambda d: d.update(seconds="9"), "Expected `float`, got `str` - at `$.seconds`"),
    (builds.SIZE, lambda d: d.update(total="x"), "Expected `int`, got `str` - at `$.total`"),
    (runs.RUN, lambda d: d.update(steps={}), "Expected `array`, got `object` - at `$.steps`"),
]


@pytest.mark.parametrize("name, change, says", BROKEN, ids=[f"{n}-{s.split('`')[-2]}" for n, _, s in BROKEN])
def test_a_broken_record_is_named_in_its_row_and_the_report_goes_on(shipped, reports, name, change, says):
    edit(reports / TAG / name, change)
    made = rows.collect(shipped, reports=reports, digests=reports / "none", now=NOW)
    row = next(r for r in made.rows if r.tag == TAG)
    assert row.broken == (f"reports/{TAG}/{name} is broken ({says})",)
    assert row.note.startswith(f"reports/{TAG}/{name} is broken") and str(reports) not in row.note
    written = page.write(made, reports)
    assert [p.name for p in written] == ["matrix.json", "matrix.md", "index.html"]
    line = next(line for line in (reports / "matrix.md").read_text().splitlines() if line.startswith(f"| {TAG} |"))
    assert f"reports/{TAG}/{name} is broken" in line
    other = next(r for r in made.rows if r.tag == "v2.15-cu132")
    assert other.state == rows.PASSED and not other.broken


@pytest.mark.parametrize("name", [runs.SMOKE, builds.BUILD, builds.SIZE, builds.COMPRESSED, runs.RUN])
def test_a_record_nested_100000_deep_is_broken_not_a_recursion_error(shipped, reports, name):
    (reports / TAG / name).write_text(DEEP)
    row = next(r for r in rows.collect(shipped, reports=reports, digests=reports / "none", now=NOW).rows if r.tag == TAG)
    assert row.broken == (f"reports/{TAG}/{name} is broken (nested more than {records.MAX_DEPTH} levels deep "
                          f"(a record is at most {records.MAX_DEPTH}))",)


def test_a_broken_digest_record_is_named_in_the_report(shipped, reports, tmp_path):
    (tmp_path / "digests").mkdir()
    (tmp_path / "digests" / f"{TAG}.json").write_text(DEEP)
    row = next(r for r in rows.collect(shipped, reports=reports, digests=tmp_path / "digests", now=NOW).rows
               if r.tag == TAG)
    assert row.pushed == () and row.broken[0].startswith(f"digests/{TAG}.json is broken (nested more than")


def test_make_report_on_broken_records_exits_0_and_says_so(reports):
    edit(reports / TAG / runs.SMOKE, lambda d: d.update(checks="all fine"))
    (reports / "v2.15-cu132" / builds.SIZE).write_text(DEEP)
    done = cli("report", env={"TORCHYARD_REPORTS": str(reports)})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    markdown = (reports / "matrix.md").read_text()
    assert f"reports/{TAG}/smoke.json is broken" in markdown and "reports/v2.15-cu132/size.json is broken" in markdown


# ---------------------------------------------------------------- make doctor


def test_doctor_leaves_a_broken_size_record_out_and_says_so(reports):
    edit(reports / TAG / builds.SIZE, lambda d: d.update(total="x"))
    total, tag, broken = builds.largest_image(reports)
    assert tag == "v2.15-cu132" and total > 5e9
    assert broken == (f"reports/{TAG}/size.json is broken (Expected `int`, got `str` - at `$.total`)",)
    disk = doctor.disk_facts(doctor.Engine("no engine"), reports)
    lines = doctor.host_lines(nvml.Nvml(None, None, (), "no driver"), doctor.Engine("no engine"), 8 * 2**30, disk)
    assert any(line.strip().startswith(broken[0]) for line in lines)


def test_doctor_shows_a_device_names_escape_sequences_escaped(shipped, tmp_path, capsys):
    recording = tmp_path / "nvml.json"
    name = "NVIDIA H100\x1b]0;owned\x07\x1b[2J\r\nGPU 1 fake"
    recording.write_text(json.dumps({"driver": "580.65.06\x1b[31m", "cuda": "13.0", "problem": None,
                                     "gpus": [{"index": 0, "name": name, "capability": [9, 0], "memory_bytes": 1}]}))
    done = cli("doctor", env={nvml.RECORD_VARIABLE: str(recording), "TORCHYARD_REPORTS": str(tmp_path / "reports")})
    assert done.returncode == 0, done.stderr
    assert not any(c in done.stdout.replace("\n", "") for c in "\x1b\x07\r"), done.stdout
    assert r"NVIDIA H100\x1b]0;owned\x07\x1b[2J\r\nGPU 1 fake" in done.stdout


@pytest.mark.parametrize("content, says", [
    (None, "cannot be read (No such file or directory)"),
    ("{half", "not JSON in UTF-8"),
    (DEEP, "not JSON in UTF-8 (RecursionError)"),
    ('{"gpus": "all"}', "$.gpus is not a list of GPUs"),
    ('{"gpus": [{"index": 0, "name": "x", "capability": [9, "0"], "memory_bytes": 1}]}',
     "$.gpus[0].capability is not [major, minor], two whole numbers"),
    ('{"gpus": [{"index": true, "name": "x", "capability": [9, 0], "memory_bytes": 1}]}', "$.gpus[0].index is not a whole"),
    ('{"driver": 580}', "$.driver is not a string or null"),
])
@pytest.mark.parametrize("command", ["doctor", "smoke"])
def test_a_missing_or_malformed_nvml_recording_is_refused_with_exit_2(tmp_path, content, says, command):
    recording = tmp_path / "nvml.json"
    if content is not None:
        recording.write_text(content)
    done = cli(command, env={nvml.RECORD_VARIABLE: str(recording), "TORCHYARD_REPORTS": str(tmp_path / "reports")})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"{nvml.RECORD_VARIABLE}={recording}: {says}" in done.stderr
    assert not (tmp_path / "reports").exists()


def test_an_nvml_recording_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "nvml.json")
    with pytest.raises(nvml.RecordingError, match="not a regular file"):
        nvml.replay(tmp_path / "nvml.json")


# ---------------------------------------------------------------- push, pull, k8s, slurm: exit 2


def test_a_300_mb_digest_record_is_refused_by_the_cap_not_loaded(tmp_path):
    (tmp_path / "digests").mkdir()
    with open(tmp_path / "digests" / f"{TAG}.json", "wb") as f:
        f.truncate(300 * 2**20)  # sparse: 300 MB to read, none on disk
    with pytest.raises(records.BrokenRecord, match=f"is larger than {published.DIGESTS_MAX_BYTES:,} bytes"):
        published.read_digests(TAG, tmp_path / "digests")
    done = cli("pull", "--registry", "127.0.0.1:5000", "--digests", str(tmp_path / "digests"))
    assert done.returncode == 2 and "is larger than" in done.stderr and "Traceback" not in done.stderr


def test_a_digest_record_that_is_a_symlink_or_a_fifo_is_refused(tmp_path):
    (tmp_path / "digests").mkdir()
    os.symlink("/etc/passwd", tmp_path / "digests" / f"{TAG}.json")
    with pytest.raises(records.BrokenRecord, match="is a symlink"):
        published.read_digests(TAG, tmp_path / "digests")
    os.unlink(tmp_path / "digests" / f"{TAG}.json")
    os.mkfifo(tmp_path / "digests" / f"{TAG}.json")
    with pytest.raises(records.BrokenRecord, match=r"is a FIFO \(named pipe\), not a regular file"):
        published.read_digests(TAG, tmp_path / "digests")


# ---------------------------------------------------------------- --matrix: a device, a pipe


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_a_matrix_that_is_a_device_or_a_pipe_is_refused(tmp_path, kind):
    path = kind
    if kind == "fifo":
        path = str(tmp_path / "matrix.yaml")
        os.mkfifo(path)
        writer = subprocess.Popen(["sh", "-c", f"yes 'a: b' > {path}"])  # a pipe that never ends
    try:
        done = cli("--matrix", path, "validate")
    finally:
        if kind == "fifo":
            writer.kill()
            writer.wait()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"{path}: is a {'character device' if kind == '/dev/zero' else 'FIFO (named pipe)'}, not a regular file" \
        in done.stderr


def test_read_bounded_enforces_its_cap_while_reading(tmp_path):
    path = tmp_path / "grows"
    path.write_bytes(b"x" * 1001)
    assert files.read_bounded(path, 1001) == b"x" * 1001
    with pytest.raises(files.TooLarge):
        files.read_bounded(path, 1000)


def test_json_depth_counts_brackets_outside_strings_only():
    assert files.json_depth(b'{"a": ["[[[[", {"b": "\\"{{{"}]}', 3) == 3
    with pytest.raises(files.Refused, match="nested more than 3"):
        files.json_depth(b"[[[[]]]]", 3)


# ---------------------------------------------------------------- writes never follow a symlink


def test_make_report_does_not_write_through_a_symlink_at_its_temporary_or_final_name(shipped, reports, tmp_path):
    victim, other = tmp_path / "victim.txt", tmp_path / "other.txt"
    victim.write_text("keep me\n")
    other.write_text("keep me too\n")
    os.symlink(victim, reports / "matrix.md.partial")
    os.symlink(other, reports / "matrix.md")
    page.write(rows.collect(shipped, reports=reports, digests=reports / "none", now=NOW), reports)
    assert victim.read_text() == "keep me\n" and other.read_text() == "keep me too\n"
    assert not (reports / "matrix.md").is_symlink() and (reports / "matrix.md").read_text().startswith("# torchyard")
    assert (reports / "matrix.md.partial").is_symlink()  # not the tool's: left alone, never written
    assert not list(reports.glob(".*partial"))


def test_render_does_not_write_through_a_committed_symlink(shipped, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(layout.IMAGES / TAG, images / TAG)
    victim = tmp_path / "victim.json"
    victim.write_text("keep me\n")
    (images / TAG / layout.SPEC).unlink()
    os.symlink(victim, images / TAG / layout.SPEC)
    assert render.diff(shipped.specs[TAG], images) == [f"{TAG}/{layout.SPEC}"]
    assert render.write(shipped.specs[TAG], images)
    assert victim.read_text() == "keep me\n"
    assert not (images / TAG / layout.SPEC).is_symlink() and render.diff(shipped.specs[TAG], images) == []


def test_render_refuses_a_tag_folder_that_is_a_symlink(shipped, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(layout.IMAGES / TAG, elsewhere)
    (elsewhere / layout.DOCKERFILE).write_text("FROM scratch\n")
    (tmp_path / "images").mkdir()
    os.symlink(elsewhere, tmp_path / "images" / TAG)
    with pytest.raises(records.InputError, match="is a symlink; render writes images/<tag>/ as a folder of its own"):
        render.write(shipped.specs[TAG], tmp_path / "images")
    assert (elsewhere / layout.DOCKERFILE).read_text() == "FROM scratch\n"


def test_a_log_opens_fresh_and_never_through_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    os.symlink(victim, tmp_path / "build.log")
    with files.open_fresh(tmp_path / "build.log") as log:
        log.write("the build\n")
    assert victim.read_text() == "keep me\n" and (tmp_path / "build.log").read_text() == "the build\n"
    assert not (tmp_path / "build.log").is_symlink()


def test_write_atomic_leaves_no_temporary_file_on_an_error_or_sigterm(tmp_path):
    with pytest.raises(TypeError):
        files.write_atomic(tmp_path / "x.json", 42)
    assert list(tmp_path.iterdir()) == []
    # SIGTERM while the temporary file is written: the CLI's handler makes it an exception, and the file goes
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from pathlib import Path
        from builder import files
        files.exit_on_sigterm()
        real = os.replace
        def slow(*args):
            print("writing", flush=True)
            time.sleep(120)
            real(*args)
        os.replace = slow
        files.write_atomic(Path({str(tmp_path / 'x.json')!r}), "{{}}")
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline() == "writing\n"
    assert len(list(tmp_path.iterdir())) == 1  # the temporary file, about to be renamed
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- what the report shows of recorded text


def test_a_build_errors_raw_text_is_escaped_in_the_markdown_table(shipped, reports):
    error = "<script>alert(1)</script> | injected | cell\n| v9 | passed |\x1b[31m [link](http://x) `code` *em*"
    edit(reports / TAG / builds.BUILD, lambda d: d.update(status="failed", error=error))
    text = page.markdown(rows.collect(shipped, reports=reports, digests=reports / "none", now=NOW))
    line = next(line for line in text.splitlines() if line.startswith(f"| {TAG} |"))
    header = next(line for line in text.splitlines() if line.startswith("| tag |"))
    unescaped_pipes = lambda s: len(s.replace("\\|", "")) - len(s.replace("\\|", "").replace("|", ""))  # noqa: E731
    assert unescaped_pipes(line) == unescaped_pipes(header)
    assert "<script>" not in text and "\\<script\\>" in line and "\x1b" not in text and "\\x1b" in line
    assert "\\[link\\](http://x) \\`code\\` \\*em\\*" in line
    assert not any(line.startswith("| v9 |") for line in text.splitlines())


def test_a_smoke_report_in_memory_is_checked_as_on_disk():
    check = runs.Check(name="resnet50 amp", status="PASS", figures={"images_per_s": "fast"})
    with pytest.raises(msgspec.ValidationError, match=r"images_per_s"):
        runs.figures(check)


# ---------------------------------------------------------------- what the image and the registry give back


def manifest_json(**change) -> bytes:
    manifest = {"tag": TAG, "spec": {"tag": TAG, "cudnn": "9.1.0.70"},
                "lock": {"sha256": "a" * 64, "packages": 1, "files": {"requirements.lock": "b" * 64}},
                "python_packages": {"torch": "2.6.0"}, "python_licenses": {"torch": "BSD-3-Clause"},
                "venv_bootstrap": {"pip": "23.0.1"}, "debian_packages": {"libc6": "2.36-9"},
                "base": {"ref": "bookworm", "image_id": "not recorded"}, **change}
    return json.dumps({k: v for k, v in manifest.items() if v is not None}).encode()


def test_an_images_manifest_reads_back_and_one_from_before_licenses_too(tmp_path):
    where = tmp_path / "torchyard:v2.6-cu124:/usr/share/torchyard/manifest.json"
    manifest = records.parsed(manifest_json(), builds.ImageManifest, where, "rebuild it")
    assert manifest.python_licenses == {"torch": "BSD-3-Clause"} and manifest.base.image_id == "not recorded"
    assert records.parsed(manifest_json(python_licenses=None), builds.ImageManifest, where, "").python_licenses == {}


@pytest.mark.parametrize("change, says", [
    ({"python_packages": ["torch"]}, "Expected `object`, got `array` - at `$.python_packages`"),
    ({"lock": {"sha256": "a", "packages": "1", "files": {}}}, "Expected `int`, got `str` - at `$.lock.packages`"),
    ({"base": None}, "Object missing required field `base`"),
])
def test_a_broken_image_manifest_is_named_with_its_field(tmp_path, change, says):
    with pytest.raises(records.BrokenRecord) as broken:
        records.parsed(manifest_json(**change), builds.ImageManifest, tmp_path / "manifest.json", "rebuild it")
    assert broken.value.problem == says


def test_what_a_registry_answers_is_bounded_and_nested_no_deeper_than_a_record(tmp_path):
    with pytest.raises(records.BrokenRecord, match="larger than"):
        records.parsed(b" " * (records.MAX_BYTES + 1), builds.ImageManifest, tmp_path / "x", "")
    with pytest.raises(records.BrokenRecord, match="nested more than"):
        records.parsed(DEEP.encode(), builds.ImageManifest, tmp_path / "x", "")


def test_the_attested_record_round_trips(tmp_path):
    entry = published.Attachment(digest="sha256:" + "a" * 64, keyid="k", date="2026-11-26T10:00:00+00:00",
                               artifacts={"https://slsa.dev/provenance/v1": "sha256:" + "b" * 64}, smoke="PASS on CPU")
    records.write_report(tmp_path, TAG, published.ATTESTED, {"127.0.0.1:5000/torchyard:v2.6-cu124": entry})
    assert published.read_attested(TAG, tmp_path) == {"127.0.0.1:5000/torchyard:v2.6-cu124": entry}
    assert published.read_attested("v2.7-cu126", tmp_path) == {}
