"""Comparing two images' package sets and files (the rebuild itself: tests/docker/test_verify.py)."""

import hashlib
import io
import tarfile

from builder.image import verify


def test_package_differences_are_named():
    first = {"python_packages": {"torch": "2.6.0", "numpy": "2.4.6"}, "debian_packages": {"python3": "3.11.2-1"}}
    second = {"python_packages": {"torch": "2.6.0", "pillow": "13.0.0"}, "debian_packages": {"python3": "3.11.2-1+b1"}}
    assert verify.diff_packages(first, second) == [
        "python numpy 2.4.6: only in the first", "python pillow 13.0.0: only in the second",
        "debian python3: 3.11.2-1 vs 3.11.2-1+b1"]


def test_file_differences_name_the_path_and_what_differs():
    first = {"opt/venv/a.pyc": "0 644 0:0 aaa", "etc/x": "0 644 0:0 x", "usr/bin/py": "2 777 0:0 -> python3"}
    second = {"opt/venv/a.pyc": "0 644 0:0 bbb", "etc/x": "0 600 0:0 x", "var/log/new": "0 644 0:0 n",
              "usr/bin/py": "2 777 0:0 -> python3"}
    assert verify.diff_files(first, second) == [
        "/etc/x: mode differs", "/opt/venv/a.pyc: content differs", "/var/log/new: only in the second"]
    assert verify.diff_files(first, dict(first)) == []


def _layer(*entries: tuple[str, int, bytes]) -> bytes:
    """A layer's tar: (name, mtime, content) per file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mtime, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_layers_entries_are_read_with_their_times_sizes_and_content_hashes():
    entries = verify._entries(io.BytesIO(_layer(("etc/a", 1735689600, b"one"), ("var/log/.wh.apt", 1765100000, b""))))
    assert entries["etc/a"] == ("0", "644", "0:0", "1735689600", "3", hashlib.sha256(b"one").hexdigest())
    assert entries["var/log/.wh.apt"][3] == "1765100000"  # a whiteout: the time of the deletion


def test_layer_differences_name_each_entry_and_both_values():
    first = verify._entries(io.BytesIO(_layer(("etc/a", 1735689600, b"one"), ("etc/b", 1, b"same"), ("etc/c", 1, b"x"))))
    second = verify._entries(io.BytesIO(_layer(("etc/a", 1765100000, b"one"), ("etc/b", 1, b"same!"), ("etc/d", 1, b"x"))))
    differ = verify.diff_layer(first, second)
    assert differ[0] == "/etc/a: mtime 1735689600 vs 1765100000"
    assert differ[1].startswith("/etc/b: size 4 vs 5, content ") and differ[2:] == [
        "/etc/c: only in the first", "/etc/d: only in the second"]
    assert verify.diff_layer(first, dict(first)) == []


def test_the_same_contents_in_other_bytes_is_not_identical():
    same = dict(first="a", second="b", same_image_id=False, same_layers=3, layers=(4, 4), packages=(), files=(),
                file_count=10)
    assert verify.Comparison(**same).identical
    differing = verify.Comparison(**same, first_differing_layer=3, layer_entries=("/etc/a: mtime 1 vs 2",))
    assert differing.identical_contents and not differing.identical_layers and not differing.identical
    assert "layer 4 of 4 is the first whose bytes differ; 1 entries of its tar differ:\n    /etc/a: mtime 1 vs 2" \
        in differing.summary()
