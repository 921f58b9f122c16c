"""The commands that fix a tag's Python packages: `make lock` resolves them, `make fetch` brings their wheels into the
cache.
"""

from __future__ import annotations

import time

from builder.commands.output import fail, say
from builder.image import render
from builder.matrix.types import Matrix
from builder.wheels import archs as wheel_archs
from builder.wheels import cache as wheel_cache
from builder.wheels import lock, lockfile


def cmd_lock(matrix: Matrix, args) -> int:
    # TAG=a,b,… as make matrix takes it: locking is seconds a tag, so several are often asked for at once
    specs = matrix.select(args.tag)
    settings = args.network
    for spec in specs:
        if render.write(spec):
            say(f"rendered images/{spec.tag}/ from matrix.yaml")
    started = time.monotonic()
    failed = lock.lock_all(specs, settings, say=say, upgrade=bool(args.upgrade))
    for spec in specs:  # the Dockerfile's layers follow torch's lock (builder/image/layers.py)
        if render.write(spec):
            say(f"rendered images/{spec.tag}/Dockerfile again from its new lock")
    say(f"locked {len(specs) - len(failed)} of {len(specs)} tag(s) in {time.monotonic() - started:.1f}s")
    if failed:
        return fail(f"{len(failed)} tag(s) not locked: {', '.join(failed)}", 1)
    return 0


def cmd_fetch(matrix: Matrix, args) -> int:
    specs = matrix.select(args.tag)
    for spec in specs:
        lockfile.check(spec)  # a lock line that is no lock's: exit 2 before anything is fetched or removed
    refused = {spec.tag: problem for spec in specs if (problem := lockfile.problem(spec))}
    for note in args.network.ignored:
        say(f"note: not using {note}")
    locked = [spec for spec in specs if spec.tag not in refused]
    try:
        fetched = wheel_cache.fetch(wheel_cache.wanted(locked), args.network, say=say)
    except wheel_cache.FetchError as e:
        return fail(str(e), 1)
    say(f"{len(locked)} tag(s): {fetched.files} artifacts in {wheel_cache.folder()}, {fetched.downloaded} fetched now")
    wheel_archs.record_each(locked, wheel_cache.folder(), say=say)
    if refused:
        return fail(f"{len(refused)} tag(s) not fetched:\n" + "\n".join(f"  {problem}" for problem in refused.values()), 1)
    return 0
