"""matrix.yaml -> Matrix: the bounded read, YAML whose mappings remember their lines, and the top-level keys
(default, defaults, images); each entry's keys are checked by validate.py.

Every problem is collected (file, line, tag, key: what is wrong and what would be right) before anything is
rendered, pulled or built; MatrixError carries them all.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable

import yaml

from builder import files
from builder.inputs import shown
from builder.matrix import compat, validate
from builder.matrix.compat import Facts
from builder.matrix.types import ImageSpec, Matrix, MatrixError, Problem, Sibling

TOP_KEYS = ("default", "defaults", "images")
DEFAULT_KEYS = ("base", "size_budget")
# A matrix of a thousand tags is about 40 KB; past this size a file is not a matrix, and reading it would
# cost seconds and hundreds of MB (YAML nodes) before the first refusal.
MAX_BYTES = 256 * 1024
# Control characters in the file itself (YAML allows tab, newline and carriage return).
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")
# Where a problem is: (mapping, key or None for the mapping itself, label) -> 'matrix.yaml:3: images.v2.6-cu124.torch'
At = Callable[[object, str | None, str], str]


def load(path: Path, facts: Facts | None = None) -> Matrix:
    """The matrix at path, checked against the facts (compat.yaml's unless given); MatrixError with every problem."""
    facts = facts or compat.load()
    raw = read(path)

    def at(mapping, key: str | None, label: str) -> str:
        line = getattr(mapping, "lines", {}).get(key) or getattr(mapping, "line", None)
        return f"{path}:{line}: {label}" if line else f"{path}: {label}"

    if not isinstance(raw, dict):
        raise MatrixError([Problem(str(path), "expected a mapping with keys: " + ", ".join(TOP_KEYS))])
    problems = _unknown_keys(raw, TOP_KEYS, lambda k: at(raw, k, _label(k)))
    defaults = _defaults(raw, facts, at, problems)
    images = raw.get("images")
    if not isinstance(images, dict) or not images:
        problems.append(Problem(at(raw, "images", "images"), "needs at least one tag, e.g. 'v2.6-cu124: {torch: \"2.6.0\"}'"))
        raise MatrixError(problems)
    specs = _specs(images, defaults, facts, at, problems)
    default = _default(raw, images, at, problems)
    if problems:
        raise MatrixError(problems)
    siblings = tuple(Sibling(s.tag, s.cuda, s.min_driver, s.archs) for s in specs.values())
    return Matrix(path=path, default=default, specs={tag: replace(s, siblings=siblings) for tag, s in specs.items()})


def _defaults(raw: dict, facts: Facts, at: At, problems: list[Problem]) -> validate.Defaults:
    """Checked once, here: not again under each entry that takes them (none of which holds them)."""
    defaults = raw.get("defaults")
    if defaults is None:
        defaults = {}
    elif not isinstance(defaults, dict):
        problems.append(Problem(at(raw, "defaults", "defaults"), f"expected a mapping of {', '.join(DEFAULT_KEYS)} "
                                                                 f"(e.g. 'defaults: {{base: bookworm}}'), not {shown(defaults)}"))
        defaults = {}
    problems += _unknown_keys(defaults, DEFAULT_KEYS, lambda k: at(defaults, k, _label("defaults", k)))
    budget = None
    if "size_budget" in defaults:
        try:
            budget = validate.size_budget(defaults["size_budget"])
        except ValueError as e:
            problems.append(Problem(at(defaults, "size_budget", "defaults.size_budget"), str(e)))
    base = defaults.get("base", "bookworm")
    if "base" in defaults:
        before = len(problems)
        validate.base(base, facts, lambda key, message: problems.append(Problem(at(defaults, "base", "defaults.base"), message)))
        if len(problems) > before:
            base = None
    return validate.Defaults(base=base, size_budget=budget)


def _specs(images: dict, defaults: validate.Defaults, facts: Facts, at: At, problems: list[Problem]) -> dict[str, ImageSpec]:
    """The spec of each entry that has no problem; the problems of the others, in file order."""
    specs: dict[str, ImageSpec] = {}
    for tag, entry in images.items():
        entry_problems: list[Problem] = []

        def report(key: str | None, message: str, tag=tag, entry=entry) -> None:
            label = _label("images", tag, *([key] if key else []))
            entry_problems.append(Problem(at(entry if key else images, key or tag, label), message))

        spec = validate.entry(tag, entry, defaults, facts, report)
        problems += entry_problems
        if spec and not entry_problems:
            specs[spec.tag] = spec
    return specs


def _default(raw: dict, images: dict, at: At, problems: list[Problem]):
    """The default tag as written (when it is not one, the problem added here stops load)."""
    default = raw.get("default")
    if default is None:
        problems.append(Problem(at(raw, None, "default"), "name the tag that plain `make build` uses, e.g. 'default: v2.6-cu124'"))
    elif not isinstance(default, str):
        problems.append(Problem(at(raw, "default", "default"), f"expected one tag, e.g. 'default: v2.6-cu124', not {shown(default)}"))
    elif default not in images:
        problems.append(Problem(at(raw, "default", "default"), f"{shown(default)} is not a tag under images{_nearest(default, list(images))}"))
    return default


def _label(*keys: str) -> str:
    """images.v2.6-cu124.torch"""
    return ".".join(validate.word(key) for key in keys)


def _unknown_keys(mapping: dict, allowed: tuple[str, ...], where) -> list[Problem]:
    return [Problem(where(key), validate.unknown_key(key, allowed)) for key in mapping if key not in allowed]


def _nearest(word: str, candidates: list[str]) -> str:
    near = difflib.get_close_matches(word[:80], candidates, n=3, cutoff=0.5) if len(candidates) <= 1000 else []
    return f"; nearest: {', '.join(near)}" if near else ""


# ---------------------------------------------------------------- YAML with line numbers


class _Mapping(dict):
    """A dict that remembers the line of each key (1-based)."""

    lines: dict
    line: int


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when PyYAML has it
    """Plain data only: string keys, no aliases (the matrix needs none, and an alias bomb expands a few
    lines into gigabytes), safe types."""

    def construct_object(self, node, deep=False):
        if node in self.constructed_objects or node in self.recursive_objects:
            raise yaml.constructor.ConstructorError(
                None, None, "a YAML alias (*name) of the anchor here: aliases are not allowed in a matrix; "
                            "write the value out", node.start_mark)
        return super().construct_object(node, deep)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    result = _Mapping()
    result.lines = {}
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str"):
            raise yaml.constructor.ConstructorError(None, None, _not_a_string_key(key_node), key_node.start_mark)
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"duplicate key {key!r} (first on line {result.lines[key]}); each tag and key may appear once",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = line
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _not_a_string_key(node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        return "a key must be a string; this one is a list or a mapping"
    kind = node.tag.rsplit(":", 1)[-1]  # YAML reads yes/no/on/off as bool, 2.6 as float, ~ as null
    return f"a key must be a string; YAML reads {node.value[:60]!r} as a {kind}: quote it (\"{node.value[:60]}\")"


def _line_of(data: bytes | str, offset: int) -> int:
    return data[:offset].count(b"\n" if isinstance(data, bytes) else "\n") + 1


def read(path: Path):
    """The matrix file as plain data whose mappings know their lines, or MatrixError saying why it is none."""
    try:
        data = files.read_bounded(path, MAX_BYTES)  # the cap holds while reading: /dev/zero and a pipe say size 0
    except files.TooLarge:
        raise MatrixError([Problem(str(path), f"is larger than {MAX_BYTES // 1024} KiB; a matrix is at most "
                                              f"{MAX_BYTES // 1024} KiB (a thousand tags take about 40 KB)")]) from None
    except files.Refused as e:
        if path.is_dir():
            raise MatrixError([Problem(str(path), "is a folder; name the matrix file, e.g. --matrix matrix.yaml")]) from None
        raise MatrixError([Problem(str(path), f"{str(e).removeprefix(f'{path} ')}; name the matrix file, "
                                              "e.g. --matrix matrix.yaml")]) from None
    except OSError as e:
        raise MatrixError([Problem(str(path), f"cannot read the matrix: {e.strerror}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MatrixError([Problem(f"{path}:{_line_of(data, e.start)}",
                                   f"byte 0x{data[e.start]:02x} is not UTF-8; save the matrix as UTF-8")]) from None
    control = CONTROL_RE.search(text)
    if control:
        raise MatrixError([Problem(f"{path}:{_line_of(text, control.start())}",
                                   f"control character {control[0]!r}; a matrix holds printable text only")])
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise MatrixError([Problem(where, f"malformed YAML: {e.problem or e.context}")]) from None
    except yaml.YAMLError as e:  # a reader error: the text has what YAML refuses
        raise MatrixError([Problem(str(path), f"malformed YAML: {e}")]) from None
    except RecursionError:
        raise MatrixError([Problem(str(path), "malformed YAML: nested too deep; a matrix is a few levels deep")]) from None
