"""Sizes as people write them in matrix.yaml and read them in reports."""

from __future__ import annotations

import re

SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", re.I | re.ASCII)
UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(value) -> int:
    """'7GB', '6.5 GiB', '800MB' -> bytes (decimal units as Docker prints them; KiB/MiB/GiB binary)."""
    found = SIZE_RE.fullmatch(str(value))
    if not found:
        raise ValueError(f"{value!r} is not a size; write it like \"7GB\", \"6.5GB\" or \"800MB\"")
    return int(float(found[1]) * UNITS[found[2].lower()])


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"
