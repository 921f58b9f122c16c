# torchyard's Jupyter settings (/etc/jupyter/jupyter_server_config.py), read by every `jupyter lab` in the image.
#
# Auth, first match wins:
#   JUPYTER_TOKEN              the token itself
#   JUPYTER_TOKEN_FILE         a file holding it (a Docker secret: /run/secrets/...); surrounding whitespace dropped
#   JUPYTER_PASSWORD_HASH      a password hash from `python -c "from jupyter_server.auth import passwd; print(passwd())"`
#   JUPYTER_DISABLE_AUTH=1     no auth at all, with a loud warning (anyone who reaches the port runs code)
#   none of these              Jupyter makes a random token and logs the full URL with it
# An empty or blank token never means "no auth": it is refused.
import os
import sys

c = get_config()  # noqa: F821 (Jupyter defines it when it reads this file)

# Listen on every interface of the container: only `docker run -p` decides who can reach it, and auth guards it.
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.open_browser = False
c.ServerApp.allow_root = False
# Another port than the published one (Jupyter's default is to try 50 more) would be unreachable: fail instead.
c.ServerApp.port_retries = 0
# Terminals run bash (Jupyter's default is $SHELL, which the entrypoint's setpriv does not set, then sh); not a login
# shell, whose /etc/profile would reset PATH and lose the venv. They start in the server's root, /workspace.
c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash"]}


def _refuse(text: str) -> None:
    print(f"torchyard: {text}", file=sys.stderr, flush=True)
    sys.exit(2)


def _token_from(name: str, value: str) -> str:
    token = value.strip()
    if not token:
        _refuse(f"{name} is empty; give a token, or leave it unset for a random one "
                "(JUPYTER_DISABLE_AUTH=1 turns auth off, on purpose only)")
    return token


if os.environ.get("JUPYTER_TOKEN") is not None:
    c.IdentityProvider.token = _token_from("JUPYTER_TOKEN", os.environ["JUPYTER_TOKEN"])
elif os.environ.get("JUPYTER_TOKEN_FILE"):
    path = os.environ["JUPYTER_TOKEN_FILE"]
    try:
        with open(path) as f:
            c.IdentityProvider.token = _token_from(f"JUPYTER_TOKEN_FILE ({path})", f.read())
    except OSError as e:
        _refuse(f"JUPYTER_TOKEN_FILE={path}: cannot read it ({e.strerror}); mount the file, e.g. "
                f"`-v $PWD/token:{path}:ro` or a Docker secret")
elif os.environ.get("JUPYTER_PASSWORD_HASH"):
    c.PasswordIdentityProvider.hashed_password = os.environ["JUPYTER_PASSWORD_HASH"]
    c.IdentityProvider.token = ""  # the password is the auth; a token beside it would be a second way in
elif os.environ.get("JUPYTER_DISABLE_AUTH", "").lower() in ("1", "true", "yes"):
    c.IdentityProvider.token = ""
    c.PasswordIdentityProvider.hashed_password = ""
    banner = "!" * 78
    print(f"{banner}\n!! torchyard: JUPYTER_DISABLE_AUTH is set: Jupyter runs WITHOUT ANY AUTHENTICATION.\n"
          f"!! Anyone who can reach its port can run any code as this container's user.\n{banner}",
          file=sys.stderr, flush=True)
