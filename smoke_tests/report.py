"""A check's result, the table a person reads, and the JSON that keeps every figure."""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from smoke_tests import verdicts

PASS, FAIL, SKIPPED = "PASS", "FAIL", "SKIPPED"


@dataclass
class Result:
    name: str
    status: str
    reason: str
    figures: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    gpu: bool = False  # a GPU check: its SKIPPED becomes FAIL where a GPU was expected (expect_gpu)


def passed(name: str, reason: str, **figures) -> Result:
    return Result(name, PASS, reason, figures)


def failed(name: str, reason: str, **figures) -> Result:
    return Result(name, FAIL, reason, figures)


def skipped(name: str, reason: str, **figures) -> Result:
    return Result(name, SKIPPED, reason, figures)


def gpu(result: Result) -> Result:
    """Mark a result as a GPU check's."""
    result.gpu = True
    return result


def timed(name: str, check, *args, **kwargs) -> Result:
    """Run a check; an exception inside it is that check's FAIL, never the suite's crash."""
    started = time.monotonic()
    try:
        result = check(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - a check that raises has failed, and says how
        result = failed(name, f"{e.__class__.__name__}: {e}")
    result.seconds = round(time.monotonic() - started, 2)
    return result


def host_gpus(value: str) -> str:
    """--host-gpus as `make smoke` gives it (python -m smoke_tests, and smoke_tests.distributed across nodes)."""
    if not re.fullmatch(r"[1-9][0-9]{0,3}|toolkit", value):
        raise argparse.ArgumentTypeError(f"{value!r}: give the number of GPUs the host has (1 or more), or 'toolkit'")
    return value


def expect_gpu(result: Result, require_gpu: bool, host_gpus: str | None) -> Result:
    """A GPU check SKIPPED for want of a GPU FAILs where one was expected (verdicts.missing_gpu says when)."""
    if result.gpu and result.status == SKIPPED:
        verdict = verdicts.missing_gpu(result.reason, require_gpu, host_gpus)
        if not verdict.ok:
            result.status, result.reason = FAIL, verdict.reason
    return result


def overall(results: list[Result]) -> str:
    return FAIL if any(r.status == FAIL for r in results) else PASS


def table(results: list[Result], width: int = 100) -> str:
    name_w = max(len(r.name) for r in results)
    lines = [f"{'check':<{name_w}}  {'status':<7}  {'time':>6}  result", "-" * width]
    for r in results:
        lines.append(f"{r.name:<{name_w}}  {r.status:<7}  {r.seconds:>5.1f}s  {r.reason}")
        lines += [f"{'':<{name_w}}  {'WARN':<7}  {'':>6}  {w}" for w in r.warnings]
    return "\n".join(lines)


def write_json(path: Path, results: list[Result], context: dict) -> None:
    """Write the whole report; a temporary file then a rename, so a reader never sees half of it.
    Path '-': one line on stdout, the last thing printed (a cluster job's log is where its report is)."""
    document = {**context, "status": overall(results), "checks": [asdict(r) for r in results]}
    if str(path) == "-":
        print(json.dumps(document, separators=(",", ":")), flush=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # a new file of a unique name (mkstemp: O_EXCL, so never through a symlink planted there), then one rename
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(document, indent=2) + "\n")
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
