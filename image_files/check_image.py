"""Build-time facts of a torchyard image that need no GPU; run by the Dockerfile, and by hand:

    python /usr/share/torchyard/check_image.py /usr/share/torchyard/spec.json

Exits 1 naming every fact that differs from the spec, so a wrong image fails its build.
"""

import json
import os
import platform
import pwd
import re
import subprocess
import sys
import tempfile

import torch
import torchvision


def release(version: str) -> str:
    """'2.6.0+cu124' -> '2.6.0'."""
    return version.split("+")[0]


def compiles() -> str:
    """Compile and link a small CUDA program (no GPU needed): 'yes', or nvcc's complaint."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "kernel.cu")
        with open(source, "w") as f:
            f.write("__global__ void fill(float *x) { x[threadIdx.x] = 1.0f; }\n"
                    "int main() { float *d; cudaMalloc(&d, 128); fill<<<1, 32>>>(d); return cudaDeviceSynchronize(); }\n")
        result = subprocess.run(["nvcc", "-o", os.path.join(tmp, "kernel"), source], capture_output=True, text=True)
        return "yes" if result.returncode == 0 else (result.stderr or result.stdout).strip()


def extension_builds() -> str:
    """Build and import a PyTorch CUDA extension for torch's GPU archs (the smoke check `extension` runs it on a GPU):
    'yes', or the build's complaint. Its compile commands are in the build log."""
    from smoke_tests import extension

    try:
        module = extension.build(extension.BUILT)
    except Exception as e:  # the message is the fact to report
        return f"{type(e).__name__}: {e}"
    return "yes" if hasattr(module, "axpb") else f"{module} has no axpb"


def torchaudio_version() -> str:
    """torchaudio's release as imported, or 'none' where the image has none. The import loads its native library
    against torch's and compares the CUDA each was built with (a torchaudio of another variant fails here)."""
    try:
        import torchaudio
    except ModuleNotFoundError as e:
        if e.name == "torchaudio":
            return "none"
        return f"{type(e).__name__}: {e}"
    except Exception as e:  # the message is the fact to report
        return f"{type(e).__name__}: {e}"
    return release(torchaudio.__version__)


def numpy_interop() -> str:
    """torch and the pinned numpy agree both ways (a numpy built for another ABI fails here)."""
    import numpy

    try:
        back = torch.from_numpy(numpy.arange(6, dtype=numpy.float32)).mul(2).numpy()
        return "yes" if back.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0] else f"wrong values: {back}"
    except Exception as e:  # the message is the fact to report
        return f"{type(e).__name__}: {e} (numpy {numpy.__version__})"


def as_user(user: str) -> tuple[list[str], dict[str, str]]:
    """How to run a command as the image's user: setpriv when this runs as root (the build), as itself otherwise (by
    hand, as the user); with a plain system PATH and the user's HOME, as a session would have them."""
    entry = pwd.getpwnam(user)
    prefix = [] if os.geteuid() != 0 else \
        ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--no-new-privs", "--"]
    return prefix, {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": entry.pw_dir, "USER": user, "LANG": "C.UTF-8"}


def tools_run(spec: dict) -> list[tuple[str, object, object]]:
    """Each everyday tool's command, as the user: ('tool: <package>', 'runs', 'runs' or what went wrong)."""
    prefix, env = as_user(spec["user"])
    facts = []
    for package, command in spec["tools"].items():
        try:
            result = subprocess.run(prefix + command, capture_output=True, text=True, env=env, timeout=30,
                                    stdin=subprocess.DEVNULL)
            found = "runs" if result.returncode == 0 else \
                f"exit {result.returncode}: {(result.stderr or result.stdout).strip()[:200]}"
        except (OSError, subprocess.TimeoutExpired) as e:  # the message is the fact to report
            found = f"{type(e).__name__}: {e}"
        facts.append((f"tool: {package}", "runs", found))
    return facts


def observed(spec: dict) -> list[tuple[str, object, object]]:
    """(fact, expected, found) for every checked fact."""
    facts = [
        ("python", spec["python"], ".".join(platform.python_version_tuple()[:2])),
        ("torch", spec["torch"], release(torch.__version__)),
        ("torchvision", spec["torchvision"], release(torchvision.__version__)),
        ("torchaudio", spec.get("torchaudio") or "none", torchaudio_version()),
        ("torch compiled with CUDA", True, torch.cuda._is_compiled()),
        ("CUDA", spec["cuda"], torch.version.cuda),
        ("torch <-> numpy", "yes", numpy_interop()),
    ]
    facts.append(("cuDNN", spec["cudnn_number"], torch.backends.cudnn.version()))
    facts.append(("NCCL", spec["nccl"], ".".join(map(str, torch.cuda.nccl.version()))))
    # Unrecorded facts are printed, not checked, so a build tells what to record.
    facts.append(("GPU archs", spec["archs"], torch._C._cuda_getArchFlags().split()))
    if spec["nvcc"]:
        out = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, check=True).stdout
        found = re.search(r"release (\d+\.\d+)", out)
        facts.append(("nvcc", spec["cuda"], found[1] if found else out.strip()))
        facts.append(("nvcc compiles a kernel", "yes", compiles()))
        facts.append(("a CUDA extension builds", "yes", extension_builds()))
    return facts + tools_run(spec)


def main(path: str) -> int:
    with open(path) as f:
        spec = json.load(f)
    wrong = 0
    for fact, expected, found in observed(spec):
        if expected is None:
            print(f"info  {fact:<26} {found}   (not recorded in the spec)")
            continue
        ok = expected == found
        wrong += not ok
        print(f"{'ok   ' if ok else 'WRONG'} {fact:<26} {found}" + ("" if ok else f"   (expected {expected})"))
    if wrong:
        print(f"check_image: {wrong} fact(s) differ from the spec of {spec['tag']}; this image is not what matrix.yaml asked for",
              file=sys.stderr)
        return 1
    print(f"check_image: {spec['tag']} matches its spec")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
