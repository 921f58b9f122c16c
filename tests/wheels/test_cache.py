"""The wheel cache against a real HTTP server on loopback: downloads checked and atomic, corrupt entries fetched
again, credentials only to their host; and the server that hands the cache to a build."""

import base64
import hashlib
import http.server
import threading
import urllib.error
import urllib.request

import pytest

from builder import layout
from builder.wheels import cache, network, serve
from builder.wheels.lockfile import Locked
from tests.conftest import ROOT

USER, PASSWORD = "alice", "s3cret-test-only"


class Index:
    """Files served over HTTP on 127.0.0.1, optionally behind Basic auth; counts the requests."""

    def __init__(self, folder, auth=False):
        self.folder, self.requests, self.headers = folder, [], []
        index = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):
                index.requests.append(self.path)
                index.headers.append(dict(self.headers))
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if auth and self.headers.get("Authorization") != expected:
                    self.send_error(401)
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "index"
    folder.mkdir()
    made = {}
    for name, size in (("big-1.0-py3-none-any.whl", 3_000_000), ("small-2.0-py3-none-any.whl", 1234),
                       ("odd-1.0+cu118-py3-none-any.whl", 10)):
        data = hashlib.sha256(name.encode()).digest() * (size // 32 + 1)
        (folder / name).write_bytes(data[:size])
        made[name] = data[:size]
    return folder, made


def items_of(url, made, tag="v2.6-cu124", file=layout.WORKSPACE_LOCK_FILE):
    return [cache.Wanted(Locked(name.split("-")[0], name.split("-")[1], hashlib.sha256(data).hexdigest(),
                                f"{url}/{name.replace('+', '%2B')}", len(data)), f"images/{tag}/{file}", tag)
            for name, data in sorted(made.items())]


def entry(tmp_path, data):
    return tmp_path / "c" / hashlib.sha256(data).hexdigest()


def test_a_fetch_checks_each_artifact_and_keeps_it_by_sha256(files, tmp_path):
    folder, made = files
    index = Index(folder)
    said = []
    try:
        fetched = cache.fetch(items_of(index.url, made), network.NetworkSettings(), say=said.append, cache=tmp_path / "c")
    finally:
        index.close()
    assert (fetched.files, fetched.downloaded, fetched.bytes) == (3, 3, sum(map(len, made.values())))
    for data in made.values():
        assert entry(tmp_path, data).read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(hashlib.sha256(d).hexdigest() for d in made.values())
    assert said[0] == f"fetching 3 of 3 artifacts into {tmp_path / 'c'}"
    assert said[-1].startswith("fetched 3.00 MB (") and "/s), 3 of 3 files in " in said[-1]


def test_a_filled_cache_needs_no_index(files, tmp_path):
    folder, made = files
    index = Index(folder)
    items = items_of(index.url, made)
    cache.fetch(items, network.NetworkSettings(), say=lambda _: None, cache=tmp_path / "c")
    index.close()  # nothing answers any more
    again = cache.fetch(items, network.NetworkSettings(), say=lambda _: None, cache=tmp_path / "c")
    assert (again.files, again.downloaded, again.bytes) == (3, 0, 0)


def test_a_corrupt_entry_is_found_and_fetched_again(files, tmp_path):
    folder, made = files
    index = Index(folder)
    small = made["small-2.0-py3-none-any.whl"]
    try:
        items = items_of(index.url, made)
        cache.fetch(items, network.NetworkSettings(), say=lambda _: None, cache=tmp_path / "c")
        entry(tmp_path, small).write_bytes(b"x" * len(small))  # same size, other bytes
        said = []
        again = cache.fetch(items, network.NetworkSettings(), say=said.append, cache=tmp_path / "c")
    finally:
        index.close()
    assert "the cached small-2.0-py3-none-any.whl is corrupt" in said[0]
    assert again.downloaded == 1 and entry(tmp_path, small).read_bytes() == small


def test_an_artifact_that_differs_from_its_lock_fails_naming_the_package_and_leaves_nothing(files, tmp_path):
    folder, made = files
    index = Index(folder)
    items = [cache.Wanted(Locked(i.package.name, i.package.version, "0" * 64, i.package.url, i.package.size), i.lock, i.tag)
             if i.package.name == "small" else i for i in items_of(index.url, made)]
    try:
        with pytest.raises(cache.FetchError) as failed:
            cache.fetch(items, network.NetworkSettings(), say=lambda _: None, cache=tmp_path / "c", workers=1)
    finally:
        index.close()
    message = str(failed.value)
    got = hashlib.sha256(made["small-2.0-py3-none-any.whl"]).hexdigest()
    assert f"the sha256 of small 2.0 (small-2.0-py3-none-any.whl) is {got}" in message
    assert f"images/v2.6-cu124/{layout.WORKSPACE_LOCK_FILE} says {'0' * 64}" in message
    assert "`make lock TAG=v2.6-cu124` re-resolves" in message
    assert not (tmp_path / "c" / ("0" * 64)).exists() and not (tmp_path / "c" / got).exists()
    assert not list((tmp_path / "c").glob(".*part"))


def test_credentials_go_to_their_own_index_only_and_into_no_output(files, tmp_path):
    folder, made = files
    index = Index(folder, auth=True)
    credentialed = index.url.replace("http://", f"http://{USER}:{PASSWORD}@")
    said = []
    try:
        with pytest.raises(cache.FetchError, match="401") as refused:  # without them the index says no
            cache.fetch(items_of(index.url, made), network.NetworkSettings(), say=said.append, cache=tmp_path / "c")
        elsewhere = network.NetworkSettings(pip={"index-url": [f"http://{USER}:{PASSWORD}@127.0.0.2:1/simple"]})
        assert elsewhere.authorization(f"{index.url}/x.whl") == {}  # another origin's credentials stay home
        settings = network.NetworkSettings(pip={"index-url": ["https://pypi.org/simple"],
                                                "extra-index-url": [f"{credentialed}/simple"]})
        fetched = cache.fetch(items_of(index.url, made), settings, say=said.append, cache=tmp_path / "c")
    finally:
        index.close()
    assert fetched.downloaded == 3
    assert PASSWORD not in str(refused.value) and not any(PASSWORD in line for line in said)
    assert all(h.get("Authorization") for h in index.headers[-3:])


def test_wanted_reads_each_artifact_of_a_tags_locks_once(shipped):
    items = cache.wanted([shipped.specs["v2.6-cu124"], shipped.specs["v2.5-cu124"]])
    assert len({i.package.sha256 for i in items}) == len(items)
    torch = [i for i in items if i.package.name == "torch"]
    assert [i.package.version for i in torch] == ["2.6.0", "2.5.1"]
    assert torch[0].package.url.startswith("https://files.pythonhosted.org/") and torch[0].package.filename.endswith(".whl")
    assert {i.lock for i in items} >= {f"images/v2.6-cu124/{layout.LOCK_FILE}", f"images/v2.6-cu124/{layout.WORKSPACE_LOCK_FILE}"}
    # each artifact knows the tag that named it first: its refusal says `make lock TAG=<that tag>`
    assert [i.tag for i in torch] == ["v2.6-cu124", "v2.5-cu124"]


def test_the_build_server_serves_the_locks_artifacts_and_nothing_else(files, tmp_path):
    folder, made = files
    index = Index(folder)
    items = items_of(index.url, made, file=layout.LOCK_FILE)
    arrivals = serve.Arrivals()
    cache.fetch(items, network.NetworkSettings(), say=lambda _: None, cache=tmp_path / "c", ready=arrivals.arrived)
    index.close()
    with serve.serving(items, tmp_path / "c", arrivals) as address:
        assert address.startswith("127.") and address != "127.0.0.1"
        base = f"http://{address}:{serve.PORT}"
        page = urllib.request.urlopen(f"{base}/").read().decode()
        odd = hashlib.sha256(made["odd-1.0+cu118-py3-none-any.whl"]).hexdigest()
        assert f'<a href="/{odd}/odd-1.0%2Bcu118-py3-none-any.whl#sha256={odd}">odd-1.0+cu118-py3-none-any.whl</a>' in page
        assert page.count("<a href=") == 3
        assert urllib.request.urlopen(f"{base}/{odd}/odd-1.0%2Bcu118-py3-none-any.whl").read() == made["odd-1.0+cu118-py3-none-any.whl"]
        for other in (f"/{odd}/other.whl", "/etc/passwd", f"/{odd}", "/../index"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(base + other)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{base}/", timeout=2)  # gone with the block


def test_make_fetch_refuses_a_tag_without_a_lock_and_says_how(tmp_path):
    """v2.6-cu118's torch is on the PyTorch wheel index, which this project cannot reach: no lock, so nothing to fetch."""
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "builder", "fetch", "--tag", "v2.6-cu118"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "TORCHYARD_CACHE": str(tmp_path)})
    assert result.returncode == 1
    assert "1 tag(s) not fetched:" in result.stderr and "requirements.lock is missing" in result.stderr
    assert "make lock TAG=v2.6-cu118" in result.stderr and "0 artifacts" in result.stdout
    assert not (tmp_path / "sha256").exists() or not any((tmp_path / "sha256").iterdir())


def test_the_build_server_answers_for_an_artifact_when_the_fetch_has_it(files, tmp_path):
    """The build starts while the fetch runs: a request for an artifact not yet fetched waits for it; one whose
    fetch failed is refused at once."""
    import threading
    import time

    folder, made = files
    index = Index(folder)
    items = items_of(index.url, made)
    arrivals = serve.Arrivals()
    odd = next(i for i in items if i.package.name == "odd")
    try:
        with serve.serving(items, tmp_path / "c", arrivals) as address:
            url = f"http://{address}:{serve.PORT}/{odd.package.sha256}/odd-1.0%2Bcu118-py3-none-any.whl"
            got = {}
            asking = threading.Thread(target=lambda: got.update(data=urllib.request.urlopen(url, timeout=30).read()))
            asking.start()
            time.sleep(0.5)
            assert asking.is_alive()  # nothing fetched yet: the request waits
            cache.fetch(items, network.NetworkSettings(), say=lambda _: None, cache=tmp_path / "c", ready=arrivals.arrived)
            asking.join(timeout=10)
            assert got["data"] == made["odd-1.0+cu118-py3-none-any.whl"]
    finally:
        index.close()
    failed = serve.Arrivals()
    with serve.serving(items, tmp_path / "empty", failed) as address:
        failed.failed()
        started = time.monotonic()
        with pytest.raises(urllib.error.HTTPError, match="503"):
            urllib.request.urlopen(f"http://{address}:{serve.PORT}/{odd.package.sha256}/odd-1.0%2Bcu118-py3-none-any.whl",
                                   timeout=30)
        assert time.monotonic() - started < 5


# ---------------------------------------------------------------- what a server or a lock may not make a fetch do

class Hostile:
    """An HTTP server on 127.0.0.1 that answers every GET with `answer(handler)`."""

    def __init__(self, answer):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                try:
                    answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def one_item(url, data=b"x" * 1000, name="small-2.0-py3-none-any.whl"):
    return [cache.Wanted(Locked("small", "2.0", hashlib.sha256(data).hexdigest(), f"{url}/{name}", len(data)),
                         f"images/v2.6-cu124/{layout.WORKSPACE_LOCK_FILE}", "v2.6-cu124")]


def endless(handler):
    handler.send_response(200)
    handler.end_headers()  # no Content-Length: it would send until the disk is full
    while True:
        handler.wfile.write(b"y" * 65536)


def announced_wrong(handler):
    handler.send_response(200)
    handler.send_header("Content-Length", "1000000")
    handler.end_headers()
    handler.wfile.write(b"z" * 1000000)


def short(handler):
    handler.send_response(200)
    handler.end_headers()
    handler.wfile.write(b"x" * 999)


@pytest.mark.parametrize("answer, says", [
    (endless, "is 1000 bytes by images/v2.6-cu124/requirements-workspace.lock, but the server sends more: either the "
              r"lock was edited or the index serves another file; `make lock TAG=v2.6-cu124` re-resolves after "
              r"review\. Nothing was kept\.$"),
    (announced_wrong, "but the server announces 1000000 bytes"),
    (short, "but the server sent 999 bytes"),
])
def test_a_fetch_never_writes_more_than_the_locked_size_and_keeps_nothing_of_another(tmp_path, answer, says):
    with Hostile(answer) as server:
        with pytest.raises(cache.FetchError, match=says):
            cache.fetch(one_item(server.url), network.NetworkSettings(), say=lambda _: None, cache=tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []  # no entry, no .part


@pytest.mark.parametrize("location, says", [
    ("file:///etc/passwd", "file:///etc/passwd, a file URL"),
    ("ftp://127.0.0.1/small-2.0-py3-none-any.whl", "a ftp URL"),
    ("http://files.example/small-2.0-py3-none-any.whl", "plain http to a host other than loopback"),
    ("gopher://127.0.0.1:70/x", "a gopher URL"),
])
def test_a_redirect_off_https_is_refused(tmp_path, location, says):
    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with Hostile(redirect) as server:
        with pytest.raises(cache.FetchError, match=f"{server.url}/small-2.0-py3-none-any.whl redirects to .*{says}.*: refused"):
            cache.fetch(one_item(server.url), network.NetworkSettings(), say=lambda _: None, cache=tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []


def test_a_redirect_to_loopback_http_is_followed_without_the_credentials_of_the_first_origin(tmp_path):
    data = b"x" * 1000
    seen = []

    def serve_file(handler):
        seen.append(handler.headers.get("Authorization"))
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    with Hostile(serve_file) as target:
        def redirect(handler):
            seen.append(handler.headers.get("Authorization"))
            handler.send_response(302)
            handler.send_header("Location", f"{target.url}/small-2.0-py3-none-any.whl")
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with Hostile(redirect) as first:
            settings = network.NetworkSettings(pip={"index-url": [first.url.replace("//", f"//{USER}:{PASSWORD}@") + "/simple"]})
            fetched = cache.fetch(one_item(first.url, data), settings, say=lambda _: None, cache=tmp_path / "c")
    assert fetched.downloaded == 1 and seen[0].startswith("Basic ") and seen[1] is None


def test_parts_a_killed_fetch_left_are_removed_and_a_live_ones_kept(tmp_path):
    import fcntl
    import os

    folder = tmp_path / "c"
    folder.mkdir()
    dead, live, young = folder / ".aaaa-1.part", folder / ".bbbb-2.part", folder / ".cccc-3.part"
    for part in (dead, live, young):
        part.write_bytes(b"half")
    for part in (dead, live):
        os.utime(part, (1, 1))
    elsewhere = tmp_path / "keep.txt"
    elsewhere.write_text("not the cache's")
    (folder / ".dddd-4.part").symlink_to(elsewhere)
    os.utime(folder / ".dddd-4.part", (1, 1), follow_symlinks=False)
    holder = open(live, "rb")
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # a fetch that is writing it
        assert cache.remove_abandoned(folder) == 1
    finally:
        holder.close()
    assert not dead.exists() and live.exists() and young.exists() and elsewhere.read_text() == "not the cache's"
    said = []
    with Hostile(lambda h: None) as server:  # any fetch first clears what died
        with pytest.raises(cache.FetchError):
            cache.fetch(one_item(server.url), network.NetworkSettings(), say=said.append, cache=folder, workers=1)
    assert not live.exists() and said[0] == f"removed 1 partial download(s) that an interrupted fetch left in {folder}"


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_fetch_ended_by_a_signal_leaves_no_part_file(tmp_path, signal_name):
    import signal
    import subprocess
    import sys
    import time

    started = threading.Event()

    def stall(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b"x" * 10)
        handler.wfile.flush()
        started.set()
        time.sleep(30)  # the rest never comes

    folder = tmp_path / "c"
    with Hostile(stall) as server:
        script = (
            # SIGINT as a terminal's make has it: a job started in the background (nohup …&, some CI runners) has
            # it ignored, and the fetch rightly keeps an ignored SIGINT ignored
            "import signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from pathlib import Path\nfrom builder.wheels import cache, network\n"
            "from builder.wheels.lockfile import Locked\n"
            f"item = cache.Wanted(Locked('small', '2.0', 'a' * 64, {server.url + '/small-2.0-py3-none-any.whl'!r}, 1000), 'l', 't')\n"
            f"try:\n    cache.fetch([item], network.NetworkSettings(), say=print, cache=Path({str(folder)!r}))\n"
            "except KeyboardInterrupt:\n    sys.exit(130)\n")
        child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert started.wait(30)
            deadline = time.monotonic() + 10
            while not list(folder.glob(".*.part")) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert list(folder.glob(".*.part"))  # under way
            child.send_signal(getattr(signal, signal_name))
            assert child.wait(timeout=20) == 130, child.stderr.read()
        finally:
            if child.poll() is None:
                child.kill()
    assert list(folder.iterdir()) == []


def test_make_fetch_refuses_a_lock_line_that_would_delete_a_file_outside_the_cache(tmp_path, monkeypatch, capsys):
    """The issue's reproduction: an appended lock line whose 'sha256' is a path. Exit 2 naming the file and line;
    the file it names is untouched; nothing is fetched (a proxy that is not there would fail any download)."""
    import shutil

    from builder import cli

    images = tmp_path / "images"
    shutil.copytree(ROOT / "images" / "v2.6-cu124", images / "v2.6-cu124")
    monkeypatch.setattr(layout, "IMAGES", images)
    monkeypatch.setenv("TORCHYARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    victim = tmp_path / "victim.txt"
    relative = tmp_path / "x"  # <cache>/sha256/../../x
    path = images / "v2.6-cu124" / layout.WORKSPACE_LOCK_FILE
    original = path.read_text()
    lines = len(original.splitlines())
    for hash_text, url, says in [
        (str(victim), "https://files.example/evil-1.0-py3-none-any.whl", f"its sha256 {str(victim)!r} is not 64"),
        ("../../x", "https://files.example/evil-1.0-py3-none-any.whl", "its sha256 '../../x' is not 64"),
        ("a" * 64, "file:///etc/passwd", "its URL is a file URL"),
    ]:
        for file in (victim, relative):
            file.write_text("keep me")
        path.write_text(original + f"# {url} size=10\nevil==1.0 --hash=sha256:{hash_text}\n")
        assert cli.main(["fetch", "--tag", "v2.6-cu124"]) == 2
        err = capsys.readouterr().err
        assert f"{path}:{lines + 2}: 'evil==1.0': {says}" in err and "Traceback" not in err
        assert victim.read_text() == "keep me" and relative.read_text() == "keep me"
        assert not (tmp_path / "cache" / "sha256").exists()


def test_a_cache_setting_that_names_a_file_is_refused(tmp_path, monkeypatch, capsys):
    from builder import cli

    file = tmp_path / "cache-file"
    file.write_text("")
    monkeypatch.setenv("TORCHYARD_CACHE", str(file))
    assert cli.main(["fetch", "--tag", "v2.6-cu124"]) == 2
    err = capsys.readouterr().err
    assert f"TORCHYARD_CACHE='{file}'" in err and "exists and is not a folder" in err and "Traceback" not in err
    assert file.read_text() == ""


def test_a_cache_path_is_never_made_from_what_is_not_a_sha256(tmp_path):
    with pytest.raises(ValueError):
        cache.path("/tmp/victim.txt", tmp_path)
    with pytest.raises(ValueError):
        cache.path("../" + "a" * 61, tmp_path)


def test_a_failed_download_is_the_error_not_the_one_its_stop_cut(files, tmp_path):
    """big (listed first) is mid-transfer when odd is refused: the stop cuts big, and the refusal is what is raised."""
    folder, made = files
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if "big" not in self.path:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(made["big-1.0-py3-none-any.whl"])))
            self.end_headers()
            self.wfile.write(made["big-1.0-py3-none-any.whl"][:1000])
            self.wfile.flush()
            release.wait(30)  # the rest never comes while the test runs

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(cache.FetchError, match="404"):
            cache.fetch(items_of(f"http://127.0.0.1:{server.server_port}", made), network.NetworkSettings(),
                        say=lambda _: None, cache=tmp_path / "c", workers=3)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert not list((tmp_path / "c").glob(".*part"))
