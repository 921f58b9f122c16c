"""JupyterLab as a person meets it in the real image (v2.6-cu124, the session's `built`): no news prompt (the
settings overrides reach the settings API), a Terminal that is bash as the user in /workspace, and a notebook's
`%pip install` that works under the image's pip constraints (real PyPI, the host's CA bundle passed at run time)."""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.request

import pytest
import websocket

from builder import layout
from tests.docker.containers import Containers, execute
from tests.docker.test_workspace import wait_for_jupyter

NOTIFICATION = "@jupyterlab/apputils-extension:notification"


@pytest.fixture(scope="module")
def lab(client, built, behind_the_proxy):
    containers = Containers(client, built.image)
    token = secrets.token_hex(24)
    running = containers.start(environment={"JUPYTER_TOKEN": token, **behind_the_proxy["environment"]},
                               volumes=behind_the_proxy["volumes"])
    try:
        wait_for_jupyter(running)
        yield running, token
    finally:
        containers.remove_all()


def api(running, token: str, path: str, method: str = "GET", body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{running.jupyter}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_the_news_prompt_is_answered_by_the_images_settings(lab):
    running, token = lab
    settings = api(running, token, f"/lab/api/settings/{NOTIFICATION}")
    defaults = {name: prop.get("default") for name, prop in settings["schema"]["properties"].items()}
    # JupyterLab asks "Would you like to get notified about official Jupyter news?" while fetchNews is "none".
    assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False
    assert settings["raw"] in ("{}", "")  # the user's own settings are untouched: they can still turn it on


def test_a_terminal_is_bash_as_the_user_in_the_workspace(lab):
    running, token = lab
    terminal = api(running, token, "/api/terminals", method="POST", body={})
    ws = websocket.create_connection(f"ws://127.0.0.1:{running.jupyter_port}/terminals/websocket/{terminal['name']}",
                                     header=[f"Authorization: token {token}"], timeout=30)
    try:
        ws.send(json.dumps(["stdin", 'echo "marker $(id -un) $(pwd) $0 $BASH_VERSION"\r']))
        out, deadline, found = "", time.monotonic() + 30, None
        while found is None and time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message[0] == "stdout":
                out += message[1]
                # the answer, not the echo of the typed line (whose words start with $); the prompt's escapes around it
                found = re.search(r"marker (\w+) (/\S*) (\S+) (\d\S*)", out)
    finally:
        ws.close()
    assert found, out
    name, cwd, shell, version = found.groups()
    assert (name, cwd) == (layout.USER, layout.WORKSPACE)
    assert shell == "/bin/bash" and version.startswith("5.")  # bash, not sh


def test_pip_in_a_notebook_installs_under_the_constraints_and_explains_a_refusal(lab):
    running, token = lab
    out, reply = execute(running, token, "%pip install --no-cache-dir einops\nimport einops; print('einops', einops.__version__)")
    assert reply["status"] == "ok", out
    assert "Successfully installed einops" in out and "einops 0." in out
    out, reply = execute(running, token, "%pip install --no-cache-dir torch==2.7.1\nimport torch; print('torch', torch.__version__)")
    assert "(constraint) torch===2.6.0" in out, out
    assert "torchyard: this image (v2.6-cu124) is built around torch 2.6.0" in out
    assert "docker exec CONTAINER env PIP_CONSTRAINT= pip install" in out
    assert "torch 2.6.0+cu124" in out  # the kernel's torch is still the image's
