"""Comparing two images' package sets and files (the rebuild itself: tests/docker/test_verify.py)."""

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
