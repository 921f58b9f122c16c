"""`python -m builder <command>`: what every Make target calls.

Exit status: 0 done, 1 a build or engine failure, 2 an invalid request (nothing was written).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from builder import base, build, compat, gpu, lock, network, registry, render, size, smoke, verify, workspace
from builder.matrix import Matrix, MatrixError, load

MATRIX = render.ROOT / "matrix.yaml"
INVALID = 2


def _say(text: str) -> None:
    print(text, flush=True)


def _fail(text: str, status: int) -> int:
    print(f"torchyard: {text}", file=sys.stderr, flush=True)
    return status


def cmd_list(matrix: Matrix, args) -> int:
    print(f"{'tag':<20} {'torch':<8} {'vision':<8} {'cuda':<6} {'cudnn':<11} {'nccl':<8} {'python':<7} {'min driver':<11} wheel from")
    for s in matrix.specs.values():
        source = "PyPI" if s.index == "pypi" else f"PyTorch index/{s.cuda_variant}"
        default = "  (default)" if s.tag == matrix.default else ""
        print(f"{s.tag:<20} {s.torch:<8} {s.torchvision:<8} {s.cuda:<6} {s.cudnn or '?':<11} {s.nccl or '?':<8} "
              f"{s.python:<7} {s.min_driver:<11} {source}{default}")
    return 0


def cmd_validate(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    _say(f"{matrix.path.name}: {len(specs)} tag(s) valid" if len(specs) > 1 else f"{specs[0].tag}: valid")
    return 0


def cmd_render(matrix: Matrix, args) -> int:
    specs = list(matrix.specs.values())
    if args.check:
        differ = [d for s in specs for d in render.diff(s)] + [f"{p.name} (not in matrix.yaml)" for p in render.stale(list(matrix.specs))]
        if differ:
            return _fail("images/ differs from a fresh render of matrix.yaml; run `make render` and commit:\n  "
                         + "\n  ".join(differ), 1)
        _say(f"images/ matches matrix.yaml ({len(specs)} tags)")
        return 0
    changed = [s.tag for s in specs if render.write(s)]
    for path in render.stale(list(matrix.specs)):
        shutil.rmtree(path)
        _say(f"removed images/{path.name} (no longer in matrix.yaml)")
    _say(f"rendered {len(specs)} tags into images/; changed: {', '.join(changed) or 'none'}")
    return 0


def cmd_lock(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    settings = network.host_settings()
    for spec in specs:
        if render.write(spec):
            _say(f"rendered images/{spec.tag}/ from matrix.yaml")
    started = time.monotonic()
    failed = lock.lock_all(specs, settings, say=_say)
    _say(f"locked {len(specs) - len(failed)} of {len(specs)} tag(s) in {time.monotonic() - started:.1f}s")
    if failed:
        return _fail(f"{len(failed)} tag(s) not locked: {', '.join(failed)}", 1)
    return 0


def cmd_base(matrix: Matrix, args) -> int:
    client = build.connect()
    for b in dict.fromkeys(s.base for s in matrix.select(args.tag)):
        image_id = base.ensure(client, b, say=_say)
        _say(f"base {b.image}: {image_id[:19]}")
    return 0


def cmd_build(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    settings = network.host_settings()
    for note in settings.ignored:
        _say(f"note: not forwarding {note}")
    if settings.ca_files:
        _say("trusting the host's CA bundle(s) during the build: " + ", ".join(map(str, settings.ca_files)))
    client = build.connect()
    failed = [spec.tag for spec in specs if not _build(client, spec, args.repo, settings, args.no_cache, args.reports)]
    if failed:
        return _fail(f"{len(failed)} of {len(specs)} builds failed: {', '.join(failed)}", 1)
    return 0


def _build(client, spec, repo: str, settings: network.NetworkSettings, no_cache: bool = False,
           reports: Path = build.REPORTS) -> bool:
    if render.write(spec):
        _say(f"rendered images/{spec.tag}/ from matrix.yaml")
    base.ensure(client, spec.base, say=_say)
    try:
        result = build.build(client, spec, repo, settings, say=_say, nocache=no_cache, reports=reports)
        size.check(client, result.image, spec.tag, spec.size_budget, say=_say, reports=reports)
        return True
    except size.SizeError as e:
        _fail(f"build of {spec.tag} is over its size budget (the image is kept for inspection):\n  {e}", 1)
        return False
    except (build.BuildFailed, lock.LockError) as e:
        _fail(str(e), 1)
        return False


def _built(client, image: str) -> bool:
    return bool(client.images.list(name=image))


def cmd_smoke(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    if args.data and not args.data.is_dir():
        return _fail(f"DATA={args.data}: not a folder; give an ImageFolder (one sub-folder of images per class)", INVALID)
    client = build.connect()
    outcomes = {}
    for spec in specs:
        image = f"{args.repo}:{spec.tag}"
        if not _built(client, image):
            _say(f"{image} is not built yet: building it first")
            if not _build(client, spec, args.repo, network.host_settings()):
                outcomes[spec.tag] = "not built"
                continue
        try:
            result = smoke.run(client, spec, args.repo, matrix, say=_say, reports=args.reports,
                               require_gpu=args.require_gpu, data=args.data)
        except smoke.SmokeError as e:
            _fail(str(e), 1)
            outcomes[spec.tag] = "no report"
            continue
        outcomes[spec.tag] = result.status
        _say(f"{image}: {result.status} in {result.seconds:.0f}s; report {result.report}, reproduce with {result.command}")
    failed = [tag for tag, outcome in outcomes.items() if outcome != "PASS"]
    if failed:
        return _fail(f"smoke tests did not pass for {', '.join(f'{t} ({outcomes[t]})' for t in failed)}", 1)
    return 0


def cmd_size(matrix: Matrix, args) -> int:
    client = build.connect()
    over = []
    for spec in matrix.select(args.tag):
        image = f"{args.repo}:{spec.tag}"
        if not _built(client, image):
            return _fail(f"no local image {image}; build it first: make build TAG={spec.tag}", 1)
        try:
            size.check(client, image, spec.tag, spec.size_budget, say=_say, reports=args.reports)
        except size.SizeError as e:
            _fail(f"{spec.tag} is over its size budget:\n  {e}", 1)
            over.append(spec.tag)
    return 1 if over else 0


def cmd_verify(matrix: Matrix, args) -> int:
    client = build.connect()
    settings = network.host_settings()
    differ = []
    for spec in matrix.select(args.tag):
        image = f"{args.repo}:{spec.tag}"
        if not _built(client, image):
            return _fail(f"no local image {image} to verify; build it first: make build TAG={spec.tag}", 1)
        _say(f"verify {image}: rebuilding {spec.tag} without cache as {args.repo}-verify:{spec.tag}")
        try:
            again = build.build(client, spec, f"{args.repo}-verify", settings, say=_say, nocache=True, reports=args.reports)
        except (build.BuildFailed, lock.LockError) as e:
            return _fail(str(e), 1)
        if not args.keep:
            build.drop_stages(client, again)  # the install stage's copy of the venv is not compared; free its space
        try:
            comparison = verify.compare(client, image, again.image)
        finally:
            if not args.keep:
                build.remove(client, again)
        path = verify.write(comparison, spec.tag, args.reports)
        _say(comparison.summary())
        _say(f"full comparison: {path}")
        if not comparison.identical_contents:
            differ.append(spec.tag)
    return 1 if differ else 0


def cmd_push(matrix: Matrix, args) -> int:
    client = build.connect()
    for spec in matrix.select(args.tag):
        registry.push(client, f"{args.repo}:{spec.tag}", args.registry, spec.tag, say=_say)
    return 0


def cmd_pull(matrix: Matrix, args) -> int:
    client = build.connect()
    for spec in matrix.select(args.tag):
        registry.pull(client, args.registry, spec.tag, say=_say)
    return 0


def cmd_clean(matrix: Matrix, args) -> int:
    client = build.connect()
    removed = 0
    for image in client.images.list(name=args.repo):
        for tag in image.tags:
            if tag.startswith(f"{args.repo}:"):
                client.images.remove(tag)
                removed += 1
                _say(f"removed {tag}")
    _say(f"removed {removed} {args.repo} image tag(s); the base images and the build cache stay")
    return 0


def cmd_run(matrix: Matrix, args) -> int:
    spec = matrix.select(args.tag)
    if len(spec) != 1:
        return _fail("run starts one workspace: give one TAG, not 'all'", INVALID)
    try:
        ws = workspace.plan(f"{args.repo}:{spec[0].tag}", spec[0].tag, args.workspace, args.bind,
                            args.jupyter_port, args.ssh_port)
        workspace.start(build.connect(), ws, say=_say)
    except gpu.GpuSettingError as e:
        return _fail(str(e), INVALID)
    except workspace.WorkspaceError as e:
        return _fail(str(e), 1)
    return 0


COMMANDS = {
    "list": (cmd_list, "every tag in the matrix with its derived versions"),
    "validate": (cmd_validate, "check matrix.yaml (and TAG) against the compatibility facts"),
    "render": (cmd_render, "regenerate images/<tag>/ for every tag (--check: only compare)"),
    "base": (cmd_base, "make or pull the base image(s) TAG needs"),
    "build": (cmd_build, "validate, render and build TAG (default: the matrix's default; 'all': every tag)"),
    "smoke": (cmd_smoke, "run the smoke suite inside <repo>:TAG (built first when missing); report in reports/<tag>/"),
    "run": (cmd_run, "start TAG's workspace: JupyterLab on 8888, SSH on 2222 with your key, ./workspace mounted"),
    "lock": (cmd_lock, "resolve TAG's Python packages to images/<tag>/requirements.lock (versions and sha256)"),
    "size": (cmd_size, "size report of <repo>:TAG (total, layers, largest packages) in reports/<tag>/; checks size_budget"),
    "verify": (cmd_verify, "rebuild TAG without cache and compare package sets and file contents with <repo>:TAG"),
    "push": (cmd_push, "push <repo>:TAG to REGISTRY as <REGISTRY>/torchyard:TAG; record its digest in digests/<tag>.json"),
    "pull": (cmd_pull, "pull <REGISTRY>/torchyard:TAG when its digest is the one digests/<tag>.json records"),
    "clean": (cmd_clean, "remove the <repo>:* images"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m builder", description="torchyard: build PyTorch GPU images from matrix.yaml")
    p.add_argument("--matrix", type=Path, default=MATRIX, help="the version matrix (default: matrix.yaml)")
    p.add_argument("--repo", default=os.environ.get("TORCHYARD_REPO", "torchyard"),
                   help="local image repository name (default: $TORCHYARD_REPO or torchyard)")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (_, help_) in COMMANDS.items():
        c = sub.add_parser(name, help=help_, description=help_)
        if name in ("validate", "lock", "base", "build", "smoke", "run", "size", "verify", "push", "pull"):
            c.add_argument("--tag", default=None, help="a tag of the matrix, or 'all' (default: the matrix's default)")
        if name == "build":
            c.add_argument("--no-cache", action="store_true", help="rebuild every step (the base stays)")
        if name == "smoke":
            c.add_argument("--require-gpu", action="store_true", help="a GPU check that would be SKIPPED fails instead")
            c.add_argument("--data", type=Path, help="an ImageFolder to fine-tune on (mounted read-only)")
        if name in ("build", "smoke", "size", "verify"):
            c.add_argument("--reports", type=Path, default=Path(os.environ.get("TORCHYARD_REPORTS", build.REPORTS)),
                           help="where reports/<tag>/ go (default: $TORCHYARD_REPORTS or reports/)")
        if name == "run":
            c.add_argument("--workspace", type=Path, default=Path("workspace"), help="folder mounted at /workspace (default: ./workspace)")
            c.add_argument("--bind", default="127.0.0.1", help="host address the ports are published on (default: 127.0.0.1)")
            c.add_argument("--jupyter-port", type=int, default=8888, help="host port for JupyterLab (default: 8888)")
            c.add_argument("--ssh-port", type=int, default=2222, help="host port for SSH (default: 2222)")
        if name == "verify":
            c.add_argument("--keep", action="store_true", help="keep the rebuilt image (<repo>-verify:<tag>)")
        if name in ("push", "pull"):
            c.add_argument("--registry", default=os.environ.get("TORCHYARD_REGISTRY"), required=not os.environ.get("TORCHYARD_REGISTRY"),
                           help="host[:port][/namespace] (default: $TORCHYARD_REGISTRY)")
        if name == "render":
            c.add_argument("--check", action="store_true", help="fail if images/ differs from a fresh render")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        matrix = load(args.matrix, compat.load())
        return COMMANDS[args.command][0](matrix, args)
    except MatrixError as e:
        count = len(e.problems)
        return _fail(f"refused: {count} problem{'s' if count > 1 else ''}; nothing was rendered or built.\n"
                     + "\n".join(f"  {p}" for p in e.problems), INVALID)
    except network.NetworkError as e:
        return _fail(str(e), INVALID)
    except registry.RegistryError as e:
        return _fail(str(e), 1)
    except gpu.GpuSettingError as e:
        return _fail(str(e), INVALID)
    except (build.EngineError, base.BaseError) as e:
        return _fail(str(e), 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
