"""python -m smoke_tests [--json PATH] [--require-gpu] [--only CHECK ...] [--data DIR] [--steps N] [--host-gpus N]

Prints a table (PASS / FAIL / SKIPPED with the reason for each check); exit status 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smoke_tests import environment, finetune, verdicts
from smoke_tests.report import host_gpus, table, write_json
from smoke_tests.suite import CHECKS, Options, run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m smoke_tests", description=__doc__.split("\n\n")[1])
    p.add_argument("--json", type=Path, metavar="PATH", help="write every figure to this JSON file ('-': one line last on stdout)")
    p.add_argument("--require-gpu", action="store_true",
                   help="a GPU check that would be SKIPPED (no GPU) FAILs instead: for release runs on GPU hosts")
    p.add_argument("--only", nargs="+", choices=list(CHECKS), metavar="CHECK",
                   help=f"run only these checks ({', '.join(CHECKS)})")
    p.add_argument("--data", type=Path, metavar="DIR", help="fine-tune on this ImageFolder instead of synthetic data")
    p.add_argument("--steps", type=int, help=f"fine-tune steps (default: {finetune.GPU_SIZES['resnet50'].steps} on a GPU, "
                                             f"{finetune.CPU_SIZES['resnet50'].steps} on the CPU)")
    p.add_argument("--host-gpus", type=host_gpus, metavar="N",
                   help="the host has N NVIDIA GPUs (or 'toolkit': its engine has the NVIDIA container toolkit): "
                        "when none reaches this container, the GPU checks FAIL instead of SKIPPED (`make smoke` says so)")
    p.add_argument("--spec", type=Path, help=f"the image facts to check against (default: {environment.SPEC})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.data and not args.data.is_dir():
        print(f"smoke_tests: --data {args.data}: not a folder; give an ImageFolder (one sub-folder of images per class)",
              file=sys.stderr)
        return 2
    least = 2 * verdicts.WINDOW
    if args.steps is not None and args.steps < least:
        print(f"smoke_tests: --steps {args.steps}: at least {least} are needed to judge whether the loss falls",
              file=sys.stderr)
        return 2
    options = Options(environment.image_facts(args.spec), args.require_gpu, args.data, args.steps, args.host_gpus)
    # With --json -, a cluster job's log (stdout and stderr merged by the engine, in no promised order) must end
    # with the report: the progress lines then go to stdout too, so one stream orders everything.
    progress = sys.stdout if str(args.json) == "-" else sys.stderr
    results, context = run(options, args.only, say=lambda text: print(text, file=progress, flush=True))
    print(table(results))
    print(f"\n{context['status']} in {context['seconds']:.0f}s"
          + (f" ({sum(r.status == 'FAIL' for r in results)} failed)" if context["status"] == "FAIL" else ""))
    if args.json:
        if str(args.json) != "-":
            print(f"figures: {args.json}")
        write_json(args.json, results, context)
    return 1 if context["status"] == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
