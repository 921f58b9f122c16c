"""`make ci`: the matrix as GitHub Actions jobs, written to .github/workflows/images.yml (commit it).

One job per buildable tag on a GitHub-hosted runner: make build, make smoke (the CPU path), make smoke NODES=2
(torchrun across two containers), and outside pull requests make push; then, per tag, the GPU smoke on a self-hosted runner with GPUs: make pull (verified against the digest
the build job recorded) and make smoke REQUIRE_GPU=1.

"Buildable" is what `make build` itself requires before any work: the tag's locks are committed and current
(builder/wheels/lockfile.py's problem() says nothing). A GitHub runner could reach download.pytorch.org and lock the
index-variant tags in the workflow, but a lock made in CI and never reviewed would defeat the lock; such a tag
joins the matrix when someone runs `make lock TAG=…` where that index answers, commits the lock and `make ci`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from builder import layout
from builder.files import write_atomic
from builder.matrix.types import Matrix
from builder.wheels import lockfile

WORKFLOW = layout.ROOT / ".github" / "workflows" / "images.yml"
RUNNER = "ubuntu-24.04"
GPU_RUNNER = ["self-hosted", "linux", "x64", "gpu"]  # label your GPU runners `gpu` (NVIDIA toolkit and Docker on them)
# Third-party code in a workflow is pinned by commit, not by a tag that can move.
ACTIONS = {
    "checkout": ("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683", "v4.2.2"),
    "upload": ("actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02", "v4.6.2"),
    "download": ("actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093", "v4.3.0"),
}
TAG = "${{ matrix.tag }}"
NOT_ON_PULL_REQUESTS = "github.event_name != 'pull_request'"  # forks get no secrets, and nothing is pushed from a PR

PREPARE = """\
# One image needs ~12 GB while it builds; a fresh runner has less free until the unused toolchains go.
sudo rm -rf /usr/local/lib/android /usr/share/dotnet /opt/ghc /opt/hostedtoolcache/CodeQL
sudo apt-get update -q
sudo apt-get install -y -q mmdebstrap debian-archive-keyring uidmap
# mmdebstrap makes the Debian base in a user namespace, which Ubuntu 24.04 allows only when told to.
sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0
"""
LOGIN = """\
test -n "$REGISTRY" || { echo "set the repository variable TORCHYARD_REGISTRY (e.g. ghcr.io/<owner>)"; exit 1; }
printf '%s' "$REGISTRY_PASSWORD" | docker login "${REGISTRY%%/*}" --username "$REGISTRY_USER" --password-stdin
"""
REGISTRY_ENV = {
    "REGISTRY": "${{ vars.TORCHYARD_REGISTRY }}",
    "REGISTRY_USER": "${{ secrets.TORCHYARD_REGISTRY_USER || github.actor }}",
    "REGISTRY_PASSWORD": "${{ secrets.TORCHYARD_REGISTRY_PASSWORD || secrets.GITHUB_TOKEN }}",
}


def buildable(matrix: Matrix, images: Path = layout.IMAGES) -> list[str]:
    return [spec.tag for spec in matrix.specs.values() if lockfile.problem(spec, images) is None]


def _uses(action: str, **with_) -> dict:
    step = {"uses": ACTIONS[action][0]}
    return {**step, "with": with_} if with_ else step


def workflow(tags: list[str]) -> dict:
    strategy = {"fail-fast": False, "matrix": {"tag": tags}}
    build = {
        "name": f"build {TAG}",
        "runs-on": RUNNER,
        "timeout-minutes": 120,
        "permissions": {"contents": "read", "packages": "write"},
        "strategy": strategy,
        "env": {"TAG": TAG},
        "steps": [
            _uses("checkout"),
            {"name": "make room, install mmdebstrap", "run": PREPARE},
            {"name": "build", "run": 'make build TAG="$TAG"'},
            {"name": "smoke on the CPU", "run": 'make smoke TAG="$TAG"'},
            {"name": "all-reduce across 2 nodes (containers) on the CPU", "run": 'make smoke TAG="$TAG" NODES=2'},
            {"name": "push", "if": NOT_ON_PULL_REQUESTS, "env": REGISTRY_ENV,
             "run": LOGIN + 'make push TAG="$TAG" REGISTRY="$REGISTRY"\n'},
            {"if": "always()", **_uses("upload", name=f"build-{TAG}", path=f"reports/{TAG}/\ndigests/{TAG}.json\n",
                                       **{"if-no-files-found": "warn"})},
        ],
    }
    gpu = {
        "name": f"gpu smoke {TAG}",
        "needs": "build",
        # each tag's GPU job runs when its own image was pushed, whatever happened to the other tags
        "if": f"${{{{ !cancelled() && {NOT_ON_PULL_REQUESTS} }}}}",
        "runs-on": GPU_RUNNER,
        "timeout-minutes": 60,
        "strategy": strategy,
        "env": {"TAG": TAG},
        "steps": [
            _uses("checkout"),
            _uses("download", name=f"build-{TAG}", path="."),
            {"name": "pull the pushed image", "env": REGISTRY_ENV,
             # refused unless the registry's digest is the one the build job recorded in digests/<tag>.json
             "run": LOGIN + 'make pull TAG="$TAG" REGISTRY="$REGISTRY"\n'},
            {"name": "smoke on the GPUs", "env": {"REGISTRY": REGISTRY_ENV["REGISTRY"]},
             "run": 'make smoke TAG="$TAG" REPO="$REGISTRY/torchyard" REQUIRE_GPU=1'},
            {"if": "always()", **_uses("upload", name=f"gpu-smoke-{TAG}", path=f"reports/{TAG}/")},
            {"name": "leave the runner's disk as it was", "if": "always()", "env": {"REGISTRY": REGISTRY_ENV["REGISTRY"]},
             "run": 'docker image rm "$REGISTRY/torchyard:$TAG" || true'},
        ],
    }
    return {
        "name": "images",
        "on": {"push": {"branches": ["main"]}, "pull_request": {}, "workflow_dispatch": {}},
        "permissions": {"contents": "read"},
        # a newer commit of a pull request replaces its run; runs on main each finish
        "concurrency": {"group": "images-${{ github.ref }}", "cancel-in-progress": "${{ github.event_name == 'pull_request' }}"},
        "jobs": {"build": build, "gpu-smoke": gpu},
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:
        return True  # the two jobs' shared settings are written out in each, not as YAML anchors


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None  # scripts stay readable as blocks
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def text(matrix: Matrix, images: Path = layout.IMAGES) -> str:
    tags = buildable(matrix, images)
    left_out = [t for t in matrix.specs if t not in tags]
    header = [
        "Generated by `make ci` from matrix.yaml: do not edit (a test keeps it equal to a fresh one).",
        f"{len(tags)} buildable tag(s): those whose locks are committed and current.",
        f"Not locked yet ({len(left_out)}): " + (", ".join(left_out) or "none") + ";",
        "lock them where download.pytorch.org answers (`make lock TAG=…`), commit, and run `make ci`.",
        "Settings: repository variable TORCHYARD_REGISTRY (host[/namespace], e.g. ghcr.io/<owner>); secrets",
        "TORCHYARD_REGISTRY_USER and TORCHYARD_REGISTRY_PASSWORD (default: the actor and GITHUB_TOKEN, for ghcr.io).",
        "Actions pinned by commit: " + ", ".join(f"{ref.split('@')[0]} {version}" for ref, version in ACTIONS.values()) + ".",
    ]
    body = yaml.dump(workflow(tags), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    return "".join(f"# {line}\n" for line in header) + body


def write(matrix: Matrix, path: Path = WORKFLOW, images: Path = layout.IMAGES) -> bool:
    """Write the workflow when it differs; True when it changed."""
    fresh = text(matrix, images)
    if path.is_file() and path.read_text() == fresh:
        return False
    write_atomic(path, fresh)
    return True
