"""Docker tests talk to a real engine. Without one they skip, except under CI=true, where they fail."""

import os

import pytest

from builder import build

# Never touches the user's torchyard:* images; TORCHYARD_TEST_REPO keeps parallel checkouts apart.
TEST_REPO = os.environ.get("TORCHYARD_TEST_REPO", "torchyard-test")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/docker/" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def client():
    try:
        client = build.connect()
    except build.EngineError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {e}")
        pytest.skip(str(e))
    yield client
    client.close()


@pytest.fixture
def run(client):
    """Run a command in an image; returns its output; the container is always removed."""

    def run(image: str, *command: str, **kwargs) -> str:
        out = client.containers.run(image, list(command), remove=True, stdout=True, stderr=True, **kwargs)
        return out.decode()

    return run
