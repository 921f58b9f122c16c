"""The wheel cache against a real HTTP server on loopback: downloads checked and atomic, corrupt entries fetched
again, credentials only to their host; and the server that hands the cache to a build."""

import base64
import hashlib
import http.server
import threading
import urllib.error
import urllib.request

import pytest

from builder import cache, layout, network, serve
from builder.lock import Locked
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
