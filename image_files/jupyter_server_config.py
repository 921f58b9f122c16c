# torchyard's Jupyter settings (/etc/jupyter/jupyter_server_config.py), read by every `jupyter lab` in the image.
# The entrypoint checks these variables at start (a bad one stops the container with one line); here they are applied.
#
# Auth, exactly one of:
#   JUPYTER_TOKEN              the token itself
#   JUPYTER_TOKEN_FILE         a file holding it (a Docker secret: /run/secrets/...); surrounding whitespace dropped
#   JUPYTER_PASSWORD_HASH      a password hash from `python -c "from jupyter_server.auth import passwd; print(passwd())"`
#   JUPYTER_DISABLE_AUTH=1     no auth at all, with a loud warning (anyone who reaches the port runs code)
#   none of these              Jupyter makes a random token and logs the full URL with it
# An empty or blank token never means "no auth": it is refused.
#
# JUPYTER_ALLOWED_HOSTS        with auth off, only requests whose Host is a loopback address or localhost are served
#                              (a web page that points its own name at 127.0.0.1, DNS rebinding, gets a 403); list
#                              the names you reach Jupyter by (comma-separated), or * for any. With auth on, a list
#                              turns the same check on; unset, any Host is served (the token guards it).
import os
import sys

c = get_config()  # noqa: F821 (Jupyter defines it when it reads this file)
auth_disabled = os.environ.get("JUPYTER_DISABLE_AUTH", "").strip().lower() in ("1", "true", "yes")
allowed_hosts = os.environ.get("JUPYTER_ALLOWED_HOSTS", "").replace(",", " ").split()

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
    except UnicodeDecodeError:
        _refuse(f"JUPYTER_TOKEN_FILE={path} is not UTF-8 text; put the token in it, e.g. `openssl rand -hex 24 > token`")
elif os.environ.get("JUPYTER_PASSWORD_HASH"):
    c.PasswordIdentityProvider.hashed_password = os.environ["JUPYTER_PASSWORD_HASH"]
    c.IdentityProvider.token = ""  # the password is the auth; a token beside it would be a second way in
elif auth_disabled:
    c.IdentityProvider.token = ""
    c.PasswordIdentityProvider.hashed_password = ""
    hosts = "any Host name (JUPYTER_ALLOWED_HOSTS=*)" if "*" in allowed_hosts else \
        f"the Host names {', '.join(['127.0.0.1', 'localhost', *allowed_hosts])} (JUPYTER_ALLOWED_HOSTS adds names)"
    banner = "!" * 78
    print(f"{banner}\n!! torchyard: JUPYTER_DISABLE_AUTH is set: Jupyter runs WITHOUT ANY AUTHENTICATION.\n"
          f"!! Anyone who can reach its port can run any code as this container's user.\n"
          f"!! Served to {hosts}.\n{banner}", file=sys.stderr, flush=True)

# Jupyter's own Host check (allow_remote_access=False): IP addresses pass when they are loopback, names when listed.
if (auth_disabled or allowed_hosts) and "*" not in allowed_hosts:
    c.ServerApp.allow_remote_access = False
    c.ServerApp.local_hostnames = ["localhost", *allowed_hosts]
