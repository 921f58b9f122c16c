"""The everyday tools in the real image (v2.6-cu124, the session's `built`), each used as the user would use it, as the
user (through the entrypoint, which drops to `torchyard`): git and git-lfs (a large file stored as an LFS pointer by the
filters in root's /etc/gitconfig), curl, less, ps, unzip, nano driven inside tmux with key strokes, and torch in a
tmux login shell (where a run outlives its terminal)."""

from __future__ import annotations

from builder import layout
from tests.docker.test_pip_guard import in_container, sections

SCRIPT = r"""
set -u
cd /tmp
echo "=== whoami"; id -un
echo "=== git"
git init -q repo && cd repo && git config user.name me && git config user.email me@example.com
git lfs track '*.bin' >/dev/null && head -c 4096 /dev/urandom > weights.bin && echo code > train.py
git add . && git commit -qm first && git log --oneline | wc -l
echo "=== gitconfig"; cat /etc/gitconfig
echo "=== lfs"; git lfs ls-files --name-only; git show HEAD:weights.bin | head -1
cd /tmp
echo "=== curl"; curl -fsS file:///usr/share/torchyard/spec.json | python -c 'import json, sys; print(json.load(sys.stdin)["tag"])'
echo "=== less"; printf 'paged line\n' | less
echo "=== ps"; ps -o user= -p $$
echo "=== unzip"
python -c 'import zipfile; z = zipfile.ZipFile("a.zip", "w"); z.writestr("inside/f.txt", "unzipped\n"); z.close()'
unzip -q a.zip -d out && cat out/inside/f.txt
echo "=== nano"
tmux new-session -d -s edit -x 100 -y 30 'nano /tmp/note.txt'
for _ in $(seq 100); do tmux capture-pane -p -t edit | grep -q 'GNU nano' && break; sleep 0.1; done
tmux send-keys -t edit 'typed in nano' C-o Enter C-x
for _ in $(seq 100); do tmux has-session -t edit 2>/dev/null || break; sleep 0.1; done
cat /tmp/note.txt
echo "=== tmux"
tmux new-session -d -s shell -x 100 -y 30  # a login shell, as a person starts one
tmux send-keys -t shell 'python -c "import torch; print(torch.__version__)" > /tmp/in-tmux; exit' Enter
for _ in $(seq 300); do tmux has-session -t shell 2>/dev/null || break; sleep 0.1; done
cat /tmp/in-tmux
echo "=== setuid"; find /usr/bin/git /usr/bin/git-lfs /usr/bin/curl /usr/bin/less /usr/bin/ps /usr/bin/unzip /usr/bin/nano \
  /usr/bin/tmux /usr/lib/x86_64-linux-gnu/utempter/utempter -perm /6022 -printf '%p\n'
echo "=== end"
"""


def test_each_everyday_tool_does_its_job_as_the_user(client, built):
    out = in_container(client, built.image, SCRIPT)
    part = sections(out)
    assert part["whoami"].strip() == layout.USER, out
    assert part["git"].strip() == "1", out
    # in one order, build after build (git-lfs's postinst writes them in Go's map order: a different layer each time)
    assert part["gitconfig"] == ('[filter "lfs"]\n\tclean = git-lfs clean -- %f\n\tsmudge = git-lfs smudge -- %f\n'
                                 '\tprocess = git-lfs filter-process\n\trequired = true\n'), out
    lfs = part["lfs"].splitlines()
    assert lfs == ["weights.bin", "version https://git-lfs.github.com/spec/v1"], out  # committed as a pointer
    assert part["curl"].strip() == "v2.6-cu124", out
    assert part["less"].strip() == "paged line", out
    assert part["ps"].strip() == layout.USER, out
    assert part["unzip"].strip() == "unzipped", out
    assert part["nano"].strip() == "typed in nano", out
    assert part["tmux"].strip() == "2.6.0+cu124", out  # the venv is on a login shell's PATH too
    assert part["setuid"].strip() == "", out  # none is setuid, setgid, or writable by others
    assert "end" in part


def setid_files(client, image: str) -> set[str]:
    out = client.containers.run(image, ["/", "-xdev", "-type", "f", "-perm", "/6000", "-printf", "%m %u:%g %p\\n"],
                                entrypoint=["find"], user="root", remove=True)
    return set(out.decode().splitlines())


def test_the_image_adds_no_setuid_or_setgid_program_but_openssh_clients(client, built, spec):
    """The base's (su, passwd, mount, …) stay; the OS step's openssh-client brings its two; the tools add none (tmux's
    utempter helper comes without its setgid bit)."""
    added = setid_files(client, built.image) - setid_files(client, spec.base.image)
    assert added == {"2755 root:_ssh /usr/bin/ssh-agent", "4755 root:root /usr/lib/openssh/ssh-keysign"}
