"""Header field rules shared by both directions: hop-by-hop fields (RFC 9110 7.6.1),
Connection tokens, and small helpers on ``[(name, value)]`` lists of bytes."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "HOP_BY_HOP",
    "Headers",
    "connection_tokens",
    "get_header",
    "strip_hop_by_hop",
]

Headers = list[tuple[bytes, bytes]]

#: Fields that describe one connection, never forwarded (lower-case).
HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


def connection_tokens(values: Iterable[bytes]) -> frozenset[bytes]:
    """The lower-cased option names listed in one or more Connection field values."""
    out: set[bytes] = set()
    for value in values:
        for token in value.split(b","):
            token = token.strip(b" \t").lower()
            if token:
                out.add(token)
    return frozenset(out)


def get_header(headers: Headers, name: bytes) -> bytes | None:
    """The first value of ``name`` (lower-case) in ``headers``, or None."""
    for n, v in headers:
        if n.lower() == name:
            return v.strip(b" \t")
    return None


def strip_hop_by_hop(headers: Headers, extra: frozenset[bytes] = frozenset()) -> Headers:
    """``headers`` without hop-by-hop fields and without the fields named in ``extra``
    (the Connection tokens of the message), order kept."""
    drop = HOP_BY_HOP | extra if extra else HOP_BY_HOP
    return [(n, v) for n, v in headers if n.lower() not in drop]
