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


# ---------------------------------------------------------------- every character a userinfo may hold

import string  # noqa: E402
import urllib.parse  # noqa: E402

# RFC 3986: userinfo = *( unreserved / pct-encoded / sub-delims / ":" ); and what a user types raw though the RFC
# wants it escaped (quotes, angle brackets, and '#', '?', '[' ']' '@' that end or split a URL's parts for urllib)
UNRESERVED = string.ascii_letters + string.digits + "-._~"
SUB_DELIMS = "!$&'()*+,;="
RAW_TYPED = "\"<>`{}|\\^"
USERINFO_CHARACTERS = UNRESERVED + SUB_DELIMS + ":" + RAW_TYPED
PERCENT_ESCAPES = ["%27", "%22", "%3C", "%3E", "%40", "%2F", "%3A", "%23", "%3F", "%25", "%20", "%00"]


def passwords():
    for c in USERINFO_CHARACTERS + "#?@[]":
        yield f"pw{c}s3cr{c}t"
    for e in PERCENT_ESCAPES:
        yield f"pw{e}s3cr{e}t"
    yield "pw" + USERINFO_CHARACTERS + "".join(PERCENT_ESCAPES)


def forms(password):
    """The password and, for an escaped one, what it decodes to: neither may be shown."""
    return {password, urllib.parse.unquote(password)} - {""}


@pytest.mark.parametrize("password", list(passwords()))
def test_redaction_removes_a_userinfo_of_any_character(password):
    for text in (f"https://user:{password}@mirror.example:8443/simple",
                 f"https://{password}@mirror.example/simple",  # a token where the user goes
                 f"error: 'https://user:{password}@127.0.0.1:9/whl' refused",
                 f'see "https://user:{password}@127.0.0.1:9/whl/cu118"',
                 f"<a href=https://user:{password}@h.example/x>",
                 repr(f"https://user:{password}@h.example/x"),
                 f"Looking in indexes: http://user:{password}@10.0.0.1:8080/simple/"):
        shown = urls.redact(text)
        assert not any(f in shown for f in forms(password) if len(f) > 4), (text, shown)
    if not any(c in password for c in "/@ "):
        bare = urls.redact(f"REGISTRY=user:{password}@registry.example.com/ml")
        assert not any(f in bare for f in forms(password) if len(f) > 4) and bare.endswith("registry.example.com/ml")


def test_the_request_goes_to_the_host_urllib_reads_never_to_a_part_of_the_password():
    assert urls.without_credentials("https://user:pa'ss@127.0.0.1:9/whl") == "https://127.0.0.1:9/whl"
    assert urls.without_credentials("http://u:p%40ss@[::1]:3141/root/") == "http://[::1]:3141/root/"
    assert urls.basic_auth("https://user:pa'ss@127.0.0.1:9/whl") == {"Authorization": "Basic dXNlcjpwYSdzcw=="}


CLI_PASSWORDS = ["pa'ssword", 'pa"ss<w>rd', "pa%27ss%22w%3Crd", "pa:ss;w=r,d!$&()*+", "pw" + USERINFO_CHARACTERS.replace("\\", "")]


@pytest.mark.parametrize("password", CLI_PASSWORDS)
@pytest.mark.parametrize("command, env", [
    (["lock", "--tag", "v2.6-cu118"], {"TORCHYARD_TORCH_INDEX": "https://user:{pw}@127.0.0.1:9/whl"}),
    (["lock", "--tag", "v2.6-cu124"], {"PIP_INDEX_URL": "https://user:{pw}@127.0.0.1:9/simple"}),
    (["fetch", "--tag", "v2.6-cu118"], {"PIP_EXTRA_INDEX_URL": "file://user:{pw}@files.example/wheels"}),
    (["lock", "--tag", "v2.6-cu118"], {"TORCHYARD_TORCH_INDEX": "https://user:{pw}@127.0.0.1:99999/whl"}),
    (["lock", "--tag", "v2.6-cu118"], {"PIP_INDEX_URL": "https://user:{pw}@mirror.example:0/simple"}),
    (["push", "--tag", "v2.6-cu124"], {"TORCHYARD_REGISTRY": "user:{pw}@127.0.0.1:5000/ml"}),
])
def test_no_output_of_the_cli_holds_the_password(command, env, password, monkeypatch, capsys, tmp_path):
    """The issue's reproductions, in-process: an index the probe cannot reach, a local extra index left out, a bad
    port, a registry with credentials. The password appears in nothing printed, raw or percent-decoded."""
    from builder import cli

    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("TORCHYARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    for name, value in env.items():
        monkeypatch.setenv(name, value.replace("{pw}", password))
    status = cli.main(command)
    out, err = capsys.readouterr()
    assert status in (1, 2) and "Traceback" not in err
    assert out + err  # it said something
    for shown in forms(password):
        assert shown not in out + err, (shown, out + err)


def test_an_image_reference_with_a_digest_stays_and_a_host_named_sha256_with_a_port_does_not():
    """name:tag@sha256:… is an image reference (a digest, also as a message's placeholder), never a userinfo; a host
    that is called sha256 and has a port is a host, so what stands before the '@' goes."""
    assert urls.redact("write it as name:tag@sha256:<64 hex digits>") == "write it as name:tag@sha256:<64 hex digits>"
    assert urls.redact("debian:bookworm@sha256:" + "a" * 64) == "debian:bookworm@sha256:" + "a" * 64
    assert urls.redact("REGISTRY=alice:s3cret@sha256:5000/ns") == "REGISTRY=sha256:5000/ns"
    assert urls.redact("alice:s3cret@sha256:443") == "sha256:443"


@pytest.mark.parametrize("host, loopback", [
    ("localhost", True), ("LocalHost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
    ("10.0.0.1", False), ("files.example", False), ("localhost.example", False), ("", False), (None, False),
])
def test_loopback_is_localhost_in_any_case_or_a_loopback_address(host, loopback):
    assert urls.is_loopback(host) is loopback


def test_plain_http_is_fetched_from_loopback_only():
    assert urls.unfetchable("http://localhost:8080/six-1.17.0-py2.py3-none-any.whl") is None
    assert urls.unfetchable("http://[::1]:8080/six-1.17.0-py2.py3-none-any.whl") is None
    assert urls.unfetchable("http:///six-1.17.0-py2.py3-none-any.whl") == (
        "plain http to a host other than loopback (an artifact comes over https)")


def test_credentials_split_at_the_last_at_sign_as_urllib_does():
    assert urls.credentials("https://us@er:p@ss@h.example:8080/simple") == ("h.example:8080", "us@er", "p@ss")
    assert urls.credentials("https://TOKEN@h.example/simple") == ("h.example", "TOKEN", "")  # a token, no password
    assert urls.without_credentials("file:///srv/wheels/x.whl") == "file:///srv/wheels/x.whl"  # no host: none made up
