"""What every engine beyond this machine gets from a tag: the image a cluster pulls, GPUs and nodes, the command.

builder/jobs/k8s.py (Jobs), builder/jobs/slurm.py (sbatch) and builder/jobs/multinode.py (`make smoke NODES=…` on this
engine) each hand these to their engine in its own form, so the three run the same torchrun line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from builder import layout
from builder.records import published
from builder import reference as references
from builder.image import registry
from builder.inputs import InputError

# GPUs per node: the most one server holds today (HGX-2/DGX-2 class boards carry 16).
MAX_GPUS = 16
# Nodes: a smoke test of a cluster's fabric, not a training run; c10d's one TCPStore serves this many easily.
MAX_NODES = 512
RENDEZVOUS_PORT = 29400  # torchrun's default c10d port
# Every node must reach the rendezvous within this: on a cluster a node may first pull a 6 GB image.
JOIN_TIMEOUT_S = 900
PYTHON = f"{layout.VENV}/bin/python"  # absolute: an engine that skips the image's entrypoint may not have its PATH
TORCHRUN = f"{layout.VENV}/bin/torchrun"
ALLREDUCE_MODULE = "smoke_tests.distributed"  # the all-reduce every rank of every node runs under torchrun
_NAME_RE = re.compile(r"[^a-z0-9]+")


def job_name(tag: str, nodes: int) -> str:
    """A DNS-1123 label (Kubernetes names, hostnames) that says what runs: torchyard-smoke-v2-6-cu124[-2nodes]."""
    name = "torchyard-smoke-" + _NAME_RE.sub("-", tag.lower()).strip("-")
    return f"{name}-{nodes}nodes" if nodes > 1 else name


@dataclass(frozen=True)
class Image:
    """The registry reference a cluster pulls; by digest when `make push` recorded one."""

    reference: str  # host[:port]/namespace/torchyard:tag, by Docker's grammar (registry.reference, published.read_digests)
    digest: str | None  # sha256:… from digests/<tag>.json

    @property
    def pinned(self) -> str:
        """Docker's grammar: name:tag@digest (the tag is for people, the digest is what is pulled)."""
        return f"{self.reference}@{self.digest}" if self.digest else self.reference

    @property
    def enroot(self) -> str:
        """enroot's (pyxis's --container-image) grammar: host#path:tag, the digest in the tag's place."""
        ref = references.parse(self.reference)
        return f"{ref.domain}#{ref.path}:{self.digest or ref.tag}"


def image(tag: str, registry_name: str | None, digests: Path = layout.DIGESTS) -> Image:
    """REGISTRY= names the registry; without it, the one registry digests/<tag>.json records."""
    recorded = published.read_digests(tag, digests)
    if registry_name:
        ref = registry.reference(registry_name, tag)
        entry = recorded.get(ref)
        return Image(ref, entry.digest if entry else None)
    if len(recorded) == 1:
        ref, entry = next(iter(recorded.items()))
        return Image(ref, entry.digest)
    if not recorded:
        raise InputError(f"a cluster pulls {tag} from a registry, and {published.digests_path(tag, digests).name} records "
                     f"none: push it first (make push TAG={tag} REGISTRY=host[:port]/namespace records its digest), "
                     "or name the registry with REGISTRY=")
    raise InputError(f"{published.digests_path(tag, digests).name} records {len(recorded)} registries "
                     f"({', '.join(sorted(recorded))}); choose one with REGISTRY=")


def suite_command() -> list[str]:
    """One node: the whole suite on every GPU the engine gave it; a GPU check that cannot run fails; JSON last on stdout."""
    return [PYTHON, "-m", "smoke_tests", "--require-gpu", "--json", "-"]


@dataclass(frozen=True)
class Shell:
    """A value each node's shell works out when it starts (a node index, the first node's name): code-made
    text, never user input; it is placed inside double quotes."""

    expression: str


def node_is_host(index_variable: str) -> Shell:
    """1 on the first node, 0 elsewhere: torchrun's c10d rendezvous then starts its store on the first node
    instead of guessing from host names (a pod's name is not its DNS name)."""
    return Shell(f"$(( ${{{index_variable}:?}} == 0 ))")


Part = str | Shell


@dataclass(frozen=True)
class Torchrun:
    """`torchrun` with c10d rendezvous on the first node, running the all-reduce on every GPU of every node."""

    nodes: int
    gpus: int  # processes per node: one per GPU (or per CPU process without GPUs)
    endpoint: Part  # host:port of the first node
    rendezvous_id: Part  # the same on every node of one run
    join_timeout_s: int = JOIN_TIMEOUT_S
    worker_args: tuple[str, ...] = ("--require-gpu", "--json", "-")

    def parts(self, is_host: Part) -> list[tuple[Part, ...]]:
        t = self.join_timeout_s
        return [
            (TORCHRUN,), (f"--nnodes={self.nodes}",), (f"--nproc-per-node={self.gpus}",), ("--rdzv-backend=c10d",),
            ("--rdzv-endpoint=", self.endpoint), ("--rdzv-id=", self.rendezvous_id),
            # read_timeout bounds how long a node waits for the store on the first one to answer
            ("--rdzv-conf=is_host=", is_host, f",join_timeout={t},read_timeout={t}"),
            ("--max-restarts=0",),  # a smoke test reports a failure; it does not retry it away
            ("-m",), (ALLREDUCE_MODULE,), *((arg,) for arg in self.worker_args),
        ]

    def argv(self, is_host: bool) -> list[str]:
        """The command as a list, for an engine that starts processes itself (docker)."""
        args = []
        for parts in self.parts("1" if is_host else "0"):
            if any(isinstance(p, Shell) for p in parts):
                raise ValueError("argv() needs plain values; script() is for values a shell works out")
            args.append("".join(parts))
        return args

    def script(self, index_variable: str) -> str:
        """One line of POSIX sh for every node alike; the node's index variable decides which one hosts the store."""
        return "exec " + " ".join(_shell_word(parts) for parts in self.parts(node_is_host(index_variable)))


def _shell_word(parts: tuple[Part, ...]) -> str:
    if not any(isinstance(p, Shell) for p in parts):
        return shlex.quote("".join(parts))  # type: ignore[arg-type]
    escaped = (p.expression if isinstance(p, Shell) else re.sub(r'([\\"$`])', r"\\\1", p) for p in parts)
    return '"' + "".join(escaped) + '"'


def pushed(tags: list[str], digests: Path) -> list[str]:
    """TAG=all on a cluster: the tags that digests/ records a push of, the ones a cluster can pull."""
    found = [tag for tag in tags if published.read_digests(tag, digests)]
    if not found:
        raise InputError("TAG=all: no tag has been pushed (digests/ records none); push first: "
                         "make push TAG=all REGISTRY=host[:port]/namespace")
    return found


@dataclass(frozen=True)
class Job:
    """One smoke test of a tag on a cluster, as builder/jobs/k8s.py and slurm.py write it out."""

    tag: str
    image: Image
    gpus: int  # per node
    nodes: int
    header: str  # the comment it opens with: what runs, on which image, whether pinned, which target wrote it


def job(tag: str, registry_name: str | None, digests: Path, gpus: int, nodes: int, command: str) -> Job:
    """The job `make <command>` prints for tag: the image a cluster pulls (by digest when `make push` recorded one)."""
    pulled = image(tag, registry_name, digests)
    pin = (f"pinned by digest (digests/{tag}.json)" if pulled.digest else
           f"NOT pinned: digests/{tag}.json has no digest for {pulled.reference}; `make push` records one")
    what = "the smoke suite" if nodes == 1 else f"the all-reduce across {nodes} nodes under torchrun"
    header = (f"torchyard {tag}: {what}, {gpus} GPU(s) per node.\n"
              f"Image {pulled.reference}, {pin}.\nGenerated by `make {command}`; the report is the last line of the log.")
    return Job(tag, pulled, gpus, nodes, header)
