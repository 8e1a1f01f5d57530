"""The WAF engine on ModSecurity 3 (libmodsecurity, through the ``libmodsecurity`` Python
binding) with the OWASP Core Rule Set: builds one rule set per policy and drives one
ModSecurity transaction per request.

Facts about ModSecurity 3.0.15 and its binding that shape this module (each checked here):

- The binding holds the GIL for the whole of every call (no ``gil_scoped_release``): a
  transaction in a worker thread keeps the event loop from running for as long as one
  ``process_*`` call lasts, and two threads never evaluate rules at the same time. A pool
  thread still helps: the loop runs between the calls of one inspection.
- Thread safety: a loaded rule set is read-only and shared by every transaction; a
  transaction is used by one thread at a time (any thread). Loading rules is not
  thread-safe in ModSecurity (its SecLang lexer has process-wide state), so every load in
  this process goes through ``_LOAD_LOCK``.
- That lexer state also leaks between loads: text ending in a SecRuleUpdateTarget*
  directive without a newline makes the *next* load anywhere in the process fail with a
  bogus error. Inline text is always newline-terminated here, and each load is preceded by
  a reset (one directive loaded into a throw-away rule set).
- Without a server-log callback, every logged rule match is printed to stderr ("Server
  log callback is not set"). The engine installs one that drops the lines: the record of
  a transaction is read from the transaction itself (its rule messages).
- libxml2 (bundled with the wheel) prints XML body parse errors to stderr; the engine
  gives it an error handler that drops them (per thread, as libxml2 keeps them).
- Strings go to ModSecurity as UTF-8; bytes go as they are. Requests are bytes
  throughout, so they are passed as bytes (the stubs say ``str``; pybind11 takes both).
- A body over SecRequestBodyLimit with action Reject gets 403 from ModSecurity 3; this
  engine answers 413 itself and configures ProcessPartial.
- SecRequestBodyAccess Off or SecResponseBodyAccess Off skips the whole body phase, with
  the CRS's blocking evaluation in it; see ``seclang``.
- The engine cannot do GeoIP lookups (the wheel is built without GeoIP/MaxMind): a rule
  file that uses ``@geoLookup`` (CRS 3's REQUEST-910-IP-REPUTATION.conf) is left out and
  the reason logged (logger ``ramparts``).
- An ``Include`` of a directory ends the whole process (flex's fatal error): rule files
  are checked to be regular files before ModSecurity opens them. An invalid ``@rx``
  pattern loads without error and never matches.
- The CRS keeps IP and GLOBAL collections (``initcol`` in REQUEST-901); ModSecurity holds
  them in memory in its ``ModSecurity`` object, so here per engine and per worker process.
- The wheel's PCRE2 is built without JIT (its ``pcre2_jit_*`` are stubs): every ``@rx``
  runs in PCRE2's interpreter. A benign request costs about 1 ms with the CRS at paranoia
  level 1, nearly all of it in the request-body phase's rules.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import logging
import re
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, cast

import libmodsecurity

from ...errors import ConfigError
from ...http.headers import Headers
from .crs import CrsLayout, find_crs
from .engine import CONTINUE, Connection, Outcome, RuleMatch, Verdict, WafMode
from .policy import OverLimit, WafPolicy
from .seclang import (
    SCORE_REPORT_ID,
    base_config,
    crs_setup,
    global_exclusions,
    parse_score_report,
    path_exclusions,
    score_report,
    score_snapshot,
)

__all__ = ["ModSecurityEngine", "ModSecurityTransaction", "modsecurity_version"]

log = logging.getLogger("ramparts")

#: Serialises every rule load in the process (ModSecurity's parser is not thread-safe).
_LOAD_LOCK = threading.Lock()
_LEXER_RESET = 'SecRuleUpdateTargetById 99997 "!ARGS:_"\n'
_UNKNOWN_FILE = "<<reference missing or not informed>>"
_LOCATED = re.compile(
    r"File: (?P<file>.*?)\. Line: (?P<line>\d+)\. Column: (?P<column>\d+)\.\s*(?P<reason>.*)",
    re.S,
)
_AT_LINE = re.compile(r"(?P<reason>.*?)\s*File: (?P<file>.*?) at line: (?P<line>\d+)", re.S)
_LOG_ID = re.compile(r'\[id "(\d+)"\]')
_LOG_MSG = re.compile(r'\[msg "((?:[^"\\]|\\.)*)"\]')
_GEO = re.compile(rb"^[ \t]*[^#\s].*@geoLookup", re.M | re.I)


class _RawTransaction(Protocol):
    """The binding's Transaction as it is called here: with bytes where its stubs say
    str (pybind11 converts both to std::string; bytes as they are)."""

    def process_connection(
        self, client_ip: str, client_port: int, server_ip: str, server_port: int
    ) -> int: ...
    def process_uri(self, uri: bytes, method: bytes, http_version: str) -> int: ...
    def add_request_header(self, name: bytes, value: bytes) -> int: ...
    def process_request_headers(self) -> int: ...
    def append_request_body(self, body: bytes) -> int: ...
    def process_request_body(self) -> int: ...
    def add_response_header(self, name: bytes, value: bytes) -> int: ...
    def process_response_headers(self, status_code: int, protocol: str) -> int: ...
    def append_response_body(self, body: bytes) -> int: ...
    def process_response_body(self) -> int: ...
    def process_logging(self) -> int: ...
    def intervention(self) -> libmodsecurity.Intervention | None: ...
    def get_rule_messages(self) -> list[libmodsecurity.RuleMessage]: ...


def modsecurity_version() -> str:
    """``ModSecurity v3.0.15 (Linux)``."""
    return libmodsecurity.ModSecurity().who_am_i()


# -- loading ---------------------------------------------------------------------------


def _reset_lexer() -> None:
    # A newline-terminated SecRuleUpdateTargetById ends whatever directive state an earlier
    # load left behind; loaded into a throw-away set, it changes nothing that is used.
    libmodsecurity.RulesSet().load(_LEXER_RESET)


def _config_error(message: str, file: str | None, field: str | None) -> ConfigError:
    """ModSecurity's parser message as a ConfigError located where it says."""
    message = message.strip()
    m = _LOCATED.search(message)
    if m is not None:
        where = m.group("file")
        return ConfigError(
            "ModSecurity: " + " ".join(m.group("reason").split()),
            file=file if where == _UNKNOWN_FILE else where,
            line=int(m.group("line")),
            column=int(m.group("column")),
            field=field,
        )
    m = _AT_LINE.search(message)
    if m is not None:
        where = m.group("file")
        return ConfigError(
            "ModSecurity: " + " ".join(m.group("reason").split()),
            file=file if where == _UNKNOWN_FILE else where,
            line=int(m.group("line")),
            field=field,
        )
    return ConfigError("ModSecurity: " + " ".join(message.split()), file=file, field=field)


def _load_text(rules: libmodsecurity.RulesSet, text: str, *, field: str | None) -> int:
    if not text.endswith("\n"):
        text += "\n"
    _reset_lexer()
    n = rules.load(text)
    if n < 0:
        raise _config_error(rules.get_parser_error(), None, field)
    return n


def _load_file(rules: libmodsecurity.RulesSet, path: Path, *, field: str | None) -> int:
    if not path.is_file():  # ModSecurity exits the process on an Include of a directory
        raise ConfigError(
            "not a rule file (missing, or not a regular file)", file=str(path), field=field
        )
    _reset_lexer()
    n = rules.load_from_uri(str(path))
    if n < 0:
        raise _config_error(rules.get_parser_error(), str(path), field)
    return n


def _snapshot_position(files: tuple[Path, ...]) -> int:
    """Where the inbound score snapshot goes: before the inbound blocking evaluation
    (REQUEST-949), else after the last request file."""
    last_request = 0
    for i, path in enumerate(files):
        if path.name.startswith("REQUEST-949"):
            return i
        if path.name.startswith("REQUEST-"):
            last_request = i + 1
    return last_request


@functools.cache
def _geo_unsupported() -> str | None:
    """Why this ModSecurity cannot run ``@geoLookup`` rules, or None if it can."""
    probe = libmodsecurity.RulesSet()
    _reset_lexer()
    if probe.load('SecRule REMOTE_ADDR "@geoLookup" "id:1,phase:1,pass,nolog"\n') >= 0:
        return None
    return _config_error(probe.get_parser_error(), None, None).reason


def _uses_geo(path: Path) -> bool:
    try:
        return _GEO.search(path.read_bytes()) is not None
    except OSError:
        return False  # let the load itself report it


# -- stderr ------------------------------------------------------------------------------


# The server-log lines of open transactions, by unique id: the fallback text for a rule
# message the binding cannot hand over (it decodes as strict UTF-8, and a message expanded
# from a request's raw bytes is not always UTF-8; the log line escapes them). Taken at
# ``finish``; bounded in case a transaction is never finished.
_LINES: dict[str, list[str]] = {}
_LINES_MAX = 10_000
_UNIQUE_ID = re.compile(r'\[unique_id "([^"]*)"\]')
_LINE_ID = re.compile(r'\[id "(\d+)"\]')
_LINE_FIELD = re.compile(r'\[(msg|data|severity) "((?:[^"\\]|\\.)*)"\]')
_TXN_IDS = itertools.count(1)


def _discard_log(line: str) -> None:
    """The server-log callback (without one, ModSecurity prints each line to stderr):
    kept per transaction, for ``_matches_from_lines``."""
    m = _UNIQUE_ID.search(line)
    if m is None:
        return
    lines = _LINES.get(m.group(1))
    if lines is None:
        if len(_LINES) >= _LINES_MAX:
            _LINES.pop(next(iter(_LINES)))
        lines = _LINES[m.group(1)] = []
    lines.append(line)


def _matches_from_lines(lines: list[str]) -> list[RuleMatch]:
    out: list[RuleMatch] = []
    for line in lines:
        m = _LINE_ID.search(line)
        if m is None:
            continue
        fields = dict(_LINE_FIELD.findall(line))
        sev = fields.get("severity", "0")
        out.append(
            RuleMatch(
                rule_id=int(m.group(1)),
                message=fields.get("msg", ""),
                data=fields.get("data", ""),
                severity=int(sev) if sev.isdigit() else 0,
                phase=0,
                tags=(),
            )
        )
    return out


_XML_ERROR_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def _drop_xml_error(ctx: int | None, error: int | None) -> None:
    return None


#: Lives as long as the process: libxml2 keeps the pointer.
_DROP_XML_ERROR = _XML_ERROR_HANDLER(_drop_xml_error)


class _Libxml2Quiet:
    """Gives the libxml2 that libmodsecurity bundles an error handler that drops parser
    errors (which it otherwise prints to stderr), in each thread that inspects bodies:
    libxml2 keeps its handlers per thread (``xmlThrDefSetStructuredErrorFunc`` covers
    threads it has not seen yet). A libmodsecurity built against the system libxml2 is left
    alone: other users in the process share that one."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._set: Any = None
        libs = Path(libmodsecurity.__file__).resolve().parent.parent / "libmodsecurity.libs"
        found = sorted(libs.glob("libxml2*.so*"))
        if not found:
            log.debug("waf: no bundled libxml2 in %s; XML parse errors may reach stderr", libs)
            return
        try:
            lib = ctypes.CDLL(str(found[0]))
            lib.xmlThrDefSetStructuredErrorFunc(None, _DROP_XML_ERROR)
            self._set = lib.xmlSetStructuredErrorFunc
        except (OSError, AttributeError) as exc:
            log.debug("waf: cannot quiet libxml2 (%s)", exc)

    def here(self) -> None:
        """Make sure this thread's libxml2 error handler is the quiet one."""
        if self._set is not None and not getattr(self._local, "done", False):
            self._set(None, _DROP_XML_ERROR)
            self._local.done = True


@functools.cache
def _libxml2() -> _Libxml2Quiet:
    return _Libxml2Quiet()


# -- the engine --------------------------------------------------------------------------


class ModSecurityEngine:
    """``WafEngine`` on ModSecurity: loads the policy's configuration and the Core Rule
    Set once (ConfigError, located, when a rule does not load), then opens transactions.
    Read-only after construction; share it between threads and requests freely."""

    def __init__(self, policy: WafPolicy) -> None:
        self.policy = policy
        self.crs: CrsLayout | None = find_crs(policy.crs) if policy.crs is not None else None
        self.left_out: tuple[tuple[Path, str], ...] = ()
        modsec = libmodsecurity.ModSecurity()
        modsec.set_connector_information("ramparts")
        modsec.set_log_callback(_discard_log)
        # The binding keeps the callback in a process-wide registry until unregistered.
        weakref.finalize(self, modsec.set_log_callback, None)
        self._modsec = modsec
        with _LOAD_LOCK:
            self._quiet = _libxml2()
            self._rules = self._load()
            _reset_lexer()  # leave the parser clean for whoever loads next

    # What the shell needs to know.

    @property
    def mode(self) -> WafMode:
        return self.policy.mode

    @property
    def request_body_limit(self) -> int:
        return self.policy.request_body.limit

    def wants_response_body(self, status: int, headers: Headers) -> bool:
        res = self.policy.response_body
        if not res.enabled or self.policy.mode is WafMode.OFF:
            return False
        for name, value in headers:
            if name.lower() == b"content-type":
                media = value.split(b";", 1)[0].strip().lower()
                return media.decode("latin-1") in res.mime_types
        return False

    def transaction(self, request_id: str | None = None) -> ModSecurityTransaction:
        return ModSecurityTransaction(self, request_id)

    def describe(self) -> str:
        crs = self.crs.describe() if self.crs is not None else "no Core Rule Set"
        return f"{modsecurity_version()} with {crs}, mode {self.policy.mode.value}"

    # Loading, in order (see seclang).

    def _load(self) -> libmodsecurity.RulesSet:
        p = self.policy
        rules = libmodsecurity.RulesSet()
        _load_text(rules, base_config(p), field=None)
        crs = self.crs
        if crs is not None:
            _load_text(rules, crs_setup(p, crs), field="crs")
            for path in crs.plugin_configs + crs.plugins_before:
                self._load_crs_file(rules, path)
        _load_text(rules, path_exclusions(p), field="exclusions")
        self._load_sources(rules, p.rules_before_crs, "rules_before_crs")
        if crs is not None:
            snapshot_at = _snapshot_position(crs.rule_files)
            for i, path in enumerate(crs.rule_files):
                if i == snapshot_at:
                    _load_text(rules, score_snapshot(p, crs), field=None)
                self._load_crs_file(rules, path)
            if snapshot_at == len(crs.rule_files):
                _load_text(rules, score_snapshot(p, crs), field=None)
            for path in crs.plugins_after:
                self._load_crs_file(rules, path)
        self._load_sources(rules, p.rules, "rules")
        _load_text(rules, global_exclusions(p), field="exclusions")
        if crs is not None:
            _load_text(rules, score_report(crs), field=None)
        return rules

    def _load_crs_file(self, rules: libmodsecurity.RulesSet, path: Path) -> None:
        if _uses_geo(path):
            reason = _geo_unsupported()
            if reason is not None:
                log.info(
                    "waf: leaving out %s: its rules need GeoIP lookups, which this "
                    "ModSecurity cannot do (%s)",
                    path,
                    reason,
                )
                self.left_out += ((path, reason),)
                return
        _load_file(rules, path, field="crs")

    @staticmethod
    def _load_sources(
        rules: libmodsecurity.RulesSet, sources: Iterable[str | Path], field: str
    ) -> None:
        for i, source in enumerate(sources):
            if isinstance(source, Path):
                _load_file(rules, source, field=f"{field}.{i}")
            else:
                _load_text(rules, source, field=f"{field}.{i}")

    # Shared by the transactions.

    def _verdict(self, it: libmodsecurity.Intervention) -> Verdict:
        text = it.log or ""
        m = _LOG_ID.search(text)
        rule_id = int(m.group(1)) if m is not None else None
        m = _LOG_MSG.search(text)
        reason = m.group(1) if m is not None else text[:200]
        status = it.status
        if it.url:
            return Verdict(
                status=status if 300 <= status < 400 else 302,
                decided_by=f"waf:{rule_id}" if rule_id is not None else "waf",
                rule_id=rule_id,
                reason=reason,
                location=it.url,
            )
        if status == 403 or not 400 <= status <= 599:
            status = self.policy.block_status
        return Verdict(
            status=status,
            decided_by=f"waf:{rule_id}" if rule_id is not None else "waf",
            rule_id=rule_id,
            reason=reason,
        )


_BODY_LIMIT = Verdict(
    status=413,
    decided_by="waf:request-body-limit",
    reason="request body larger than the WAF inspects",
    close=True,
)


class ModSecurityTransaction:
    """``WafTransaction`` on one ModSecurity transaction. One thread at a time."""

    __slots__ = (
        "_engine",
        "_outcome",
        "_partial",
        "_request_fed",
        "_response_fed",
        "_response_inspected",
        "_txn",
        "_verdict",
    )

    def __init__(self, engine: ModSecurityEngine, request_id: str | None = None) -> None:
        self._engine = engine
        if request_id is None:
            request_id = f"r{next(_TXN_IDS)}"
        self._txn = cast(
            _RawTransaction,
            libmodsecurity.Transaction(engine._modsec, engine._rules, request_id),
        )
        self._verdict = CONTINUE
        self._outcome: Outcome | None = None
        self._partial = False
        self._request_fed = 0
        self._response_fed = 0
        self._response_inspected = False

    @property
    def id(self) -> str:
        return cast(libmodsecurity.Transaction, self._txn).id

    def _check(self) -> Verdict:
        it = self._txn.intervention()
        if it is None or not it.disruptive:
            return CONTINUE
        self._verdict = self._engine._verdict(it)
        return self._verdict

    def process_connection(self, conn: Connection) -> Verdict:
        if self._verdict.status:
            return self._verdict
        self._txn.process_connection(
            conn.client_ip, conn.client_port, conn.server_ip, conn.server_port
        )
        return self._check()

    def process_uri(self, method: bytes, target: bytes, version: str) -> Verdict:
        if self._verdict.status:
            return self._verdict
        self._txn.process_uri(target, method, version)
        return self._check()

    def process_request_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Verdict:
        if self._verdict.status:
            return self._verdict
        add = self._txn.add_request_header
        for name, value in headers:
            add(name, value)
        self._txn.process_request_headers()
        return self._check()

    def _over_request_limit(self) -> Verdict:
        """A request body is longer than the limit: refuse (413) when the policy says so
        and the engine blocks; otherwise the first part is inspected."""
        policy = self._engine.policy
        if policy.request_body.over_limit is OverLimit.REJECT and policy.mode is WafMode.ON:
            self._verdict = _BODY_LIMIT
            return _BODY_LIMIT
        self._partial = True
        return CONTINUE

    def declare_request_body(self, length: int) -> Verdict:
        if self._verdict.status:
            return self._verdict
        if length > self._engine.policy.request_body.limit:
            return self._over_request_limit()
        return CONTINUE

    def append_request_body(self, chunk: bytes) -> Verdict:
        if self._verdict.status:
            return self._verdict
        limit = self._engine.policy.request_body.limit
        fed = self._request_fed
        if fed + len(chunk) > limit:
            verdict = self._over_request_limit()
            if verdict.status:
                return verdict
            # Up to one byte past the limit: ModSecurity keeps `limit` bytes and marks the
            # body as cut (INBOUND_DATA_ERROR), which the body-parse refusals respect.
            chunk = chunk[: limit + 1 - fed]
            if not chunk:
                return CONTINUE
        self._request_fed = fed + len(chunk)
        self._txn.append_request_body(bytes(chunk))
        return self._check()

    def process_request_body(self) -> Verdict:
        if self._verdict.status:
            return self._verdict
        self._engine._quiet.here()
        self._txn.process_request_body()
        return self._check()

    def process_response_headers(
        self, status: int, version: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> Verdict:
        if self._verdict.status:
            return self._verdict
        headers = list(headers)
        add = self._txn.add_response_header
        for name, value in headers:
            add(name, value)
        self._response_inspected = self._engine.wants_response_body(status, headers)
        self._txn.process_response_headers(status, "HTTP/" + version)
        return self._check()

    @property
    def response_body_wanted(self) -> bool:
        return self._response_inspected

    @property
    def response_body_limit(self) -> int:
        return self._engine.policy.response_body.limit

    def append_response_body(self, chunk: bytes) -> Verdict:
        if self._verdict.status:
            return self._verdict
        if not self._response_inspected:
            return CONTINUE
        limit = self._engine.policy.response_body.limit
        fed = self._response_fed
        if fed + len(chunk) > limit:
            self._partial = True
            chunk = chunk[: limit + 1 - fed]
            if not chunk:
                return CONTINUE
        self._response_fed = fed + len(chunk)
        self._txn.append_response_body(bytes(chunk))
        return self._check()

    def process_response_body(self) -> Verdict:
        if self._verdict.status:
            return self._verdict
        self._engine._quiet.here()
        self._txn.process_response_body()
        return self._check()

    def finish(self) -> Outcome:
        if self._outcome is not None:
            return self._outcome
        txn = self._txn
        txn.process_logging()
        engine = self._engine
        matches = []
        inbound: int | None = None
        outbound: int | None = None
        lines = _LINES.pop(self.id, [])
        fallback: dict[int, RuleMatch] | None = None
        for rm in txn.get_rule_messages():
            rule_id = rm.rule_id
            try:
                message, data, tags = rm.message, rm.data, tuple(rm.tags)
            except UnicodeDecodeError:
                # The binding decodes as strict UTF-8, and a message expanded from a
                # request's raw bytes need not be: take the escaped log line's text.
                if fallback is None:
                    fallback = {m.rule_id: m for m in _matches_from_lines(lines)}
                seen = fallback.get(rule_id)
                message = seen.message if seen else ""
                data = seen.data if seen else ""
                tags = ()
            if rule_id == SCORE_REPORT_ID:
                inbound, outbound = parse_score_report(data, engine.policy.paranoia_level)
                continue
            matches.append(
                RuleMatch(
                    rule_id=rule_id,
                    message=message,
                    data=data,
                    severity=rm.severity,
                    phase=rm.phase,
                    tags=tags,
                )
            )
        self._outcome = Outcome(
            mode=engine.policy.mode,
            matches=tuple(matches),
            inbound_score=inbound,
            outbound_score=outbound,
            verdict=self._verdict,
            partial=self._partial,
        )
        return self._outcome
