"""pip in the real image (v2.6-cu124, the session's `built`) against the real index (PyPI through this machine's
network), as the default user, with the host's CA bundle passed at run time as a user behind a TLS-inspecting proxy
would pass theirs: ordinary installs work; one that would replace the torch stack fails, says why and what to do,
and leaves every package as it was."""

import json
import re

from builder import layout
from tests.docker.conftest import CA_IN_CONTAINER

def in_container(client, image: str, script: str, **kwargs) -> str:
    """A bash script through the entrypoint (so as the default user); its output. The container is always removed."""
    container = client.containers.run(image, ["bash", "-c", script], detach=True, **kwargs)
    try:
        container.wait(timeout=600)
        return container.logs().decode()
    finally:
        container.remove(force=True)


def sections(out: str) -> dict[str, str]:
    """'=== name' lines split the output into named parts."""
    parts = re.split(r"^=== (\S+)\n", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_the_constraints_hold_the_torch_stack_and_nothing_else(built, run):
    text = run(built.image, "cat", layout.CONSTRAINTS)
    pins = dict(line.split("===") for line in text.splitlines() if not line.startswith("#"))
    assert pins["torch"] == "2.6.0" and pins["torchvision"] == "0.21.0" and pins["triton"] == "3.2.0"
    assert pins["torchaudio"] == "2.6.0"  # the default tag's matrix entry asks for it: part of its stack
    assert pins["sympy"] == "1.13.1"  # torch 2.6 requires exactly this one
    nvidia = {name for name in pins if name.startswith("nvidia-")}
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-nccl-cu12", "nvidia-cuda-runtime-cu12"} <= nvidia
    assert "nvidia-ml-py" not in nvidia  # NVML bindings, not a CUDA library of torch's
    for free in ("numpy", "pandas", "jinja2", "jupyterlab", "pillow", "typing-extensions"):
        assert free not in pins, free
    assert "Another torch: use the torchyard tag built with it" in text
    listing = run(built.image, "sh", "-c", f"stat -c '%U %a' {layout.CONSTRAINTS}; echo $PIP_CONSTRAINT $UV_CONSTRAINT")
    assert listing.split() == ["root", "644", layout.CONSTRAINTS, layout.CONSTRAINTS]


def test_pip_installs_an_ordinary_package_and_refuses_another_torch_leaving_everything_as_it_was(
        client, built, behind_the_proxy):
    out = in_container(client, built.image, """
        pip list --format=freeze > /tmp/before
        echo "=== whoami"; id -un
        echo "=== einops"; pip install --no-cache-dir einops 2>&1; echo "exit $?"
        pip list --format=freeze > /tmp/with-einops
        echo "=== torch"; pip install --no-cache-dir torch==2.7.1 2>&1; echo "exit $?"
        echo "=== torchaudio"; python -m pip install --no-cache-dir torchaudio==2.7.1 2>&1; echo "exit $?"
        echo "=== cudnn"; pip install --no-cache-dir nvidia-cudnn-cu12==9.5.1.17 2>&1; echo "exit $?"
        echo "=== unchanged"; pip list --format=freeze | diff /tmp/with-einops - && echo same
        echo "=== einops-added"; diff /tmp/before /tmp/with-einops | grep '^>'
        echo "=== unconstrained"; PIP_CONSTRAINT= pip install --no-cache-dir --dry-run torch==2.7.1 2>&1 | tail -1
    """, **behind_the_proxy)
    part = sections(out)
    assert part["whoami"].strip() == layout.USER
    assert part["einops"].rstrip().endswith("exit 0") and "Successfully installed einops" in part["einops"], out
    assert part["einops-added"].startswith("> einops==")
    # torchaudio 2.7.1 would replace the image's torchaudio 2.6.0 (and its torch: it requires torch==2.7.1)
    for request, wanted in (("torch", "torch==2.7.1"), ("torchaudio", "torchaudio==2.7.1"),
                            ("cudnn", "nvidia-cudnn-cu12==9.5.1.17")):
        text = part[request]
        assert text.rstrip().endswith("exit 1"), text
        assert "(constraint)" in text  # pip's own conflict message comes first
        assert ("torchyard: this image (v2.6-cu124) is built around torch 2.6.0, torchvision 0.21.0, torchaudio 2.6.0 "
                "with CUDA 12.4") in text
        assert f"The request needs {wanted}" in text and "Nothing was installed or removed" in text
        assert "docker exec CONTAINER env PIP_CONSTRAINT= pip install" in text
    assert "use the torchyard image built with it: tag v2.7-cu<CUDA>" in part["torch"]
    assert part["unchanged"].strip() == "same"
    # Without the constraints the user still cannot: the venv is root's (pip installs into ~/.local, behind it).
    assert "Will not install to the user site because it will lack sys.path precedence to torch" in part["unconstrained"]
    # Root can, knowingly, as the explanation says.
    knowingly = in_container(client, built.image, "PIP_CONSTRAINT= pip install --no-cache-dir --dry-run torch==2.7.1 2>&1",
                             entrypoint=["/usr/bin/env"], user="root", **behind_the_proxy)
    assert "Would install" in knowingly and "torch-2.7.1" in knowingly, knowingly


def test_uv_honours_the_same_constraints(client, built, behind_the_proxy):
    env = {**behind_the_proxy["environment"], "SSL_CERT_FILE": CA_IN_CONTAINER}
    out = in_container(client, built.image, """
        pip install --no-cache-dir --quiet uv==0.9.9 2>&1 | tail -2
        echo "=== uv"; uv pip install --no-cache torch==2.7.1 2>&1; echo "exit $?"
        echo "=== torch"; python -c "import torch; print(torch.__version__)"
    """, volumes=behind_the_proxy["volumes"], environment=env)
    part = sections(out)
    assert part["uv"].rstrip().endswith("exit 1"), out
    assert "torch===2.6.0" in part["uv"] or "torch==2.6.0" in part["uv"], part["uv"]
    assert part["torch"].strip() == "2.6.0+cu124"


def test_the_guard_is_inert_outside_pip(built, run):
    out = run(built.image, "python", "-c", "import torchyard_pip_guard, sys; "
              "print('pip' in sys.modules, 'pip._internal' in sys.modules)")
    assert out.strip().splitlines()[-1] == "False False"  # a Python that is not pip never loads pip
    listing = json.loads(run(built.image, "python", "-c", "import json, os, site; p = site.getsitepackages()[0]; "
                             "print(json.dumps({f: os.stat(os.path.join(p, f)).st_uid for f in "
                             "('torchyard-pip-guard.pth', 'torchyard_pip_guard.py')}))").strip().splitlines()[-1])
    assert listing == {"torchyard-pip-guard.pth": 0, "torchyard_pip_guard.py": 0}  # root's files
