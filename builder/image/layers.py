"""Which locked artifacts go in which layer of an image: the CUDA wheels each in a layer of its own, in an order that
gives the tags of one CUDA family the longest common chain of layers, then torch with everything else of its lock,
then the optional libraries a matrix entry may add (torchaudio), each alone, so that torch's layer is the same with or
without them, then (-devel) the CUDA compiler's wheels.

A layer is shared between two images only when it and every layer below it are the same bytes, so the order is
what decides how much two tags share. Each tag's plan is a function of its own lock and of the fixed order below,
nothing else: adding a tag to the matrix, or relocking one, never changes another tag's layers (they stay the
blobs a registry or a node already holds), and a CUDA package no lock has had yet goes on top of the named ones (by
name), so it moves nothing either. The order was chosen from the committed locks of the whole matrix (2026-12-07:
14 locked tags; families cu121 … cu132), by how each package's artifact moves between the tags of one family:
packages that follow the CUDA toolkit's minor version change only with the family and go first; cuBLAS, cuDNN and
NCCL, released on their own schedule, move between torch releases of one family and come next; nvJitLink, which
torch does not pin (cuSOLVER and cuSPARSE take any version, so a lock holds whatever was newest), then what torch
started to need lately (cuSPARSELt in 2.6, NVSHMEM in 2.9), on top, so that a family's older releases, which lack
them, share every CUDA layer they have. What the matrix gives (tests/image/test_layers.py holds it to it):

- cu124: v2.5's 12 CUDA layers are v2.6's first 12 (v2.6 adds cuSPARSELt): all shared.
- cu130: v2.12 and v2.13 differ only in nvJitLink: 12 of 15 shared (nvJitLink, cuSPARSELt and NVSHMEM above it
  are not); v2.13 and v2.14 in cuDNN and NCCL: 10 shared; v2.11 and v2.12 from cuBLAS up: 9 shared.
- cu132: v2.15-cu132-devel has every CUDA layer and torch's of v2.15-cu132; its compiler's wheels come after.

The cost of a layer per wheel: a step each (~1-2 s of the builder's own work), 12-19 layers in a tag, with the
rest of the image ~30 in all, far below Docker's limit of 127.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.matrix.types import ImageSpec
from builder.wheels.lockfile import LockError, Locked, canonical

# The CUDA packages, bottom to top. Names without their -cu12/-cu13 suffix (the cu13 wheels dropped it for most).
ORDER = (
    # follow the CUDA toolkit's minor version: the same artifact for every tag of a family
    "nvidia-cuda-runtime", "nvidia-cuda-nvrtc", "nvidia-cuda-cupti", "nvidia-nvtx", "nvidia-cuda-cccl",
    "nvidia-cufft", "nvidia-curand", "nvidia-cusolver", "nvidia-cusparse", "nvidia-cufile",
    # released on their own schedule: a torch release of the same family may move them
    "nvidia-cublas", "nvidia-cudnn", "nvidia-nccl",
    # not pinned by torch (cuSOLVER and cuSPARSE take any version): whatever was newest when the tag was locked
    "nvidia-nvjitlink",
    # what torch started to need lately (cuSPARSELt in 2.6, NVSHMEM in 2.9): a family's older releases lack them,
    # and with them on top those share every CUDA layer they have
    "nvidia-cusparselt", "nvidia-nvshmem",
)
NOT_CUDA = {"nvidia-ml-py"}  # NVML's Python binding: a small pure-Python wheel, with torch's layer
# What a matrix entry may add to torch's stack (the torchaudio key), bottom to top: each above torch's layer, alone.
# What one pulls in that torch's lock lacks stays in torch's layer (torchaudio 2.4 to 2.11 require torch alone).
OPTIONAL = ("torchaudio",)
_SUFFIX_RE = re.compile(r"-cu\d+$")
# What reaches the Dockerfile from a lock entry, beyond lockfile.py's grammar: a shell-quoted requirement line.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VERSION_RE = re.compile(r"[0-9][A-Za-z0-9.+!_-]*")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Layer:
    what: str  # for the Dockerfile's comment: the package, or what the group is
    packages: tuple[Locked, ...]

    def requirements(self) -> list[str]:
        """The layer's lines of the lock, as pip reads them (--require-hashes)."""
        return [f"{p.name}=={p.version} --hash=sha256:{p.sha256}" for p in self.packages]


def family_name(name: str) -> str:
    """nvidia-cublas-cu12 -> nvidia-cublas: the package whatever CUDA major it is built for."""
    return _SUFFIX_RE.sub("", canonical(name))


def is_cuda_library(package: Locked) -> bool:
    name = canonical(package.name)
    return name.startswith("nvidia-") and name not in NOT_CUDA


def _rank(package: Locked) -> tuple[int, str]:
    name = family_name(package.name)
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def _checked(packages: tuple[Locked, ...], where: str) -> tuple[Locked, ...]:
    for p in packages:
        if not (_NAME_RE.fullmatch(p.name) and _VERSION_RE.fullmatch(p.version) and _SHA256_RE.fullmatch(p.sha256)):
            raise LockError(f"{where}: the entry {p.name!r}=={p.version!r} --hash=sha256:{p.sha256!r} is not a package "
                            "name, a version and 64 lowercase hex digits; run `make lock` to write the lock anew")
    return packages


def plan(spec: ImageSpec, packages: tuple[Locked, ...], where: str = "the lock") -> list[Layer]:
    """The layers torch's lock is installed in, bottom to top; together they hold every entry exactly once."""
    packages = _checked(packages, where)
    compiler = {canonical(name) for name, _ in spec.nvcc.packages} if spec.nvcc and spec.nvcc.source == "pypi" else set()
    devel = tuple(p for p in packages if canonical(p.name) in compiler)
    cuda = sorted((p for p in packages if is_cuda_library(p) and p not in devel), key=_rank)
    optional = sorted((p for p in packages if canonical(p.name) in OPTIONAL),
                      key=lambda p: OPTIONAL.index(canonical(p.name)))
    rest = tuple(p for p in packages if p not in cuda and p not in devel and p not in optional)
    layers = [Layer(p.name, (p,)) for p in cuda] + [Layer("torch, torchvision and the rest of torch's lock", rest)]
    layers += [Layer(p.name, (p,)) for p in optional]
    return layers + ([Layer("-devel: the CUDA compiler's wheels", devel)] if devel else [])
