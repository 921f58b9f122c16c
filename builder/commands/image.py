"""The commands that make and check a local image: base, build, size, verify (a rebuild compared) and clean."""

from __future__ import annotations

from pathlib import Path

from builder import layout
from builder.commands.output import fail, say
from builder.image import base, build, engine, render, size, verify
from builder.matrix.types import Matrix
from builder.wheels import cache as wheel_cache
from builder.wheels import lockfile, network, serve


def cmd_base(matrix: Matrix, args) -> int:
    client = engine.connect()
    for b in dict.fromkeys(s.base for s in matrix.select(args.tag)):
        image_id = base.ensure(client, b, say=say)
        say(f"base {b.image}: {image_id[:19]}")
    return 0


def cmd_build(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    for spec in specs:
        lockfile.check(spec)
    settings = args.network
    for note in settings.ignored:
        say(f"note: not using {note}")
    if settings.ca_files:
        say("fetching what the wheel cache lacks with the host's CA bundle(s): " + ", ".join(map(str, settings.ca_files)))
    client = engine.connect()
    failed = [spec.tag for spec in specs if not build_tag(client, spec, args.repo, settings, args.no_cache, args.reports)]
    if failed:
        return fail(f"{len(failed)} of {len(specs)} builds failed: {', '.join(failed)}", 1)
    return 0


def build_tag(client, spec, repo: str, settings: network.NetworkSettings, no_cache: bool = False,
              reports: Path = layout.REPORTS) -> bool:
    """Render, ensure the base, build and check the size budget of one tag (build and smoke): False once it has
    said why it failed."""
    if render.write(spec):
        say(f"rendered images/{spec.tag}/ from matrix.yaml")
    base.ensure(client, spec.base, say=say)
    try:
        result = build.build(client, spec, repo, settings, say=say, nocache=no_cache, reports=reports)
        size.check(client, result.image, spec.tag, spec.size_budget, say=say, reports=reports)
        return True
    except size.SizeError as e:
        fail(f"build of {spec.tag} is over its size budget (the image is kept for inspection):\n  {e}", 1)
        return False
    except (build.BuildFailed, lockfile.LockError, wheel_cache.FetchError, serve.ServeError) as e:
        fail(str(e), 1)
        return False


def built(client, image: str) -> bool:
    """Whether the engine has the image of that name here."""
    return bool(client.images.list(name=image))


def cmd_size(matrix: Matrix, args) -> int:
    client = engine.connect()
    over = []
    for spec in matrix.select(args.tag):
        image = f"{args.repo}:{spec.tag}"
        if not built(client, image):
            return fail(f"no local image {image}; build it first: make build TAG={spec.tag}", 1)
        try:
            size.check(client, image, spec.tag, spec.size_budget, say=say, reports=args.reports)
        except size.SizeError as e:
            fail(f"{spec.tag} is over its size budget:\n  {e}", 1)
            over.append(spec.tag)
    return 1 if over else 0


def cmd_verify(matrix: Matrix, args) -> int:
    client = engine.connect()
    settings = args.network
    differ = []
    for spec in matrix.select(args.tag):
        image = f"{args.repo}:{spec.tag}"
        if not built(client, image):
            return fail(f"no local image {image} to verify; build it first: make build TAG={spec.tag}", 1)
        say(f"verify {image}: rebuilding {spec.tag} without cache as {args.repo}-verify:{spec.tag}")
        try:
            again = build.build(client, spec, f"{args.repo}-verify", settings, say=say, nocache=True, reports=args.reports)
        except (build.BuildFailed, lockfile.LockError, wheel_cache.FetchError, serve.ServeError) as e:
            return fail(str(e), 1)
        try:
            comparison = verify.compare(client, image, again.image)
        finally:
            if not args.keep:
                build.remove(client, again)
        path = verify.write(comparison, spec.tag, args.reports)
        say(comparison.summary())
        say(f"full comparison: {path}")
        if not comparison.identical:  # the same contents in layers of other bytes is a difference too
            differ.append(spec.tag)
    return 1 if differ else 0


def cmd_clean(matrix: Matrix, args) -> int:
    client = engine.connect()
    removed = 0
    for image in client.images.list(name=args.repo):
        for tag in image.tags:
            if tag.startswith(f"{args.repo}:"):
                client.images.remove(tag)
                removed += 1
                say(f"removed {tag}")
    say(f"removed {removed} {args.repo} image tag(s); the base images and the build cache stay")
    return 0
