"""The size report of the real image, and a build over its budget failing with the attribution."""

import json
import re
import subprocess
import sys

from builder import records
from builder.image import size
from builder.records import builds
from tests.conftest import ROOT
from tests.docker.conftest import TAG, TEST_REPO


def test_the_size_report_accounts_for_the_image(client, built, tmp_path):
    report = size.check(client, built.image, TAG, None, say=lambda _: None, reports=tmp_path)
    assert report.total == client.images.get(built.image).attrs["Size"]
    assert abs(sum(layer.size for layer in report.layers) - report.total) < 1e6
    largest = max(report.layers, key=lambda layer: layer.size)
    # torch's step: torch with the rest of its lock, each CUDA wheel's layer below it (builder/image/layers.py)
    torch_step = next(h for h in client.api.history(built.image) if "'torch==2.6.0 --hash=sha256:" in h["CreatedBy"])
    assert largest.size == torch_step["Size"] > 2e9 and largest.instruction.startswith("start=$(date +%s) && printf")
    names = list(report.packages)[:5]
    assert "torch" in names and "nvidia-cudnn-cu12" in names
    assert json.loads((tmp_path / TAG / "size.json").read_text())["total"] == report.total
    assert "| torch |" in (tmp_path / TAG / "size.md").read_text()


def test_a_build_over_its_budget_fails_naming_layer_and_packages(built, tmp_path):
    """`build` through the command line with a matrix that gives the tag a 2 GB budget: the steps come from
    the cache (the image is the session's), the size check fails it."""
    matrix = tmp_path / "matrix.yaml"
    # only the budget changes: the build renders the tag into images/, which must stay as committed (an entry that
    # lost a key, torchaudio once, rewrote the tag's Dockerfile there and made its lock stale for the tests after it)
    shipped = (ROOT / "matrix.yaml").read_text()
    entry = re.search(rf"^  {TAG}: .*$", shipped, flags=re.M).group(0)
    matrix.write_text(shipped.replace(entry, re.sub(r"size_budget: [^,}]+", "size_budget: 2GB", entry)))
    assert "size_budget: 2GB" in matrix.read_text()
    reports = tmp_path / "reports"
    (reports / TAG).mkdir(parents=True)
    records.write_report(reports, TAG, builds.SIZE_BASELINE, size.SizeReport(
        tag=TAG, image=built.image, image_id="sha256:before", total=2_000_000_000, layers=(),
        packages={"torch": 1_000_000_000}))
    result = subprocess.run([sys.executable, "-m", "builder", "--matrix", str(matrix), "--repo", TEST_REPO,
                             "build", "--tag", TAG, "--reports", str(reports)],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 1, result.stdout + result.stderr
    cached, steps = map(int, re.search(r"\((\d+)/(\d+) steps from cache\)", result.stdout).groups())
    assert cached == steps - 1  # every step but the FROM line came from the cache
    error = result.stderr
    assert f"build of {TAG} is over its size budget" in error and "over its size budget of 2.00 GB" in error
    assert "Largest layers: " in error and "from `start=$(date +%s)" in error  # torch's step, then the CUDA wheels'
    assert re.search(r"Against the previous report \(2\.00 GB\): .*torch \+[\d.]+ MB;", error)
    assert "nvidia-cudnn-cu12 +1.02 GB (new)" in error or "nvidia-cudnn-cu12 +" in error
    assert "nvidia-cudnn-cu12" in error
