"""The commands over the whole matrix: list and validate it, render every tag's images/<tag>/, `make matrix` and its
report.
"""

from __future__ import annotations

import shutil

from builder.commands.output import fail, say
from builder.image import render
from builder.matrix.types import Matrix
from builder.matrix_run import run as matrix_run
from builder.records import published
from builder.report import page, rows


def cmd_list(matrix: Matrix, args) -> int:
    print(f"{'tag':<20} {'torch':<8} {'vision':<8} {'audio':<8} {'cuda':<6} {'cudnn':<11} {'nccl':<8} {'python':<7} "
          f"{'min driver':<11} wheel from")
    for s in matrix.specs.values():
        source = "PyPI" if s.index == "pypi" else f"PyTorch index/{s.cuda_variant}"
        default = "  (default)" if s.tag == matrix.default else ""
        print(f"{s.tag:<20} {s.torch:<8} {s.torchvision:<8} {s.torchaudio or '-':<8} {s.cuda:<6} {s.cudnn or '?':<11} "
              f"{s.nccl or '?':<8} {s.python:<7} {s.min_driver:<11} {source}{default}")
    return 0


def cmd_validate(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    say(f"{matrix.path.name}: {len(specs)} tag(s) valid" if len(specs) > 1 else f"{specs[0].tag}: valid")
    return 0


def cmd_render(matrix: Matrix, args) -> int:
    specs = list(matrix.specs.values())
    stale = render.stale(list(matrix.specs))
    if args.check:
        differ = [d for s in specs for d in render.diff(s)] + [f"{p.name} (not in {matrix.path.name})" for p in stale]
        if differ:
            return fail(f"images/ differs from a fresh render of {matrix.path.name}; run `make render` and commit:\n  "
                        + "\n  ".join(differ), 1)
        say(f"images/ matches {matrix.path.name} ({len(specs)} tags)")
        return 0
    changed = [s.tag for s in specs if render.write(s)]
    say(f"rendered {len(specs)} tags into images/; changed: {', '.join(changed) or 'none'}")
    if stale and args.prune:
        for path in stale:
            shutil.rmtree(path)
            say(f"removed images/{path.name} (not in {matrix.path.name})")
    elif stale:
        say(f"kept {len(stale)} folder(s) of tags not in {matrix.path.name} (render deletes nothing unless told to):")
        for path in stale[:50]:
            held = [f.name for f in sorted(path.glob("*.lock"))]
            if published.digests_path(path.name, args.digests).is_file():
                held.append(f"digests/{path.name}.json")
            say(f"  images/{path.name}" + (f" (holds {', '.join(held)})" if held else ""))
        if len(stale) > 50:
            say(f"  ... and {len(stale) - 50} more")
        say("  remove them with `make render PRUNE=1` (python -m builder render --prune), or one with `git rm -r images/<tag>`")
    return 0


def cmd_matrix(matrix: Matrix, args) -> int:
    return matrix_run.run(matrix, args.tag, args.repo, args.reports, args.network, say=say, require_gpu=args.require_gpu)


def cmd_report(matrix: Matrix, args) -> int:
    for path in page.write(rows.collect(matrix, reports=args.reports, digests=args.digests), args.reports):
        say(f"wrote {path}")
    return 0
