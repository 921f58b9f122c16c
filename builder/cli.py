"""`python -m builder <command>`: what every Make target calls.

Exit status: 0 done; 1 a build, engine or registry failure; 2 an invalid request: a malformed matrix, option,
setting or record, refused before any work (before the engine is contacted), with nothing written. The options
and the settings they read from the environment are declared in builder/options.py.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from builder import inputs, layout, options
from builder.attest import AttestError
from builder.host import doctor, gpu, smoke, workspace
from builder.image import base, build, engine, registry, render, size, verify
from builder.inputs import InputError
from builder.jobs import ci, cluster, devcontainer, k8s, multinode, slurm
from builder.matrix import compat
from builder.matrix.load import load
from builder.matrix.types import Matrix, MatrixError
from builder.matrix_run import run as matrix_run
from builder.records import published, runs
from builder.report import page, rows
from builder.urls import redact
from builder.wheels import archs as wheel_archs
from builder.wheels import cache as wheel_cache
from builder.wheels import lock, lockfile, network, serve
from smoke_tests import nvml

INVALID = 2


def _say(text: str) -> None:
    print(redact(text), flush=True)


def _fail(text: str, status: int) -> int:
    print(f"torchyard: {redact(text)}", file=sys.stderr, flush=True)
    return status


def cmd_list(matrix: Matrix, args) -> int:
    print(f"{'tag':<20} {'torch':<8} {'vision':<8} {'audio':<8} {'cuda':<6} {'cudnn':<11} {'nccl':<8} {'python':<7} "
          f"{'min driver':<11} wheel from")
    for s in matrix.specs.values():
        source = "PyPI" if s.index == "pypi" else f"PyTorch index/{s.cuda_variant}"
        default = "  (default)" if s.tag == matrix.default else ""
        print(f"{s.tag:<20} {s.torch:<8} {s.torchvision:<8} {s.torchaudio or '-':<8} {s.cuda:<6} {s.cudnn or '?':<11} "
              f"{s.nccl or '?':<8} {s.python:<7} {s.min_driver:<11} {source}{default}")
    return 0


def cmd_validate(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    _say(f"{matrix.path.name}: {len(specs)} tag(s) valid" if len(specs) > 1 else f"{specs[0].tag}: valid")
    return 0


def cmd_render(matrix: Matrix, args) -> int:
    specs = list(matrix.specs.values())
    stale = render.stale(list(matrix.specs))
    if args.check:
        differ = [d for s in specs for d in render.diff(s)] + [f"{p.name} (not in {matrix.path.name})" for p in stale]
        if differ:
            return _fail(f"images/ differs from a fresh render of {matrix.path.name}; run `make render` and commit:\n  "
                         + "\n  ".join(differ), 1)
        _say(f"images/ matches {matrix.path.name} ({len(specs)} tags)")
        return 0
    changed = [s.tag for s in specs if render.write(s)]
    _say(f"rendered {len(specs)} tags into images/; changed: {', '.join(changed) or 'none'}")
    if stale and args.prune:
        for path in stale:
            shutil.rmtree(path)
            _say(f"removed images/{path.name} (not in {matrix.path.name})")
    elif stale:
        _say(f"kept {len(stale)} folder(s) of tags not in {matrix.path.name} (render deletes nothing unless told to):")
        for path in stale[:50]:
            held = [f.name for f in sorted(path.glob("*.lock"))]
            if published.digests_path(path.name, args.digests).is_file():
                held.append(f"digests/{path.name}.json")
            _say(f"  images/{path.name}" + (f" (holds {', '.join(held)})" if held else ""))
        if len(stale) > 50:
            _say(f"  ... and {len(stale) - 50} more")
        _say("  remove them with `make render PRUNE=1` (python -m builder render --prune), or one with `git rm -r images/<tag>`")
    return 0


def cmd_lock(matrix: Matrix, args) -> int:
    # TAG=a,b,… as make matrix takes it: locking is seconds a tag, so several are often asked for at once
    specs = matrix.select(args.tag)
    settings = args.network
    for spec in specs:
        if render.write(spec):
            _say(f"rendered images/{spec.tag}/ from matrix.yaml")
    started = time.monotonic()
    failed = lock.lock_all(specs, settings, say=_say, upgrade=bool(args.upgrade))
    for spec in specs:  # the Dockerfile's layers follow torch's lock (builder/image/layers.py)
        if render.write(spec):
            _say(f"rendered images/{spec.tag}/Dockerfile again from its new lock")
    _say(f"locked {len(specs) - len(failed)} of {len(specs)} tag(s) in {time.monotonic() - started:.1f}s")
    if failed:
        return _fail(f"{len(failed)} tag(s) not locked: {', '.join(failed)}", 1)
    return 0


def cmd_fetch(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    for spec in specs:
        lockfile.check(spec)  # a lock line that is no lock's: exit 2 before anything is fetched or removed
    refused = {spec.tag: problem for spec in specs if (problem := lockfile.problem(spec))}
    for note in args.network.ignored:
        _say(f"note: not using {note}")
    locked = [spec for spec in specs if spec.tag not in refused]
    try:
        fetched = wheel_cache.fetch(wheel_cache.wanted(locked), args.network, say=_say)
    except wheel_cache.FetchError as e:
        return _fail(str(e), 1)
    _say(f"{len(locked)} tag(s): {fetched.files} artifacts in {wheel_cache.folder()}, {fetched.downloaded} fetched now")
    wheel_archs.record_each(locked, wheel_cache.folder(), say=_say)
    if refused:
        return _fail(f"{len(refused)} tag(s) not fetched:\n" + "\n".join(f"  {problem}" for problem in refused.values()), 1)
    return 0


def cmd_base(matrix: Matrix, args) -> int:
    client = engine.connect()
    for b in dict.fromkeys(s.base for s in matrix.select(args.tag)):
        image_id = base.ensure(client, b, say=_say)
        _say(f"base {b.image}: {image_id[:19]}")
    return 0


def cmd_build(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    for spec in specs:
        lockfile.check(spec)
    settings = args.network
    for note in settings.ignored:
        _say(f"note: not using {note}")
    if settings.ca_files:
        _say("fetching what the wheel cache lacks with the host's CA bundle(s): " + ", ".join(map(str, settings.ca_files)))
    client = engine.connect()
    failed = [spec.tag for spec in specs if not _build(client, spec, args.repo, settings, args.no_cache, args.reports)]
    if failed:
        return _fail(f"{len(failed)} of {len(specs)} builds failed: {', '.join(failed)}", 1)
    return 0


def _build(client, spec, repo: str, settings: network.NetworkSettings, no_cache: bool = False,
           reports: Path = layout.REPORTS) -> bool:
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
    except (build.BuildFailed, lockfile.LockError, wheel_cache.FetchError, serve.ServeError) as e:
        _fail(str(e), 1)
        return False


def _built(client, image: str) -> bool:
    return bool(client.images.list(name=image))


def cmd_smoke(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    client = engine.connect()
    outcomes = {}
    for spec in specs:
        image = f"{args.repo}:{spec.tag}"
        if not _built(client, image):
            _say(f"{image} is not built yet: building it first")
            if not _build(client, spec, args.repo, args.network):
                outcomes[spec.tag] = "not built"
                continue
        try:
            if args.nodes > 1:
                result = multinode.run(client, spec, args.repo, args.nodes, say=_say, reports=args.reports,
                                       require_gpu=args.require_gpu, sizes=args.sizes)
            else:
                result = smoke.run(client, spec, args.repo, matrix, say=_say, reports=args.reports,
                                   require_gpu=args.require_gpu, data=args.data)
        except smoke.SmokeError as e:
            _fail(str(e), 1)
            outcomes[spec.tag] = "no report"
            continue
        outcomes[spec.tag] = result.status
        _say(f"{image}: {result.status} in {result.seconds:.0f}s; report {result.report}, reproduce with {result.command}")
        if args.nodes == 1:  # a digest's smoke attestation is the one-node suite's report
            from builder.attest import attach  # (imported here: see cmd_sbom)
            attach.after_smoke(spec.tag, runs.read_smoke(result.report), args.digests, args.registry,
                               args.signing_key, args.reports, say=_say)
    failed = [tag for tag, outcome in outcomes.items() if outcome != "PASS"]
    if failed:
        return _fail(f"smoke tests did not pass for {', '.join(f'{t} ({outcomes[t]})' for t in failed)}", 1)
    return 0


def cmd_size(matrix: Matrix, args) -> int:
    client = engine.connect()
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
    client = engine.connect()
    settings = args.network
    differ = []
    for spec in matrix.select(args.tag):
        image = f"{args.repo}:{spec.tag}"
        if not _built(client, image):
            return _fail(f"no local image {image} to verify; build it first: make build TAG={spec.tag}", 1)
        _say(f"verify {image}: rebuilding {spec.tag} without cache as {args.repo}-verify:{spec.tag}")
        try:
            again = build.build(client, spec, f"{args.repo}-verify", settings, say=_say, nocache=True, reports=args.reports)
        except (build.BuildFailed, lockfile.LockError, wheel_cache.FetchError, serve.ServeError) as e:
            return _fail(str(e), 1)
        try:
            comparison = verify.compare(client, image, again.image)
        finally:
            if not args.keep:
                build.remove(client, again)
        path = verify.write(comparison, spec.tag, args.reports)
        _say(comparison.summary())
        _say(f"full comparison: {path}")
        if not comparison.identical:  # the same contents in layers of other bytes is a difference too
            differ.append(spec.tag)
    return 1 if differ else 0


def cmd_push(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    for spec in specs:
        published.read_digests(spec.tag, args.digests)  # a malformed record refuses before anything moves
    client = engine.connect()
    for spec in specs:
        shipped = registry.push(client, f"{args.repo}:{spec.tag}", args.registry, spec.tag, say=_say, digests=args.digests)
        from builder.attest import attach  # (imported here: see cmd_sbom)
        attach.after_push(client, shipped, spec.tag, args.signing_key, args.reports, say=_say)
    return 0


def cmd_sbom(matrix: Matrix, args) -> int:
    from builder.attest import attach  # imported here: its libraries take a third of a second, which no other command needs
    client = engine.connect()
    for spec in matrix.select(args.tag):
        attach.write_sbom(client, f"{args.repo}:{spec.tag}", spec.tag, args.reports, say=_say)
    return 0


def cmd_verify_image(matrix: Matrix, args) -> int:
    from builder.attest import verify as attestations  # (imported here: see cmd_sbom)
    for spec in matrix.select(args.tag):
        attestations.run(args.registry, spec.tag, args.digests, args.key, say=_say)
    return 0


def cmd_pull(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    for spec in specs:
        published.read_digests(spec.tag, args.digests)
    client = engine.connect()
    for spec in specs:
        registry.pull(client, args.registry, spec.tag, say=_say, digests=args.digests)
    return 0


def _cluster_jobs(matrix: Matrix, args) -> list[cluster.Job]:
    """A job per tag for k8s and slurm; TAG=all: every tag pushed to a registry."""
    tags = [spec.tag for spec in matrix.select(args.tag)]
    if args.tag == "all":
        pushed = cluster.pushed(tags, args.digests)
        left_out = [tag for tag in tags if tag not in pushed]
        if left_out:
            print(f"torchyard: left out, never pushed: {', '.join(left_out)}", file=sys.stderr)
        tags = pushed
    jobs = [cluster.job(tag, args.registry, args.digests, args.gpus, args.nodes, args.command) for tag in tags]
    if args.key:  # KEY=: nothing is printed unless each job's digest has attestations that verify with it
        from builder.attest import verify as attestations  # (imported here: see cmd_sbom)
        for job in jobs:
            attestations.require(job.image.reference, job.image.digest, args.key, say=lambda line: _fail(line, 0))
    return jobs


def cmd_k8s(matrix: Matrix, args) -> int:
    documents = [k8s.dump(k8s.manifests(job.tag, job.image, job.gpus, job.nodes), job.header)
                 for job in _cluster_jobs(matrix, args)]
    sys.stdout.write("---\n".join(documents))
    return 0


def cmd_slurm(matrix: Matrix, args) -> int:
    if args.tag == "all":
        return _fail("slurm prints one sbatch script: give one TAG, not 'all'", INVALID)
    [job] = _cluster_jobs(matrix, args)
    sys.stdout.write(slurm.script(job.tag, job.image, job.gpus, job.nodes, job.header))
    return 0


def cmd_devcontainer(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    if len(specs) != 1:
        return _fail("devcontainer writes one devcontainer.json: give one TAG, not 'all'", INVALID)
    tag = specs[0].tag
    path = devcontainer.target(args.devcontainer_dir, tag)
    if args.devcontainer_dir is None:
        inputs.folder(path.parent, "DEVCONTAINER_DIR")  # the default folder: nothing else may stand there
    img = devcontainer.image(tag, args.repo, args.registry, args.digests)
    changed = devcontainer.write(path, devcontainer.text(tag, img))
    _say(f"{'wrote' if changed else 'unchanged:'} {path}: {tag} from {img.note}")
    where = path.absolute()
    project = where.parents[2] if where.parents[1].name == devcontainer.FOLDER else Path("<your project>")
    _say(f"open it: VS Code on {project} (Reopen in Container), or "
         f"devcontainer up --workspace-folder {project} --config {path}")
    return 0


def cmd_ci(matrix: Matrix, args) -> int:
    path = ci.WORKFLOW
    if args.check:
        if not path.is_file() or path.read_text() != ci.text(matrix):
            return _fail(f"{path.relative_to(layout.ROOT)} differs from a fresh `make ci` of matrix.yaml and the locks; "
                         "run `make ci` and commit", 1)
        _say(f"{path.relative_to(layout.ROOT)} matches matrix.yaml and the locks")
        return 0
    changed = ci.write(matrix)
    tags = ci.buildable(matrix)
    _say(f"{'wrote' if changed else 'unchanged:'} {path.relative_to(layout.ROOT)}: {len(tags)} buildable tag(s) of "
         f"{len(matrix.specs)} (those with current locks)")
    return 0


def cmd_clean(matrix: Matrix, args) -> int:
    client = engine.connect()
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
        workspace.start(engine.connect(), ws, say=_say)
    except workspace.WorkspaceError as e:
        return _fail(str(e), 1)
    return 0


def cmd_matrix(matrix: Matrix, args) -> int:
    return matrix_run.run(matrix, args.tag, args.repo, args.reports, args.network, say=_say, require_gpu=args.require_gpu)


def cmd_report(matrix: Matrix, args) -> int:
    for path in page.write(rows.collect(matrix, reports=args.reports, digests=args.digests), args.reports):
        _say(f"wrote {path}")
    return 0


def cmd_doctor(matrix: Matrix, args) -> int:
    return doctor.run(matrix, layout.IMAGES, args.reports, say=_say)


COMMANDS = {
    "list": (cmd_list, "every tag in the matrix with its derived versions"),
    "validate": (cmd_validate, "check matrix.yaml (and TAG) against the compatibility facts"),
    "render": (cmd_render, "regenerate images/<tag>/ for every tag (--check: only compare)"),
    "fetch": (cmd_fetch, "download every artifact TAG=a,b,… (or all)'s locks name into the wheel cache, sha256 checked (builds read it)"),
    "base": (cmd_base, "make or pull the base image(s) TAG needs"),
    "build": (cmd_build, "validate, render and build TAG (default: the matrix's default; 'all': every tag)"),
    "smoke": (cmd_smoke, "run the smoke suite inside <repo>:TAG (built first when missing); report in reports/<tag>/"),
    "run": (cmd_run, "start TAG's workspace: JupyterLab on 8888, SSH on 2222 with your key, ./workspace mounted"),
    "lock": (cmd_lock, "resolve TAG=a,b,… (or all)'s Python packages with uv to images/<tag>/requirements*.lock (versions, wheel, sha256)"),
    "size": (cmd_size, "size report of <repo>:TAG (total, layers, largest packages) in reports/<tag>/; checks size_budget"),
    "verify": (cmd_verify, "rebuild TAG without cache and compare package sets and file contents with <repo>:TAG"),
    "push": (cmd_push, "push <repo>:TAG to REGISTRY as <REGISTRY>/torchyard:TAG; record its digest in digests/<tag>.json"),
    "pull": (cmd_pull, "pull <REGISTRY>/torchyard:TAG when its digest is the one digests/<tag>.json records"),
    "sbom": (cmd_sbom, "write <repo>:TAG's CycloneDX 1.6 SBOM to reports/<tag>/sbom.cdx.json"),
    "verify-image": (cmd_verify_image, "check TAG's attestations in REGISTRY with KEY (a public key); say what they say"),
    "clean": (cmd_clean, "remove the <repo>:* images"),
    "matrix": (cmd_matrix, "for TAG=a,b (default: all): lock check, build, size, smoke; then the report (resumes)"),
    "report": (cmd_report, "reports/matrix.json, matrix.md and index.html from what reports/ holds"),
    "doctor": (cmd_doctor, "which tags run on this host and why not: driver, GPUs, Docker's GPU runtime, /dev/shm, disk"),
    "k8s": (cmd_k8s, "print Kubernetes manifests that smoke-test TAG on GPUS per node and NODES nodes (| kubectl apply -f -)"),
    "slurm": (cmd_slurm, "print an sbatch script (pyxis/enroot) that smoke-tests TAG on GPUS per node and NODES nodes"),
    "devcontainer": (cmd_devcontainer, "write .devcontainer/<tag>/devcontainer.json (or DEVCONTAINER_DIR=): TAG's image "
                                       "in VS Code or the Dev Containers CLI, as make run starts it"),
    "ci": (cmd_ci, "write .github/workflows/images.yml: a job per buildable tag (--check: only compare)"),
}


def parser() -> argparse.ArgumentParser:
    return options.parser({name: help_ for name, (_, help_) in COMMANDS.items()})


def main(argv: list[str] | None = None) -> int:
    """One command, and its exit status (builder/__main__.py adds what ends the process: SIGTERM, its output's
    failures)."""
    args = parser().parse_args(argv)
    try:
        matrix = load(args.matrix, compat.load())
        args = options.settings(args)
        return COMMANDS[args.command][0](matrix, args)
    except MatrixError as e:
        count = len(e.problems)
        return _fail(f"refused: {count} problem{'s' if count > 1 else ''}; nothing was rendered or built.\n"
                     + "\n".join(f"  {line}" for line in e.lines()), INVALID)
    except (InputError, gpu.GpuSettingError, nvml.RecordingError) as e:
        return _fail(f"refused: {e}; nothing was done.", INVALID)
    except (registry.RegistryError, engine.EngineError, base.BaseError, AttestError) as e:
        return _fail(str(e), 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
