"""torchyard's pip guard: when pip refuses a request because it would replace the image's torch stack, say why
and what to do.

The refusal itself is pip's: PIP_CONSTRAINT names /usr/share/torchyard/constraints.txt (torch, torchvision, the
image's torchaudio if it has one, triton, the CUDA wheels at their locked versions), so a request for another torch ends in pip's resolver with "The user
requested (constraint) torch===2.6.0", which says neither why nor how to get another. This module adds that.

How: torchyard-pip-guard.pth in site-packages imports it when an interpreter starts; it returns at once unless the
process is `pip install|download|wheel` (`pip …`, `python -m pip …`, and a notebook's `%pip …`, which runs
`python -m pip`: sys.orig_argv tells them apart). In a pip process it wraps one method, the one where pip's resolver
turns an impossible resolution into its error (Factory.get_installation_error, pip 20.3 to 25.x): when a requirement
in the conflict names a constrained package, the explanation is printed when pip exits. Wrapping pip's entry point
instead would miss `python -m pip`, and scanning pip's output would depend on its wording and verbosity. If pip's
internals move, nothing is wrapped: the constraints still hold, only the explanation is missing.
"""

import atexit
import json
import os
import re
import sys

SHARE = "/usr/share/torchyard"
CONSTRAINTS = f"{SHARE}/constraints.txt"
PIP_COMMANDS = {"install", "download", "wheel"}


def _pip_command() -> bool:
    argv = list(getattr(sys, "orig_argv", sys.argv))
    is_pip = (any(argv[i:i + 2] == ["-m", "pip"] for i in range(len(argv)))
              or os.path.basename(sys.argv[0] if sys.argv else "").startswith("pip"))
    return is_pip and bool(PIP_COMMANDS & set(argv))


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned() -> dict[str, str]:
    with open(CONSTRAINTS) as f:
        return dict(line.strip().split("===", 1) for line in f if "===" in line and not line.startswith("#"))


def explanation(wanted: list[str], pinned: dict[str, str], spec: dict) -> str:
    """What a person reads after pip's conflict message: `wanted` are the conflicting requirements as pip writes
    them ('torch==2.7.1'). A plain function, so it is tested without pip."""
    stack = ", ".join(f"{name} {pinned[name]}" for name in ("torch", "torchvision", "torchaudio") if name in pinned)
    minor = next((m for m in (re.match(r"torch\s*==\s*(\d+\.\d+)", w) for w in wanted) if m), None)
    tag = f"v{minor[1]}-cu<CUDA>" if minor else "v<torch major.minor>-cu<CUDA>"
    return (
        f"\ntorchyard: this image ({spec.get('tag', '?')}) is built around {stack} with CUDA {spec.get('cuda', '?')}. "
        f"The request needs {', '.join(wanted)}, which would replace that stack (the image's labels and manifest "
        "would then describe something else). Nothing was installed or removed.\n"
        f"  For another torch, use the torchyard image built with it: tag {tag} (`make list` in torchyard shows them).\n"
        "  To replace it here anyway, knowingly: the environment is root's, so as root, "
        "`docker exec CONTAINER env PIP_CONSTRAINT= pip install ...`; or in a virtual environment of your own "
        f"(python -m venv /workspace/env). The pins: {CONSTRAINTS}\n"
    )


def _guard(get_installation_error):
    def wrapped(self, e, constraints):
        error = get_installation_error(self, e, constraints)
        try:
            pinned = _pinned()
            wanted = [cause.requirement.format_for_error() for cause in e.causes
                      if _canonical(cause.requirement.name.split("[")[0]) in pinned]
            if wanted:
                with open(f"{SHARE}/spec.json") as f:
                    spec = json.load(f)
                text = explanation(sorted(set(wanted)), pinned, spec)
                atexit.register(lambda: print(text, file=sys.stderr, flush=True))  # after pip's own last line
        except Exception:  # noqa: BLE001 - the guard explains; it never turns pip's error into another one
            pass
        return error

    return wrapped


def _activate() -> None:
    if not _pip_command() or CONSTRAINTS not in os.environ.get("PIP_CONSTRAINT", "").split():
        return
    from pip._internal.resolution.resolvelib.factory import Factory

    Factory.get_installation_error = _guard(Factory.get_installation_error)


try:
    _activate()
except Exception:  # noqa: BLE001 - a pip without that method, or a broken one: pip runs as it would without us
    pass
