"""Require a header: presence, accepted values (looked up by digest), the challenge."""

from __future__ import annotations

import pytest

from ramparts.http.headers import Headers
from ramparts.policies.auth import RequireHeader

CHALLENGE = ((b"WWW-Authenticate", b'ApiKey realm="ramparts"'),)


def req(*extra: tuple[bytes, bytes]) -> Headers:
    return [(b"Host", b"api.example"), *extra]


def test_presence_is_enough_without_values() -> None:
    engine = RequireHeader("X-Api-Key")
    result = engine.check(req((b"x-api-key", b"anything")), 0.0)
    assert result.ok
    assert result.identity == "header:X-Api-Key"
    assert result.decided_by == "auth:header"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (req(), "no X-Api-Key header"),
        (req((b"X-Api-Key", b"")), "no X-Api-Key header"),
        (req((b"X-Api-Key", b"  \t")), "no X-Api-Key header"),
        (req((b"X-Api-Key", b"a"), (b"x-api-key", b"b")), "X-Api-Key header repeated"),
        (req((b"X-Api-Keys", b"a")), "no X-Api-Key header"),
    ],
)
def test_missing_empty_or_repeated_is_401(headers: Headers, reason: str) -> None:
    result = RequireHeader("X-Api-Key").check(headers, 0.0)
    assert (result.ok, result.status, result.reason) == (False, 401, reason)
    assert result.response_headers == CHALLENGE
    respond = result.respond()
    assert (respond.status, respond.headers, respond.decided_by) == (401, CHALLENGE, "auth:header")


def test_values_must_match_exactly() -> None:
    engine = RequireHeader("X-Api-Key", ["k-1", "k-2"])
    assert engine.check(req((b"X-Api-Key", b"k-2")), 0.0).ok
    assert engine.check(req((b"X-Api-Key", b" k-1 ")), 0.0).ok  # field whitespace is not value
    for wrong in (b"k-3", b"K-1", b"k-1x", b"k-"):
        result = engine.check(req((b"X-Api-Key", wrong)), 0.0)
        assert (result.status, result.reason) == (401, "X-Api-Key has no accepted value")


def test_values_are_kept_as_digests_only() -> None:
    engine = RequireHeader("X-Api-Key", ["super-secret"])
    assert engine._digests is not None
    assert all(b"super-secret" not in d for d in engine._digests)


def test_the_challenge_is_configurable() -> None:
    engine = RequireHeader("X-Token", realm='say "please"', scheme="Token")
    assert engine.check(req(), 0.0).response_headers == (
        (b"WWW-Authenticate", b'Token realm="say \\"please\\""'),
    )


def test_strip_keeps_the_key_from_the_upstream() -> None:
    engine = RequireHeader("X-Api-Key", ["k"], strip=True)
    headers = req((b"X-API-KEY", b"k"))
    result = engine.check(headers, 0.0)
    result.apply(headers)
    assert headers == [(b"Host", b"api.example")]
    kept = req((b"X-Api-Key", b"k"))
    RequireHeader("X-Api-Key", ["k"]).check(kept, 0.0).apply(kept)
    assert kept == req((b"X-Api-Key", b"k"))


@pytest.mark.parametrize(
    ("name", "values", "scheme"),
    [
        ("X Api", None, "ApiKey"),
        ("", None, "ApiKey"),
        ("X-Api-Key", [], "ApiKey"),
        ("X-Api-Key", [""], "ApiKey"),
        ("X-Api-Key", [" padded"], "ApiKey"),
        ("X-Api-Key", None, "Api Key"),
    ],
)
def test_bad_arguments_are_refused(name: str, values: list[str] | None, scheme: str) -> None:
    with pytest.raises(ValueError):
        RequireHeader(name, values, scheme=scheme)
