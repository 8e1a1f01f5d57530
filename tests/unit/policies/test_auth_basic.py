"""HTTP Basic against htpasswd files: loading (bcrypt only, located refusals), every way a
request fails with 401, the slow-path split, and the verification cache."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from ramparts.errors import ConfigError
from ramparts.http.headers import Headers
from ramparts.policies.auth import (
    AuthResult,
    BasicAuth,
    SlowCheck,
    load_htpasswd,
    parse_htpasswd,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "auth"
# The passwords of tests/data/auth/htpasswd (made with `htpasswd -B`).
ALICE = "correct horse"
BOB = "pa:ss wörd"  # a colon and non-ASCII: only the first colon splits user from password
LONG = "a" * 80  # longer than bcrypt's 72 bytes
GOOD = "$2y$04$Nl6fgzxS8bDA1iuLsUhSpen9hGqBV5PBrT5YC/Iy3x3JuJ6vJWG62"
CHALLENGE = (b"WWW-Authenticate", b'Basic realm="staff", charset="UTF-8"')


def basic(user: str, password: str) -> Headers:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return [(b"Host", b"example.com"), (b"Authorization", f"Basic {token}".encode())]


def authz(value: bytes) -> Headers:
    return [(b"Host", b"example.com"), (b"Authorization", value)]


def make(**limits: Any) -> BasicAuth:
    return BasicAuth(load_htpasswd(DATA / "htpasswd"), realm="staff", **limits)


@pytest.fixture(scope="module")
def engine() -> BasicAuth:
    return make()


def refused(result: AuthResult | SlowCheck, reason: str) -> None:
    if isinstance(result, SlowCheck):
        result = result.run()
    assert not result.ok
    assert result.status == 401
    assert result.reason == reason
    assert result.response_headers == (CHALLENGE,)
    assert result.decided_by == "auth:basic"
    assert result.respond().headers == (CHALLENGE,)


# ------------------------------------------------------------------------------ loading


def test_the_htpasswd_fixture_loads_as_made_by_htpasswd() -> None:
    htpasswd = load_htpasswd(DATA / "htpasswd")
    assert sorted(htpasswd.entries) == ["alice", "bob", "long"]
    assert all(h.startswith(b"$2y$") for h in htpasswd.entries.values())
    assert htpasswd.file.endswith("htpasswd")


@pytest.mark.parametrize("prefix", ["$2y$", "$2b$", "$2a$"])
def test_every_bcrypt_prefix_is_accepted_and_verifies(prefix: str) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    line = f"carol:{prefix}{hashed[4:]}\n"
    engine = BasicAuth(parse_htpasswd(line))
    assert engine.check_blocking(basic("carol", "s3cret"), 0.0).ok
    assert not engine.check_blocking(basic("carol", "s3cret!"), 0.0).ok


# Lines made with `htpasswd -b` and its -m, -s, -p, -d, -2, -5 options (password "x").
WEAK = {
    "$apr1$8SINBg1A$mF1ueouT/Thu8EeCbgcWD0": "Apache MD5 (apr1)",
    "{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=": "unsalted SHA-1",
    "x": "plain text",
    "c8x8Ig8Hp.0.c": "DES-crypt",
    "$1$abcdefgh$0123456789abcdefghijkl": "MD5-crypt",
    "$5$PuxvcR4UKwmrbr5z$AYKnrotYR3aCG9o3cWHZP6GpuUrH4HSJd7gbrsuvXw6": "SHA-256-crypt",
    "$6$jyY77NctY8HdPOPh$iq8pTcIIP.o6CGu2/nrYLPad1SwCJnpEyNUqZ9ihrzGHo4R.tv/Qgqvw/LsXIZ"
    "yxG2EGXiyFQOvZX1WgGHr1r/": "SHA-512-crypt",
    "$2x$04$Nl6fgzxS8bDA1iuLsUhSpen9hGqBV5PBrT5YC/Iy3x3JuJ6vJWG62": "unsupported bcrypt",
    "$2y$04$tooshort": "malformed or unsupported bcrypt",
}


@pytest.mark.parametrize("hashed", list(WEAK))
def test_non_bcrypt_hashes_are_refused_at_load_with_file_line_and_reason(hashed: str) -> None:
    text = f"# users\nalice:{GOOD}\n\nbob:{hashed}\n"
    with pytest.raises(ConfigError) as err:
        parse_htpasswd(text, "/etc/ramparts/users")
    assert err.value.file == "/etc/ramparts/users"
    assert err.value.line == 4
    assert WEAK[hashed] in err.value.reason
    assert "htpasswd -B" in err.value.reason
    assert str(err.value).startswith("/etc/ramparts/users:4: user 'bob': ")
    assert hashed not in str(err.value) or hashed == "x"  # the hash itself is not echoed


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("alice\n", 1, "no colon"),
        (":$2y$04$Nl6fgzxS8bDA1iuLsUhSpen9hGqBV5PBrT5YC/Iy3x3JuJ6vJWG62\n", 1, "empty user"),
        ("a\x01b:x\n", 1, "control characters"),
        (
            "alice:$2y$04$Nl6fgzxS8bDA1iuLsUhSpen9hGqBV5PBrT5YC/Iy3x3JuJ6vJWG62\n"
            "alice:$2y$04$Nl6fgzxS8bDA1iuLsUhSpen9hGqBV5PBrT5YC/Iy3x3JuJ6vJWG62\n",
            2,
            "already defined on line 1",
        ),
        (
            "alice:$2y$15$Nl6fgzxS8bDA1iuLsUhSpen9hGqBV5PBrT5YC/Iy3x3JuJ6vJWG62\n",
            1,
            "above the limit 14",
        ),
        ("alice:$2y$03$Nl6fgzxS8bDA1iuLsUhSpen9hGqBV5PBrT5YC/Iy3x3JuJ6vJWG62\n", 1, "out of range"),
    ],
)
def test_unusable_lines_are_located(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_htpasswd(text, "users")
    assert err.value.line == line
    assert reason in err.value.reason


def test_comments_blank_lines_crlf_and_nginx_comment_field_are_accepted() -> None:
    hashed = "$2y$04$Nl6fgzxS8bDA1iuLsUhSpen9hGqBV5PBrT5YC/Iy3x3JuJ6vJWG62"
    text = f"# staff\r\n\r\nalice:{hashed}:Alice Example\r\n"
    assert parse_htpasswd(text).entries == {"alice": hashed.encode()}


def test_the_cost_limit_is_a_named_argument() -> None:
    hashed = "$2y$15$Nl6fgzxS8bDA1iuLsUhSpen9hGqBV5PBrT5YC/Iy3x3JuJ6vJWG62"
    assert parse_htpasswd(f"alice:{hashed}\n", max_cost=15).entries["alice"] == hashed.encode()


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_htpasswd(tmp_path / "missing")
    assert "cannot read" in err.value.reason
    (tmp_path / "latin1").write_bytes(b"j\xf6rg:x\n")
    with pytest.raises(ConfigError):
        load_htpasswd(tmp_path / "latin1")


# -------------------------------------------------------------------------------- verify


def test_right_password_allows_with_identity(engine: BasicAuth) -> None:
    result = engine.check_blocking(basic("alice", ALICE), 100.0)
    assert result.ok
    assert result.identity == "user:alice"
    assert result.decided_by == "auth:basic"
    assert result.status == 0


def test_only_the_first_colon_splits_and_utf8_passwords_verify(engine: BasicAuth) -> None:
    assert engine.check_blocking(basic("bob", BOB), 0.0).ok


def test_passwords_are_compared_as_bytes_whatever_their_charset() -> None:
    hashed = bcrypt.hashpw("café".encode("latin-1"), bcrypt.gensalt(4)).decode()
    engine = BasicAuth(parse_htpasswd(f"carol:{hashed}\n"))
    token = base64.b64encode("carol:café".encode("latin-1"))
    assert engine.check_blocking(authz(b"Basic " + token), 0.0).ok


def test_passwords_are_checked_on_their_first_72_bytes_like_htpasswd(engine: BasicAuth) -> None:
    assert engine.check_blocking(basic("long", LONG), 0.0).ok
    assert engine.check_blocking(basic("long", "a" * 72 + "different tail"), 0.0).ok
    refused(engine.check(basic("long", "a" * 71), 0.0), "wrong password")


def test_a_check_that_needs_bcrypt_is_handed_to_the_shell(engine: BasicAuth) -> None:
    fresh = make()
    pending = fresh.check(basic("alice", ALICE), 0.0)
    assert isinstance(pending, SlowCheck)
    assert pending.decided_by == "auth:basic"
    # The shell runs it in a worker thread.
    out: list[AuthResult] = []
    worker = threading.Thread(target=lambda: out.append(pending.run()))
    worker.start()
    worker.join()
    assert out[0].ok


def test_scheme_is_case_insensitive(engine: BasicAuth) -> None:
    token = base64.b64encode(f"alice:{ALICE}".encode())
    assert engine.check_blocking(authz(b"bAsIc " + token), 0.0).ok
    assert engine.check_blocking(authz(b"Basic   " + token), 0.0).ok


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([(b"Host", b"a")], "no credentials"),
        (authz(b""), "no credentials"),
        (authz(b"Bearer abc.def.ghi"), "not Basic credentials"),
        (authz(b"Basic"), "malformed credentials: no colon"),
        (authz(b"Basic !!!notbase64!!!"), "malformed credentials: bad base64"),
        (authz(b"Basic YWxpY2U"), "malformed credentials: bad base64"),  # missing padding
        (authz(b"Basic " + base64.b64encode(b"alice")), "malformed credentials: no colon"),
        (authz(b"Basic " + base64.b64encode(b"\xff:x")), "malformed credentials: not UTF-8"),
        (
            authz(b"Basic " + base64.b64encode(b"alice:a\x00b")),
            "malformed credentials: control characters",
        ),
        (basic("alice", "wrong"), "wrong password"),
        (basic("alice", ""), "wrong password"),
        (basic("Alice", ALICE), "unknown user"),  # user names are case-sensitive
        (basic("mallory", ALICE), "unknown user"),
        (
            [*basic("alice", ALICE), (b"authorization", b"Basic Zm9vOmJhcg==")],
            "Authorization repeated",
        ),
    ],
)
def test_every_failure_is_401_with_the_basic_challenge(
    engine: BasicAuth, headers: Headers, reason: str
) -> None:
    refused(engine.check(headers, 0.0), reason)


def test_the_realm_is_quoted() -> None:
    engine = BasicAuth(parse_htpasswd(""), realm='The "inner" \\ zone')
    result = engine.check_blocking([], 0.0)
    assert result.response_headers == (
        (b"WWW-Authenticate", b'Basic realm="The \\"inner\\" \\\\ zone", charset="UTF-8"'),
    )
    with pytest.raises(ValueError):
        BasicAuth(parse_htpasswd(""), realm="bad\r\nrealm")


def test_the_user_header_is_set_upstream_and_never_spoofed() -> None:
    engine = BasicAuth(load_htpasswd(DATA / "htpasswd"), user_header="X-Remote-User")
    result = engine.check_blocking(basic("alice", ALICE), 0.0)
    upstream = [(b"Host", b"a"), (b"x-remote-user", b"admin"), (b"X-REMOTE-USER", b"root")]
    result.apply(upstream)
    assert upstream == [(b"Host", b"a"), (b"X-Remote-User", b"alice")]


# --------------------------------------------------------------------------------- cache


def test_a_verified_password_is_cached_until_its_ttl() -> None:
    engine = make(cache_ttl=60.0)
    headers = basic("alice", ALICE)
    first = engine.check(headers, 1000.0)
    assert isinstance(first, SlowCheck)
    allowed = first.run()
    # A keep-alive client's next requests: answered inline, the same result object.
    assert engine.check(headers, 1000.5) is allowed
    assert engine.check(headers, 1059.9) is allowed
    # Past the lifetime bcrypt runs again.
    assert isinstance(engine.check(headers, 1060.0), SlowCheck)


def test_the_cache_is_keyed_by_the_whole_credentials() -> None:
    engine = make()
    engine.check_blocking(basic("alice", ALICE), 0.0)
    assert isinstance(engine.check(basic("alice", ALICE + "x"), 1.0), SlowCheck)
    assert isinstance(engine.check(basic("bob", ALICE), 1.0), SlowCheck)
    assert isinstance(
        engine.check(authz(b"basic " + basic("alice", ALICE)[1][1][6:]), 1.0), SlowCheck
    )


def test_the_cache_holds_no_credentials() -> None:
    engine = make()
    headers = basic("alice", ALICE)
    engine.check_blocking(headers, 0.0)
    (key,) = engine._ok  # the only entry
    assert len(key) == 32 and headers[1][1] not in key and b"alice" not in key


def test_the_cache_is_bounded_oldest_out() -> None:
    engine = make(cache_size=2)
    a, b, c = basic("alice", ALICE), basic("bob", BOB), basic("long", LONG)
    for headers in (a, b, c):
        assert engine.check_blocking(headers, 0.0).ok
    assert len(engine._ok) == 2
    assert isinstance(engine.check(a, 1.0), SlowCheck)  # the oldest went out
    assert isinstance(engine.check(c, 1.0), AuthResult)


def test_failures_are_cached_apart_and_never_evict_successes() -> None:
    engine = make(cache_size=4, fail_cache_size=2)
    good = basic("alice", ALICE)
    engine.check_blocking(good, 0.0)
    for i in range(10):  # a flood of bad guesses
        refused(engine.check(basic("alice", f"guess{i}"), 1.0), "wrong password")
    assert len(engine._bad) == 2
    assert isinstance(engine.check(good, 2.0), AuthResult)  # still a hit
    # A repeated bad guess is answered from the failure cache (no bcrypt) ...
    refused(engine.check(basic("alice", "guess9"), 3.0), "wrong password")
    assert isinstance(engine.check(basic("alice", "guess9"), 3.0), AuthResult)
    # ... but every new guess pays a full bcrypt.
    assert isinstance(engine.check(basic("alice", "guess10"), 3.0), SlowCheck)


def test_failures_expire_sooner() -> None:
    engine = make(fail_cache_ttl=5.0)
    bad = basic("alice", "nope")
    refused(engine.check(bad, 0.0), "wrong password")
    assert isinstance(engine.check(bad, 4.9), AuthResult)
    assert isinstance(engine.check(bad, 5.0), SlowCheck)


def test_a_zero_sized_cache_always_verifies() -> None:
    engine = make(cache_size=0, fail_cache_size=0)
    assert engine.check_blocking(basic("alice", ALICE), 0.0).ok
    assert isinstance(engine.check(basic("alice", ALICE), 0.0), SlowCheck)
    with pytest.raises(ValueError):
        make(cache_size=-1)


def test_unknown_users_are_checked_against_a_dummy_hash_of_the_usual_cost() -> None:
    engine = make()
    assert engine._dummy.startswith(b"$2b$04$")  # two users of cost 4, one of 5
    assert isinstance(engine.check(basic("mallory", "x"), 0.0), SlowCheck)


def test_slow_checks_are_thread_safe() -> None:
    engine = make(cache_size=3, fail_cache_size=3)
    creds = [basic("alice", ALICE), basic("bob", BOB), basic("alice", "bad"), basic("x", "y")]
    pendings = [engine.check(h, 0.0) for h in creds * 4]
    results: list[AuthResult] = []
    lock = threading.Lock()

    def run(p: AuthResult | SlowCheck) -> None:
        r = p.run() if isinstance(p, SlowCheck) else p
        with lock:
            results.append(r)

    threads = [threading.Thread(target=run, args=(p,)) for p in pendings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.ok for r in results) == [False] * 8 + [True] * 8
    assert len(engine._ok) <= 3 and len(engine._bad) <= 3
