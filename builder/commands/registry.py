"""The commands between this host and a registry: push and pull by recorded digest, and the attestations beside a
digest (the SBOM written here, verify-image).
"""

from __future__ import annotations

from builder.commands.output import say
from builder.image import engine, registry
from builder.matrix.types import Matrix
from builder.records import published


def cmd_push(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    for spec in specs:
        published.read_digests(spec.tag, args.digests)  # a malformed record refuses before anything moves
    client = engine.connect()
    for spec in specs:
        shipped = registry.push(client, f"{args.repo}:{spec.tag}", args.registry, spec.tag, say=say, digests=args.digests)
        from builder.attest import attach  # (imported here: see cmd_sbom)
        attach.after_push(client, shipped, spec.tag, args.signing_key, args.reports, say=say)
    return 0


def cmd_pull(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    for spec in specs:
        published.read_digests(spec.tag, args.digests)
    client = engine.connect()
    for spec in specs:
        registry.pull(client, args.registry, spec.tag, say=say, digests=args.digests)
    return 0


def cmd_sbom(matrix: Matrix, args) -> int:
    from builder.attest import attach  # imported here: its libraries take a third of a second, which no other command needs
    client = engine.connect()
    for spec in matrix.select(args.tag):
        attach.write_sbom(client, f"{args.repo}:{spec.tag}", spec.tag, args.reports, say=say)
    return 0


def cmd_verify_image(matrix: Matrix, args) -> int:
    from builder.attest import verify as attestations  # (imported here: see cmd_sbom)
    for spec in matrix.select(args.tag):
        attestations.run(args.registry, spec.tag, args.digests, args.key, say=say)
    return 0
