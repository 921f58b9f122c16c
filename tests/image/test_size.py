"""Size budgets: the arithmetic and the attribution, on reports shaped like the real ones."""

import pytest

from builder import records
from builder.image import size
from builder.records import builds
from builder.units import human, parse_size

GB = 10**9


def report(total, layers, packages):
    return size.SizeReport(tag="v2.6-cu124", image="torchyard:v2.6-cu124", image_id="sha256:x", total=int(total),
                           layers=tuple(size.Layer(size=s, instruction=i) for s, i in layers),
                           packages={name: int(n) for name, n in packages})


NOW = report(6 * GB, [(100_000_000, "ADD file:base in /"), (5_800_000_000, "COPY dir:venv in /opt/venv")],
             [("nvidia-cudnn-cu12", 2 * GB), ("torch", 1.6 * GB), ("triton", 0.4 * GB)])


@pytest.mark.parametrize("text, value", [("7GB", 7 * GB), ("6.5 GB", 6_500_000_000), ("800MB", 800_000_000),
                                         ("1GiB", 2**30), ("12 kb", 12_000)])
def test_sizes_parse(text, value):
    assert parse_size(text) == value


def test_human():
    assert human(6_210_000_000) == "6.21 GB" and human(512) == "512 B" and human(1500) == "1.50 kB"


def test_within_budget_and_within_the_slack_pass():
    assert size.over_budget(NOW, 7 * GB, None) is None
    assert size.over_budget(NOW, int(5.5 * GB), None) is None  # 9% over: inside the 10% slack


def test_over_budget_names_the_largest_layer_and_packages():
    message = size.over_budget(NOW, 5 * GB, None)
    assert "20% over its size budget of 5.00 GB" in message
    assert message.index("5.80 GB from `COPY dir:venv in /opt/venv`") < message.index("ADD file:base")
    assert "nvidia-cudnn-cu12 2.00 GB, torch 1.60 GB" in message


def test_over_budget_names_what_grew_since_the_baseline():
    before = report(4 * GB, [], [("nvidia-cudnn-cu12", 2 * GB), ("torch", 1.0 * GB)])
    message = size.over_budget(NOW, 4 * GB, before)
    assert "torch +600.00 MB; triton +400.00 MB (new)" in message
    assert "nvidia-cudnn-cu12 +" not in message


def test_the_baseline_is_the_last_report_within_budget(tmp_path):
    size.write(NOW, tmp_path)
    bigger = report(9 * GB, [], [("torch", 4 * GB)])
    size.write(bigger, tmp_path, within_budget=False)
    assert size.baseline("v2.6-cu124", tmp_path) == NOW
    assert records.read_report(tmp_path, "v2.6-cu124", builds.SIZE, size.SizeReport) == bigger
    assert "| 4.00 GB | torch |" in (tmp_path / "v2.6-cu124" / "size.md").read_text()


def test_layer_instructions_read_as_written_with_short_content_hashes():
    venv = "/bin/sh -c #(nop) COPY --chown=1000:1000dir:" + "3f" * 32 + " in /opt/venv "  # docker history's words
    assert size._short(venv, 90) == "COPY --chown=1000:1000 dir:3f3f3f3f3f3f in /opt/venv"
    run = "|1 PYTHONHASHSEED=0 /bin/sh -c apt-get update  && apt-get install -y tini"
    assert size._short(run, 90) == "apt-get update && apt-get install -y tini"
