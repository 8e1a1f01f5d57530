"""The request head as ramparts judges it: one strict reading of method, target, version and
the framing fields, or a ``ProtocolError`` saying which status to answer with.

The byte-level parser (llhttp through httptools) already refuses most smuggling vectors;
this module refuses what it lets through: HTTP/0.9 and versions other than 1.0 and 1.1,
Transfer-Encoding on HTTP/1.0, any coding other than a single ``chunked``, a missing,
repeated or malformed Host, and an Expect other than ``100-continue``.
"""

from __future__ import annotations

from ..errors import ProtocolError
from .headers import HOP_BY_HOP, Headers
from .path import normalize_path, split_target

__all__ = ["Request", "parse_head", "parse_host"]

_HOST, _CL, _TE, _CONN, _EXPECT = range(5)
_SPECIAL: dict[bytes, int] = {
    b"host": _HOST,
    b"content-length": _CL,
    b"transfer-encoding": _TE,
    b"connection": _CONN,
    b"expect": _EXPECT,
}
# Memos of pure results (valid inputs only; refusals always recompute): Host values and
# origin-form targets repeat across requests.
_HOST_CACHE: dict[bytes, bytes] = {}
_TARGET_CACHE: dict[tuple[bytes, bool], tuple[bytes, bytes | None]] = {}
# RFC 3986 reg-name / IPv4 / IP-literal characters plus ':' for the port.
_HOST_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%:[]"


class Request:
    """A parsed, validated request head. Bytes throughout; ``path`` is canonical."""

    __slots__ = (
        "authority",
        "chunked",
        "conn_tokens",
        "content_length",
        "expect_continue",
        "headers",
        "host",
        "keep_alive",
        "method",
        "path",
        "query",
        "target",
        "version",
    )

    method: bytes
    target: bytes
    path: bytes
    query: bytes | None
    version: str
    headers: Headers
    host: bytes | None
    content_length: int
    chunked: bool
    keep_alive: bool
    conn_tokens: frozenset[bytes]
    expect_continue: bool
    authority: bytes | None

    def __init__(
        self,
        method: bytes,
        target: bytes,
        path: bytes,
        query: bytes | None,
        version: str,
        headers: Headers,
        host: bytes | None,
        content_length: int,
        chunked: bool,
        keep_alive: bool,
        conn_tokens: frozenset[bytes],
        expect_continue: bool,
        authority: bytes | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.host = host
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.conn_tokens = conn_tokens
        self.expect_continue = expect_continue
        self.authority = authority  # the Host as sent (with any port), forwarded as is

    @property
    def has_body(self) -> bool:
        return self.chunked or self.content_length > 0

    @property
    def uri(self) -> bytes:
        """The canonical path with the query: what is forwarded upstream."""
        if self.query is None:
            return self.path
        return self.path + b"?" + self.query

    def header(self, name: bytes) -> bytes | None:
        """First value of the (lower-case) field ``name``."""
        for n, v in self.headers:
            if n.lower() == name:
                return v.strip(b" \t")
        return None

    def __repr__(self) -> str:
        return f"<Request {self.method.decode()} {self.uri!r} HTTP/{self.version}>"


def parse_host(value: bytes) -> bytes:
    """Validate a Host value (or an absolute-form authority) and return the lower-case host
    name without port and trailing dot. Raises ``ProtocolError(400)``."""
    if not value or value.translate(None, _HOST_CHARS):
        raise ProtocolError(400, "invalid Host")
    if value[0] == 0x5B:  # '[' IPv6 literal
        end = value.find(b"]")
        if end < 0:
            raise ProtocolError(400, "invalid Host")
        host = value[: end + 1]
        rest = value[end + 1 :]
        if rest and (rest[0] != 0x3A or not rest[1:].isdigit()):
            raise ProtocolError(400, "invalid Host port")
        if b"[" in host[1:] or b"%" in host:
            raise ProtocolError(400, "invalid Host")
        return host.lower()
    colon = value.find(b":")
    if colon >= 0:
        port = value[colon + 1 :]
        if port and not port.isdigit():
            raise ProtocolError(400, "invalid Host port")
        value = value[:colon]
    if b"[" in value or b"]" in value or value.startswith(b"."):
        raise ProtocolError(400, "invalid Host")
    if value.endswith(b"."):
        value = value[:-1]
    if not value:
        raise ProtocolError(400, "invalid Host")
    return value.lower()


def parse_head(
    method: bytes,
    target: bytes,
    version: str,
    headers: Headers,
    keep_encoded_slash: bool = False,
) -> Request:
    """Judge a request head the byte parser accepted. ``headers`` keeps names as received."""
    if version == "1.1":
        keep_alive = True
    elif version == "1.0":
        keep_alive = False
    elif version.startswith(("0.", "1.")):
        raise ProtocolError(400, f"HTTP/{version} is not supported")
    else:
        raise ProtocolError(505, f"HTTP/{version} is not supported")

    host_value: bytes | None = None
    hosts = 0
    content_length = 0
    chunked = False
    te_seen = False
    cl_seen = False
    conn_values: list[bytes] | None = None
    expect = False
    for name, value in headers:
        kind = _SPECIAL.get(name.lower())
        if kind is None:
            continue
        value = value.strip(b" \t")
        if kind == _HOST:
            hosts += 1
            host_value = value
        elif kind == _CL:
            if cl_seen or not value.isdigit():
                raise ProtocolError(400, "invalid Content-Length")
            cl_seen = True
            content_length = int(value)
        elif kind == _TE:
            if te_seen or value.lower() != b"chunked":
                raise ProtocolError(400, "unsupported Transfer-Encoding")
            te_seen = True
            chunked = True
        elif kind == _CONN:
            if conn_values is None:
                conn_values = []
            conn_values.append(value)
        elif value.lower() == b"100-continue":
            expect = True
        else:
            raise ProtocolError(417, "unsupported Expect")

    if expect and version == "1.0":
        expect = False  # RFC 9110 10.1.1: ignored on HTTP/1.0
    if chunked and cl_seen:
        raise ProtocolError(400, "both Content-Length and Transfer-Encoding")
    if chunked and version == "1.0":
        raise ProtocolError(400, "Transfer-Encoding on HTTP/1.0")

    conn_tokens: frozenset[bytes] = frozenset()
    if conn_values:
        tokens: set[bytes] = set()
        for v in conn_values:
            for t in v.split(b","):
                t = t.strip(b" \t").lower()
                if t:
                    tokens.add(t)
        if b"close" in tokens:
            keep_alive = False
        elif b"keep-alive" in tokens and version == "1.0":
            keep_alive = True
        conn_tokens = frozenset(tokens - HOP_BY_HOP)

    if hosts > 1:
        raise ProtocolError(400, "more than one Host")
    if hosts == 0 and version == "1.1":
        raise ProtocolError(400, "missing Host")

    authority = host_value
    if target.startswith(b"/"):
        host = None
        if host_value is not None:
            host = _HOST_CACHE.get(host_value)
            if host is None:
                host = parse_host(host_value)
                if len(_HOST_CACHE) < 1024:
                    _HOST_CACHE[host_value] = host
        key = (target, keep_encoded_slash)
        parsed = _TARGET_CACHE.get(key)
        if parsed is None:
            path, query = split_target(target)
            parsed = (normalize_path(path, keep_encoded_slash), query)
            if len(_TARGET_CACHE) < 4096:
                _TARGET_CACHE[key] = parsed
        path, query = parsed
    else:
        host, path, query, authority = _absolute_form(target)
        if host_value is not None:
            parse_host(host_value)  # still must be well-formed
        path = normalize_path(path, keep_encoded_slash)
    return Request(
        method,
        target,
        path,
        query,
        version,
        headers,
        host,
        content_length,
        chunked,
        keep_alive,
        conn_tokens,
        expect,
        authority,
    )


def _absolute_form(target: bytes) -> tuple[bytes, bytes, bytes | None, bytes]:
    lower = target[:8].lower()
    if lower.startswith(b"http://"):
        rest = target[7:]
    elif lower.startswith(b"https://"):
        rest = target[8:]
    else:
        raise ProtocolError(400, "request-target must be origin-form or absolute-form")
    slash = rest.find(b"/")
    qmark = rest.find(b"?")
    end = min(x for x in (slash, qmark, len(rest)) if x >= 0)
    authority = rest[:end]
    if b"@" in authority:
        raise ProtocolError(400, "userinfo in request-target")
    host = parse_host(authority)
    remainder = rest[end:]
    if not remainder.startswith(b"/"):
        remainder = b"/" + remainder
    path, query = split_target(remainder)
    return host, path, query, authority
