"""What a command prints: its lines on standard output and its failure on standard error, credentials redacted, and
the exit status of a refused request.
"""

from __future__ import annotations

import sys

from builder.urls import redact

INVALID = 2


def say(text: str) -> None:
    print(redact(text), flush=True)


def fail(text: str, status: int) -> int:
    print(f"torchyard: {redact(text)}", file=sys.stderr, flush=True)
    return status
