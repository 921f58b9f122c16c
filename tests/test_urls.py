"""One redaction for every URL torchyard prints, logs, labels or writes."""

import pytest

from builder import urls
from builder.image import build


@pytest.mark.parametrize("given, shown", [
    ("https://alice:s3cret@mirror.example/simple", "https://mirror.example/simple"),
    ("https://ghp_TOKEN@github.com/org/repo.git", "https://github.com/org/repo.git"),
    ("http://u:p%40ss@[::1]:3141/root/+simple/", "http://[::1]:3141/root/+simple/"),
    ("Looking in indexes: http://alice:****@10.0.0.1:8080/simple/", "Looking in indexes: http://10.0.0.1:8080/simple/"),
    ("a https://a:b@x.example/1 and ftp://c:d@y.example/2", "a https://x.example/1 and ftp://y.example/2"),
    ("REGISTRY=alice:s3cret@registry.example.com/ml", "REGISTRY=registry.example.com/ml"),
    ("https://mirror.example/simple", "https://mirror.example/simple"),
    ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
    ("docker.io/library/debian:bookworm@sha256:" + "a" * 64, "docker.io/library/debian:bookworm@sha256:" + "a" * 64),
    ("einops==0.8.1 --hash=sha256:" + "a" * 64, "einops==0.8.1 --hash=sha256:" + "a" * 64),
])
def test_redact(given, shown):
    assert urls.redact(given) == shown


def test_credentials_are_decoded_for_the_one_place_that_needs_them():
    assert urls.credentials("https://al%40ice:s3%3Acret@h.example:8080/simple") == ("h.example:8080", "al@ice", "s3:cret")
    assert urls.credentials("https://h.example/simple") is None
    assert urls.basic_auth("https://alice:s3cret@h.example/") == {"Authorization": "Basic YWxpY2U6czNjcmV0"}


def test_the_build_log_carries_no_credentials(tmp_path):
    lines = []
    log = type("Log", (), {"write": lambda self, text: lines.append(text)})()
    said = []
    progress = build._Progress(said.append, log)
    progress.line("  Downloading http://alice:s3cret@10.0.0.1:8080/packages/einops-0.8.1-py3-none-any.whl (64 kB)")
    progress.line("Step 4/20 : RUN pip install --index-url https://bob:t0ken@mirror.example/simple x")
    assert "s3cret" not in "".join(lines + said + progress.tail) and "t0ken" not in "".join(lines + said + progress.tail)
    assert "http://10.0.0.1:8080/packages/einops-0.8.1-py3-none-any.whl" in lines[0]
