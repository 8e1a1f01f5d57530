"""The configuration docs, generated from the schema: docs/configuration.md (a reference with
one section per model, each field with its type, default and description) and
docs/ramparts.schema.json (the JSON Schema editors use). Both are pure functions of
``schema.py``; ``python -m ramparts.config.docs DIR`` and ``ramparts docs DIR`` write them.

The JSON Schema is pydantic's validation schema with the value syntaxes the YAML loader
accepts made explicit (durations and sizes as strings, and the shorthands that the
schema's ``mode="before"`` validators expand), so that an editor accepts what
``ramparts check`` accepts.
"""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel, BeforeValidator
from pydantic.fields import FieldInfo

from ..pipeline.template import VARIABLES
from . import units
from .schema import Config, HealthCheckConfig, ServerConfig, UpstreamConfig

__all__ = [
    "MARKDOWN_NAME",
    "SCHEMA_NAME",
    "json_schema",
    "main",
    "render_json_schema",
    "render_markdown",
    "write_docs",
]

MARKDOWN_NAME = "configuration.md"
SCHEMA_NAME = "ramparts.schema.json"

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# The loader's own regular expressions, so that editor and loader agree on the syntax.
DURATION_PATTERN = units._DURATION.pattern
SIZE_PATTERN = units._SIZE.pattern

Schema = dict[str, Any]


# --- which fields hold a duration or a size ---------------------------------------------


def _yaml_key(name: str, field: Any) -> str:
    """The key a YAML file uses for a field: its alias, or the first of its alias choices."""
    va = getattr(field, "validation_alias", None)
    if isinstance(va, AliasChoices):
        first = va.choices[0]
        if isinstance(first, str):
            return first
    return str(field.alias or name)


def _unit(annotation: Any, metadata: Sequence[Any] = ()) -> str | None:
    """``"duration"`` or ``"size"`` when the field parses with units.py, else None."""
    for m in metadata:
        if isinstance(m, BeforeValidator):
            if m.func is units.parse_duration:
                return "duration"
            if m.func is units.parse_size:
                return "size"
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return _unit(base, extra)
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _unit(arg)
            if found:
                return found
    return None


def _field_unit(field: FieldInfo) -> str | None:
    return _unit(field.annotation, field.metadata)


# --- shorthands: inputs a mode="before" validator expands -------------------------------


@dataclass(frozen=True)
class _Shorthand:
    """A field that also accepts a shorter form than its model says."""

    note: str  # appended to the field's description in the reference
    widen: Callable[[Schema], Schema]  # the field's JSON Schema -> one that accepts it


def _listen_schema(prop: Schema) -> Schema:
    item = {"anyOf": [{"type": "string"}, {"type": "integer"}, prop["items"]]}
    meta: Schema = {k: prop[k] for k in ("title", "description") if k in prop}
    array = {k: v for k, v in prop.items() if k not in meta}
    return {**meta, "anyOf": [item, {**array, "items": item}]}


def _peers_schema(prop: Schema) -> Schema:
    return {**prop, "items": {"anyOf": [{"type": "string"}, prop["items"]]}}


def _status_range_schema(prop: Schema) -> Schema:
    meta: Schema = {k: prop[k] for k in ("title", "description", "default") if k in prop}
    pair = {k: v for k, v in prop.items() if k not in meta}
    return {
        **meta,
        "anyOf": [
            pair,
            {"type": "integer"},
            {"type": "string", "pattern": r"^\d+-\d+$"},
        ],
    }


_SHORTHANDS: dict[tuple[type[BaseModel], str], _Shorthand] = {
    (ServerConfig, "listen"): _Shorthand(
        "Also written as one address (`listen: 127.0.0.1:8080`, `listen: 8080`) or a list "
        "of addresses; a bare address means `{address: ..., tls: false}`.",
        _listen_schema,
    ),
    (UpstreamConfig, "servers"): _Shorthand(
        'A peer may be written as its address alone: `servers: ["127.0.0.1:3000"]`.',
        _peers_schema,
    ),
    (HealthCheckConfig, "expect_status"): _Shorthand(
        "Statuses counted as healthy, `[low, high]`; also `200` (one status) or `200-399`.",
        _status_range_schema,
    ),
}


# --- the JSON Schema ---------------------------------------------------------------------


def _models() -> list[tuple[type[BaseModel], list[str]]]:
    """Every model reachable from Config, in first-visit (file) order, with its YAML paths."""
    found: dict[type[BaseModel], list[str]] = {}

    def visit(model: type[BaseModel], path: str, stack: tuple[type[BaseModel], ...]) -> None:
        found.setdefault(model, []).append(path)
        if model in stack:
            return
        for name, field in model.model_fields.items():
            key = _yaml_key(name, field)
            for sub, suffix in _submodels(field.annotation):
                child = f"{path}.{key}{suffix}" if path else f"{key}{suffix}"
                visit(sub, child, (*stack, model))

    visit(Config, "", ())
    return list(found.items())


def _submodels(annotation: Any) -> Iterator[tuple[type[BaseModel], str]]:
    """The models inside a field's type, with the path suffix that reaches them."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, ""
    elif origin is Annotated:
        yield from _submodels(get_args(annotation)[0])
    elif origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            yield from _submodels(arg)
    elif origin in (list, tuple):
        for arg in get_args(annotation):
            for model, suffix in _submodels(arg):
                yield model, "[]" + suffix
    elif origin is dict:
        for model, suffix in _submodels(get_args(annotation)[1]):
            yield model, ".<name>" + suffix


def _widen_unit(prop: Schema, unit: str) -> Schema:
    """Let a numeric duration or size field also take its string form (``5s``, ``32k``)."""
    pattern = DURATION_PATTERN if unit == "duration" else SIZE_PATTERN
    text = {"type": "string", "pattern": pattern}
    meta: Schema = {k: prop[k] for k in ("title", "description", "default") if k in prop}
    branches = (
        prop["anyOf"] if "anyOf" in prop else [{k: v for k, v in prop.items() if k not in meta}]
    )
    if any(b.get("type") == "string" for b in branches):
        return prop  # already accepts strings
    out: list[Schema] = []
    for branch in branches:
        if branch.get("type") in ("number", "integer"):
            if "minimum" not in branch and "exclusiveMinimum" not in branch:
                branch = {**branch, "minimum": 0}  # units.py refuses negative values
            out += [branch, text]
        else:
            out.append(branch)
    return {**meta, "anyOf": out}


def _model_schema(schema: Schema, model: type[BaseModel]) -> Schema:
    if model is Config:
        return schema
    defs: Schema = schema["$defs"]
    found: Schema = defs[model.__name__]
    return found


def json_schema() -> Schema:
    """The JSON Schema of a config file, as editors should see it."""
    schema = Config.model_json_schema(by_alias=True)
    for model, _ in _models():
        props: Schema = _model_schema(schema, model).get("properties", {})
        for name, field in model.model_fields.items():
            key = _yaml_key(name, field)
            if key not in props:
                continue
            unit = _field_unit(field)
            if unit:
                props[key] = _widen_unit(props[key], unit)
            shorthand = _SHORTHANDS.get((model, name))
            if shorthand:
                props[key] = shorthand.widen(props[key])
    out: Schema = {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "ramparts configuration",
    }
    out.update((k, v) for k, v in schema.items() if k != "title")
    return out


def render_json_schema() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


# --- the Markdown reference --------------------------------------------------------------

_SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    type(None): "null",
}


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _type(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """A field's type in words, with links to the models it holds."""
    unit = _unit(annotation, metadata)
    if unit == "duration":
        return "[duration](#durations)"
    if unit == "size":
        return "[size](#sizes)"
    origin = get_origin(annotation)
    args = get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{_anchor(annotation)})"
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if origin is Annotated:
        return _type(args[0], args[1:])
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_type(a) for a in args if a is not type(None))
    if origin is list:
        if get_origin(args[0]) is Literal:
            return "list of " + " / ".join(f"`{a}`" for a in get_args(args[0]))
        return f"list of {_type(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(_type(a) for a in args) + "]"
    if origin is dict:
        key = "name" if isinstance(args[1], type) and issubclass(args[1], BaseModel) else "string"
        return f"map of {key} to {_type(args[1])}"
    return str(annotation)


def _constraints(prop: Schema) -> str:
    """Bounds from the JSON Schema property (and its branches), e.g. ``>= 1, <= 256``."""
    parts: list[str] = []
    for branch in [prop, *prop.get("anyOf", [])]:
        for key, fmt in (
            ("minimum", ">= {}"),
            ("exclusiveMinimum", "> {}"),
            ("maximum", "<= {}"),
            ("exclusiveMaximum", "< {}"),
            ("minItems", "at least {} items"),
            ("maxItems", "at most {} items"),
        ):
            if key in branch and not (key.endswith("Items") and "prefixItems" in branch):
                text = (
                    "not empty"
                    if key == "minItems" and branch[key] == 1
                    else fmt.format(branch[key])
                )
                if text not in parts:
                    parts.append(text)
    return ", ".join(parts)


def _duration_text(seconds: float) -> str:
    if seconds == 0:
        return "0"
    # Whole days or hours, else seconds: ``60s`` reads better than ``1m`` (a size's MiB).
    for suffix, size in (("d", 86400), ("h", 3600), ("s", 1)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{suffix}"
    return f"{round(seconds * 1000)}ms"


def _size_text(n: int) -> str:
    if n == 0:
        return "0"
    for suffix, size in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "`{}`"
    unit = _field_unit(field)
    if unit == "duration" and isinstance(value, int | float):
        return f"`{_duration_text(float(value))}`"
    if unit == "size" and isinstance(value, int):
        return f"`{_size_text(value)}`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f"`{json.dumps(value)}`" if value == "" or value != value.strip() else f"`{value}`"
    if isinstance(value, tuple | list | dict):
        return f"`{json.dumps(list(value) if isinstance(value, tuple) else value)}`"
    return f"`{value}`"


def _prose(text: str | None) -> str:
    """Docstring or description text as one Markdown table cell / paragraph."""
    if not text:
        return ""
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return " ".join(text.split()).replace("|", "\\|")


def _model_section(model: type[BaseModel], paths: list[str], schema: Schema) -> list[str]:
    model_schema = _model_schema(schema, model)
    props: Schema = model_schema.get("properties", {})
    where = ", ".join(f"`{p}`" for p in paths if p) or "the top of the file"
    out = [f"## {model.__name__}", ""]
    description = _prose(model_schema.get("description"))
    if description:
        out += [description, ""]
    out += [f"At: {where}.", ""]
    out += ["| Field | Type | Default | Description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        key = _yaml_key(name, field)
        prop: Schema = props.get(key, {})
        type_text = _type(field.annotation, field.metadata)
        bounds = _constraints(prop)
        if bounds:
            type_text += f" ({bounds})"
        description = _prose(field.description)
        shorthand = _SHORTHANDS.get((model, name))
        if shorthand:
            description = f"{description} {shorthand.note}".strip()
        out.append(f"| `{key}` | {type_text} | {_default(field)} | {description} |")
    out.append("")
    return out


_VARIABLE_MEANINGS = {
    "scheme": "`http` or `https`",
    "host": "the request's Host (without the port), else the server's first name",
    "request_uri": "the request target as sent: path and query",
    "uri": "the normalised path",
    "args": "the query string, without `?`",
    "remote_addr": "the client's address",
    "request_method": "the request method",
}


def _notes() -> list[str]:
    variables = [
        f"- `${name}`: {_VARIABLE_MEANINGS[name]}" if name in _VARIABLE_MEANINGS else f"- `${name}`"
        for name in VARIABLES
    ]
    return [
        "## Values",
        "",
        "### Durations",
        "",
        "A number of seconds (`5`, `0.5`) or a number with one unit: `ms`, `s`, `m` (minutes),",
        "`h`, `d`: `250ms`, `5s`, `1m`, `2h`, `30d`. Units do not combine (`1m30s` is refused;",
        "write `90s`).",
        "",
        "### Sizes",
        "",
        "A number of bytes (`512`) or a whole number with `k`, `m` or `g` (binary: `1k` = 1024",
        "bytes), any case, optionally followed by `b`: `32k`, `1m`, `1g`, `16KB`. Fractions",
        "(`1.5m`) are refused. Note that `m` means minutes in a duration and MiB in a size.",
        "",
        "### Addresses",
        "",
        "`host:port`, `[v6]:port` or a bare port. A bare listen port binds every address",
        "(`0.0.0.0`); a bare upstream peer port means `127.0.0.1`.",
        "",
        "### Relative paths",
        "",
        "`static.root`, `tls.certificate` and `tls.key` are resolved against the directory of",
        "the configuration file, so an example runs from any working directory.",
        "`access_log.path` is opened as written (relative to the working directory).",
        "",
        "### Locations",
        "",
        "`location` takes nginx's syntax:",
        "",
        "| Written | Matches |",
        "|---|---|",
        "| `= /path` | exactly `/path` |",
        "| `^~ /prefix` | paths starting with `/prefix`; if it is the longest matching prefix, "
        "no regex is tried |",
        "| `~ regex` | paths the regular expression finds a match in (case-sensitive) |",
        "| `~* regex` | the same, case-insensitive |",
        "| `/prefix` | paths starting with `/prefix` |",
        "",
        "Precedence is nginx's: an exact match wins; otherwise the longest matching prefix is",
        "remembered (and wins at once if marked `^~`); then the regexes are tried in file",
        "order and the first match wins; if none matches, the remembered prefix is used. A",
        "request that matches no location is answered 404.",
        "",
        "Locations are matched against the normalised path (percent-encoded unreserved",
        "characters decoded, dot segments removed, repeated slashes merged), and that same",
        "path is what a proxied request forwards. Non-ASCII bytes stay percent-encoded in it,",
        "so a regex sees `%C3%A9`, not `é`; prefix and exact patterns may be written decoded.",
        "A path that could be read two ways (an encoded slash unless `encoded_slash: keep`, a",
        "backslash, control characters, double encoding, invalid or overlong UTF-8, `..` above",
        "the root, `..;`) is refused with 400 before any location is chosen.",
        "",
        "### Variables",
        "",
        "`return.location` may use these variables (also written `${name}`):",
        "",
        *variables,
        "",
        "### Editor support",
        "",
        f"[{SCHEMA_NAME}]({SCHEMA_NAME}) is the JSON Schema of this file. With",
        "yaml-language-server (the YAML extension of VS Code and others), put this first line",
        "in a config file, with the path relative to that file:",
        "",
        "```yaml",
        f"# yaml-language-server: $schema=../docs/{SCHEMA_NAME}",
        "```",
        "",
    ]


def render_markdown() -> str:
    """The configuration reference, generated from the schema."""
    schema = Config.model_json_schema(by_alias=True)
    models = _models()
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from src/ramparts/config/schema.py by `make docs` "
        "(python -m ramparts.config.docs docs/). Do not edit by hand. -->",
        "",
        "ramparts reads one YAML file. `ramparts check FILE` validates it and names the",
        "file, line, field and reason of the first problem; `ramparts serve FILE` runs it;",
        "SIGHUP reloads it (a file that does not validate is refused and the running",
        "configuration stays). Every mapping refuses keys it does not know, so a typo is an",
        "error, never silently ignored. Runnable examples are in",
        "[examples/](../examples/).",
        "",
        "## Contents",
        "",
        "- [Values](#values): durations, sizes, addresses, relative paths, locations,"
        " variables, editor support",
    ]
    for model, paths in models:
        where = f" (`{paths[0]}`)" if paths[0] else " (the top level)"
        out.append(f"- [{model.__name__}](#{_anchor(model)}){where}")
    out.append("")
    out += _notes()
    for model, paths in models:
        out += _model_section(model, paths, schema)
    return "\n".join(out).rstrip("\n") + "\n"


# --- writing -----------------------------------------------------------------------------


def write_docs(out_dir: str | Path) -> list[Path]:
    """Write the reference and the JSON Schema into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in ((MARKDOWN_NAME, render_markdown()), (SCHEMA_NAME, render_json_schema())):
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python -m ramparts.config.docs [DIR]", file=sys.stderr)
        return 2
    for path in write_docs(args[0] if args else "docs"):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
