"""Writing a file so that no reader ever sees half of it: the text goes to <name>.partial beside it, which then
replaces the file in one rename (a crash leaves the old file, or the new one, never a mix)."""

from __future__ import annotations

from pathlib import Path


def write_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)
    return path
