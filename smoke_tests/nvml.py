"""The NVIDIA driver and GPUs as NVML sees them (nvidia-ml-py; no torch, no CUDA).

NVML answers where CUDA cannot start (a driver too old for the runtime, a GPU the wheel has no kernels for), and
without a Docker engine. One reader for every place that asks: the smoke suite inside an image, and the host side
of the toolkit (`make smoke` judging a GPU host as one, `make doctor`).

A recorded answer (the JSON that `record()` writes) can stand in for the live library: TORCHYARD_NVML_RECORD names
the file. The tests use recordings because no GPU can run where they run; a live read is never replaced unless
that variable is set.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

RECORD_VARIABLE = "TORCHYARD_NVML_RECORD"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]  # compute capability (9, 0) for an H100
    memory_bytes: int

    @property
    def sm(self) -> str:
        """'sm_90': the name torch's arch list uses."""
        return f"sm_{self.capability[0]}{self.capability[1]}"


@dataclass(frozen=True)
class Nvml:
    driver: str | None  # '580.65.06'
    cuda: str | None  # the newest CUDA the driver supports, '13.0'
    gpus: tuple[Gpu, ...]
    problem: str | None  # why NVML could not answer; None when it did
    source: str = "nvml"  # 'nvml', or the recording it was replayed from


def cuda_of_driver(number: int) -> str:
    """nvmlSystemGetCudaDriverVersion's integer as a version: 12020 -> '12.2', 13000 -> '13.0'."""
    return f"{number // 1000}.{number % 1000 // 10}"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _live() -> Nvml:
    try:
        import pynvml
    except ImportError:
        return Nvml(None, None, (), "nvidia-ml-py is not installed, so the driver cannot be read")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return Nvml(None, None, (), f"NVML cannot start ({e}): no NVIDIA driver is visible here")
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(Gpu(index, _text(pynvml.nvmlDeviceGetName(handle)),
                            tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle)),
                            int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)))
        return Nvml(_text(pynvml.nvmlSystemGetDriverVersion()),
                    cuda_of_driver(pynvml.nvmlSystemGetCudaDriverVersion_v2()), tuple(gpus), None)
    finally:
        pynvml.nvmlShutdown()


def record(answer: Nvml) -> dict:
    """The answer as JSON-able data (what TORCHYARD_NVML_RECORD replays)."""
    return {k: v for k, v in asdict(answer).items() if k != "source"}


def replay(path: Path) -> Nvml:
    data = json.loads(path.read_text())
    gpus = tuple(Gpu(g["index"], g["name"], tuple(g["capability"]), g["memory_bytes"]) for g in data.get("gpus", []))
    return Nvml(data.get("driver"), data.get("cuda"), gpus, data.get("problem"), source=str(path))


def read(environ: dict[str, str] | None = None) -> Nvml:
    """What NVML says here now, or the recording TORCHYARD_NVML_RECORD names."""
    recorded = (os.environ if environ is None else environ).get(RECORD_VARIABLE)
    return replay(Path(recorded)) if recorded else _live()
