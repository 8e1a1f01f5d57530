"""What an authentication engine answers, and the header helpers the engines share.

``AuthResult`` is either an allow (the identity for the access log and the edits to make to
the upstream request) or a refusal (the status, the challenge headers, a short reason for the
log). ``SlowCheck`` is the CPU-heavy remainder of a check (bcrypt) that the shell runs in a
worker thread so the event loop never waits on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ...http.headers import Headers
from ...pipeline.phases import Respond

__all__ = [
    "AuthResult",
    "SlowCheck",
    "challenge",
    "header_names",
    "is_token",
    "quoted_string",
    "single_header",
]

HeaderTuple = tuple[tuple[bytes, bytes], ...]

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def is_token(value: str) -> bool:
    """Whether ``value`` is an RFC 9110 token (a field name, an auth-scheme)."""
    return bool(value) and all(c in _TCHAR for c in value)


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One engine's verdict on one request.

    ``ok``: allow. Then ``identity`` names the principal for the access log (``user:alice``,
    ``sub:123``), and ``apply`` edits the upstream request: it removes every field named in
    ``strip_upstream`` (client-supplied copies of the identity headers, so they cannot be
    spoofed) and appends ``upstream_headers``.

    Not ``ok``: refuse with ``status`` (401, 403, 500) and ``response_headers`` (the
    ``WWW-Authenticate`` challenge); ``reason`` says why for the log and never holds the
    credentials. ``respond`` turns it into the phase chain's ``Respond``.
    """

    ok: bool
    decided_by: str
    status: int = 0
    identity: str = ""
    reason: str = ""
    response_headers: HeaderTuple = ()
    upstream_headers: HeaderTuple = ()
    strip_upstream: frozenset[bytes] = frozenset()

    @staticmethod
    def allow(
        decided_by: str,
        identity: str,
        upstream_headers: HeaderTuple = (),
        strip_upstream: frozenset[bytes] = frozenset(),
    ) -> AuthResult:
        return AuthResult(
            ok=True,
            decided_by=decided_by,
            identity=identity,
            upstream_headers=upstream_headers,
            strip_upstream=strip_upstream,
        )

    @staticmethod
    def deny(
        decided_by: str, status: int, reason: str, response_headers: HeaderTuple = ()
    ) -> AuthResult:
        return AuthResult(
            ok=False,
            decided_by=decided_by,
            status=status,
            reason=reason,
            response_headers=response_headers,
        )

    def apply(self, headers: Headers) -> None:
        """Edit the upstream request ``headers`` in place (allow results only)."""
        if not self.ok:
            raise ValueError("a refusal has no upstream request to edit")
        strip = self.strip_upstream
        if strip:
            headers[:] = [h for h in headers if h[0].lower() not in strip]
        if self.upstream_headers:
            headers.extend(self.upstream_headers)

    def respond(self) -> Respond:
        """The answer to send the client (refusals only)."""
        if self.ok:
            raise ValueError("an allow result has no response")
        return Respond(
            status=self.status,
            headers=self.response_headers,
            decided_by=self.decided_by,
        )


class SlowCheck:
    """The CPU-heavy rest of a check, for a worker thread: ``run`` is thread-safe, does
    no I/O and returns the verdict. A shell on an event loop does
    ``await loop.run_in_executor(pool, slow.run)``; tests and blocking callers just call it.
    """

    __slots__ = ("_run", "decided_by")

    def __init__(self, decided_by: str, run: Callable[[], AuthResult]) -> None:
        self.decided_by = decided_by
        self._run = run

    def run(self) -> AuthResult:
        return self._run()


def single_header(headers: Headers, name: bytes) -> tuple[bytes | None, bool]:
    """The value of ``name`` (lower-case) with surrounding whitespace removed, and whether
    the field appears more than once. Credentials fields are singletons: two copies are
    ambiguous (which one would the upstream read?), so callers refuse them."""
    found: bytes | None = None
    for n, v in headers:
        if n.lower() == name:
            if found is not None:
                return found, True
            found = v.strip(b" \t")
    return found, False


def quoted_string(value: str) -> str:
    """``value`` as an RFC 9110 quoted-string; refuses what no quoted-string can carry."""
    for ch in value:
        o = ord(ch)
        if (o < 0x20 and ch != "\t") or o == 0x7F or o > 0xFF:
            raise ValueError(f"{value!r} cannot appear in a header (control or non-latin-1)")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(scheme: str, params: Iterable[tuple[str, str]]) -> tuple[bytes, bytes]:
    """One ``WWW-Authenticate`` field: ``scheme k1="v1", k2="v2"``."""
    if not is_token(scheme):
        raise ValueError(f"{scheme!r} is not an authentication scheme name (a token)")
    text = scheme
    sep = " "
    for key, value in params:
        text += f"{sep}{key}={quoted_string(value)}"
        sep = ", "
    return (b"WWW-Authenticate", text.encode("latin-1"))


def header_names(names: Iterable[str]) -> frozenset[bytes]:
    """Lower-cased field names, each checked to be a token."""
    out = set()
    for name in names:
        if not is_token(name):
            raise ValueError(f"{name!r} is not a header field name")
        out.add(name.lower().encode("ascii"))
    return frozenset(out)
