"""The checks in the order they run, and one run of the whole suite."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from smoke_tests import allreduce, audio, cudnn, environment, extension, finetune
from smoke_tests import compile as compile_check
from smoke_tests.report import Result, expect_gpu, gpu, overall, skipped, timed


@dataclass(frozen=True)
class Options:
    facts: dict
    require_gpu: bool = False
    data: Path | None = None
    steps: int | None = None  # fine-tune steps, to override the default for the device
    host_gpus: str | None = None  # the host has GPUs: their count (NVML), or 'toolkit'; given by `make smoke`

    @property
    def gpu_expected(self) -> bool:
        return self.require_gpu or bool(self.host_gpus)


def finetune_check(name: str):
    def check(options: Options) -> Result:
        import torch

        if options.gpu_expected and not torch.cuda.is_available():
            # A GPU was expected: a CPU fine-tune would spend minutes proving nothing about it.
            return gpu(skipped(f"{name} amp", f"no GPU: {environment.no_gpu_reason()}"))
        return finetune.check(name, options.data, options.steps)

    return check


# --only key: (the name a report shows, the check)
CHECKS = {
    "environment": ("environment", lambda o: environment.check_environment(o.facts)),
    "cuda": ("cuda", lambda o: environment.check_cuda(o.facts)),
    "cudnn": ("cudnn conv", lambda o: cudnn.check_cudnn(o.facts)),
    "nccl": ("nccl all-reduce", lambda o: allreduce.check_nccl(o.facts)),
    "gloo": ("gloo all-reduce", lambda o: allreduce.check_gloo(o.facts)),
    "compile": ("compile", lambda o: compile_check.check_compile(o.facts)),
    "extension": ("extension", lambda o: extension.check_extension(o.facts)),
    "torchaudio": (audio.NAME, lambda o: audio.check_torchaudio(o.facts)),
    "resnet50": ("resnet50 amp", finetune_check("resnet50")),
    "deit-s": ("deit-s amp", finetune_check("deit-s")),
}


def run(options: Options, only: list[str] | None = None, say=print) -> tuple[list[Result], dict]:
    """Run the checks (all, or those named); returns the results and the report's context."""
    started = time.monotonic()
    context = {
        "suite": "torchyard smoke_tests",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "image": options.facts.get("tag"),
        "require_gpu": options.require_gpu,
        "host_gpus": options.host_gpus,
    }
    results = []
    for key in only or CHECKS:
        name, check = CHECKS[key]
        say(f"running {name} ...")
        result = expect_gpu(timed(name, check, options), options.require_gpu, options.host_gpus)
        say(f"  {result.status} {result.name} ({result.seconds:.1f}s)")
        results.append(result)
    context["seconds"] = round(time.monotonic() - started, 1)
    context["status"] = overall(results)
    return results, context
