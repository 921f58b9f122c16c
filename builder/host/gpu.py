"""How a container gets the host's GPUs and enough shared memory; one place for `make smoke` and `make run`.

GPUs come through the NVIDIA container toolkit (`docker run --gpus all`). The engine does not say whether
the toolkit is installed, so we look for what `--gpus` needs: an `nvidia` runtime registered with the
engine, or the toolkit's hook on the engine's host. TORCHYARD_GPUS=all|none overrides the guess.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import docker
import docker.types

from builder import files

# Docker's default /dev/shm is 64 MB: DataLoader workers and NCCL's shared-memory transport run out of it.
# A tmpfs limit reserves nothing; only the pages used count against the container's memory.
SHM_GIB = 8  # the one figure: `docker run --shm-size` and a Kubernetes Job's memory-backed /dev/shm (builder/jobs/k8s.py)
SHM_SIZE = f"{SHM_GIB}g"  # Docker's g is GiB
CDI_SPEC_MAX_BYTES = 4 * 2**20  # `nvidia-ctk cdi generate` writes ~20 KB per GPU
HOOKS = ("nvidia-container-runtime-hook", "nvidia-container-toolkit", "nvidia-ctk")


class GpuSettingError(ValueError):
    pass


def requested(environ=os.environ) -> bool | None:
    """TORCHYARD_GPUS: True for all, False for none, None when unset (then the host decides)."""
    wanted = environ.get("TORCHYARD_GPUS", "").strip().lower()
    if wanted in ("all", "none"):
        return wanted == "all"
    if wanted:
        raise GpuSettingError(f"TORCHYARD_GPUS={wanted[:40]!r}: use 'all' (pass every GPU) or 'none' (run on the CPU)")
    return None


def host_has_gpus(client: docker.DockerClient) -> bool:
    wanted = requested()
    return toolkit_configured(client) if wanted is None else wanted


def toolkit_configured(client: docker.DockerClient) -> bool:
    """What `--gpus` needs: an `nvidia` runtime registered with the engine, or the toolkit's hook on this host."""
    return gpu_route(client.info()) is not None


def gpu_route(info: dict) -> str | None:
    """How `--gpus` reaches the GPUs on this engine (its `docker info`), in words; None when it cannot."""
    if "nvidia" in (info.get("Runtimes") or {}):
        return "the nvidia runtime is registered with the engine"
    hook = next(filter(None, map(shutil.which, HOOKS)), None)
    return f"the NVIDIA container toolkit's hook is installed ({hook})" if hook else None


def cdi_gpu_specs(info: dict) -> list[Path]:
    """CDI specs naming NVIDIA GPUs (`nvidia-ctk cdi generate`) in the folders the engine reads. Docker 25 and
    newer list those folders in `docker info` (CDISpecDirs); an engine that lists none does not read CDI."""
    specs = []
    for folder in info.get("CDISpecDirs") or []:
        for path in sorted(Path(folder).glob("*")):
            try:  # a regular file of a CDI spec's size only: a FIFO there must not hang make doctor
                if path.suffix in (".yaml", ".yml", ".json") and \
                        b"nvidia.com/gpu" in files.read_bounded(path, CDI_SPEC_MAX_BYTES):
                    specs.append(path)
            except (OSError, files.Refused):
                continue  # unreadable here (another user's file), or no spec: not ours to judge
    return specs


def run_options(client: docker.DockerClient) -> dict:
    """Keyword arguments for containers.run/create: all GPUs when the host has them, shared memory sized."""
    options: dict = {"shm_size": SHM_SIZE}
    if host_has_gpus(client):
        options["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        # NCCL registers host memory; NVIDIA's containers ask for unlimited memlock. Only with GPUs: an engine
        # in a restricted sandbox may refuse to raise the limit, and the CPU path does not need it.
        options["ulimits"] = [docker.types.Ulimit(name="memlock", soft=-1, hard=-1)]
    return options


def docker_run_flags(options: dict) -> list[str]:
    """The `docker run` flags equivalent to run_options(), for reproducers a person can paste."""
    flags = ["--shm-size", options["shm_size"]]
    if "device_requests" in options:
        flags = ["--gpus", "all", *flags, "--ulimit", "memlock=-1:-1"]
    return flags
