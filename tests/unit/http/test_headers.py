"""Hop-by-hop fields, Connection tokens and header list helpers."""

from __future__ import annotations

from ramparts.http.headers import HOP_BY_HOP, connection_tokens, get_header, strip_hop_by_hop


def test_hop_by_hop_set_is_rfc9110() -> None:
    assert {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    } <= HOP_BY_HOP
    assert b"host" not in HOP_BY_HOP
    assert b"content-length" not in HOP_BY_HOP
    assert all(name == name.lower() for name in HOP_BY_HOP)


def test_connection_tokens() -> None:
    tokens = connection_tokens([b"Close, X-Foo", b" ,x-BAR ,\t", b""])
    assert tokens == frozenset({b"close", b"x-foo", b"x-bar"})
    assert connection_tokens([]) == frozenset()


def test_get_header_first_value_case_insensitive() -> None:
    headers = [(b"Accept", b"a"), (b"X-Y", b" 1 "), (b"x-y", b"2")]
    assert get_header(headers, b"x-y") == b"1"
    assert get_header(headers, b"accept") == b"a"
    assert get_header(headers, b"missing") is None


def test_strip_hop_by_hop_keeps_order_and_case() -> None:
    headers = [
        (b"Host", b"h"),
        (b"Connection", b"close, X-Secret"),
        (b"TE", b"trailers"),
        (b"X-Secret", b"s"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Upgrade", b"websocket"),
        (b"Proxy-Authorization", b"Basic x"),
        (b"Accept", b"*/*"),
        (b"x-secret", b"t"),
    ]
    out = strip_hop_by_hop(headers, frozenset({b"x-secret"}))
    assert out == [(b"Host", b"h"), (b"Accept", b"*/*")]
    # without extra names, only the fixed set goes
    out = strip_hop_by_hop(headers)
    assert out == [
        (b"Host", b"h"),
        (b"X-Secret", b"s"),
        (b"Accept", b"*/*"),
        (b"x-secret", b"t"),
    ]
    # the input list is not modified
    assert len(headers) == 10
