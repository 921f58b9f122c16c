"""Does an image run on this host's GPUs? The smoke suite's driver and arch verdicts, for every GPU NVML sees.

One judgement for `make doctor` on the host and for the entrypoint at container start; the suite's cuda check
makes the same two verdicts (verdicts.driver, verdicts.arch), so the three cannot disagree. Plain values in,
no torch, no CUDA: NVML answers where CUDA cannot start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smoke_tests import verdicts
from smoke_tests.nvml import Nvml

RUNS = "runs"
DOES_NOT_RUN = "does not run"
UNKNOWN = "cannot tell"
NO_GPU = "no GPU"


@dataclass(frozen=True)
class Fit:
    status: str  # RUNS, DOES_NOT_RUN, UNKNOWN (a fact is not recorded), NO_GPU (nothing to judge against)
    short: str  # one line for a table
    reasons: tuple[str, ...]  # the verdicts' sentences: why it runs, or what stops it (or is not known) and what to do

    @property
    def runs(self) -> bool:
        return self.status == RUNS


def _archs_text(archs: Sequence[str]) -> str:
    return f"{archs[0]}…{archs[-1]}" if len(archs) > 2 else " ".join(archs)


def judge(host: Nvml, cuda: str, min_driver: str | None, archs: Sequence[str] | None) -> Fit:
    """Whether an image whose torch is built for `cuda` (with `archs`, None when not recorded) runs on `host`."""
    if host.problem or not host.driver:
        return Fit(NO_GPU, "no NVIDIA driver", (host.problem or "NVML gave no driver version",))
    if not host.gpus:
        return Fit(NO_GPU, "no GPU", (f"driver {host.driver} is loaded but NVML sees no GPU",))
    blocking, unknown, fine = [], [], []
    shorts: list[str] = []
    driver = verdicts.driver(host.driver, min_driver, cuda, host.cuda)
    (fine if driver.ok else blocking).append(driver.reason)
    if not driver.ok:
        shorts.append(f"driver {host.driver} < {min_driver}" if min_driver else f"driver {host.driver} too old")
    for sm in dict.fromkeys(gpu.sm for gpu in host.gpus):
        gpu = next(g for g in host.gpus if g.sm == sm)
        if archs is None:
            unknown.append(f"the GPU architectures of this torch build are not recorded (builder/compat.yaml), so "
                           f"whether it has kernels for {sm} ({gpu.name}) is not known")
            shorts.append(f"{sm}: archs not recorded")
            continue
        arch = verdicts.arch(gpu.capability, list(archs))
        if arch.ok and "PTX" in arch.reason and host.cuda and verdicts.version_tuple(host.cuda) < verdicts.version_tuple(cuda):
            # The driver JIT-compiles PTX only from toolkits up to its own CUDA version: minor-version
            # compatibility covers SASS, not PTX ("the provided PTX was compiled with an unsupported toolchain").
            arch = verdicts.Verdict(False, f"{sm} would need the PTX in this torch, built with CUDA {cuda}; driver "
                                           f"{host.driver} compiles PTX only up to CUDA {host.cuda}. Upgrade the driver")
        (fine if arch.ok else blocking).append(arch.reason)
        if not arch.ok:
            shorts.append(f"{sm} not in {_archs_text(archs)}" if "PTX" not in arch.reason else f"{sm} needs a newer driver for PTX")
    if blocking:
        return Fit(DOES_NOT_RUN, "; ".join(shorts), tuple(blocking))
    if unknown:
        return Fit(UNKNOWN, "; ".join(shorts) + f" (driver {host.driver} is fine)", tuple(unknown))
    names = " ".join(dict.fromkeys(g.sm for g in host.gpus))
    floor = f">= {min_driver}" if min_driver else f"(CUDA {host.cuda})"
    return Fit(RUNS, f"driver {host.driver} {floor}; {names} covered", tuple(fine))
