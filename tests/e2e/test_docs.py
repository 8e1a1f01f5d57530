"""docs/ is generated from the schema: the committed files equal a fresh generation (run
``make docs`` after changing schema.py), every field is listed, and the JSON Schema accepts
the value syntaxes the loader accepts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ramparts.config import docs
from ramparts.config.schema import Config
from ramparts.config.units import parse_duration, parse_size

from ..support import ROOT

DOCS = ROOT / "docs"
STALE = "is stale: run `make docs` (python -m ramparts.config.docs docs/) and commit the result"


def test_configuration_md_is_up_to_date() -> None:
    path = DOCS / docs.MARKDOWN_NAME
    assert path.exists(), f"{path} is missing: run `make docs`"
    assert path.read_text(encoding="utf-8") == docs.render_markdown(), f"{path} {STALE}"


def test_json_schema_is_up_to_date() -> None:
    path = DOCS / docs.SCHEMA_NAME
    assert path.exists(), f"{path} is missing: run `make docs`"
    assert path.read_text(encoding="utf-8") == docs.render_json_schema(), f"{path} {STALE}"


def test_generation_is_deterministic() -> None:
    assert docs.render_markdown() == docs.render_markdown()
    assert docs.render_json_schema() == docs.render_json_schema()


def _sections(markdown: str) -> dict[str, str]:
    parts = re.split(r"^## ", markdown, flags=re.MULTILINE)[1:]
    return {p.split("\n", 1)[0].strip(): p for p in parts}


def test_every_model_and_field_is_documented() -> None:
    """Fields without a description in schema.py are listed too (type and default)."""
    sections = _sections(docs.render_markdown())
    schema = Config.model_json_schema(by_alias=True)
    models: dict[str, Any] = {"Config": schema, **schema["$defs"]}
    for name, model in models.items():
        assert name in sections, f"no section for {name}"
        for key in model.get("properties", {}):
            assert f"| `{key}` |" in sections[name], f"{name}.{key} is not listed"


def _property(schema: dict[str, Any], model: str, key: str) -> dict[str, Any]:
    found: dict[str, Any] = schema["$defs"][model]["properties"][key]
    return found


def _string_patterns(prop: dict[str, Any]) -> list[str]:
    return [b["pattern"] for b in prop.get("anyOf", []) if b.get("type") == "string"]


@pytest.mark.parametrize(
    ("model", "key", "parse", "good", "bad"),
    [
        (
            "ProxyConfig",
            "connect_timeout",
            parse_duration,
            ["5s", "250ms", "1m", "30d", "2.5"],
            ["5 seconds", "1m30s", "-1s"],
        ),
        ("LimitsConfig", "client_header_timeout", parse_duration, ["60s", "1h"], ["soon"]),
        (
            "LimitsConfig",
            "max_body_size",
            parse_size,
            ["32k", "1m", "1g", "16KB", "512"],
            ["1.5m", "10x", "-1"],
        ),
    ],
)
def test_json_schema_accepts_what_the_loader_accepts(
    model: str, key: str, parse: Any, good: list[str], bad: list[str]
) -> None:
    """Durations and sizes may be written with units; the schema says so, with the loader's
    own syntax (editors would otherwise flag ``connect_timeout: 5s``)."""
    prop = _property(docs.json_schema(), model, key)
    patterns = _string_patterns(prop)
    assert len(patterns) == 1, prop
    for text in good:
        parse(text)
        assert re.search(patterns[0], text), text
    for text in bad:
        with pytest.raises(ValueError):
            parse(text)
        assert not re.search(patterns[0], text), text


def test_json_schema_shorthands() -> None:
    """``listen: 127.0.0.1:8080`` and ``servers: ["127.0.0.1:3000"]`` are valid input."""
    schema = docs.json_schema()
    listen = _property(schema, "ServerConfig", "listen")
    kinds = json.dumps(listen)
    assert '"type": "string"' in kinds and '"type": "integer"' in kinds
    assert "#/$defs/ListenConfig" in kinds
    peers = _property(schema, "UpstreamConfig", "servers")
    assert {"type": "string"} in peers["items"]["anyOf"]
    status = _property(schema, "HealthCheckConfig", "expect_status")
    assert {"type": "integer"} in status["anyOf"]


def test_markdown_mentions_units_and_locations() -> None:
    text = docs.render_markdown()
    for needle in ("250ms", "30d", "32k", "`= /path`", "`^~ /prefix`", "`~* regex`"):
        assert needle in text


def test_module_entry_point_writes_the_committed_files(tmp_path: Path) -> None:
    """`make docs` runs `python -m ramparts.config.docs docs/`."""
    done = subprocess.run(
        [sys.executable, "-m", "ramparts.config.docs", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for name in (docs.MARKDOWN_NAME, docs.SCHEMA_NAME):
        assert (tmp_path / name).read_bytes() == (DOCS / name).read_bytes()
