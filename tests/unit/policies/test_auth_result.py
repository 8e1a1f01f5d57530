"""The shared vocabulary of the auth engines: results, challenges, and the sans-IO rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ramparts.policies.auth as auth
from ramparts.pipeline.phases import Respond
from ramparts.policies.auth.result import (
    AuthResult,
    SlowCheck,
    challenge,
    quoted_string,
    single_header,
)


def test_a_refusal_becomes_a_respond() -> None:
    www = ((b"WWW-Authenticate", b'Basic realm="x"'),)
    result = AuthResult.deny("auth:basic", 401, "wrong password", www)
    assert result.respond() == Respond(status=401, headers=www, decided_by="auth:basic")
    with pytest.raises(ValueError):
        result.apply([])


def test_an_allow_edits_the_upstream_request() -> None:
    result = AuthResult.allow(
        "auth:jwt", "sub:1", ((b"X-User", b"1"),), frozenset({b"x-user", b"x-role"})
    )
    headers = [(b"Host", b"a"), (b"X-Role", b"admin"), (b"x-user", b"9"), (b"Accept", b"*/*")]
    result.apply(headers)
    assert headers == [(b"Host", b"a"), (b"Accept", b"*/*"), (b"X-User", b"1")]
    with pytest.raises(ValueError):
        result.respond()


def test_a_slow_check_runs_its_function() -> None:
    done = AuthResult.allow("auth:basic", "user:a")
    slow = SlowCheck("auth:basic", lambda: done)
    assert slow.run() is done and slow.decided_by == "auth:basic"


def test_single_header_sees_repeats_case_insensitively() -> None:
    assert single_header([(b"Authorization", b" x ")], b"authorization") == (b"x", False)
    assert single_header([(b"A", b"1"), (b"a", b"2")], b"a") == (b"1", True)
    assert single_header([], b"a") == (None, False)


def test_challenges_quote_and_refuse_what_cannot_be_sent() -> None:
    assert challenge("Bearer", [("realm", 'a"b\\c'), ("error", "invalid_token")]) == (
        b"WWW-Authenticate",
        b'Bearer realm="a\\"b\\\\c", error="invalid_token"',
    )
    assert challenge("Negotiate", []) == (b"WWW-Authenticate", b"Negotiate")
    for bad in ("a\r\nb", "nul\x00", "del\x7f", "snow\u2603"):
        with pytest.raises(ValueError):
            quoted_string(bad)
    assert quoted_string("tab\there é") == '"tab\there é"'
    with pytest.raises(ValueError):
        challenge("Basic realm", [])


def test_the_auth_engines_import_neither_asyncio_nor_socket() -> None:
    """DESIGN: policies/ is sans-IO. (PyJWT and cryptography import socket themselves, for
    their JWKS client and x509 names; no code here uses it.)"""
    package = Path(auth.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module.split(".")[0]]
            else:
                continue
            assert not {"asyncio", "socket", "selectors"} & set(names), (path.name, names)
