"""Reading a config file: YAML with the line of every node kept, validated into the frozen
schema; every failure becomes one ``ConfigError`` naming file, line, column and field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError

__all__ = ["LineMap", "load_yaml", "validate"]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
Loc = tuple[str | int, ...]


class LineMap:
    """Where each value of a YAML document sits: path -> (line, column), 1-based."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[Loc, tuple[int, int]] = {}

    def where(self, loc: Loc) -> tuple[int | None, int | None]:
        loc = tuple(loc)
        while loc:
            if loc in self.positions:
                return self.positions[loc]
            loc = loc[:-1]
        return self.positions.get((), (None, None))

    def error(self, loc: Loc, reason: str) -> ConfigError:
        line, col = self.where(loc)
        field = ".".join(str(x) for x in loc) or None
        return ConfigError(reason, file=self.file, line=line, column=col, field=field)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _record(node: yaml.Node, loc: Loc, lines: LineMap) -> None:
    mark = node.start_mark
    lines.positions.setdefault(loc, (mark.line + 1, mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            km = key_node.start_mark
            lines.positions[(*loc, key)] = (km.line + 1, km.column + 1)
            _record(value_node, (*loc, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record(item, (*loc, i), lines)


def load_yaml(text: str, file: str) -> tuple[Any, LineMap]:
    """Parse YAML text into plain data and its line map; syntax errors become ConfigError."""
    lines = LineMap(file)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(x for x in (exc.context, exc.problem) if x) or str(exc)
        raise ConfigError(
            reason,
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(exc), file=file) from None
    if node is not None:
        _record(node, (), lines)
    return data, lines


def validate(model: type[M], data: Any, lines: LineMap) -> M:
    """Validate plain data into ``model``; the first error becomes a located ConfigError."""
    if data is None:
        raise ConfigError("the file is empty", file=lines.file, line=1)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and "[" in x))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise lines.error(loc, msg + extra) from None


def read_file(path: str | Path, parse: Callable[[str, str], T]) -> T:
    """Read ``path`` and hand its text to ``parse``; unreadable files become ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(p)) from None
    return parse(text, str(p))
