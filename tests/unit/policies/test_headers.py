"""Header hygiene: remove, set and add, per server and location, merged in order."""

from __future__ import annotations

from ramparts.http.headers import Headers
from ramparts.http.request import parse_head
from ramparts.pipeline.context import Context
from ramparts.pipeline.phases import Chain
from ramparts.policies.headers import HeaderEdit


def upstream_response() -> Headers:
    return [
        (b"Content-Type", b"text/html"),
        (b"Server", b"Apache/2.4"),
        (b"X-Powered-By", b"PHP/8"),
        (b"Set-Cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"x-powered-by", b"again"),
    ]


def test_empty_edit_changes_nothing() -> None:
    edit = HeaderEdit()
    assert edit.empty is True
    headers = upstream_response()
    edit.apply(headers)
    assert headers == upstream_response()


def test_remove_is_case_insensitive_and_removes_every_copy() -> None:
    edit = HeaderEdit(remove=["x-powered-by", "SERVER"])
    assert edit.empty is False
    headers = upstream_response()
    edit.apply(headers)
    assert headers == [
        (b"Content-Type", b"text/html"),
        (b"Set-Cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


def test_set_replaces_every_existing_copy() -> None:
    edit = HeaderEdit(set={"Set-Cookie": "c=3", "X-Frame-Options": "DENY"})
    headers = upstream_response()
    edit.apply(headers)
    assert headers == [
        (b"Content-Type", b"text/html"),
        (b"Server", b"Apache/2.4"),
        (b"X-Powered-By", b"PHP/8"),
        (b"x-powered-by", b"again"),
        (b"Set-Cookie", b"c=3"),
        (b"X-Frame-Options", b"DENY"),
    ]


def test_add_appends_and_keeps_existing() -> None:
    edit = HeaderEdit(add={"Set-Cookie": "c=3"})
    headers = upstream_response()
    edit.apply(headers)
    assert headers == [*upstream_response(), (b"Set-Cookie", b"c=3")]


def test_set_then_add_order_and_latin1_values() -> None:
    edit = HeaderEdit(remove=["Server"], set={"X-A": "1"}, add={"X-B": "caf\u00e9"})
    headers: Headers = [(b"Server", b"s"), (b"X-A", b"old")]
    edit.apply(headers)
    assert headers == [(b"X-A", b"1"), (b"X-B", b"caf\xe9")]


def test_apply_edits_in_place() -> None:
    headers: Headers = [(b"Server", b"s")]
    alias = headers
    HeaderEdit(remove=["Server"], add={"X": "y"}).apply(headers)
    assert alias is headers
    assert alias == [(b"X", b"y")]


def test_merged_outer_then_inner() -> None:
    server = HeaderEdit(remove=["Server"], set={"X-Frame-Options": "DENY"}, add={"X-S": "1"})
    location = HeaderEdit(remove=["X-Powered-By"], add={"X-L": "2"})
    merged = server.merged(location)
    assert merged.empty is False
    headers = upstream_response()
    merged.apply(headers)
    assert headers == [
        (b"Content-Type", b"text/html"),
        (b"Set-Cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"X-Frame-Options", b"DENY"),
        (b"X-S", b"1"),
        (b"X-L", b"2"),
    ]


def test_inner_set_overrides_outer_set() -> None:
    merged = HeaderEdit(set={"X-Frame-Options": "DENY"}).merged(
        HeaderEdit(set={"x-frame-options": "SAMEORIGIN"})
    )
    headers: Headers = [(b"X-Frame-Options", b"upstream")]
    merged.apply(headers)
    assert headers == [(b"x-frame-options", b"SAMEORIGIN")]


def test_inner_remove_cancels_outer_additions() -> None:
    merged = HeaderEdit(add={"X-Debug": "1"}, set={"X-Trace": "t"}).merged(
        HeaderEdit(remove=["x-debug", "X-TRACE"])
    )
    headers: Headers = [(b"X-Debug", b"upstream")]
    merged.apply(headers)
    assert headers == []


def test_outer_remove_still_applies_when_inner_adds_the_same_name() -> None:
    merged = HeaderEdit(remove=["Server"]).merged(HeaderEdit(add={"Server": "ramparts"}))
    headers: Headers = [(b"Server", b"Apache")]
    merged.apply(headers)
    assert headers == [(b"Server", b"ramparts")]


def test_merging_empties_is_empty() -> None:
    assert HeaderEdit().merged(HeaderEdit()).empty is True
    assert HeaderEdit().merged(HeaderEdit(add={"A": "1"})).empty is False
    assert HeaderEdit(remove=["A"]).merged(HeaderEdit()).empty is False


def test_merged_leaves_both_edits_unchanged() -> None:
    outer = HeaderEdit(add={"A": "1"})
    inner = HeaderEdit(remove=["A"])
    outer.merged(inner)
    headers: Headers = []
    outer.apply(headers)
    assert headers == [(b"A", b"1")]


def test_edit_is_a_response_phase() -> None:
    req = parse_head(b"GET", b"/", "1.1", [(b"Host", b"h")])
    c = Context(req, "127.0.0.1", 1, "http", 0.0)
    headers = upstream_response()
    Chain(response=(HeaderEdit(remove=["Server", "X-Powered-By"]),)).run_response(c, 200, headers)
    assert [n for n, _ in headers] == [b"Content-Type", b"Set-Cookie", b"set-cookie"]
