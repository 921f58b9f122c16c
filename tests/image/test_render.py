"""Rendering: committed images/ equal a fresh render; decisions are Python's, build inputs stay out."""

import dataclasses
import filecmp
import itertools
import json
import os
import shlex

import jinja2
import pytest

from builder import layout
from builder.image import base, layers, render, steps
from builder.wheels import lockfile, serve
from tests.conftest import ROOT, copy_checkout


@pytest.fixture(scope="module")
def specs(shipped):
    return shipped.specs


def copied(spec) -> list[tuple[str, str]]:
    """(source, target) of every file or folder the Dockerfile copies, in order: each COPY copies a tree of the build
    context to / (steps.trees says what each holds), and no COPY does anything else."""
    trees, found = steps.trees(spec), []
    for line in render.render(spec)["Dockerfile"].splitlines():
        if line.startswith("COPY "):
            source, target = line.split()[1:]
            assert target == "/" and source.startswith(f"{steps.ROOTFS}/") and source.endswith("/"), line
            found += trees[source.removeprefix(f"{steps.ROOTFS}/").rstrip("/")]
    return found


def planned(spec) -> list[layers.Layer]:
    """The layers of torch's committed lock; none for a tag without one."""
    path = layout.IMAGES / spec.tag / layout.LOCK_FILE
    return layers.plan(spec, lockfile.read(path)) if path.is_file() else []


def test_committed_images_match_a_fresh_render(specs):
    differ = [d for s in specs.values() for d in render.diff(s)]
    stale = [p.name for p in render.stale(list(specs))]
    assert differ == [] and stale == [], "run `make render` and commit images/"


def test_no_rendered_file_holds_the_path_of_the_checkout_it_was_rendered_in(specs, tmp_path):
    """images/ is committed: a rendered file that named this checkout's path (a lock's error message, say) would
    differ in every other clone, and with it every context hash. Rendered from a folder elsewhere, too."""
    for spec in specs.values():
        for where in (layout.IMAGES, tmp_path):
            for name, text in render.render(spec, where).items():
                assert str(layout.ROOT) not in text and str(tmp_path) not in text, f"{spec.tag}/{name}"


def test_diff_names_an_edited_file(specs, tmp_path):
    spec = specs["v2.6-cu124"]
    assert render.write(spec, tmp_path) is True
    assert render.write(spec, tmp_path) is False  # nothing changed the second time
    (tmp_path / spec.tag / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / spec.tag / "extra.txt").write_text("")
    assert render.diff(spec, tmp_path) == ["v2.6-cu124/Dockerfile", "v2.6-cu124/extra.txt (not rendered)"]


def test_a_missing_variable_is_an_error_not_an_empty_string(specs):
    context = render.context(specs["v2.6-cu124"])
    del context["base_image"]
    with pytest.raises(jinja2.UndefinedError):
        render._env.get_template("Dockerfile.j2").render(context)


def test_pypi_variant_installs_plain_pins_from_the_configured_index(specs):
    files = render.render(specs["v2.6-cu124"])
    assert "nvidia-ml-py==13.615.71" in files["requirements.txt"].splitlines()  # the smoke suite reads NVML
    assert files["requirements.txt"].splitlines()[:2] == ["torch==2.6.0", "torchvision==0.21.0"]
    assert "--index-url" not in files["Dockerfile"]


def test_index_variant_pins_the_local_version_and_installs_from_the_cache_like_any_tag(specs):
    files = render.render(specs["v2.6-cu118"])
    assert files["requirements.txt"].splitlines()[:2] == ["torch==2.6.0+cu118", "torchvision==0.21.0+cu118"]
    assert "download.pytorch.org" not in files["Dockerfile"] and "--index-url" not in files["Dockerfile"]


@pytest.mark.parametrize("tag", ["v2.6-cu124", "v2.6-cu118", "v2.15-cu132-devel"])
def test_one_stage_installs_only_from_the_loopback_cache_and_nothing_of_the_hosts_settings(specs, tag):
    dockerfile = render.render(specs[tag])["Dockerfile"]
    assert dockerfile.count("\nFROM ") == 1  # one stage: no venv copied between stages
    for leak in ("build-inputs", "PIP_CONFIG_FILE", "TORCH_INDEX_URL", "index-url", "--cert", "ca-bundle", "ARG PIP", "netrc"):
        assert leak not in dockerfile, leak
    installs = [line for line in dockerfile.splitlines() if "/pip install " in line]
    assert len(installs) == len(planned(specs[tag])) + 1  # torch's lock in its layers, then the workspace's lock
    for line in installs:
        assert f"--no-index --find-links {serve.URL} --trusted-host {serve.HOST}" in line
        assert " ".join(lockfile.INSTALL_OPTIONS) in line  # every sha256 required


def test_torch_and_the_workspace_are_layers_of_their_own_each_compiled_once(specs):
    spec = specs["v2.6-cu124"]
    dockerfile = render.render(spec)["Dockerfile"]
    instructions = dockerfile.replace("\\\n", "").splitlines()  # one line per instruction
    venv_step = next(line for line in instructions if "python3 -m venv" in line)
    wheel_steps = [line for line in instructions if "-r /dev/stdin" in line]
    workspace_step = next(line for line in instructions if f"-r {layout.SHARE}/{layout.WORKSPACE_LOCK_FILE}" in line)
    # torch's lock, every line of it once, in the planned layers; then the workspace's lock comes in, so a change to it
    # leaves every torch step cached
    assert len(wheel_steps) == len(planned(spec)) and "'torch==2.6.0 --hash=sha256:" in wheel_steps[-2]
    assert "'torchaudio==2.6.0 --hash=sha256:" in wheel_steps[-1]  # the tag's optional torchaudio: above torch's
    order = [instructions.index(line) for line in (venv_step, *wheel_steps)]
    assert order == sorted(order)
    assert order[-1] < instructions.index(f"COPY {steps.ROOTFS}/workspace/ /") < instructions.index(workspace_step)
    assert "compile_dir" in venv_step and "force=True" in venv_step  # pip's own .pyc too
    for step in (*wheel_steps, workspace_step):  # only what has no .pyc yet: no layer holds a second copy of another's
        assert "cache_from_source" in step and "compile_dir" not in step
    for step in (venv_step, *wheel_steps, workspace_step):
        assert "UNCHECKED_HASH" in step and "PYTHONHASHSEED=0" in step


@pytest.mark.parametrize("tag", ["v2.6-cu124", "v2.6-cu124-devel", "v2.15-cu132-devel", "v2.4-cu118"])
def test_every_run_stamps_what_it_made_with_the_one_time_and_every_copy_is_a_tree(specs, tag):
    """Two builds of one commit give the same layers: every RUN ends by setting what it made to SOURCE_DATE_EPOCH
    (builder/image/base.py's, the one value), and every COPY copies a tree of the context whose folders carry it too."""
    dockerfile = render.render(specs[tag])["Dockerfile"]
    runs = [line for line in dockerfile.replace("\\\n", "").splitlines() if line.startswith("RUN ")]
    stamped = [line for line in runs if line.startswith("RUN start=$(date +%s) ") and line.endswith(steps.STAMP)]
    not_locked = [line for line in runs if "make lock" in line and line.endswith("false")]  # tags without a lock
    assert len(runs) == len(stamped) + len(not_locked) and stamped
    assert f"touch -h -d @{base.SOURCE_DATE_EPOCH} " in steps.STAMP and base.SOURCE_DATE_EPOCH == "1735689600"
    assert copied(specs[tag])  # every COPY a tree (copied() checks each)
    # nothing removes what an earlier layer holds (a whiteout carries the deletion's time)
    assert "/var/log/apt " not in dockerfile and "/var/lib/apt/lists/* " not in dockerfile and "-old" not in dockerfile


def test_a_lock_entry_reaches_the_shell_only_as_one_quoted_requirement(specs, tmp_path):
    spec = specs["v2.6-cu124"]
    render.write(spec, tmp_path)
    text = (layout.IMAGES / spec.tag / layout.LOCK_FILE).read_text()
    (tmp_path / spec.tag / layout.LOCK_FILE).write_text(text.replace("--hash=sha256:2fc8", "--hash=sha256:';touch${IFS}x;'"))
    dockerfile = render.render(spec, tmp_path)["Dockerfile"]
    step = next(line for line in dockerfile.replace("\\\n", "").splitlines() if line.startswith("RUN echo"))
    assert step.endswith(" && false")
    echo = shlex.split(step.removeprefix("RUN ").removesuffix(" && false"))
    assert len(echo) == 3 and echo[0] == "echo" and echo[2] == ">&2"  # the entry is inside one quoted word
    assert "';touch${IFS}x;'" in echo[1] and "is not 64 lowercase hex digits" in echo[1]
    assert not any("-r /dev/stdin" in line for line in dockerfile.splitlines())  # nothing of that lock is installed
    with pytest.raises(lockfile.LockError, match="nvidia-cublas-cu12"):
        layers.plan(spec, lockfile.read(tmp_path / spec.tag / layout.LOCK_FILE))


def test_torchaudio_comes_from_torchs_index_in_the_tags_that_ask_for_it_labelled_constrained_and_checked(specs):
    """The default tag names torchaudio; v2.6-cu118 does not (an index variant would take torchaudio's +cu118 build
    from the PyTorch wheel index, beside its torch); a tag without the key has none anywhere, and says so."""
    files = render.render(specs["v2.6-cu124"])
    assert files["requirements.txt"].splitlines()[:3] == ["torch==2.6.0", "torchvision==0.21.0", "torchaudio==2.6.0"]
    assert 'io.torchyard.torchaudio="2.6.0"' in files["Dockerfile"]
    spec_json = json.loads(files["spec.json"])
    assert (spec_json["torchaudio"], spec_json["constrained"]) == ("2.6.0", ["torch", "torchvision", "torchaudio"])
    index_variant = dataclasses.replace(specs["v2.6-cu118"], torchaudio="2.6.0")
    assert render.requirements(index_variant)[:3] == ["torch==2.6.0+cu118", "torchvision==0.21.0+cu118",
                                                      "torchaudio==2.6.0+cu118"]
    for tag in ("v2.6-cu118", "v2.6-cu124-devel", "v2.15-cu132"):
        files = render.render(specs[tag])
        assert "torchaudio" not in files["requirements.txt"] and "io.torchyard.torchaudio" not in files["Dockerfile"]
        assert json.loads(files["spec.json"])["torchaudio"] is None  # check_image.py: an image without one has none
        assert "torchaudio" not in render.constrained(specs[tag])


def test_labels_carry_the_spec(specs):
    dockerfile = render.render(specs["v2.6-cu124"])["Dockerfile"]
    for label in ('io.torchyard.torch="2.6.0"', 'io.torchyard.cudnn="9.1.0.70"', 'io.torchyard.nccl="2.21.5"',
                  'io.torchyard.driver.min="525.60.13"', 'org.opencontainers.image.version="v2.6-cu124"'):
        assert label in dockerfile


def test_devel_adds_the_compiler_and_cuda_home(specs):
    spec = specs["v2.15-cu132-devel"]
    files = render.render(spec)
    for package in ("nvidia-cuda-nvcc", "nvidia-nvvm", "nvidia-cuda-crt"):
        assert f"{package}==13.2.86\n" in files["requirements.txt"]
    assert "build-essential" in files["Dockerfile"]
    assert "CUDA_HOME=/opt/venv/lib/python3.11/site-packages/nvidia/cu13" in files["Dockerfile"]
    assert "build-essential" not in render.render(specs["v2.15-cu132"])["Dockerfile"]


def test_every_image_carries_its_check_and_spec(specs):
    files = render.render(specs["v2.6-cu124"])
    assert ("image_files/check_image.py", f"{layout.SHARE}/check_image.py") in copied(specs["v2.6-cu124"])
    assert ("spec.json", f"{layout.SHARE}/spec.json") in copied(specs["v2.6-cu124"])
    assert '"cudnn": "9.1.0.70"' in files["spec.json"]


@pytest.mark.parametrize("tag", ["v2.6-cu124", "v2.6-cu124-devel", "v2.15-cu132-devel"])
def test_every_carried_file_is_copied_once_from_the_one_list_after_the_environment(specs, tag):
    spec = specs[tag]
    dockerfile = render.render(spec)["Dockerfile"]
    copies = copied(spec)
    carried = [(item.source, item.target) for item in layout.carried(spec.python)]
    start = copies.index(carried[0])
    assert copies[start:start + len(carried)] == carried
    assert copies.index((layout.WORKSPACE_LOCK_FILE, f"{layout.SHARE}/{layout.WORKSPACE_LOCK_FILE}")) < start
    assert [c for c in copies if c in carried] == carried  # each once
    assert "chmod" not in dockerfile  # the modes come with the context (builder/image/context.py)


def test_install_flags_are_one_list_shared_by_the_lock_and_the_dockerfile(specs):
    dockerfile = render.render(specs["v2.6-cu124"])["Dockerfile"]
    # torch's steps and the workspace's
    assert dockerfile.count(" ".join(lockfile.INSTALL_OPTIONS)) == len(planned(specs["v2.6-cu124"])) + 1
    assert "--only-binary=:all:" in lockfile.INSTALL_OPTIONS


def test_images_hold_only_what_varies_by_tag(specs):
    """No file under images/ is a copy of another tag's (requirement inputs and locks aside): what every image
    carries lives once, in image_files/ and smoke_tests/."""
    allowed = {layout.REQUIREMENTS, layout.WORKSPACE_REQUIREMENTS, *layout.RECORDED}  # tags of one torch wheel share its archs
    files = sorted(p for p in (ROOT / "images").rglob("*") if p.is_file() and p.name not in allowed)
    same = [(a.relative_to(ROOT), b.relative_to(ROOT)) for a, b in itertools.combinations(files, 2)
            if a.parent != b.parent and a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)]
    assert same == []


def test_templates_hold_templates_only():
    assert all(p.name.endswith(".j2") for p in layout.TEMPLATES.iterdir())
    assert all((layout.ROOT / item.source).exists() for item in layout.carried("3.11") if not item.generated)


def test_every_image_carries_what_torch_compile_needs_in_a_layer_of_its_own(specs):
    for tag in ("v2.6-cu124", "v2.6-cu118", "v2.15-cu132", "v2.6-cu124-devel"):
        dockerfile = render.render(specs[tag])["Dockerfile"]
        install = f"apt-get install -y --no-install-recommends {' '.join(steps.COMPILE_APT_PACKAGES)} \\\n"
        assert dockerfile.count(install) == 1 and install in dockerfile, tag
        assert "# torch.compile:" in dockerfile


def test_the_everyday_tools_are_one_layer_below_torchs_the_same_in_every_tag_of_a_base(specs):
    """Issue 24: git, git-lfs, curl, less, procps, unzip, nano, tmux in a step of their own, after the OS and compiler
    steps and before the venv: the same instruction, so the same layer, in every tag of one base, below torch's."""
    found = {}
    for tag, spec in specs.items():
        instructions = render.render(spec)["Dockerfile"].replace("\\\n", "").splitlines()
        [tools] = [line for line in instructions if "apt-get install" in line and " tmux" in line]
        assert "git git-lfs curl less procps unzip nano tmux" in tools
        # git-lfs's filters in one order: `git lfs install` (git-lfs's postinst too) writes them in Go's map order
        assert "rm -f /etc/gitconfig && git config --system filter.lfs.clean 'git-lfs clean -- %f' && git config --system filter.lfs.smudge " \
               "'git-lfs smudge -- %f' && git config --system filter.lfs.process 'git-lfs filter-process' && " \
               "git config --system filter.lfs.required true" in tools and "git lfs install" not in tools
        assert "dpkg-statoverride --update --add root root 0755 /usr/lib/x86_64-linux-gnu/utempter/utempter" in tools
        runs = [line for line in instructions if line.startswith("RUN ")]
        position = runs.index(tools)
        assert "g++" in runs[position - 1] and "python3 -m venv" in runs[position + 1], tag
        found.setdefault(spec.base.image, set()).add(tuple(runs[:position + 1]))
        # the spec names each tool with the command check_image.py runs as the user
        facts = json.loads(render.render(spec)[layout.SPEC])
        assert facts["user"] == layout.USER and list(facts["tools"]) == list(steps.TOOLS)
        assert facts["tools"]["git-lfs"] == ["git", "lfs", "version"]
    assert all(len(chains) == 1 for chains in found.values()), {base: len(chains) for base, chains in found.items()}


def test_pip_and_uv_are_held_to_the_images_constraints(specs):
    files = render.render(specs["v2.6-cu124"])
    assert f"PIP_CONSTRAINT={layout.CONSTRAINTS} \\" in files["Dockerfile"]
    assert f"UV_CONSTRAINT={layout.CONSTRAINTS} \\" in files["Dockerfile"]
    assert f"python {layout.SHARE}/constraints.py {layout.SHARE}" in files["Dockerfile"]
    assert '"constrained": [\n    "torch",\n    "torchvision",\n    "torchaudio"\n  ]' in files["spec.json"]
    assert render.constrained(specs["v2.6-cu124-devel"]) == ["torch", "torchvision"]  # a tag without torchaudio
    assert (layout.IMAGE_FILES / "torchyard-pip-guard.pth").read_text() == "import torchyard_pip_guard\n"
    site = "/opt/venv/lib/python3.11/site-packages"
    assert ("image_files/torchyard-pip-guard.pth", f"{site}/torchyard-pip-guard.pth") in copied(specs["v2.6-cu124"])
    assert ("image_files/pip_guard.py", f"{site}/torchyard_pip_guard.py") in copied(specs["v2.6-cu124"])
    assert render.constrained(specs["v2.15-cu132-devel"])[2:] == ["nvidia-cuda-nvcc", "nvidia-nvvm", "nvidia-cuda-crt"]


def test_jupyterlab_gets_the_overrides_that_silence_the_news_prompt(specs):
    files = render.render(specs["v2.6-cu124"])
    assert ("image_files/jupyterlab_overrides.json",
            "/opt/venv/share/jupyter/lab/settings/overrides.json") in copied(specs["v2.6-cu124"])
    overrides = json.loads((layout.IMAGE_FILES / "jupyterlab_overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"] == {"checkForUpdates": False, "fetchNews": "false"}


def test_cuda_12_4_devel_installs_debians_toolkit_on_trixie_without_a_driver(specs):
    spec = specs["v2.6-cu124-devel"]
    files = render.render(spec)
    dockerfile = files["Dockerfile"]
    assert dockerfile.startswith("# Generated") and "\nFROM torchyard-base:trixie-non-free\n" in dockerfile
    assert ("smoke_tests", "/opt/venv/lib/python3.13/site-packages/smoke_tests") in copied(spec)
    final = dockerfile
    assert ("apt-get install -y --no-install-recommends build-essential ninja-build /tmp/torchyard-host-driver.deb "
            "nvidia-cuda-toolkit") in final
    assert "CUDA_HOME=/usr \\" in final and "PATH=/opt/venv/bin:$PATH \\" in final
    assert "nvidia-cuda-nvcc" not in files["requirements.txt"]  # the compiler is Debian's, not a wheel
    control = files["devel/torchyard-host-driver/DEBIAN/control"]
    assert "Provides: libcuda-12.4-1, libcuda.so.1 (= 550.54.14), libnvidia-ml.so.1 (= 550.54.14)\n" in control
    assert files["devel/dpkg-cuda-static"].splitlines()[1:] == steps.CUDA_STATIC_EXCLUDES
    assert ("devel/dpkg-cuda-static", steps.DPKG_EXCLUDES) in copied(spec)
    # the placeholder's package folder stays where it was copied: removing it would leave a whiteout with a time
    assert (f"devel/{steps.HOST_DRIVER_PACKAGE}", steps.HOST_DRIVER_DIR) in copied(spec)
    assert f"dpkg-deb --build {steps.HOST_DRIVER_DIR} /tmp/" in final and f"rm -rf {steps.HOST_DRIVER_DIR}" not in final
    assert json.loads(files["spec.json"])["nvcc"]["source"] == "debian"


def _cli(*args, cwd=ROOT):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"})


def test_render_of_a_one_tag_matrix_deletes_nothing_and_says_how(tmp_path):
    one = tmp_path / "one-tag.yaml"
    one.write_text('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", torchaudio: "2.6.0", size_budget: 6.5GB}\n')
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "images").rglob("*")}
    result = _cli("--matrix", str(one), "render")
    assert result.returncode == 0, result.stderr
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "images").rglob("*")} == before
    assert f"kept {len(list((ROOT / 'images').iterdir())) - 1} folder(s) of tags not in one-tag.yaml" in result.stdout
    assert "images/v2.5-cu124 (holds requirements-workspace.lock, requirements.lock)" in result.stdout
    assert "make render PRUNE=1" in result.stdout


def test_render_prune_removes_the_folders_of_other_tags(tmp_path):
    """In a copy of the repository: --prune is the one way render deletes."""
    copy = tmp_path / "repo"
    copy_checkout(copy)
    (copy / "matrix.yaml").write_text('default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", size_budget: 6.5GB}\n')
    assert "kept" in _cli("render", cwd=copy).stdout
    result = _cli("render", "--prune", cwd=copy)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (copy / "images").iterdir()] == ["v2.6-cu124"]
    assert "removed images/v2.5-cu124 (not in matrix.yaml)" in result.stdout
    assert (copy / "images" / "v2.6-cu124" / "requirements.lock").is_file()
