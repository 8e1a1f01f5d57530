"""The CRS regression tests in the "ftw" YAML format, parsed into plain values, with the
exact bytes ftw would put on the wire for each stage.

The reference is ftw 1.3.0 (``coreruleset/ftw``, ``ftw/ruleset.py`` and ``ftw/http.py``),
the version CRS 3.3.4 pinned in ``tests/regression/requirements.txt`` and ran in its CI.
What it does, and what this module therefore does:

- the request is ``{method} {uri} {version}\\r\\n`` + one ``{name}: {value}\\r\\n`` per
  header, in the YAML's order (``str()`` of the value: ``Content-Length: 7``) + ``\\r\\n``
  + the body; nothing else is added: no ``Host``, no ``Connection: close``;
- a list ``data`` is joined with ``\\r\\n`` (no trailing one);
- unless ``stop_magic: true``, when there is data: ``Content-Type:
  application/x-www-form-urlencoded`` is appended if no header is named exactly
  ``Content-Type``; if the Content-Type is exactly that value and the data is not
  percent-encoded already (``unquote(data) == data``), the data is re-encoded as
  ``urlencode(parse_qsl(data))`` (pairs with an empty value or without ``=`` are dropped;
  spaces become ``+``); then ``Content-Length`` is appended if no header is named exactly
  ``Content-Length``, counting *characters* of the data, not bytes;
- the body is encoded with the ``charset=`` of the Content-Type when Python knows it (and
  magic is on), UTF-8 otherwise; the whole request is then UTF-8;
- ``raw_request`` replaces all that: its text is UTF-8 encoded, ``unicode_escape``
  decoded and UTF-8 encoded again (so a literal ``\\xac`` in the YAML goes out as two
  bytes, ``c2 ac``, twice over); ``encoded_request`` (base64) goes out byte for byte.

go-ftw (the Go successor, used from CRS 4) differs: it adds ``Connection: close``, counts
Content-Length in bytes, adds it for POST/PUT/PATCH/DELETE even without data, and rewrites
bare LF to CRLF in multipart bodies. CRS 3.3.4's expectations were recorded with ftw 1.3.0.
"""

from __future__ import annotations

import base64
import codecs
import encodings.aliases
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import yaml

__all__ = [
    "SUITE",
    "BuildError",
    "Expect",
    "FtwTest",
    "Stage",
    "build_request",
    "load_file",
    "load_suite",
]

SUITE = Path(__file__).resolve().parents[3] / "shared" / "data" / "crs-3.3.4-regression" / "tests"

_CRLF = "\r\n"
_FORM = "application/x-www-form-urlencoded"
_CHARSET = re.compile(r"\;\s{0,1}?charset\=(.*?)(?:$|\;|\s)")  # ftw's own pattern
_RULE_ID = re.compile(r"\d{6}")


class BuildError(ValueError):
    """ftw itself would have stopped on this stage (it raised before sending)."""


@dataclass(frozen=True)
class Expect:
    """A stage's ``output``: what ftw checks after sending the request."""

    log_contains: str | None = None
    no_log_contains: str | None = None
    status: tuple[int, ...] | None = None
    expect_error: bool = False
    response_contains: str | None = None

    def rule_ids(self) -> tuple[str, ...]:
        """The six-digit rule ids named by ``log_contains`` (usually exactly one)."""
        return tuple(_RULE_ID.findall(self.log_contains or ""))

    def expects_protocol_rule(self) -> bool:
        """True when a protocol-enforcement / protocol-attack rule (920xxx, 921xxx) must
        fire: the kind of request a strict HTTP parser may rightly refuse first."""
        return any(i.startswith(("920", "921")) for i in self.rule_ids())


@dataclass(frozen=True)
class Stage:
    """One request and its expectations. ``raw`` is exactly what goes on the wire."""

    raw: bytes
    method: str
    uri: str
    expect: Expect
    build_error: str | None = None


@dataclass(frozen=True)
class FtwTest:
    """One test (``test_title``) of one YAML file."""

    title: str
    family: str  # the rule file it tests, e.g. REQUEST-942-APPLICATION-ATTACK-SQLI
    file: str  # relative to the suite root
    index: int  # position in its file (titles are not unique: 941160-10 appears twice)
    enabled: bool
    stages: tuple[Stage, ...]
    desc: str = ""

    @property
    def name(self) -> str:
        return f"{self.family}/{self.title}"


@dataclass
class _Input:
    """ftw's ``ruleset.Input``, field for field, after its constructor's magic."""

    raw_request: str | None = None
    encoded_request: str | None = None
    protocol: str = "http"
    dest_addr: str = "localhost"
    port: int = 80
    method: str = "GET"
    uri: str = "/"
    version: str = "HTTP/1.1"
    headers: dict[Any, Any] = field(default_factory=dict)
    data: Any = ""
    save_cookie: bool = False
    stop_magic: bool = False

    def __post_init__(self) -> None:
        if self.headers is None:
            self.headers = {}
        if isinstance(self.data, list):
            self.data = _CRLF.join(str(x) for x in self.data)
        if self.data == "":
            return
        if not isinstance(self.data, str):
            raise BuildError(f"data is {type(self.data).__name__}, not text")
        headers = self.headers
        if "Content-Type" not in headers and not self.stop_magic:
            headers["Content-Type"] = _FORM
        form = headers.get("Content-Type") == _FORM and not self.stop_magic
        if form and unquote(self.data) == self.data:  # not percent-encoded yet
            pairs = parse_qsl(self.data)
            if pairs:
                self.data = urlencode(pairs)
        if "Content-Length" not in headers and not self.stop_magic:
            headers["Content-Length"] = len(self.data)


def _body_encoding(inp: _Input) -> str:
    if "Content-Type" not in inp.headers or inp.stop_magic:
        return "utf-8"
    m = _CHARSET.search(str(inp.headers["Content-Type"]))
    if not m:
        return "utf-8"
    choice = m.group(1).replace("-", "_").lower()
    known = set(encodings.aliases.aliases) | set(encodings.aliases.aliases.values())
    return choice if choice in known else "utf-8"


def build_request(spec: dict[str, Any]) -> bytes:
    """The bytes ftw 1.3.0 sends for one stage ``input``."""
    unknown = set(spec) - set(_Input.__dataclass_fields__)
    if unknown:
        raise BuildError(f"unknown input keys: {sorted(unknown)}")
    inp = _Input(**{k: v for k, v in spec.items()})
    if inp.raw_request is not None and inp.encoded_request is not None:
        raise BuildError("both raw_request and encoded_request")
    if inp.encoded_request is not None:
        return base64.b64decode(inp.encoded_request)
    if inp.raw_request is not None:
        text = codecs.decode(str(inp.raw_request).encode("utf-8"), "unicode_escape")
        return text.encode("utf-8")
    for name in ("method", "uri", "version"):
        if not isinstance(getattr(inp, name), str):
            raise BuildError(f"{name} is not text")
    head = f"{inp.method} {inp.uri} {inp.version}{_CRLF}"
    head += "".join(f"{n}: {v}{_CRLF}" for n, v in inp.headers.items())
    body = ""
    if inp.data != "":
        encoding = _body_encoding(inp)
        try:
            body = inp.data.encode(encoding, "strict").decode("utf-8", "strict")
        except UnicodeError as exc:
            raise BuildError(f"data cannot be sent as {encoding}: {exc}") from None
    return (head + _CRLF + body).encode("utf-8", "strict")


def _status(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise BuildError(f"status is not an integer or a list of them: {value!r}")
    return tuple(values)


def _expect(output: dict[str, Any]) -> Expect:
    def text(key: str) -> str | None:
        v = output.get(key)
        return None if v is None else str(v)

    exp = Expect(
        log_contains=text("log_contains"),
        no_log_contains=text("no_log_contains"),
        status=_status(output.get("status")),
        expect_error=bool(output.get("expect_error")),
        response_contains=text("response_contains"),
    )
    if not (
        exp.log_contains
        or exp.no_log_contains
        or exp.status
        or exp.expect_error
        or exp.response_contains
    ):
        raise BuildError("the output checks nothing")
    for pattern in (exp.log_contains, exp.no_log_contains, exp.response_contains):
        if pattern is not None:
            re.compile(pattern)
    return exp


def _stage(stage: dict[str, Any]) -> Stage:
    spec = dict(stage.get("input") or {})
    method = str(spec.get("method", "GET"))
    uri = str(spec.get("uri", "/"))
    try:
        expect = _expect(stage.get("output") or {})
    except (BuildError, re.error) as exc:
        return Stage(b"", method, uri, Expect(), f"bad output: {exc}")
    try:
        raw = build_request(spec)
    except (BuildError, TypeError, ValueError) as exc:
        return Stage(b"", method, uri, expect, f"cannot build the request: {exc}")
    if "raw_request" in spec or "encoded_request" in spec:
        line = raw.split(b"\n", 1)[0].split(b" ")
        method = line[0].decode("latin-1")
        uri = line[1].decode("latin-1") if len(line) > 1 else ""
    return Stage(raw, method, uri, expect)


def load_file(path: Path, root: Path | None = None) -> list[FtwTest]:
    """The tests of one YAML file (read as ftw does: UTF-8, ``yaml.safe_load``)."""
    with path.open(encoding="utf-8") as fd:
        doc = yaml.safe_load(fd)
    meta = doc.get("meta") or {}
    enabled = bool(meta.get("enabled", True))
    family = path.parent.name
    rel = str(path.relative_to(root)) if root is not None else path.name
    tests = []
    for index, t in enumerate(doc.get("tests") or []):
        stages = tuple(_stage(s["stage"]) for s in t.get("stages") or [])
        tests.append(
            FtwTest(
                title=str(t.get("test_title")),
                family=family,
                file=rel,
                index=index,
                enabled=enabled and bool(t.get("enabled", True)),
                stages=stages,
                desc=str(t.get("desc") or ""),
            )
        )
    return tests


def load_suite(root: Path = SUITE, families: Iterable[str] | None = None) -> list[FtwTest]:
    """Every test under ``root`` (``<family>/<rule>.yaml``), in a stable order."""
    wanted = set(families) if families is not None else None
    tests: list[FtwTest] = []
    for path in sorted(root.rglob("*.yaml")):
        if wanted is not None and path.parent.name not in wanted:
            continue
        tests.extend(load_file(path, root))
    return tests
