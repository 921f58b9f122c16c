"""Every setting of `python -m builder`, declared once: its option, the Makefile's variable (which refusals name),
the environment variable the Makefile hands it over as (TAG= becomes TORCHYARD_TAG: data that no shell reads), its
default, its grammar and the commands that take it.

builder/commands/ holds the commands (builder/cli.py their table); this module builds their command line and checks
their settings, and the environment variables their steps read, before any work: a bad value is an InputError (exit
2), with nothing done.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from builder import inputs, layout, reference
from builder.host import gpu, workspace
from builder.inputs import InputError, shown
from builder.jobs import cluster, multinode
from builder.wheels import network
from smoke_tests import distributed, nvml


# Commands by what their steps do, for the settings and environment variables they read.
TAGGED = ("validate", "lock", "fetch", "base", "build", "smoke", "run", "size", "verify", "push", "pull", "k8s", "slurm",
          "sbom", "verify-image", "devcontainer")
CLUSTER = ("k8s", "slurm")  # what they print runs on another engine, which pulls the image from a registry
# what they write names the image by the digest digests/<tag>.json records, from the one registry it records
PINNED = (*CLUSTER, "devcontainer")
BUILDS = ("build", "smoke", "verify", "matrix")  # build an image (smoke builds a missing one)
FETCHES = ("lock", "fetch", *BUILDS)  # reach a package index or the wheel cache
REPORTS = ("build", "smoke", "size", "verify", "report", "doctor", "matrix", "sbom", "push")  # write or read reports/<tag>/
DIGESTS = ("render", "push", "pull", "report", *PINNED, "smoke", "verify-image")  # read digests/<tag>.json
SIGNS = ("push", "smoke")  # sign and attach attestations when TORCHYARD_SIGNING_KEY is set (builder/attest/attach.py)
RUNS_GPUS = ("smoke", "run", "matrix")  # start containers that TORCHYARD_GPUS=all|none gives GPUs or not
READS_NVML = ("smoke", "doctor", "matrix")  # ask NVML (or the recording that stands in for it) about the GPUs

Grammar = Callable[[str, str, str], object]  # (the value, the variable that refusals name, the command) -> checked


@dataclass(frozen=True)
class Option:
    """One option of the command line and, when it has a variable, the setting it is."""

    dest: str  # the attribute a command reads
    commands: tuple[str, ...] | None  # None: every command (an option given before the command)
    help: str
    make: str | None = None  # the Makefile's variable, named by refusals; None: the command line's alone
    env: str | None = None  # the environment variable it is read from when the option is not given
    default: str = ""
    grammar: Grammar | None = None  # None: taken as given (TAG: the matrix selects, and refuses, tags)
    makefile: bool = True  # whether the Makefile passes `make … NAME=` on (REPORTS, DIGESTS: the environment's alone)
    helps: Mapping[str, str] = field(default_factory=dict)  # a command's own help where it differs
    argparse: Mapping[str, object] = field(default_factory=dict)  # how argparse takes it (action, nargs, type)

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")

    def takes(self, command: str) -> bool:
        return self.commands is not None and command in self.commands


def _flag(value: str, name: str, command: str) -> bool:
    return inputs.flag(value, name)


def _registry(value: str, name: str, command: str) -> str | None:
    if not value and command in (*PINNED, "smoke"):
        return None  # the one registry digests/<tag>.json records (builder/jobs/cluster.py); smoke: every one recorded
    if not value:
        raise InputError("name the registry: REGISTRY=host[:port][/namespace] (or TORCHYARD_REGISTRY), "
                         "e.g. REGISTRY=registry.example.com/ml")
    return reference.registry(value, name)


def _data(value: str, name: str, command: str) -> Path | None:
    if not value:
        return None
    data = Path(inputs.mountable(value, name))
    if not data.is_dir():
        raise InputError(f"{name}={shown(value)}: not a folder; give an ImageFolder (one sub-folder of images per class)")
    return data


def _nodes(value: str, name: str, command: str) -> int:
    if command == "smoke":  # containers on this engine, not a cluster's nodes
        return inputs.count(value, name, multinode.MAX_LOCAL_NODES, "the number of containers (nodes)")
    return inputs.count(value, name, cluster.MAX_NODES, "the number of nodes")


def _dsse():
    """builder/attest/dsse.py, imported by the commands that read a key only (cryptography and securesystemslib take
    a third of a second to import, which every other command need not wait for)."""
    from builder.attest import dsse
    return dsse


def _key(value: str, name: str, command: str):
    if not value and command in CLUSTER:
        return None  # k8s and slurm verify the digest only when asked to
    return _dsse().public_key(value, name)


_ONE = {"action": "store_const", "const": "1"}  # a switch whose variable is a flag: NOCACHE=1

# In the order they are checked: the first bad value is the one refused.
OPTIONS = (
    Option("matrix", None, "the version matrix (default: matrix.yaml)", argparse={"type": Path, "default": layout.MATRIX}),
    Option("repo", None, "local image repository name (default: $TORCHYARD_REPO or torchyard)", "REPO", "TORCHYARD_REPO",
           "torchyard", lambda value, name, command: reference.repository(value, name)),
    Option("tag", (*TAGGED, "matrix"), "a tag of the matrix, or 'all' (default: the matrix's default)", "TAG", "TORCHYARD_TAG",
           helps={"matrix": "comma-separated tags of the matrix, or 'all' (the default)"}),
    Option("registry", ("push", "pull", *PINNED, "smoke", "verify-image"), "host[:port][/namespace] (default: "
           "$TORCHYARD_REGISTRY)", "REGISTRY", "TORCHYARD_REGISTRY", grammar=_registry,
           helps={**dict.fromkeys(CLUSTER, "the registry the cluster pulls from, host[:port][/namespace] (default: "
                                           "$TORCHYARD_REGISTRY, else the one digests/<tag>.json records)"),
                  "devcontainer": "the registry the dev container pulls from by digest (default: $TORCHYARD_REGISTRY, "
                                  "else the one digests/<tag>.json records, else the local image)",
                  "smoke": "attach the smoke attestation beside the digest pushed there only (default: beside every "
                           "digest of the image digests/<tag>.json records)"}),
    Option("key", ("verify-image", *CLUSTER), "the public key (PEM, Ed25519 or ECDSA P-256) the attestations must be "
           "signed with", "KEY", "TORCHYARD_KEY", grammar=_key,
           helps=dict.fromkeys(CLUSTER, "print the job only when the digest's attestations verify with this public key")),
    Option("signing_key", SIGNS, "the private key (PEM) that signs the attestations (default: $TORCHYARD_SIGNING_KEY; "
           "unset: nothing is attached)", "SIGNING_KEY", "TORCHYARD_SIGNING_KEY",
           grammar=lambda value, name, command: _dsse().signer(value, name) if value else None),
    Option("no_cache", ("build",), "rebuild every step (the base stays)", "NOCACHE", "TORCHYARD_NOCACHE", grammar=_flag,
           argparse=_ONE),
    Option("require_gpu", ("smoke", "matrix"), "a GPU check that would be SKIPPED fails instead", "REQUIRE_GPU",
           "TORCHYARD_REQUIRE_GPU", grammar=_flag, argparse=_ONE,
           helps={"matrix": "smoke: a GPU check that would be SKIPPED fails instead"}),
    Option("upgrade", ("lock",), "resolve every package anew (newest allowed) instead of keeping the versions the tag's "
           "locks hold", "UPGRADE", "TORCHYARD_UPGRADE", grammar=_flag, argparse=_ONE),
    Option("prune", ("render",), "also remove images/<tag>/ folders of tags not in the matrix (their locks with them)",
           "PRUNE", "TORCHYARD_PRUNE", grammar=_flag, argparse=_ONE),
    Option("data", ("smoke",), "an ImageFolder to fine-tune on (mounted read-only)", "DATA", "TORCHYARD_DATA", grammar=_data),
    Option("reports", REPORTS, "where reports/<tag>/ go (default: $TORCHYARD_REPORTS or reports/)", "REPORTS",
           "TORCHYARD_REPORTS", str(layout.REPORTS), lambda value, name, command: inputs.folder(value, name), makefile=False),
    Option("digests", DIGESTS, "where digests/<tag>.json live (default: $TORCHYARD_DIGESTS or digests/)", "DIGESTS",
           "TORCHYARD_DIGESTS", str(layout.DIGESTS), lambda value, name, command: inputs.folder(value, name),
           makefile=False),
    # not TORCHYARD_GPUS: that one says all|none, whether make smoke and make run pass the host's GPUs
    Option("gpus", CLUSTER, f"GPUs per node, 1 to {cluster.MAX_GPUS} (default: 1)", "GPUS", "TORCHYARD_GPUS_PER_NODE", "1",
           lambda value, name, command: inputs.count(value, name, cluster.MAX_GPUS, "the GPUs per node")),
    Option("nodes", ("smoke", *CLUSTER), f"nodes, 1 to {cluster.MAX_NODES} (default: 1; more: torchrun's all-reduce "
           "across them)", "NODES", "TORCHYARD_NODES", "1", _nodes,
           helps={"smoke": f"containers as nodes, 1 to {multinode.MAX_LOCAL_NODES} (default: 1); more: torchrun's "
                           "all-reduce across them on a Docker network"}),
    Option("sizes", ("smoke",), "all-reduce sizes in MiB with --nodes above 1 (default: "
           f"{' '.join(map(str, multinode.CPU_SIZES_MIB))} on the CPU, the suite's on GPUs)",
           argparse={"nargs": "+", "metavar": "MIB"}),
    Option("workspace", ("run",), "folder mounted at /workspace (default: ./workspace)", "WORKSPACE", "TORCHYARD_WORKSPACE",
           "workspace", lambda value, name, command: inputs.folder(inputs.mountable(value, name), name)),
    Option("bind", ("run",), "host address the ports are published on (default: 127.0.0.1)", "BIND", "TORCHYARD_BIND",
           "127.0.0.1", lambda value, name, command: inputs.address(value, name)),
    Option("jupyter_port", ("run",), "host port for JupyterLab (default: 8888)", "JUPYTER_PORT", "TORCHYARD_JUPYTER_PORT",
           "8888", lambda value, name, command: inputs.port(value, name)),
    Option("ssh_port", ("run",), "host port for SSH (default: 2222)", "SSH_PORT", "TORCHYARD_SSH_PORT", "2222",
           lambda value, name, command: inputs.port(value, name)),
    Option("devcontainer_dir", ("devcontainer",), "folder devcontainer.json is written to (default: .devcontainer/<tag>/)",
           "DEVCONTAINER_DIR", "TORCHYARD_DEVCONTAINER_DIR",
           grammar=lambda value, name, command: inputs.folder(value, name) if value else None),
    Option("keep", ("verify",), "keep the rebuilt image (<repo>-verify:<tag>)", argparse={"action": "store_true"}),
    Option("check", ("render", "ci"), "fail if images/ differs from a fresh render", argparse={"action": "store_true"},
           helps={"ci": "fail if the workflow differs from a fresh one"}),
)
SETTINGS = tuple(option for option in OPTIONS if option.env)  # what the environment can give as well


def parser(commands: Mapping[str, str]) -> argparse.ArgumentParser:
    """The command line: commands maps each command to its one line of help."""
    p = argparse.ArgumentParser(prog="python -m builder", description="torchyard: build PyTorch GPU images from matrix.yaml",
                                epilog="Every option also reads an environment variable: TORCHYARD_TAG, TORCHYARD_REPO, "
                                       "TORCHYARD_REGISTRY, ... (the Makefile's variables, prefixed).")
    for option in OPTIONS:
        if option.commands is None:
            p.add_argument(option.flag, help=option.help, **option.argparse)
    sub = p.add_subparsers(dest="command", required=True)
    for command, help_ in commands.items():
        c = sub.add_parser(command, help=help_, description=help_)
        for option in OPTIONS:
            if option.takes(command):
                c.add_argument(option.flag, help=option.helps.get(command, option.help), **option.argparse)
    return p


@dataclass(frozen=True)
class Variable:
    """An environment variable that the steps of a command read themselves (no option), checked before the first."""

    name: str
    commands: tuple[str, ...]
    check: Callable[[Mapping[str, str]], object]
    dest: str | None = None  # where a command finds what the check made of it


def _public_key(environ: Mapping[str, str]) -> None:
    """The key `make run` would pass as PUBLIC_KEY: public key lines only (never a private key in a container's
    environment, where `docker inspect` shows it)."""
    try:
        found = workspace.find_public_key(environ, Path.home())
    except workspace.WorkspaceError as e:
        raise InputError(str(e)) from None
    if found is None:
        return
    try:
        text = found.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"PUBLIC_KEY_FILE={shown(str(found))}: cannot be read as text ({e.__class__.__name__})") from None
    if "PRIVATE KEY" in text:
        raise InputError(f"PUBLIC_KEY_FILE={shown(str(found))} is a private key; name its public half (the .pub file)")
    try:  # the grammar the image's entrypoint checks PUBLIC_KEY with, so that a key passed here starts there
        keys = workspace.public_keys(text, "the file")
    except workspace.WorkspaceError as e:
        raise InputError(f"PUBLIC_KEY_FILE={shown(str(found))} does not hold OpenSSH public keys as the image takes them "
                         f"({e})") from None
    if not keys:
        raise InputError(f"PUBLIC_KEY_FILE={shown(str(found))} does not hold OpenSSH public keys "
                         "(lines like 'ssh-ed25519 AAAA… comment', as ssh-keygen writes them to a .pub file)")


def _debian_mirror(environ: Mapping[str, str]) -> None:
    if environ.get("TORCHYARD_DEBIAN_MIRROR"):
        inputs.url(environ["TORCHYARD_DEBIAN_MIRROR"], "TORCHYARD_DEBIAN_MIRROR", ("http", "https", "file"))


def _source_date_epoch(environ: Mapping[str, str]) -> None:
    value = environ.get("SOURCE_DATE_EPOCH", "")
    if value != "" and not re.fullmatch(r"[0-9]{1,12}", value, re.ASCII):
        raise InputError(f"SOURCE_DATE_EPOCH={shown(value)}: give seconds since 1970 (e.g. $(git log -1 --format=%ct)), "
                         "or unset it")


def _nvml_record(environ: Mapping[str, str]) -> None:
    if environ.get(nvml.RECORD_VARIABLE):
        nvml.read(environ)  # a recording that stands in for NVML is read whole before any work (RecordingError: exit 2)


# In the order they are checked, after the options.
VARIABLES = (
    Variable("PUBLIC_KEY_FILE", ("run",), _public_key),
    # with pip's configuration and REQUESTS_CA_BUNDLE, SSL_CERT_FILE: what fetching packages goes through
    Variable("TORCHYARD_TORCH_INDEX", FETCHES, lambda environ: network.host_settings(dict(environ)), dest="network"),
    Variable("TORCHYARD_CACHE", FETCHES, lambda environ: inputs.folder(layout.cache_dir(environ), "TORCHYARD_CACHE")),
    Variable("TORCHYARD_DEBIAN_MIRROR", ("base", *BUILDS), _debian_mirror),
    Variable("SOURCE_DATE_EPOCH", BUILDS, _source_date_epoch),
    Variable("TORCHYARD_GPUS", RUNS_GPUS, gpu.requested),
    Variable(nvml.RECORD_VARIABLE, READS_NVML, _nvml_record),
)


def settings(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> argparse.Namespace:
    """Each setting the command has, from the command line or else the environment, and the environment's
    other variables the command uses, checked by their grammars before any work: an InputError names the
    Makefile's variable (or the environment's) and what would be right."""
    checked: dict[str, object] = {}
    for option in SETTINGS:
        if not hasattr(args, option.dest):
            continue
        given = getattr(args, option.dest)
        value = given if given is not None else environ.get(option.env, option.default)
        checked[option.dest] = option.grammar(value, option.make, args.command) if option.grammar else value
    if hasattr(args, "sizes"):
        checked["sizes"] = _sizes(args.sizes, checked["nodes"], checked["data"])
    for variable in VARIABLES:
        if args.command in variable.commands:
            made = variable.check(environ)
            if variable.dest:
                checked[variable.dest] = made
    return argparse.Namespace(**{**vars(args), **checked})


def _sizes(sizes: list[str] | None, nodes: int, data: Path | None) -> tuple[int, ...]:
    """`smoke --sizes`: the all-reduce's sizes across nodes, which read no DATA."""
    if nodes > 1 and data:
        raise InputError("NODES>1 runs the all-reduce across the nodes, which reads no DATA; leave DATA out")
    if nodes == 1 and sizes:
        raise InputError("--sizes sets the all-reduce across nodes: give it with NODES=2 or more (the suite on "
                         "one node times its own sizes)")
    return tuple(inputs.count(s, "--sizes", distributed.MAX_SIZE_MIB, "an all-reduce size in MiB") for s in sizes or ())
