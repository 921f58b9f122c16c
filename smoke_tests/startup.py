"""python -m smoke_tests.startup: at container start, one warning when this image's torch will not run on the
host's GPUs (the driver below the image's minimum, or a GPU's sm_XY without kernels), before the first CUDA error,
naming the tags of its matrix that would run.

The entrypoint runs it as the unprivileged user. NVML only (smoke_tests/fit.py, the suite's own verdicts), no
torch: it costs a Python start. Silent when all is well, when there is no GPU (a CPU start is a choice), and
when it cannot tell; it never stops the container.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from smoke_tests import environment, fit, nvml

MATRIX_FILE = "matrix.json"  # beside spec.json: [{"tag", "cuda", "min_driver", "archs"}], every tag of the matrix


def warning(host: nvml.Nvml, facts: dict, matrix: list[dict]) -> str | None:
    """The warning to print, or None: `facts` is the image's spec.json, `matrix` its matrix.json."""
    verdict = fit.judge(host, facts.get("cuda", "?"), facts.get("min_driver"), facts.get("archs"))
    if verdict.status != fit.DOES_NOT_RUN:
        return None
    others = [t["tag"] for t in matrix if t["tag"] != facts.get("tag")
              and fit.judge(host, t["cuda"], t["min_driver"], t["archs"]).runs]
    runs = (f" Tags of its matrix that run on this host: {', '.join(others)}." if others else
            " No tag of its matrix is known to run on this host (`make doctor` on the host says why).")
    why = "; ".join(reason.rstrip(".") for reason in verdict.reasons)
    return (f"WARNING: this image ({facts.get('tag', 'torchyard')}, CUDA {facts.get('cuda', '?')}) will not run on "
            f"this host's GPU: {why}.{runs}")


def main(spec: Path = environment.SPEC) -> int:
    try:
        message = warning(nvml.read(), json.loads(spec.read_text()), json.loads(spec.with_name(MATRIX_FILE).read_text()))
    except Exception as e:  # noqa: BLE001 - a start check must never be the reason a container does not start
        message = f"the GPU start check could not run ({e.__class__.__name__}: {e})"
    if message:
        print(f"torchyard: {message}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*map(Path, sys.argv[1:2])))
