"""The phase chain: a request phase continues (None) or stops with a Respond; response
phases edit the head in order; the first refusal names who decided."""

from __future__ import annotations

import dataclasses

import pytest

from ramparts.http.headers import Headers
from ramparts.http.request import parse_head
from ramparts.pipeline.context import Context
from ramparts.pipeline.phases import Chain, Respond, ResponsePhase


def ctx() -> Context:
    req = parse_head(b"GET", b"/", "1.1", [(b"Host", b"h")])
    return Context(req, "198.51.100.1", 4000, "http", 12.5)


def test_context_defaults() -> None:
    c = ctx()
    assert c.peer_ip == c.client_ip == "198.51.100.1"
    assert c.peer_port == 4000
    assert c.scheme == "http"
    assert c.started == 12.5
    assert c.server is None
    assert c.location is None
    assert c.decided_by == ""
    assert c.status == 0
    assert c.bytes_sent == 0
    assert c.upstream_addr == ""
    assert c.upstream_status == 0
    assert c.upstream_time == -1.0
    assert c.vars is None
    assert c.request.path == b"/"


def test_respond_defaults_and_immutability() -> None:
    r = Respond(403)
    assert (r.status, r.headers, r.body, r.decided_by, r.close) == (403, (), b"", "", False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.status = 200  # type: ignore[misc]


def test_empty_chain_continues() -> None:
    c = ctx()
    assert Chain().run_request(c) is None
    headers: Headers = [(b"A", b"1")]
    Chain().run_response(c, 200, headers)
    assert headers == [(b"A", b"1")]
    assert c.decided_by == ""


def test_all_continue_runs_every_phase_in_order() -> None:
    calls: list[str] = []

    def one(c: Context) -> Respond | None:
        calls.append("one")
        return None

    def two(c: Context) -> Respond | None:
        calls.append("two")
        return None

    assert Chain(request=(one, two)).run_request(ctx()) is None
    assert calls == ["one", "two"]


def test_first_respond_stops_the_chain_and_names_the_decider() -> None:
    calls: list[str] = []
    deny = Respond(403, body=b"no\n", decided_by="access:rule-3")

    def allow(c: Context) -> Respond | None:
        calls.append("allow")
        return None

    def refuse(c: Context) -> Respond | None:
        calls.append("refuse")
        return deny

    def never(c: Context) -> Respond | None:
        calls.append("never")
        return Respond(429, decided_by="ratelimit:x")

    c = ctx()
    assert Chain(request=(allow, refuse, never)).run_request(c) is deny
    assert calls == ["allow", "refuse"]
    assert c.decided_by == "access:rule-3"


def test_a_decider_already_recorded_is_kept() -> None:
    c = ctx()
    c.decided_by = "realip:trusted"
    result = Chain(request=(lambda _: Respond(403, decided_by="access:1"),)).run_request(c)
    assert result is not None
    assert result.status == 403
    assert c.decided_by == "realip:trusted"


def test_response_phases_run_in_order_on_the_same_list() -> None:
    seen: list[int] = []

    def add(name: bytes) -> ResponsePhase:
        def phase(c: Context, status: int, headers: Headers) -> None:
            seen.append(status)
            headers.append((name, b"1"))

        return phase

    headers: Headers = []
    Chain(response=(add(b"A"), add(b"B"))).run_response(ctx(), 201, headers)
    assert headers == [(b"A", b"1"), (b"B", b"1")]
    assert seen == [201, 201]


def test_wait_suspends_and_names_where_to_go_on() -> None:
    from ramparts.pipeline.phases import Wait

    seen: list[str] = []
    pause = Wait(0.25)

    def first(c: Context) -> Respond | Wait | None:
        seen.append("first")
        return None

    def second(c: Context) -> Respond | Wait | None:
        seen.append("second")
        return pause

    def third(c: Context) -> Respond | Wait | None:
        seen.append("third")
        return Respond(429, decided_by="ratelimit:z")

    chain = Chain(request=(first, second, third))
    c = ctx()
    assert chain.run_request(c) is pause
    assert (seen, c.resume_at, c.decided_by) == (["first", "second"], 2, "")
    result = chain.run_request(c, c.resume_at)
    assert isinstance(result, Respond) and result.status == 429
    assert seen == ["first", "second", "third"]
    assert c.decided_by == "ratelimit:z"
    assert chain.run_request(c, 3) is None  # past the last phase: go on to the handler
    assert repr(pause) == "Wait(0.250s)"


def test_a_bare_context_reads_the_body_it_holds() -> None:
    c = ctx()
    assert c.read_body(10) == b""
    c.body = b"q=1"
    assert c.read_body(10) == b"q=1"
