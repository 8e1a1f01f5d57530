"""The seam between the gateway and a web application firewall engine: what a shell feeds
a WAF for one exchange and what it gets back, whatever engine is behind it.

An engine (``WafEngine``) is built once per plan and opens one ``WafTransaction`` per
request. A transaction is fed the exchange in the order HTTP delivers it, the order
ModSecurity's connector API uses, whose step names it keeps: the connection, the request
line, the request headers, the request body (appended in pieces, then processed), the
response status and headers, optionally the response body. Every step returns a
``Verdict``: ``CONTINUE``, or the status to answer with and the rule that decided. Once a
step has refused, every later step returns that same verdict without running the engine.
``finish`` runs the engine's logging phase and returns the ``Outcome`` for the log: the
rules that matched, the anomaly scores, whether the exchange was refused.

``inspect_request`` and ``inspect_response`` run the steps of one direction in one call,
for a shell that hands the whole (CPU-only) inspection to a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from ...http.headers import Headers
from ...pipeline.phases import Respond

__all__ = [
    "CONTINUE",
    "Connection",
    "Outcome",
    "RuleMatch",
    "Verdict",
    "WafEngine",
    "WafMode",
    "WafTransaction",
    "inspect_request",
    "inspect_request_body",
    "inspect_request_head",
    "inspect_response",
    "inspect_response_body",
]


class WafMode(StrEnum):
    """``on`` blocks; ``detection_only`` evaluates and records but never refuses;
    ``off`` evaluates nothing."""

    ON = "on"
    DETECTION_ONLY = "detection_only"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Connection:
    """The peer addresses of the connection a request came on (after the real-IP phase,
    ``client_ip`` is the client the gateway believes in)."""

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """One step's answer. ``status`` 0 means go on (``CONTINUE``); otherwise answer with
    ``status`` (and ``Location: location`` for a redirect). ``decided_by`` is the layer and
    rule for the log (``waf:949110``, ``waf:request-body-limit``); ``reason`` is the rule's
    message. ``close``: the request body may not have been read, so close the connection
    after answering."""

    status: int = 0
    decided_by: str = ""
    rule_id: int | None = None
    reason: str = ""
    location: str | None = None
    close: bool = False

    @property
    def blocked(self) -> bool:
        return self.status != 0

    def respond(self) -> Respond:
        """The phase chain's answer for a refusal."""
        if not self.status:
            raise ValueError("CONTINUE has no response")
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if self.location is not None:
            headers = ((b"location", self.location.encode("latin-1", "replace")),)
        return Respond(
            status=self.status, headers=headers, decided_by=self.decided_by, close=self.close
        )


#: The verdict of a step that found nothing to refuse.
CONTINUE = Verdict()


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """One rule that matched: its id, ``msg``, ``logdata`` (for the CRS, what matched and
    where), severity (0 emergency .. 7 debug), the phase it ran in (1-5) and its tags."""

    rule_id: int
    message: str
    data: str
    severity: int
    phase: int
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the WAF did with one exchange, for the access log.

    ``matches`` in the order the rules fired. ``inbound_score`` / ``outbound_score``: the
    anomaly scores the blocking evaluation compared with the thresholds (the sum over the
    blocking paranoia levels), None when the engine could not tell (no Core Rule Set, or an
    engine that was off). ``verdict``: the refusal, or ``CONTINUE`` (always ``CONTINUE`` in
    detection-only mode, where the scores say what would have been refused). ``partial``:
    a body was larger than the inspection limit and only its first part was inspected.
    """

    mode: WafMode
    matches: tuple[RuleMatch, ...] = ()
    inbound_score: int | None = None
    outbound_score: int | None = None
    verdict: Verdict = CONTINUE
    partial: bool = False

    @property
    def blocked(self) -> bool:
        return self.verdict.blocked

    @property
    def rule_ids(self) -> tuple[int, ...]:
        """The ids of the rules that matched, in firing order, each once."""
        return tuple(dict.fromkeys(m.rule_id for m in self.matches))

    @property
    def messages(self) -> tuple[str, ...]:
        return tuple(m.message for m in self.matches)


class WafTransaction(Protocol):
    """One request/response exchange. Steps run in the order below (any may be skipped
    except ``process_request_body``, which runs the request-body phase even without a
    body, and ``finish``); each returns a ``Verdict``. A transaction is used by one thread
    at a time; consecutive steps may run on different threads.

    Bytes are passed as received: ``target`` is the request target the gateway forwards
    (origin form, path and query), ``version`` is ``"1.1"`` or ``"1.0"``.
    """

    def process_connection(self, conn: Connection) -> Verdict: ...

    def process_uri(self, method: bytes, target: bytes, version: str) -> Verdict: ...

    def process_request_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Verdict: ...

    def declare_request_body(self, length: int) -> Verdict:
        """The body's declared length (Content-Length) before it is read: a refusal (413)
        when the engine refuses bodies longer than it inspects."""
        ...

    def append_request_body(self, chunk: bytes) -> Verdict: ...

    def process_request_body(self) -> Verdict: ...

    def process_response_headers(
        self, status: int, version: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> Verdict: ...

    @property
    def response_body_wanted(self) -> bool:
        """After ``process_response_headers``: whether the engine inspects this response's
        body (its media type is inspected and response bodies are on), so the shell
        should buffer it before sending; the head is inspected either way."""
        ...

    @property
    def response_body_limit(self) -> int:
        """Bytes of a response body the engine inspects; a longer one is inspected in
        part and the rest streams uninspected."""
        ...

    def append_response_body(self, chunk: bytes) -> Verdict: ...

    def process_response_body(self) -> Verdict: ...

    def finish(self) -> Outcome:
        """Run the logging phase (once; later calls return the same outcome)."""
        ...


class WafEngine(Protocol):
    """A WAF built once per plan; read-only afterwards, shared by all transactions."""

    @property
    def mode(self) -> WafMode: ...

    @property
    def request_body_limit(self) -> int:
        """Bytes of a request body the engine inspects. A shell that buffers the body
        reads at most this plus one byte, so that the engine can tell a longer body."""
        ...

    def wants_response_body(self, status: int, headers: Headers) -> bool:
        """Whether the engine inspects the body of this response (so the shell buffers
        it); the response head is inspected either way."""
        ...

    def transaction(self, request_id: str | None = None) -> WafTransaction:
        """A new transaction (cheap: no rule runs until its first step)."""
        ...


def inspect_request(
    txn: WafTransaction,
    conn: Connection,
    method: bytes,
    target: bytes,
    version: str,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes = b"",
) -> Verdict:
    """Every request step in one call: connection, request line, headers, body. CPU work
    only, for a worker thread. ``body`` is what the shell buffered: the whole body, or
    its first ``request_body_limit + 1`` bytes when it is longer."""
    verdict = inspect_request_head(txn, conn, method, target, version, headers)
    if verdict.status:
        return verdict
    return inspect_request_body(txn, body)


def inspect_request_head(
    txn: WafTransaction,
    conn: Connection,
    method: bytes,
    target: bytes,
    version: str,
    headers: Iterable[tuple[bytes, bytes]],
) -> Verdict:
    """The request steps before its body: connection, request line, headers (a refusal
    here needs no byte of the body, nor a 100 Continue)."""
    verdict = txn.process_connection(conn)
    if verdict.status:
        return verdict
    verdict = txn.process_uri(method, target, version)
    if verdict.status:
        return verdict
    return txn.process_request_headers(headers)


def inspect_request_body(txn: WafTransaction, body: bytes) -> Verdict:
    """The request body (``b""`` for none) and the request-body phase, which runs even
    without a body: it is where the CRS judges the inbound anomaly score."""
    if body:
        verdict = txn.append_request_body(body)
        if verdict.status:
            return verdict
    return txn.process_request_body()


def inspect_response(
    txn: WafTransaction,
    status: int,
    version: str,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes | None = None,
) -> Verdict:
    """Every response step in one call: status and headers, then the body when the shell
    buffered it (see ``WafEngine.wants_response_body``). The response-body phase runs
    either way: it is where the outbound anomaly score is judged."""
    verdict = txn.process_response_headers(status, version, headers)
    if verdict.status:
        return verdict
    return inspect_response_body(txn, body or b"")


def inspect_response_body(txn: WafTransaction, body: bytes) -> Verdict:
    """The response body (the whole of it, or its first part when it is longer than the
    engine inspects), then the response-body phase, which also judges the outbound anomaly
    score; for a body not inspected pass ``b""``. CPU work only."""
    if body:
        verdict = txn.append_response_body(body)
        if verdict.status:
            return verdict
    return txn.process_response_body()
