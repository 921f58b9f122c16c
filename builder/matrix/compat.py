"""Compatibility facts (builder/matrix/compat.yaml) as typed, read-only objects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from builder import files

FACTS_FILE = Path(__file__).with_name("compat.yaml")
MAX_BYTES = 2**20  # the facts are ~20 KB


def version_key(version: str) -> tuple[int, ...]:
    """'2.10.0' -> (2, 10, 0), so versions sort as numbers, not strings."""
    return tuple(int(part) for part in version.split("."))


def minor(version: str) -> str:
    """'2.6.0' -> '2.6'."""
    return ".".join(version.split(".")[:2])


def cuda_of_variant(variant: str) -> str:
    """'cu124' -> '12.4', 'cu118' -> '11.8', 'cu130' -> '13.0'."""
    digits = variant.removeprefix("cu")
    return f"{digits[:-1]}.{digits[-1]}"


ARCH_NAME = re.compile(r"(?:sm|compute)_\d+a?")  # what torch reports: sm_90, sm_90a, compute_120
_ARCH_ENTRY = re.compile(r"(\d+)\.(\d+)(\+PTX)?")


def arch_list(torch_cuda_arch_list: str) -> tuple[str, ...]:
    """A TORCH_CUDA_ARCH_LIST as PyTorch's wheel build scripts set it, as torch._C._cuda_getArchFlags() reports the
    result: '5.0;8.6;3.7;9.0+PTX' -> (sm_50, sm_86, sm_37, sm_90, compute_90). The script's order is kept (CMake
    keeps it); each +PTX entry adds its compute_XY after every sm_XY, as CMake emits the PTX gencodes last."""
    cubins, ptx = [], []
    for entry in torch_cuda_arch_list.split(";"):
        found = _ARCH_ENTRY.fullmatch(entry.strip())
        if not found:
            raise ValueError(f"{entry!r} in TORCH_CUDA_ARCH_LIST {torch_cuda_arch_list!r} is not of the form "
                             "<major>.<minor> or <major>.<minor>+PTX (e.g. 8.6, 12.0+PTX)")
        number = f"{found[1]}{found[2]}"
        cubins.append(f"sm_{number}")
        if found[3]:
            ptx.append(f"compute_{number}")
    return tuple(dict.fromkeys(cubins + ptx))


def _archs(raw: str | list | None, where: str) -> tuple[str, ...] | None:
    """compat.yaml's archs: a TORCH_CUDA_ARCH_LIST string (the build script's, [bcs]), a list of sm_/compute_ names
    (the wheel's own, [gpu]/[arch]), or null."""
    if raw is None:
        return None
    try:
        if isinstance(raw, str):
            return arch_list(raw)
        if isinstance(raw, list) and raw and all(isinstance(a, str) and ARCH_NAME.fullmatch(a) for a in raw):
            return tuple(raw)
    except ValueError as e:
        raise ValueError(f"compat.yaml: {where} archs: {e}") from None
    raise ValueError(f"compat.yaml: {where} archs: expected a TORCH_CUDA_ARCH_LIST string, a list of sm_XY/compute_XY "
                     f"names, or null, not {raw!r}")



def cudnn_number(version: str) -> int:
    """The integer torch.backends.cudnn.version() reports: 9.1.0.70 -> 90100, 8.9.2.26 -> 8902."""
    major, minor_, patch = (int(p) for p in version.split(".")[:3])
    return major * 10000 + minor_ * 100 + patch if major >= 9 else major * 1000 + minor_ * 100 + patch


@dataclass(frozen=True)
class Variant:
    name: str  # cu124
    cuda_runtime: str | None  # 12.4.127, the nvidia-cuda-runtime the wheel pins; None: not recorded
    cudnn: str | None
    nccl: str | None
    archs: tuple[str, ...] | None  # None: not recorded

    @property
    def cuda(self) -> str:
        return cuda_of_variant(self.name)


@dataclass(frozen=True)
class TorchRelease:
    version: str
    torchvision: str
    torchaudio: str | None
    python: tuple[str, ...]  # CPython versions torch has wheels for
    pypi_variant: str | None  # the PyPI wheel's CUDA variant; None: no PyPI wheel, every variant from the PyTorch index
    variants: dict[str, Variant]
    torchvision_python: tuple[str, ...] | None = None  # where torchvision's wheels cover fewer than torch's
    torchaudio_python: tuple[str, ...] | None = None  # where torchaudio's wheels cover fewer than torch's

    @property
    def minor(self) -> str:
        return minor(self.version)

    def missing_wheels(self, python: str, torchaudio: bool = False) -> str | None:
        """Which of torch, torchvision and (when asked for) torchaudio publishes no wheel for this Python, with the
        versions each has; None: all do."""
        if python not in self.python:
            return f"torch {self.version} has no wheels for Python {python} (it has {', '.join(self.python)})"
        for name, version, pythons in (("torchvision", self.torchvision, self.torchvision_python),
                                       ("torchaudio", self.torchaudio, self.torchaudio_python if torchaudio else None)):
            if pythons and python not in pythons:
                return (f"{name} {version} (the one torch {self.version} pairs with) has no wheels for Python "
                        f"{python} (it has {', '.join(pythons)}, torch has {', '.join(self.python)})")
        return None


NVCC_SOURCES = ("pypi", "debian")


@dataclass(frozen=True)
class Nvcc:
    """Where a -devel image's CUDA compiler comes from: PyPI wheels in the venv, or a Debian package."""

    source: str  # one of NVCC_SOURCES
    home: str  # CUDA_HOME: inside site-packages for pypi, an absolute path for debian
    packages: tuple[tuple[str, str], ...]  # (wheel or Debian package, version): the compiler, pinned as one release
    suite: str | None = None  # debian: the suite whose package it is
    component: str | None = None  # debian: its archive area (non-free), which the base must carry
    host_driver_provides: tuple[str, ...] = ()  # debian: driver libraries the host mounts at run time

    @property
    def version(self) -> str:
        return self.packages[0][1]


@dataclass(frozen=True)
class Facts:
    debian_python: dict[str, str]
    minor_compat_floor: dict[str, str]
    toolkit_driver: dict[str, str | None]
    nvcc: dict[str, Nvcc]
    releases: dict[str, TorchRelease]

    def release(self, torch: str) -> TorchRelease | None:
        """The release for '2.6.0', or for a bare minor like '2.6'."""
        if torch in self.releases:
            return self.releases[torch]
        return next((r for r in self.releases.values() if r.minor == torch), None)

    def release_for_minor(self, minor_: str) -> TorchRelease | None:
        return next((r for r in self.releases.values() if r.minor == minor_), None)

    def with_torchaudio(self) -> list[TorchRelease]:
        """The releases a torchaudio goes with, oldest first."""
        return [r for r in self.releases.values() if r.torchaudio]

    def min_driver(self, cuda: str) -> str:
        """The oldest driver that runs an image built for this CUDA (minor-version compatibility)."""
        return self.minor_compat_floor[cuda.split(".")[0]]


def _nvcc(raw: dict) -> Nvcc:
    if raw["source"] not in NVCC_SOURCES:
        raise ValueError(f"compat.yaml: nvcc source {raw['source']!r} is not one of {', '.join(NVCC_SOURCES)}")
    return Nvcc(source=raw["source"], home=raw["home"], packages=tuple(raw["packages"].items()),
                suite=raw.get("suite"), component=raw.get("component"),
                host_driver_provides=tuple(raw.get("host_driver_provides", ())))


@cache
def load(path: Path = FACTS_FILE) -> Facts:
    raw = yaml.safe_load(files.read_bounded(path, MAX_BYTES).decode("utf-8"))
    releases = {}
    for version, r in raw["torch"].items():
        variants = {
            name: Variant(
                name=name,
                cuda_runtime=v["cuda"],
                cudnn=v["cudnn"],
                nccl=v["nccl"],
                archs=_archs(v["archs"], f"torch {version} {name}"),
            )
            for name, v in r["variants"].items()
        }
        releases[version] = TorchRelease(
            version=version,
            torchvision=r["torchvision"],
            torchaudio=r["torchaudio"],
            python=tuple(r["python"]),
            torchvision_python=tuple(r["torchvision_python"]) if "torchvision_python" in r else None,
            torchaudio_python=tuple(r["torchaudio_python"]) if "torchaudio_python" in r else None,
            pypi_variant=r["pypi"],
            variants=variants,
        )
    return Facts(
        debian_python={suite: d["python"] for suite, d in raw["debian"].items()},
        minor_compat_floor=raw["driver"]["minor_compat_floor"],
        toolkit_driver=raw["driver"]["toolkit"],
        nvcc={cuda: _nvcc(n) for cuda, n in raw["nvcc"].items()},
        releases=dict(sorted(releases.items(), key=lambda kv: version_key(kv[0]))),
    )
