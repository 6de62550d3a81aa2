"""YAML documents that remember where each value came from.

Config and policy errors must name the file, the line and the field path; PyYAML's plain loader
forgets positions, so the node tree is walked once to keep them. `${VAR}` and `${VAR:-default}`
are expanded in string values from the environment given by the caller.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Bounds on what a document may expand to. Anchors and aliases are allowed, but an alias is expanded where it is
# used, so ten nested aliases of ten items each would otherwise build ten billion values ("billion laughs").
MAX_DEPTH = 64
MAX_VALUES = 100_000


class SourceError(Exception):
    """A problem in a YAML file, located by file, line and field path."""

    def __init__(self, file: str, line: int | None, path: Path_, message: str) -> None:
        self.file = file
        self.line = line
        self.path = path
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field_path = format_path(self.path)
        return f"{where}: {field_path}: {self.message}" if field_path else f"{where}: {self.message}"


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class YamlDocument:
    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    digest: str = ""  # sha256 of the file's bytes, to tell versions apart

    def line_of(self, path: Path_) -> int | None:
        """The line of the deepest part of `path` that exists in the file."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    def error(self, path: Path_, message: str) -> SourceError:
        return SourceError(self.file, self.line_of(path), path, message)


def load_yaml(path: str | Path, env: Mapping[str, str]) -> YamlDocument:
    name = str(path)
    try:
        raw = Path(path).read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise SourceError(name, None, (), "file not found") from None
    except UnicodeDecodeError:
        raise SourceError(name, None, (), "file is not valid UTF-8") from None
    except OSError as exc:
        raise SourceError(name, None, (), f"cannot read file: {exc.strerror}") from None
    doc = parse_yaml(text, name, env)
    doc.digest = hashlib.sha256(raw).hexdigest()
    return doc


def parse_yaml(text: str, name: str, env: Mapping[str, str]) -> YamlDocument:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SourceError(name, line, (), f"invalid YAML: {problem}") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise SourceError(name, None, (), f"invalid YAML: nested deeper than {MAX_DEPTH} levels") from None
    doc = YamlDocument(name, None)
    if root is None:
        doc.data = {}
        return doc
    doc.data = _build(root, (), doc, env, _Walk())
    return doc


@dataclass
class _Walk:
    """What one walk of a node tree has used so far, to keep it within MAX_DEPTH and MAX_VALUES."""

    values: int = 0
    open: set[int] = field(default_factory=set)  # ids of the collection nodes being built: an alias to one is a cycle


def _build(node: yaml.Node, path: Path_, doc: YamlDocument, env: Mapping[str, str], walk: _Walk) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    walk.values += 1
    if walk.values > MAX_VALUES:
        raise doc.error(path, f"the document expands to more than {MAX_VALUES} values (through YAML aliases?)")
    if isinstance(node, yaml.CollectionNode):
        if len(path) >= MAX_DEPTH:
            raise doc.error(path, f"nested deeper than {MAX_DEPTH} levels")
        if id(node) in walk.open:
            raise doc.error(path, "a YAML alias refers to a value that contains it")
        walk.open.add(id(node))
        try:
            return _build_collection(node, path, doc, env, walk)
        finally:
            walk.open.discard(id(node))
    value = _scalar(node, path, doc)
    if isinstance(value, str):
        return _expand_env(value, path, doc, env)
    return value


def _build_collection(node: yaml.CollectionNode, path: Path_, doc: YamlDocument, env: Mapping[str, str], walk: _Walk) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise doc.error(path, "YAML merge keys (<<) are not supported")
            if not isinstance(key_node, yaml.ScalarNode):
                raise doc.error(path, "mapping keys must be plain scalars")
            # Keys keep their source text: YAML 1.1 would turn `on:` or `no:` into booleans.
            key = key_node.value
            if key in out:
                raise SourceError(doc.file, key_node.start_mark.line + 1, path + (key,), "duplicate key")
            doc.lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, path + (key,), doc, env, walk)
        return out
    return [_build(item, path + (i,), doc, env, walk) for i, item in enumerate(node.value)]


_BOOL = "tag:yaml.org,2002:bool"


def _scalar(node: yaml.Node, path: Path_, doc: YamlDocument) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise doc.error(path, "mapping keys must be plain scalars")
    if node.tag == _BOOL and node.value.lower() not in ("true", "false"):
        # YAML 1.2: `off`, `no`, `on`, `yes` are words (`prompt_injection: off`); a boolean field still reads them.
        return node.value
    try:
        return yaml.SafeLoader(node.value).construct_object(node, deep=True)  # type: ignore[arg-type]
    except yaml.YAMLError as exc:
        raise doc.error(path, f"invalid value: {exc}") from None


def _expand_env(value: str, path: Path_, doc: YamlDocument, env: Mapping[str, str]) -> str:
    if "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise doc.error(path, f"environment variable {name} is not set")

    return _ENV_REF.sub(replace, value)
