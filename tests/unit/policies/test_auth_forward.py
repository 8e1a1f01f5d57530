"""Forward auth (nginx auth_request): the subrequest head, and the verdict on the answer."""

from __future__ import annotations

import pytest

from ramparts.http.headers import Headers
from ramparts.policies.auth import ForwardAuth, Subrequest

CLIENT: Headers = [
    (b"Host", b"app.example"),
    (b"User-Agent", b"curl/8"),
    (b"Cookie", b"session=abc"),
    (b"Authorization", b"Bearer t"),
    (b"Content-Length", b"5"),
    (b"Content-Type", b"text/plain"),
    (b"Connection", b"keep-alive, X-Hop"),
    (b"X-Hop", b"1"),
    (b"Keep-Alive", b"timeout=5"),
    (b"Expect", b"100-continue"),
    (b"X-Forwarded-For", b"6.6.6.6"),
    (b"X-Original-URI", b"/public"),
    (b"X-Forwarded-Prefix", b"/evil"),
    (b"Forwarded", b"for=6.6.6.6"),
    (b"X-Real-IP", b"6.6.6.6"),
]


def sub(auth: ForwardAuth, headers: Headers = CLIENT) -> Subrequest:
    return auth.subrequest(
        b"POST",
        b"/admin/users?page=2",
        headers,
        client_ip="203.0.113.7",
        scheme="https",
        connection_tokens=frozenset({b"keep-alive", b"x-hop"}),
    )


def test_the_subrequest_is_a_bodyless_get_to_the_auth_service() -> None:
    auth = ForwardAuth("http://auth.internal:9091/api/verify?rd=1", timeout=2.5)
    s = sub(auth)
    assert (s.scheme, s.host, s.port) == ("http", "auth.internal", 9091)
    assert s.method == b"GET"
    assert s.target == b"/api/verify?rd=1"
    assert s.timeout == 2.5
    assert s.headers == (
        (b"Host", b"auth.internal:9091"),
        (b"User-Agent", b"curl/8"),
        (b"Cookie", b"session=abc"),
        (b"Authorization", b"Bearer t"),
        (b"Content-Type", b"text/plain"),
        (b"X-Original-URI", b"/admin/users?page=2"),
        (b"X-Original-Method", b"POST"),
        (b"X-Forwarded-Method", b"POST"),
        (b"X-Forwarded-Proto", b"https"),
        (b"X-Forwarded-Uri", b"/admin/users?page=2"),
        (b"X-Forwarded-For", b"203.0.113.7"),
        (b"X-Real-IP", b"203.0.113.7"),
        (b"X-Forwarded-Host", b"app.example"),
        (b"X-Original-URL", b"https://app.example/admin/users?page=2"),
    )
    names = [n.lower() for n, _ in s.headers]
    assert b"content-length" not in names and b"transfer-encoding" not in names


def test_client_copies_of_the_set_fields_never_reach_the_service() -> None:
    s = sub(ForwardAuth("http://auth"))
    values = dict((n.lower(), v) for n, v in s.headers)
    assert values[b"x-forwarded-for"] == b"203.0.113.7"
    assert values[b"x-original-uri"] == b"/admin/users?page=2"
    assert b"x-forwarded-prefix" not in values and b"forwarded" not in values
    assert [v for n, v in s.headers if n.lower() == b"x-real-ip"] == [b"203.0.113.7"]


def test_pass_headers_limits_what_the_service_sees() -> None:
    s = sub(ForwardAuth("https://auth.example/check", pass_headers=["cookie", "Content-Length"]))
    assert (s.scheme, s.port, s.target) == ("https", 443, b"/check")
    assert s.headers[0] == (b"Host", b"auth.example")
    assert [n for n, _ in s.headers if not n.startswith(b"X-")] == [b"Host", b"Cookie"]


def test_default_ports_and_ipv6_authorities() -> None:
    assert sub(ForwardAuth("http://[::1]:8080")).headers[0] == (b"Host", b"[::1]:8080")
    s = sub(ForwardAuth("http://[::1]"))
    assert (s.host, s.port, s.target, s.headers[0]) == ("::1", 80, b"/", (b"Host", b"[::1]"))
    assert sub(ForwardAuth("https://a:443/")).headers[0] == (b"Host", b"a")


def test_without_host_there_is_no_forwarded_host() -> None:
    s = sub(ForwardAuth("http://auth"), [(b"Cookie", b"c")])
    names = {n for n, _ in s.headers}
    assert b"X-Forwarded-Host" not in names and b"X-Original-URL" not in names


@pytest.mark.parametrize(
    "url",
    [
        "ftp://auth/",
        "auth:9000",
        "http:///path",
        "http://u:p@auth/",
        "http://auth/#x",
        "http://auth:99999/",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        ForwardAuth(url)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        ForwardAuth("http://auth", timeout=0)
    with pytest.raises(ValueError):
        ForwardAuth("http://auth", copy_headers=["X User"])


# ------------------------------------------------------------------------------ verdicts


@pytest.mark.parametrize("status", [200, 202, 204, 299])
def test_2xx_allows_and_copies_the_named_fields(status: int) -> None:
    auth = ForwardAuth(
        "http://auth",
        copy_headers=["X-Auth-Request-User", "X-Auth-Request-Groups"],
        identity_header="X-Auth-Request-User",
    )
    answer = [
        (b"x-auth-request-user", b"alice"),
        (b"X-Auth-Request-Groups", b"dev"),
        (b"X-Auth-Request-Groups", b"ops"),
        (b"Set-Cookie", b"not=copied"),
    ]
    result = auth.decide(status, answer)
    assert result.ok
    assert result.decided_by == "auth:forward"
    assert result.identity == "user:alice"
    upstream = [
        (b"Host", b"app"),
        (b"X-Auth-Request-User", b"admin"),
        (b"x-auth-request-groups", b"root"),
    ]
    result.apply(upstream)
    assert upstream == [
        (b"Host", b"app"),
        (b"x-auth-request-user", b"alice"),
        (b"X-Auth-Request-Groups", b"dev"),
        (b"X-Auth-Request-Groups", b"ops"),
    ]


def test_2xx_strips_client_copies_even_when_the_service_sends_none() -> None:
    result = ForwardAuth("http://auth", copy_headers=["X-User"]).decide(200, [])
    assert result.identity == "forward"
    upstream = [(b"X-User", b"admin")]
    result.apply(upstream)
    assert upstream == []


def test_401_passes_the_services_challenges() -> None:
    challenges = [
        (b"WWW-Authenticate", b'Basic realm="sso"'),
        (b"www-authenticate", b'Bearer realm="sso"'),
    ]
    result = ForwardAuth("http://auth").decide(401, [(b"Location", b"/login"), *challenges])
    assert (result.ok, result.status) == (False, 401)
    assert result.response_headers == tuple(challenges)
    respond = result.respond()
    assert (respond.status, respond.headers, respond.decided_by) == (
        401,
        tuple(challenges),
        "auth:forward",
    )


def test_403_is_403() -> None:
    result = ForwardAuth("http://auth").decide(403, [(b"WWW-Authenticate", b"Basic")])
    assert (result.ok, result.status, result.response_headers) == (False, 403, ())


@pytest.mark.parametrize("status", [100, 199, 300, 302, 304, 400, 404, 407, 429, 500, 502, 503])
def test_any_other_status_is_500_like_nginx(status: int) -> None:
    result = ForwardAuth("http://auth").decide(status, [(b"Location", b"https://sso/login")])
    assert (result.ok, result.status, result.response_headers) == (False, 500, ())
    assert result.reason == f"auth service answered {status}"


def test_no_answer_is_500() -> None:
    result = ForwardAuth("http://auth").failed("timeout after 5 s")
    assert (result.ok, result.status, result.decided_by) == (False, 500, "auth:forward")
    assert result.reason == "auth service failed: timeout after 5 s"
