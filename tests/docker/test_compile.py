"""torch.compile in the real image (v2.6-cu124, the session's `built`), on this CPU machine: Inductor's C++ path
works as the default user and as an id without a passwd entry, and without a compiler the smoke check says what is
missing and how to fix it. (The check's PASS and figures: tests/docker/test_smoke.py, from `make smoke`.)"""

import json

# What a new user tries first (the report): compile a small model and train a step through it.
FIRST_COMPILE = """
import torch
model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(4))
x = torch.randn(2, 3, 16, 16)
model(x)
compiled = torch.compile(model, fullgraph=True)
loss = compiled(x).square().mean()
loss.backward()
print("compiled loss", round(loss.item(), 4), "grad", tuple(model[0].weight.grad.shape))
"""


def test_torch_compile_of_a_small_model_forward_and_backward_works_as_the_user(built, run):
    out = run(built.image, "python", "-c", FIRST_COMPILE)  # through the entrypoint: as torchyard, in /workspace
    assert "compiled loss" in out and "grad (8, 3, 3, 3)" in out, out


def test_torch_compile_works_for_a_user_id_without_a_passwd_entry(built, run):
    # --user 2345: getpass.getuser(), which names Inductor's cache folder, finds no passwd entry for this id
    out = run(built.image, "python", "-c", FIRST_COMPILE, user="2345:2346")
    assert "compiled loss" in out, out


def smoke(client, image: str, *checks: str, **kwargs) -> tuple[int, str, dict | None]:
    """python -m smoke_tests --only CHECKS in a container: its exit status, its output and its JSON report."""
    script = f"python -m smoke_tests --only {' '.join(checks)} --json /tmp/smoke.json; status=$?; echo '=== json'; " \
             "cat /tmp/smoke.json 2>/dev/null; exit $status"
    container = client.containers.run(image, ["sh", "-c", script], detach=True, **kwargs)
    try:
        status = container.wait(timeout=600)["StatusCode"]
        out = container.logs().decode()
    finally:
        container.remove(force=True)
    text, _, document = out.partition("=== json\n")
    return status, text, json.loads(document) if document.strip() else None


def test_without_a_compiler_the_check_fails_with_the_explanation_and_the_fix(client, built):
    # Inductor takes its C++ compiler from $CXX: point it at one that does not exist.
    status, out, report = smoke(client, built.image, "compile", environment={"CXX": "/usr/bin/no-such-g++"})
    assert status == 1, out
    reason = report["checks"][0]["reason"]
    assert reason.startswith("cpu conv net: torch.compile cannot work on cpu: no working C++ compiler"), reason
    assert "Fix: torchyard images carry g++, libc6-dev and libpython3-dev" in reason
    assert "FAIL" in out
