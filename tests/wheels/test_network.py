"""The host's pip and CA settings, read from real config files and variables in a temporary home."""

import os

import pytest

from builder.inputs import InputError
from builder.wheels import network
from tests.loopback import serving

PEM = "-----BEGIN CERTIFICATE-----\n"


@pytest.fixture
def home(tmp_path):
    (tmp_path / ".config" / "pip").mkdir(parents=True)
    return tmp_path


def pip_conf(home, text):
    (home / ".config" / "pip" / "pip.conf").write_text(text)


def settings(home, **env):
    # XDG_CONFIG_DIRS points into the temporary home so the machine's /etc/xdg is not read.
    return network.host_settings({"XDG_CONFIG_DIRS": str(home / "xdg"), **env}, home)


def test_nothing_configured_forwards_nothing(home):
    s = settings(home, PIP_CONFIG_FILE=os.devnull)
    assert (s.pip, s.ca_files, s.ignored) == ({}, (), ())


def test_config_file_settings_are_forwarded(home, tmp_path):
    ca = tmp_path / "corp.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\ncorp\n-----END CERTIFICATE-----\n")
    pip_conf(home, f"[global]\nindex-url = https://mirror.example/simple\ncert = {ca}\n"
                   "trusted-host = mirror.example\n")
    s = settings(home)
    assert s.pip == {"index-url": ["https://mirror.example/simple"], "trusted-host": ["mirror.example"]}
    assert s.ca_files == (ca,)


def test_variables_override_files(home):
    pip_conf(home, "[global]\nindex-url = https://file.example/simple\n")
    s = settings(home, PIP_INDEX_URL="https://env.example/simple",
                 PIP_EXTRA_INDEX_URL="https://a.example/simple https://b.example/simple")
    assert s.pip["index-url"] == ["https://env.example/simple"]
    assert s.pip["extra-index-url"] == ["https://a.example/simple", "https://b.example/simple"]


def test_local_paths_are_left_out_and_reported(home):
    pip_conf(home, "[global]\nfind-links = /opt/wheels\n"
                   "extra-index-url = file:///opt/pypi/simple https://extra.example/simple\n")
    s = settings(home)
    assert s.pip == {"extra-index-url": ["https://extra.example/simple"]}
    assert any("file:///opt/pypi/simple" in note for note in s.ignored)
    assert any("/opt/wheels" in note for note in s.ignored)


def test_every_ca_source_is_trusted_once(home, tmp_path):
    one, two = tmp_path / "one.pem", tmp_path / "two.pem"
    one.write_text(f"{PEM}ONE\n")
    two.write_text(f"{PEM}TWO")
    s = settings(home, PIP_CERT=str(one), REQUESTS_CA_BUNDLE=str(two), SSL_CERT_FILE=str(one))
    assert s.ca_files == (one, two)
    assert s.ca_bundle() == f"{PEM}ONE\n{PEM}TWO\n"


def test_a_ca_setting_that_is_not_a_file_is_an_error(home, tmp_path):
    with pytest.raises(network.NetworkError, match="REQUESTS_CA_BUNDLE names .*missing.pem'?, which is not a file"):
        settings(home, REQUESTS_CA_BUNDLE=str(tmp_path / "missing.pem"))


def test_the_torch_index_mirror_is_a_setting(home):
    assert settings(home).torch_index == network.TORCH_INDEX
    assert settings(home, TORCHYARD_TORCH_INDEX="https://mirror.example/whl/").torch_index == "https://mirror.example/whl"


# ---------------------------------------------------------------- probes of real HTTP servers


@pytest.fixture
def server():
    """An HTTP server on loopback that wants Basic credentials alice:s3cret; yields its URL."""
    import base64

    def answer(handler):
        wanted = "Basic " + base64.b64encode(b"alice:s3cret").decode()
        handler.send_response(200 if handler.headers.get("Authorization") == wanted else 401)
        handler.end_headers()

    with serving(do_HEAD=answer, do_GET=answer) as url:
        yield f"{url}/simple"


def test_the_index_probe_sends_credentials_as_a_header_and_never_shows_them(server):
    from builder.wheels import lock

    settings = network.NetworkSettings()
    assert lock.unreachable(server.replace("http://", "http://alice:s3cret@"), settings) is None
    refused = lock.unreachable(server.replace("http://", "http://alice:wrong@"), settings)
    assert "refused the credentials in its URL (HTTP 401)" in refused and "wrong" not in refused
    assert "wants credentials (HTTP 401)" in lock.unreachable(server, settings)


def test_the_workspace_probe_bypasses_http_proxy(server, monkeypatch):
    """Behind a proxy the readiness probe of a loopback port must not go through it (nothing listens on port 9)."""
    from builder.host import workspace

    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert workspace._http_status(server) == 401  # it answered: the request went straight to the server


def test_forwarded_settings_are_checked_and_shown_without_credentials(home):
    with pytest.raises(InputError) as e:
        settings(home, PIP_CONFIG_FILE=os.devnull, PIP_EXTRA_INDEX_URL="https://alice:s3cret@mirror.example:99999/simple")
    assert "mirror.example:99999" in str(e.value) and "s3cret" not in str(e.value)
    with pytest.raises(InputError, match="TORCHYARD_TORCH_INDEX='file:///srv/whl'"):
        settings(home, PIP_CONFIG_FILE=os.devnull, TORCHYARD_TORCH_INDEX="file:///srv/whl")
    s = settings(home, PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="https://alice:s3cret@mirror.example/simple",
                 PIP_TRUSTED_HOST="mirror.example:8443", PIP_TIMEOUT="60", PIP_RETRIES="3")
    assert s.pip["index-url"] == ["https://alice:s3cret@mirror.example/simple"]  # kept for the build's pip


@pytest.mark.parametrize("password", ["pa'ss", 'pa"ss', "pa<s>s", "pa:ss", "p!$&()*+,;=", "pa%27ss%40"])
def test_the_index_probe_reaches_the_urls_host_whatever_the_password_holds(password):
    """The probe's request is made from the parsed host and port; the credentials go only in its header."""
    import base64
    import urllib.parse

    from builder.wheels import lock

    got = []

    def head(handler):
        got.append(handler.headers.get("Authorization"))
        handler.send_response(200)
        handler.end_headers()

    with serving(do_HEAD=head) as url:
        url = url.replace("http://", f"http://user:{password}@") + "/simple"
        assert lock.unreachable(url, network.NetworkSettings(), timeout=5) is None
    decoded = urllib.parse.unquote(password)
    assert got == ["Basic " + base64.b64encode(f"user:{decoded}".encode()).decode()]
