"""Run CRS regression tests against a live HTTP server with a WAF, one request at a time,
and judge each test against the rule ids the server recorded for that very request.

For every stage the runner sends the stage's bytes on a fresh connection (as ftw does),
reads one response, then sends a *marker* request, ``GET /__ftw_marker/<token>`` carrying
``X-CRS-Test: <token>``, and asks the target's :class:`LogSource` for everything the
server logged after the previous marker and before this one. The server handles requests
in order (one test at a time, a fresh connection each), so that window holds exactly what
it recorded for the test's request. Every wait is bounded.

A log source turns a window into a :class:`Recorded`: the rule ids that matched, and
whether the server's own HTTP parser refused the request before the WAF saw it. Two are
provided: :class:`JsonLinesLog` here (an access log with one JSON object per request and
the matched ids in a field, the shape the ramparts gateway writes) and
``tests.crs.nginx.NginxErrorLog`` (ModSecurity's messages in nginx's error log).

Judging follows ftw 1.3.0 (``ftw/testrunner.py``), with the decisions it leaves open:

- ``log_contains`` / ``no_log_contains``: the regex is searched in one line per recorded
  id, ``[id "942100"]`` (the form ModSecurity logs), so ``id "942100"`` matches exactly
  that id, ``id "942480`` any id it prefixes, and ``id:921140`` (two tests) nothing,
  as on a real ModSecurity log.
- ``status``: the response status must be the one (or one of the list) given. The suite
  runs in detection-only mode, so a WAF never answers 403 itself: a status expectation
  holds only when the server (its HTTP parser, its method handling) answers so itself.
- ``expect_error``: ftw's notion of an error: no connection, no response within the
  timeout, the connection closed or reset without a response, or a response whose status
  line or header lines it cannot parse (an HTTP/0.9 answer). A response, even a 400, is
  not an error to ftw; here a 400 counts as a pass *by refusal* (listed apart, below).
- Any other stage that gets no response fails, as in ftw (its request raised).
- Refusals: where a test expects a protocol rule (920xxx, 921xxx) to fire and the server
  answered 400 because its own HTTP parser refused the request before the WAF inspected
  it, the test counts as passed, and the report lists it apart. A strict parser that
  refuses a malformed request protects at least as well as the rule would.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .ftw import FtwTest, Stage

__all__ = [
    "MARKER_HEADER",
    "MARKER_PATH",
    "JsonLinesLog",
    "LogSource",
    "LogTail",
    "Outcome",
    "Recorded",
    "Report",
    "Runner",
    "Target",
    "Verdict",
    "exchange",
    "judge",
    "marker_request",
]

MARKER_PATH = "/__ftw_marker/"
MARKER_HEADER = "X-CRS-Test"

PASSED = "passed"
FAILED = "failed"
REFUSED = "refused"  # passed: the server's HTTP parser refused the request with 400
SKIPPED = "skipped"  # disabled in the YAML (meta: enabled: false), as ftw skips them

_RECV = 65536


# -- the wire ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What came back for one request. ``error`` is set when ftw would have raised: no
    response, or one it cannot parse; ``status`` is then None."""

    status: int | None = None
    head: bytes = b""
    body: bytes = b""
    error: str | None = None
    seconds: float = 0.0
    local_port: int | None = None  # the client side of the connection, for the log

    def describe(self) -> str:
        if self.error is not None:
            return f"error ({self.error})"
        line = self.head.split(b"\r\n", 1)[0].decode("latin-1")
        return repr(line)


def _parse_head(head: bytes) -> tuple[int | None, str | None]:
    """(status, error) for a response head, judged as ftw's ``HttpResponse`` does: a status
    line of three space-separated parts with a numeric status, then ``name: value``
    lines."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) != 3:
        return None, f"unparseable status line {lines[0][:60]!r}"
    try:
        status = int(parts[1])
    except ValueError:
        return None, f"unparseable status line {lines[0][:60]!r}"
    for line in lines[1:]:
        if line and b":" not in line:
            return None, f"invalid header line {line[:60]!r}"
    return status, None


def exchange(
    raw: bytes, port: int, host: str = "127.0.0.1", timeout: float = 2.0, head: bool = False
) -> Outcome:
    """Send ``raw`` on a new connection and read one final response (1xx are skipped),
    everything bounded by ``timeout`` seconds. Only the head must arrive in time: a body
    still incomplete at the deadline is kept as it is."""
    start = time.monotonic()
    deadline = start + timeout
    out = Outcome()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        out.error = f"cannot connect: {exc}"
        return out
    with sock:
        out.local_port = int(sock.getsockname()[1])
        try:
            sock.sendall(raw)
        except OSError as exc:
            out.error = f"cannot send: {exc}"
            out.seconds = time.monotonic() - start
            return out
        buf = bytearray()
        state = {"eof": False, "why": ""}

        def fill() -> bool:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or state["eof"]:
                state["why"] = state["why"] or "timeout"
                return False
            sock.settimeout(remaining)
            try:
                data = sock.recv(_RECV)
            except TimeoutError:
                state["why"] = "timeout"
                return False
            except OSError as exc:
                state["eof"], state["why"] = True, f"connection error: {exc}"
                return False
            if not data:
                state["eof"], state["why"] = True, "connection closed"
                return False
            buf.extend(data)
            return True

        while True:
            while b"\r\n\r\n" not in buf and fill():
                pass
            if not buf:
                why = state["why"]
                out.error = (
                    f"no response within {timeout:g}s"
                    if why == "timeout"
                    else f"{why} without a response"
                )
                break
            end = buf.find(b"\r\n\r\n")
            head_bytes = bytes(buf if end < 0 else buf[:end])
            status, error = _parse_head(head_bytes)
            if error is not None:
                out.error = error
                out.head = head_bytes
                break
            assert status is not None
            if end >= 0 and 100 <= status < 200 and status != 101:
                del buf[: end + 4]
                continue  # an interim response: read the final one
            out.status, out.head = status, head_bytes
            if end < 0:
                break
            del buf[: end + 4]
            out.body = _read_body(head_bytes, buf, fill, head or status in (204, 304))
            break
    out.seconds = time.monotonic() - start
    return out


def _read_body(head: bytes, buf: bytearray, fill: Callable[[], bool], none: bool) -> bytes:
    if none:
        return b""
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while not buf.endswith(b"0\r\n\r\n") and fill():
            pass
        return bytes(buf)  # still chunk-framed: only searched by response_contains
    if length is not None:
        while len(buf) < length and fill():
            pass
        return bytes(buf[:length])
    while fill():
        pass
    return bytes(buf)


def marker_request(token: str, host: str = "localhost") -> bytes:
    """The request that closes a test's log window: clean enough to match no CRS rule at
    paranoia level 4 (the target's marker rule aside)."""
    return (
        f"GET {MARKER_PATH}{token} HTTP/1.1\r\nHost: {host}\r\n"
        f"User-Agent: ModSecurity CRS 3 Tests\r\nAccept: */*\r\n"
        f"{MARKER_HEADER}: {token}\r\nConnection: close\r\n\r\n"
    ).encode()


# -- what the server logged ----------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """What the server logged for one request: the rule ids that matched; ``refused``
    names why its HTTP parser refused the request before the WAF inspected it (None when
    it did not); ``status`` as logged (None when the log does not say); ``evidence``, a
    few lines for the report; ``error`` when the window could not be read."""

    ids: frozenset[int] = frozenset()
    refused: str | None = None
    status: int | None = None
    evidence: tuple[str, ...] = ()
    error: str | None = None


class LogSource(Protocol):
    """Where a target records what it did with each request."""

    def reset(self) -> None:
        """Forget everything logged so far: the next window starts now."""

    def collect(self, token: str, deadline: float, ports: frozenset[int]) -> Recorded:
        """What was logged for the request(s) sent since the previous marker: everything
        logged after that marker and before the marker request that carries ``token``
        (``MARKER_PATH + token``, header ``MARKER_HEADER: token``), waiting for the
        marker's own entry until ``deadline`` (``time.monotonic()``). ``ports`` are the
        client ports the test's connections used; a source whose lines name the peer
        keeps only theirs (a late line of an earlier request then cannot leak in)."""


class LogTail:
    """Reads complete lines appended to a file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""

    def skip_to_end(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self._partial = b""

    def read_lines(self) -> list[str]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        try:
            size = os.fstat(fd).st_size
            if size < self.offset:  # truncated or rotated: start over
                self.offset, self._partial = 0, b""
            chunks = []
            while self.offset < size:
                data = os.pread(fd, min(size - self.offset, 1 << 20), self.offset)
                if not data:
                    break
                chunks.append(data)
                self.offset += len(data)
        finally:
            os.close(fd)
        data = self._partial + b"".join(chunks)
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]


class WindowedLog:
    """The common part of a line-based log source: read lines until the marker's own
    line, keep the lines before it for the window and the lines after it for the next
    one. Subclasses say what a line means."""

    poll = 0.002

    def __init__(self, path: Path) -> None:
        self.tail = LogTail(path)
        self._pending: list[str] = []

    def reset(self) -> None:
        self.tail.skip_to_end()
        self._pending = []

    def is_marker(self, line: str, token: str) -> bool:
        raise NotImplementedError

    def summarise(self, lines: list[str], ports: frozenset[int]) -> Recorded:
        raise NotImplementedError

    def collect(self, token: str, deadline: float, ports: frozenset[int]) -> Recorded:
        lines: list[str] = []
        pending, self._pending = self._pending, []
        while True:
            for i, line in enumerate(pending):
                if self.is_marker(line, token):
                    self._pending = pending[i + 1 :]
                    return self.summarise(lines, ports)
                lines.append(line)
            if time.monotonic() >= deadline:
                rec = self.summarise(lines, ports)
                return Recorded(
                    rec.ids,
                    rec.refused,
                    rec.status,
                    rec.evidence,
                    f"the marker {token} did not show up in {self.tail.path.name}",
                )
            pending = self.tail.read_lines()
            if not pending:
                time.sleep(self.poll)


class JsonLinesLog(WindowedLog):
    """An access log of JSON objects, one line per request, written when the request ends
    (ramparts: ``access_log: {path: ..., buffer: 0}``). Per line:

    - ``uri``: the request target as received; the marker's is ``/__ftw_marker/<token>``;
    - ``waf_rules`` (``rules_field``): the ids of every rule that matched, as integers or
      digit strings; absent or empty when none did;
    - ``status``: the status answered;
    - ``peer``: ``"ip:port"`` of the client connection (optional; when present, only the
      lines of the test's own connections count);
    - ``decided_by``: ``"http:protocol"`` (``refusal_value``) on the line of a request its
      HTTP parser refused before the WAF saw it; ``error`` then says why.

    Lines that do not parse as JSON objects are ignored.
    """

    def __init__(
        self,
        path: Path,
        rules_field: str = "waf_rules",
        uri_field: str = "uri",
        refusal_value: str = "http:protocol",
    ) -> None:
        super().__init__(path)
        self.rules_field = rules_field
        self.uri_field = uri_field
        self.refusal_value = refusal_value

    @staticmethod
    def _load(line: str) -> dict[str, object] | None:
        try:
            doc = json.loads(line)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def is_marker(self, line: str, token: str) -> bool:
        if token not in line:
            return False
        doc = self._load(line)
        return doc is not None and str(doc.get(self.uri_field, "")).endswith(token)

    def summarise(self, lines: list[str], ports: frozenset[int]) -> Recorded:
        ids: set[int] = set()
        refused = None
        status = None
        evidence = []
        for line in lines:
            doc = self._load(line)
            if doc is None or MARKER_PATH in str(doc.get(self.uri_field, "")):
                continue
            peer = str(doc.get("peer") or "")
            port = peer.rpartition(":")[2]
            if ports and port.isdigit() and int(port) not in ports:
                continue
            raw_ids = doc.get(self.rules_field) or []
            if isinstance(raw_ids, list):
                ids.update(int(i) for i in raw_ids if str(i).isdigit())
            st = doc.get("status")
            if status is None and isinstance(st, int):
                status = st
            if doc.get("decided_by") == self.refusal_value and refused is None:
                refused = str(doc.get("error") or self.refusal_value)
            evidence.append(line[:300])
        return Recorded(frozenset(ids), refused, status, tuple(evidence))


# -- judging -------------------------------------------------------------------------------


def _id_lines(ids: Iterable[int]) -> list[str]:
    return [f'[id "{i}"]' for i in sorted(ids)]


def judge(stage: Stage, outcome: Outcome, recorded: Recorded | None) -> tuple[str, list[str]]:
    """(kind, reasons) for one stage: ``passed``, ``refused`` (passed by an HTTP-parser
    refusal; the reasons say which) or ``failed`` (the reasons say why)."""
    exp = stage.expect
    failures: list[str] = []
    refusals: list[str] = []
    if stage.build_error:
        return FAILED, [stage.build_error]
    if outcome.error is not None:
        if not exp.expect_error:
            failures.append(f"no usable response: {outcome.error}")
    elif exp.expect_error:
        if outcome.status == 400:
            refusals.append("answered 400 where ftw expects no response at all")
        else:
            failures.append(f"expected no response (an error), got {outcome.describe()}")
    if exp.log_contains is not None or exp.no_log_contains is not None:
        rec = recorded or Recorded(error="no log window")
        if rec.error is not None:
            failures.append(f"log: {rec.error}")
        lines = _id_lines(rec.ids)
        shown = ",".join(str(i) for i in sorted(rec.ids)) or "none"
        if exp.log_contains is not None:
            rx = re.compile(exp.log_contains)
            if not any(rx.search(line) for line in lines):
                refused = (
                    exp.expects_protocol_rule()
                    and outcome.status == 400
                    and rec.refused is not None
                )
                if refused:
                    refusals.append(f"HTTP parser answered 400 before inspection: {rec.refused}")
                else:
                    note = f"; the server's parser: {rec.refused}" if rec.refused else ""
                    failures.append(
                        f"expected {exp.log_contains!r}, recorded ids: {shown}; "
                        f"response {outcome.describe()}{note}"
                    )
        if exp.no_log_contains is not None:
            rx = re.compile(exp.no_log_contains)
            hits = [line for line in lines if rx.search(line)]
            if hits:
                failures.append(f"unexpected {exp.no_log_contains!r} among ids: {shown}")
    if exp.status is not None and outcome.error is None and outcome.status not in exp.status:
        want = exp.status[0] if len(exp.status) == 1 else list(exp.status)
        failures.append(f"expected status {want}, got {outcome.describe()}")
    if exp.response_contains is not None and outcome.error is None:
        text = (outcome.head + b"\r\n\r\n" + outcome.body).decode("utf-8", "replace")
        if not re.search(exp.response_contains, text):
            failures.append(f"response does not contain {exp.response_contains!r}")
    if failures:
        return FAILED, failures
    if refusals:
        return REFUSED, refusals
    return PASSED, []


# -- running -------------------------------------------------------------------------------


@dataclass
class Target:
    """A running server with a WAF: where to send, and where it logs."""

    port: int
    log: LogSource
    host: str = "127.0.0.1"
    name: str = "server"


@dataclass
class Verdict:
    test: FtwTest
    kind: str
    reasons: tuple[str, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    recorded: tuple[Recorded | None, ...] = ()

    @property
    def passed(self) -> bool:
        return self.kind in (PASSED, REFUSED)


@dataclass
class Report:
    target: str
    verdicts: list[Verdict] = field(default_factory=list)
    seconds: float = 0.0

    def of_kind(self, kind: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.kind == kind]

    @property
    def passed(self) -> int:
        return sum(1 for v in self.verdicts if v.passed)

    @property
    def failed(self) -> int:
        return sum(1 for v in self.verdicts if v.kind == FAILED)

    @property
    def skipped(self) -> int:
        return sum(1 for v in self.verdicts if v.kind == SKIPPED)

    @property
    def rate(self) -> float:
        run = self.passed + self.failed
        return self.passed / run if run else 0.0

    def families(self) -> dict[str, tuple[int, int]]:
        """family -> (passed, run), skipped tests left out."""
        out: dict[str, tuple[int, int]] = {}
        for v in self.verdicts:
            if v.kind == SKIPPED:
                continue
            p, n = out.get(v.test.family, (0, 0))
            out[v.test.family] = (p + v.passed, n + 1)
        return dict(sorted(out.items()))

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"


class Runner:
    """Sends tests to ``target`` one at a time and judges them."""

    settle = 0.05  # seconds to wait after a request that got no response, before the marker

    def __init__(
        self,
        target: Target,
        response_timeout: float = 2.0,
        log_timeout: float = 2.0,
        marker_host: str = "localhost",
    ) -> None:
        self.target = target
        self.response_timeout = response_timeout
        self.log_timeout = log_timeout
        self.marker_host = marker_host
        self._run = uuid.uuid4().hex[:12]
        self._n = 0

    def _send(self, raw: bytes, head: bool = False, timeout: float | None = None) -> Outcome:
        return exchange(
            raw,
            self.target.port,
            self.target.host,
            self.response_timeout if timeout is None else timeout,
            head,
        )

    def mark(self, ports: frozenset[int] = frozenset()) -> Recorded:
        """Send a marker and return what was logged since the previous one for the
        connections from ``ports``."""
        self._n += 1
        token = f"{self._run}-{self._n}"
        out = self._send(marker_request(token, self.marker_host), timeout=self.log_timeout)
        if out.error is not None:
            return Recorded(error=f"the marker request failed: {out.error}")
        return self.target.log.collect(token, time.monotonic() + self.log_timeout, ports)

    def start(self) -> None:
        """Align the log with the runner: skip what is there, then one marker."""
        self.target.log.reset()
        rec = self.mark()
        if rec.error is not None:
            raise RuntimeError(f"the target does not log markers: {rec.error}")

    def run_test(self, test: FtwTest) -> Verdict:
        if not test.enabled:
            return Verdict(test, SKIPPED, ("disabled in the YAML",))
        kinds, reasons, outcomes, records = [], [], [], []
        for stage in test.stages:
            if stage.build_error:
                outcome, rec = Outcome(error=stage.build_error), None
            else:
                outcome = self._send(stage.raw, head=stage.method.upper() == "HEAD")
                if outcome.error is not None:
                    time.sleep(self.settle)  # let the server notice the close first
                ports = frozenset([outcome.local_port] if outcome.local_port else [])
                rec = self.mark(ports)
            kind, why = judge(stage, outcome, rec)
            kinds.append(kind)
            reasons.extend(why)
            outcomes.append(outcome)
            records.append(rec)
        kind = FAILED if FAILED in kinds else REFUSED if REFUSED in kinds else PASSED
        return Verdict(test, kind, tuple(reasons), tuple(outcomes), tuple(records))

    def run(
        self, tests: Iterable[FtwTest], progress: Callable[[Verdict], None] | None = None
    ) -> Report:
        start = time.monotonic()
        report = Report(self.target.name)
        self.start()
        for test in tests:
            verdict = self.run_test(test)
            report.verdicts.append(verdict)
            if progress is not None:
                progress(verdict)
        report.seconds = time.monotonic() - start
        return report
