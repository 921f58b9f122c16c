"""The score of the last `mutmut run` (make mutation): mutants killed per file and overall, and every survivor.

    .venv/bin/python tests/mutation_score.py [--target 90]

A mutant counts as killed when a test failed on it (or it ran past mutmut's time-out, which a test run would do
too); one that no test covers counts as a survivor. Exit status 1 when the overall score is under the target.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

KILLED = {"killed", "timeout", "caught by type check", "segfault"}
MUTMUT = Path(sys.executable).with_name("mutmut")


def results() -> dict[str, str]:
    """mutant name -> status, as `mutmut results --all true` prints them ('    name: status')."""
    out = subprocess.run([str(MUTMUT), "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    return dict(line.strip().split(": ", 1) for line in out.splitlines() if ": " in line)


def module(mutant: str) -> str:
    """'builder.wheels.lockfile.x_write__mutmut_3' -> 'builder/wheels/lockfile.py'."""
    return mutant.split(".x")[0].replace(".", "/") + ".py"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", type=float, default=90.0, help="the lowest acceptable score, in per cent")
    args = p.parse_args()
    statuses = results()
    if not statuses:
        print("no mutation results: run `make mutation` (mutmut run) first", file=sys.stderr)
        return 2
    per_file: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for name, status in sorted(statuses.items()):
        per_file[module(name)]["killed" if status in KILLED else "survived"] += 1
        if status not in KILLED:
            survivors[module(name)].append(f"{name} ({status})")
    print(f"{'file':<28} {'mutants':>8} {'killed':>7} {'score':>7}")
    for path, counts in sorted(per_file.items()):
        total = counts["killed"] + counts["survived"]
        print(f"{path:<28} {total:>8} {counts['killed']:>7} {100 * counts['killed'] / total:>6.1f}%")
    killed = sum(c["killed"] for c in per_file.values())
    score = 100 * killed / len(statuses)
    print(f"{'all':<28} {len(statuses):>8} {killed:>7} {score:>6.1f}%  (target {args.target:g}%)")
    for path, names in sorted(survivors.items()):
        print(f"\nsurvivors in {path} (`.venv/bin/mutmut show NAME` prints the change):")
        print("\n".join(f"  {name}" for name in names))
    return 0 if score >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
