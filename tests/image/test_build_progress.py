"""What the build reads from the classic builder's output: steps, cache hits, and the step images it made."""

from builder.image import build

# The shape of Docker 20.10's classic builder output for a two-stage build (one step cached).
OUTPUT = """Step 1/6 : FROM torchyard-base:bookworm AS system
 ---> 69fe35948afe
Step 2/6 : RUN apt-get install -y g++
 ---> Using cache
 ---> 1111111111aa
Step 3/6 : FROM system AS install
 ---> 1111111111aa
Step 4/6 : RUN pip install torch
 ---> Running in 0123456789ab
Removing intermediate container 0123456789ab
 ---> 2222222222bb
Step 5/6 : FROM system
 ---> 1111111111aa
Step 6/6 : COPY --from=install /opt/venv /opt/venv
 ---> 3333333333cc
Successfully built 3333333333cc
"""


def progress_of(text: str) -> build._Progress:
    log = type("Log", (), {"write": lambda self, _: None})()
    progress = build._Progress(lambda _: None, log)
    for line in text.splitlines():
        progress.line(line)
    return progress


def test_the_step_images_are_the_builds_own_never_the_base():
    """build.remove() deletes these IDs: the base's ID among them deleted a user's base image with its tag."""
    progress = progress_of(OUTPUT)
    assert progress.layers == ["1111111111aa", "2222222222bb", "3333333333cc"]
    assert "69fe35948afe" not in progress.layers


def test_steps_and_cache_hits_are_counted():
    progress = progress_of(OUTPUT)
    assert (progress.steps, progress.cached, progress.step) == (6, 1, "6/6")


def test_the_step_images_this_build_made_leave_out_the_cached_ones():
    """A failed build removes what it made (build._discard), never a cached step another image stands on."""
    assert progress_of(OUTPUT).created == ["2222222222bb", "3333333333cc"]
