"""The commands that run images on this host: the smoke suite, the workspace (`make run`) and the doctor."""

from __future__ import annotations

from builder import layout
from builder.commands.image import build_tag, built
from builder.commands.output import INVALID, fail, say
from builder.host import doctor, smoke, workspace
from builder.image import engine
from builder.jobs import multinode
from builder.matrix.types import Matrix
from builder.records import runs


def cmd_smoke(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    client = engine.connect()
    outcomes = {}
    for spec in specs:
        image = f"{args.repo}:{spec.tag}"
        if not built(client, image):
            say(f"{image} is not built yet: building it first")
            if not build_tag(client, spec, args.repo, args.network):
                outcomes[spec.tag] = "not built"
                continue
        try:
            if args.nodes > 1:
                result = multinode.run(client, spec, args.repo, args.nodes, say=say, reports=args.reports,
                                       require_gpu=args.require_gpu, sizes=args.sizes)
            else:
                result = smoke.run(client, spec, args.repo, matrix, say=say, reports=args.reports,
                                   require_gpu=args.require_gpu, data=args.data)
        except smoke.SmokeError as e:
            fail(str(e), 1)
            outcomes[spec.tag] = "no report"
            continue
        outcomes[spec.tag] = result.status
        say(f"{image}: {result.status} in {result.seconds:.0f}s; report {result.report}, reproduce with {result.command}")
        if args.nodes == 1:  # a digest's smoke attestation is the one-node suite's report
            from builder.attest import attach  # (imported here: see registry.cmd_sbom)
            attach.after_smoke(spec.tag, runs.read_smoke(result.report), args.digests, args.registry,
                               args.signing_key, args.reports, say=say)
    failed = [tag for tag, outcome in outcomes.items() if outcome != "PASS"]
    if failed:
        return fail(f"smoke tests did not pass for {', '.join(f'{t} ({outcomes[t]})' for t in failed)}", 1)
    return 0


def cmd_run(matrix: Matrix, args) -> int:
    spec = matrix.select(args.tag)
    if len(spec) != 1:
        return fail("run starts one workspace: give one TAG, not 'all'", INVALID)
    try:
        ws = workspace.plan(f"{args.repo}:{spec[0].tag}", spec[0].tag, args.workspace, args.bind,
                            args.jupyter_port, args.ssh_port)
        workspace.start(engine.connect(), ws, say=say)
    except workspace.WorkspaceError as e:
        return fail(str(e), 1)
    return 0


def cmd_doctor(matrix: Matrix, args) -> int:
    return doctor.run(matrix, layout.IMAGES, args.reports, say=say)
