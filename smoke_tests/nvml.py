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
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

RECORD_VARIABLE = "TORCHYARD_NVML_RECORD"
RECORD_MAX_BYTES = 256 * 1024  # a recording of 8 GPUs is ~1 KB
_GPU_FIELDS = {"index": "a whole number", "name": "a string", "capability": "[major, minor], two whole numbers",
               "memory_bytes": "a whole number"}


class RecordingError(ValueError):
    """The recording TORCHYARD_NVML_RECORD names is missing or is not one: which file, which field, what is expected.
    (Validated here, with the standard library alone: this module runs inside the images too, where builder's
    records/ and msgspec are not.)"""


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


def _read(path: Path) -> bytes:
    """The recording's bytes: a regular file (no FIFO or device, which would block or never end), read to at most
    RECORD_MAX_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise RecordingError(f"{RECORD_VARIABLE}={path}: cannot be read ({e.strerror}); name a recording "
                             "(the JSON smoke_tests.nvml.record() writes, e.g. tests/data/nvml/h100-driver-580.json)") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RecordingError(f"{RECORD_VARIABLE}={path}: not a regular file; name a recording")
    with os.fdopen(fd, "rb", buffering=0) as f:
        data = f.read(RECORD_MAX_BYTES + 1)
    if len(data) > RECORD_MAX_BYTES:
        raise RecordingError(f"{RECORD_VARIABLE}={path}: larger than {RECORD_MAX_BYTES:,} bytes; a recording is ~1 KB")
    return data


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def replay(path: Path) -> Nvml:
    """The answer a recording holds; RecordingError naming the field when it holds no answer."""
    def broken(where: str, expected: str):
        return RecordingError(f"{RECORD_VARIABLE}={path}: {where} is not {expected}")

    try:
        data = json.loads(_read(path).decode("utf-8"))
    except RecordingError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: nested past the parser's depth
        raise RecordingError(f"{RECORD_VARIABLE}={path}: not JSON in UTF-8 ({e.__class__.__name__}); name a "
                             "recording (the JSON smoke_tests.nvml.record() writes)") from None
    if not isinstance(data, dict):
        raise broken("$", "an object of driver, cuda, gpus and problem")
    for key in ("driver", "cuda", "problem"):
        if not (data.get(key) is None or isinstance(data[key], str) and len(data[key]) <= 1000):
            raise broken(f"$.{key}", "a string or null")
    if not isinstance(data.get("gpus", []), list) or len(data.get("gpus", [])) > 1024:
        raise broken("$.gpus", "a list of GPUs")
    gpus = []
    for i, g in enumerate(data.get("gpus", [])):
        if not isinstance(g, dict):
            raise broken(f"$.gpus[{i}]", "an object of " + ", ".join(_GPU_FIELDS))
        for key, expected in _GPU_FIELDS.items():
            value = g.get(key)
            ok = (isinstance(value, str) and len(value) <= 1000 if key == "name" else
                  isinstance(value, list) and len(value) == 2 and all(_whole(v) and 0 <= v < 1000 for v in value)
                  if key == "capability" else _whole(value) and value >= 0)
            if not ok:
                raise broken(f"$.gpus[{i}].{key}", expected)
        gpus.append(Gpu(g["index"], g["name"], tuple(g["capability"]), g["memory_bytes"]))
    return Nvml(data.get("driver"), data.get("cuda"), tuple(gpus), data.get("problem"), source=str(path))


def read(environ: dict[str, str] | None = None) -> Nvml:
    """What NVML says here now, or the recording TORCHYARD_NVML_RECORD names."""
    recorded = (os.environ if environ is None else environ).get(RECORD_VARIABLE)
    return replay(Path(recorded)) if recorded else _live()
