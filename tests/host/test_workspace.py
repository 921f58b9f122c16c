"""The workspace without an engine: what `make run` would start, the entrypoint's pure parts, the rendered files."""

import ast
import base64
import importlib.util
import shlex

import pytest

from builder import layout
from builder.host import gpu, workspace
from builder.image import render
from tests.image.test_render import copied


def load_template(name: str):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), layout.IMAGE_FILES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def entrypoint():
    return load_template("entrypoint.py")


@pytest.fixture
def home(tmp_path):
    (tmp_path / ".ssh").mkdir()
    return tmp_path


def test_the_first_key_ssh_keygen_would_make_is_found(home):
    (home / ".ssh" / "id_rsa.pub").write_text("ssh-rsa AAAA rsa\n")
    assert workspace.find_public_key({}, home) == home / ".ssh" / "id_rsa.pub"
    (home / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAA ed\n")
    assert workspace.find_public_key({}, home) == home / ".ssh" / "id_ed25519.pub"
    assert workspace.find_public_key({}, home / "nobody") is None


def test_a_named_key_file_must_exist(home):
    with pytest.raises(workspace.WorkspaceError, match="PUBLIC_KEY_FILE=/no/such.pub: no such file"):
        workspace.find_public_key({"PUBLIC_KEY_FILE": "/no/such.pub"}, home)


def test_a_plan_publishes_on_localhost_mounts_the_folder_and_passes_ids_and_key(home, tmp_path):
    (home / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAA me@host\n")
    ws = workspace.plan("ty:v2.6-cu124", "v2.6-cu124", tmp_path / "ws", "127.0.0.1", 8888, 2222,
                        environ={}, home=home, uid=1234, gid=1235)
    kwargs = workspace.run_kwargs(ws, {"shm_size": "8g"}, environ={})
    assert kwargs["name"] == "torchyard-v2.6-cu124"
    assert kwargs["ports"] == {"8888/tcp": ("127.0.0.1", 8888), "22/tcp": ("127.0.0.1", 2222)}
    assert kwargs["volumes"] == {str(tmp_path / "ws"): {"bind": "/workspace", "mode": "rw"}}
    assert kwargs["environment"] == {"PUBLIC_KEY": "ssh-ed25519 AAAA me@host", "NB_UID": "1234", "NB_GID": "1235"}
    assert kwargs["shm_size"] == "8g"


def test_root_on_the_host_keeps_the_images_user_and_a_token_here_is_passed_on(home, tmp_path):
    ws = workspace.plan("ty:t", "t", tmp_path, "127.0.0.1", 8888, 2222, environ={"JUPYTER_TOKEN": "abc"},
                        home=home, uid=0, gid=0)
    assert ws.ids is None and ws.key_file is None
    assert workspace.environment(ws, {"JUPYTER_TOKEN": "abc"}) == {"JUPYTER_TOKEN": "abc"}


def test_the_docker_run_line_is_the_same_start(home, tmp_path):
    (home / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAA me@host\n")
    ws = workspace.plan("ty:t", "t", tmp_path / "my ws", "127.0.0.1", 8899, 2299, environ={}, home=home, uid=7, gid=8)
    options = {"shm_size": "8g", "device_requests": ["gpu"]}
    line = workspace.docker_run_line(ws, options)
    words = shlex.split(line.replace(f'"$(cat {home}/.ssh/id_ed25519.pub)"', "KEY"))
    assert words[:4] == ["docker", "run", "-d", "--name"]
    for flag in gpu.docker_run_flags(options):
        assert flag in words
    assert "127.0.0.1:8899:8888" in words and "127.0.0.1:2299:22" in words
    assert f"{tmp_path / 'my ws'}:/workspace" in words
    assert "PUBLIC_KEY=KEY" in words and "NB_UID=7" in words and words[-1] == "ty:t"


def test_a_port_out_of_range_is_refused(tmp_path):
    with pytest.raises(workspace.WorkspaceError, match="ssh port 70000: give a port from 1 to 65535"):
        workspace.plan("ty:t", "t", tmp_path, "127.0.0.1", 8888, 70000, environ={}, home=tmp_path)


def test_ssh_sessions_get_the_environment_but_not_the_secrets(entrypoint):
    line = entrypoint.sshd_setenv_line({"PATH": "/opt/venv/bin:/usr/bin", "TORCH_HOME": "/workspace/.cache/torch",
                                        "WEIRD": 'a "quoted" \\ value', "JUPYTER_TOKEN": "s3cret",
                                        "PUBLIC_KEY": "ssh-ed25519 AAAA", "HOME": "/root", "MULTI": "a\nb"})
    assert line == ('SetEnv "PATH=/opt/venv/bin:/usr/bin" "TORCH_HOME=/workspace/.cache/torch" '
                    '"WEIRD=a \\"quoted\\" \\\\ value"\n')


@pytest.mark.parametrize("value", ["0", "-5", "abc", "99999999999", "\u00b2", "\uff11\uff12", "1" * 5000])
def test_nb_uid_must_be_a_non_root_id_in_ascii_digits(entrypoint, value):
    with pytest.raises(entrypoint.StartError, match="NB_UID='.*: give a number from 1 to 2147483647"):
        entrypoint.wanted_id({"NB_UID": value}, "NB_UID")


def test_nb_uid_unset_keeps_the_current_id(entrypoint):
    assert entrypoint.wanted_id({}, "NB_UID") is None
    assert entrypoint.wanted_id({"NB_UID": " 4321 "}, "NB_UID") == 4321


def test_the_entrypoint_runs_programs_only_by_absolute_path_from_its_list(entrypoint):
    """Root never looks a program up on a PATH: every subprocess call names one of COMMANDS (the docker test
    tests/docker/test_no_way_to_root.py plants every name where the user can write, and restarts)."""
    tree = ast.parse((layout.IMAGE_FILES / "entrypoint.py").read_text())
    constants = {name for name in dir(entrypoint) if getattr(entrypoint, name) in entrypoint.COMMANDS}
    bodies = [node for node in tree.body if not (isinstance(node, ast.FunctionDef) and node.name == "run")]
    calls = [node for body in bodies for node in ast.walk(body) if isinstance(node, ast.Call)
             and ast.unparse(node.func) in ("run", "subprocess.run", "subprocess.Popen")]
    assert len(calls) >= 6
    for call in calls:
        first = call.args[0].elts[0] if isinstance(call.args[0], ast.List) else call.args[0]
        assert isinstance(first, ast.Name) and first.id in constants, ast.unparse(call)
    system = entrypoint.SYSTEM_PATH.split(":")
    assert all(c.startswith("/") and c.rsplit("/", 1)[0] in system for c in entrypoint.COMMANDS)


def final_stage(dockerfile: str) -> str:
    return dockerfile[dockerfile.rindex("\nFROM "):]


@pytest.mark.parametrize("tag", ["v2.6-cu124", "v2.6-cu118", "v2.15-cu132-devel"])
def test_workspace_packages_come_after_torch_from_the_configured_index(shipped, tag):
    files = render.render(shipped.specs[tag])
    dockerfile = files["Dockerfile"]
    # torch's lock, in its layers (builder/image/layers.py); before `make lock`, the step that says there is none yet
    torch_step = dockerfile.index("'torch==" if "'torch==" in dockerfile else "torch's layers: not known before")
    workspace_step = dockerfile.index(f"-r {layout.SHARE}/requirements-workspace.lock")
    assert torch_step < workspace_step
    workspace_line = dockerfile[dockerfile.rindex("\n", 0, workspace_step):workspace_step]
    assert "--index-url" not in workspace_line  # never the PyTorch wheel index
    assert files["requirements-workspace.txt"].splitlines() == render.WORKSPACE_REQUIREMENTS
    assert all("==" in r for r in render.WORKSPACE_REQUIREMENTS)


def test_the_final_stage_runs_tini_as_pid1_the_entrypoint_and_jupyter_with_a_healthcheck(shipped):
    files = render.render(shipped.specs["v2.6-cu124"])
    final = final_stage(files["Dockerfile"])
    assert 'ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/bin/torchyard-entrypoint"]' in final
    assert 'CMD ["jupyter", "lab"]' in final
    assert 'HEALTHCHECK --interval=5s' in final and "VOLUME /workspace" in final and "WORKDIR /\n" in final
    assert "TORCH_HOME=/workspace/.cache/torch" in final and "HF_HOME=/workspace/.cache/huggingface" in final
    copies = copied(shipped.specs["v2.6-cu124"])
    for name, target in {"entrypoint.py": layout.ENTRYPOINT, "healthcheck.py": layout.HEALTHCHECK,
                         "sshd_config": "/etc/ssh/sshd_config.d/torchyard.conf",
                         "jupyter_server_config.py": "/etc/jupyter/jupyter_server_config.py"}.items():
        assert (f"image_files/{name}", target) in copies


def test_ssh_host_keys_are_deleted_in_the_step_that_installs_sshd(shipped):
    final = final_stage(render.render(shipped.specs["v2.6-cu124"])["Dockerfile"])
    install = final[final.index("apt-get update"):]
    install = install[:install.index("\n# ")]
    assert "openssh-server" in install and "rm -rf /var/lib/apt/lists/*_* " in install
    assert " && rm -f /etc/ssh/ssh_host_* \\\n" in install


def test_sshd_is_key_only_and_never_root():
    settings = dict(line.split(None, 1) for line in (layout.IMAGE_FILES / "sshd_config").read_text().splitlines()
                    if line.strip() and not line.startswith("#"))
    assert settings["PermitRootLogin"] == "no"
    assert settings["PasswordAuthentication"] == "no"
    assert settings["KbdInteractiveAuthentication"] == "no"
    assert settings["AuthenticationMethods"] == "publickey"
    assert settings["AllowUsers"] == layout.USER


# A real ed25519 public key (its private half was thrown away), and keys built by the wire format's rule.
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBXve+qAXayajaRpdwN1K/qOk4Hz+V91ojd3vk1nvXN table@torchyard"


def wire_key(key_type: str, body: bytes = b"\x00\x00\x00\x01\x01", named: str | None = None) -> str:
    name = (named or key_type).encode()
    return f"{key_type} {base64.b64encode(len(name).to_bytes(4, 'big') + name + body).decode()} me@host"


@pytest.mark.parametrize("key, says", [
    (wire_key("ssh-dss"), "not an OpenSSH public key"),  # OpenSSH refuses DSA; so do the image and make run
    ("ssh-ed25519 AAAA me", "not a valid OpenSSH public key"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBROKEN me", "not a valid OpenSSH public key"),
    (wire_key("ssh-ed25519", named="ssh-rsa"), "does not decode to a ssh-ed25519 key"),
    (wire_key("ssh-rsa", body=b""), "not a valid OpenSSH public key"),
    (f'command="/bin/sh" {ED25519}', "not an OpenSSH public key"),
])
def test_make_run_refuses_the_keys_the_entrypoint_refuses(entrypoint, tmp_path, key, says):
    from builder import cli, options
    from builder.inputs import InputError

    with pytest.raises(entrypoint.StartError, match=says):
        entrypoint.check_keys(key, "PUBLIC_KEY")
    (tmp_path / "id.pub").write_text(key + "\n")
    args = cli.parser().parse_args(["run"])
    with pytest.raises(InputError, match=f"does not hold OpenSSH public keys as the image takes them .*{says}"):
        options.settings(args, environ={"PUBLIC_KEY_FILE": str(tmp_path / "id.pub")})


@pytest.mark.parametrize("key", [ED25519, wire_key("ssh-rsa"), wire_key("ecdsa-sha2-nistp256"),
                                 wire_key("sk-ssh-ed25519@openssh.com"), f"# mine\n{ED25519}\n\n{wire_key('ssh-rsa')}"])
def test_make_run_and_the_entrypoint_take_the_same_keys(entrypoint, tmp_path, key):
    from builder import cli, options

    assert entrypoint.check_keys(key, "PUBLIC_KEY") == workspace.public_keys(key, "PUBLIC_KEY") != ""
    (tmp_path / "id.pub").write_text(key + "\n")
    checked = options.settings(cli.parser().parse_args(["run"]), environ={"PUBLIC_KEY_FILE": str(tmp_path / "id.pub")})
    assert checked.ssh_port == 2222


def test_the_grammar_make_run_uses_is_the_one_the_image_carries():
    entry = next(c for c in layout.carried("3.11") if c.target == layout.ENTRYPOINT)
    assert entry.source == layout.ENTRYPOINT_SOURCE
    assert workspace._entrypoint().__file__ == str(layout.ROOT / entry.source)
