"""What the suite runs on: the image's recorded facts, the host's driver (NVML), GPUs, shared memory."""

from __future__ import annotations

import json
import os
from pathlib import Path

from smoke_tests import nvml, verdicts
from smoke_tests.report import Result, failed, gpu, passed, skipped

SPEC = Path("/usr/share/torchyard/spec.json")  # written by `make render`, present in every torchyard image


def image_facts(path: Path | None = None) -> dict:
    """The image's spec.json; {} on a host outside an image (then only torch's own claims are checked)."""
    path = path or Path(os.environ.get("TORCHYARD_SPEC", SPEC))
    return json.loads(path.read_text()) if path.is_file() else {}


def shm_bytes(path: str = "/dev/shm") -> int:
    stat = os.statvfs(path)
    return stat.f_frsize * stat.f_blocks


def check_environment(facts: dict) -> Result:
    import torch
    import torchvision

    figures = {
        "tag": facts.get("tag"),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_cuda": torch.version.cuda,
        "cpus": len(os.sched_getaffinity(0)),
        "shm_bytes": shm_bytes(),
    }
    wanted = facts.get("torch")
    if wanted and torch.__version__.split("+")[0] != wanted:
        return failed("environment", f"torch {torch.__version__} is installed but the image records {wanted}: "
                                     "something replaced it after the build", **figures)
    result = passed("environment", f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
                                   f"{figures['cpus']} CPUs" + (f", image {facts['tag']}" if facts.get("tag") else ""),
                    **figures)
    shm = verdicts.shm(figures["shm_bytes"])
    if not shm.ok:
        result.warnings.append(shm.reason)
    return result



def no_gpu_reason() -> str:
    """Why torch sees no GPU, in the words that lead to the fix."""
    import torch

    if torch.version.cuda is None:
        return "this torch is a CPU-only build"
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return "CUDA_VISIBLE_DEVICES is empty"
    driver = nvml.read()
    if driver.problem:
        return f"{driver.problem}. Start the container with `--gpus all` on a host with the NVIDIA container toolkit"
    if not driver.gpus:
        return f"driver {driver.driver} is loaded but sees no GPU (NVIDIA_VISIBLE_DEVICES={os.environ.get('NVIDIA_VISIBLE_DEVICES')})"
    return f"torch.cuda.is_available() is False although NVML sees {len(driver.gpus)} GPU(s) with driver {driver.driver}"


def check_cuda(facts: dict) -> Result:
    import torch

    cuda = torch.version.cuda or "none"
    driver = nvml.read()
    figures = {"torch_cuda": torch.version.cuda, "driver": driver.driver, "driver_cuda": driver.cuda,
               "min_driver": facts.get("min_driver")}
    if driver.driver and driver.gpus and torch.version.cuda:
        # Judge the driver first: a driver that is too old is the commonest reason is_available() is False.
        verdict = verdicts.driver(driver.driver, facts.get("min_driver"), cuda, driver.cuda)
        if not verdict.ok:
            return gpu(failed("cuda", verdict.reason, **figures))
    if not torch.cuda.is_available():
        if driver.gpus and torch.version.cuda:
            return gpu(failed("cuda", no_gpu_reason(), **figures))
        return gpu(skipped("cuda", f"no GPU: {no_gpu_reason()}", **figures))
    arch_list = torch.cuda.get_arch_list()
    devices, problems = [], []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        capability = (props.major, props.minor)
        arch = verdicts.arch(capability, arch_list)
        devices.append({"index": index, "name": props.name, "capability": f"{props.major}.{props.minor}",
                        "memory_gib": round(props.total_memory / 2**30, 1), "arch": arch.reason})
        if not arch.ok:
            problems.append(f"GPU {index} ({props.name}): {arch.reason}")
    figures.update(devices=devices, arch_list=arch_list, device_count=len(devices))
    if problems:
        return gpu(failed("cuda", "; ".join(problems), **figures))
    # One real kernel: is_available() alone does not prove a kernel runs on this GPU.
    value = (torch.arange(4, device="cuda", dtype=torch.float32) * 2).sum().item()
    if value != 12.0:
        return gpu(failed("cuda", f"a 4-element kernel returned {value}, not 12", **figures))
    names = ", ".join(sorted({d["name"] for d in devices}))
    driver_note = verdicts.driver(driver.driver, facts.get("min_driver"), cuda, driver.cuda).reason if driver.driver else driver.problem
    return gpu(passed("cuda", f"{len(devices)} x {names} (sm_{devices[0]['capability'].replace('.', '')}), "
                               f"CUDA {cuda}; {driver_note}", **figures))


