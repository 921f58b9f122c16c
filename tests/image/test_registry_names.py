"""Registry names, records and error messages (the pushes and pulls themselves: tests/docker/test_registry.py)."""

import pytest

from builder.image import registry
from builder.inputs import InputError
from builder.records import published


@pytest.mark.parametrize("value", ["registry.example.com/ml", "127.0.0.1:5000", "localhost:5000/a/b", "ghcr.io/org",
                                   "Registry.Example.COM/ml", "[::1]:5000/ml"])
def test_registry_names(value):
    assert registry.reference(value + "/", "v2.6-cu124") == f"{value}/torchyard:v2.6-cu124"


@pytest.mark.parametrize("value", ["https://registry.example.com", "ml", "registry.example.com/ml:tag", "Reg.io/ML",
                                   "registry.example.com/ml\n", "user:pw@registry.example.com"])
def test_what_is_not_a_registry_is_refused(value):
    with pytest.raises(InputError, match=r"is not host\[:port\]|holds credentials"):
        registry.reference(value, "v2.6-cu124")


def test_records_keep_one_entry_per_registry(tmp_path):
    image_id = "sha256:" + "3" * 64
    first = registry.Shipped("a.example/torchyard:v2.6-cu124", "sha256:" + "1" * 64, image_id, 1.0, 10)
    second = registry.Shipped("b.example/torchyard:v2.6-cu124", "sha256:" + "2" * 64, image_id, 1.0, 10)
    registry.record("v2.6-cu124", first, tmp_path)
    registry.record("v2.6-cu124", second, tmp_path)
    registry.record("v2.6-cu124", first, tmp_path)
    entries = published.read_digests("v2.6-cu124", tmp_path)
    assert list(entries) == [first.reference, second.reference]
    assert entries[second.reference] == published.Pushed(digest=second.digest, image_id=image_id)


@pytest.mark.parametrize("error, meaning", [
    ('Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused', "cannot be reached"),
    ("unauthorized: authentication required", "refused the credentials"),
    ("no basic auth credentials", "refused the credentials"),
    ("manifest unknown: manifest unknown", "has no 127.0.0.1:1/torchyard:v2.6-cu124"),
])
def test_engine_errors_are_explained(error, meaning):
    assert meaning in registry.explain(error, "127.0.0.1:1/torchyard:v2.6-cu124")


@pytest.mark.parametrize("value", ["127.0.0.1:0", "127.0.0.1:65536", "registry.example.com:99999/ml", "[::1]:70000",
                                   "localhost:00000"])
def test_a_registry_port_outside_1_to_65535_is_refused(value):
    from builder import reference
    from builder.inputs import InputError

    with pytest.raises(InputError, match="its port is not a number from 1 to 65535"):
        reference.registry(value)
    assert reference.parse(f"{value.split('/')[0]}/torchyard:v2.6-cu124") is None


@pytest.mark.parametrize("value", ["127.0.0.1:1", "localhost:65535", "[::1]:5000/ml", "registry.example.com"])
def test_a_registry_port_inside_the_range_is_taken(value):
    from builder import reference

    assert reference.registry(value) == value
