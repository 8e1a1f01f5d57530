"""HTTP Basic authentication (RFC 7617) against an htpasswd file of bcrypt hashes.

The file is read once, when the plan is built (``load_htpasswd``/``parse_htpasswd``); a bad
line is a ``ConfigError`` naming file and line. Only bcrypt (``$2y$``, ``$2b$``, ``$2a$``:
``htpasswd -B``) is accepted. Apache MD5 (``$apr1$``), ``{SHA}``, crypt(3) (DES, ``$1$``,
``$5$``, ``$6$``) and plain text are refused with the reason: they are fast to brute-force
(``{SHA}`` is not even salted), and supporting them would quietly keep weak hashes alive.
A bcrypt cost above ``max_cost`` is refused too: every failed login would burn that much
CPU, which hands an attacker a cheap denial of service. Like Apache and nginx, a password
longer than 72 bytes is checked on its first 72 bytes (bcrypt's limit; ``htpasswd -B``
hashes the same prefix). The file may hold nginx's ``user:hash:comment`` form, ``#``
comments and blank lines.

bcrypt is deliberately slow (~60 ms at cost 10, ~250 ms at 12), so ``BasicAuth.check``
splits the work: what is cheap (parsing, the cache) runs inline and returns an
``AuthResult``; a check that needs bcrypt returns a ``SlowCheck`` whose ``run`` the shell
calls in a worker thread (it is thread-safe and does no I/O).

The cache. Keys are keyed BLAKE2b digests of the whole ``Authorization`` value (the key is
random per engine, so the map never holds credentials nor anything precomputable); a
cache lives and dies with its engine, and so with one loaded htpasswd file: a changed file
means a new plan, a new engine and an empty cache. Successes are kept ``cache_ttl``
seconds in a bounded map (oldest out first), so a keep-alive client pays bcrypt once, not
per request: a hit is one digest, one dict lookup and one comparison. Failures are kept
apart, in a smaller map with a shorter life, so that a flood of bad guesses can never push
good entries out; they only spare the CPU when a client repeats the very same bad
credentials. They make no guess cheaper: each new password is a new key and costs a full
bcrypt. An unknown user is checked against a dummy hash of the file's usual cost, so the
answer takes as long as for a known user and does not reveal which names exist.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import secrets
import threading
from base64 import b64decode
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import bcrypt

from ...errors import ConfigError
from ...http.headers import Headers
from .result import AuthResult, SlowCheck, challenge, header_names, single_header

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_CACHE_TTL",
    "MAX_BCRYPT_COST",
    "BasicAuth",
    "Htpasswd",
    "load_htpasswd",
    "parse_htpasswd",
]

DECIDED_BY = "auth:basic"

#: A cost above this is refused at load (cost 14 is ~1 s of CPU per check, 16 ~4 s).
MAX_BCRYPT_COST = 14
DEFAULT_CACHE_SIZE = 1024
DEFAULT_CACHE_TTL = 300.0
DEFAULT_FAIL_CACHE_SIZE = 256
DEFAULT_FAIL_CACHE_TTL = 30.0
#: bcrypt reads at most this many bytes of a password.
BCRYPT_MAX_PASSWORD = 72

_BCRYPT = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}")
_DES_CRYPT = re.compile(r"[./A-Za-z0-9]{13}")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_REFUSED_PREFIXES = (
    ("$apr1$", "an Apache MD5 (apr1) hash"),
    ("{SHA}", "an unsalted SHA-1 hash"),
    ("$1$", "an MD5-crypt hash"),
    ("$5$", "a SHA-256-crypt hash"),
    ("$6$", "a SHA-512-crypt hash"),
    ("$argon2", "an Argon2 hash"),
    ("$y$", "a yescrypt hash"),
    ("$2", "a malformed or unsupported bcrypt hash"),
)
_ONLY_BCRYPT = "only bcrypt is accepted: recreate it with `htpasswd -B`"
# The fixed refusal reasons, each answered with one prebuilt result.
_REASONS = (
    "no credentials",
    "Authorization repeated",
    "not Basic credentials",
    "malformed credentials: bad base64",
    "malformed credentials: no colon",
    "malformed credentials: not UTF-8",
    "malformed credentials: control characters",
    "wrong password",
    "unknown user",
)


def _is_text(value: str) -> bool:
    """No control characters (RFC 7617: user-id and password are TEXT)."""
    return all(ord(c) >= 0x20 and c != "\x7f" for c in value)


@dataclass(frozen=True, slots=True)
class Htpasswd:
    """A loaded htpasswd file: user name -> bcrypt hash (bytes), and where it came from."""

    file: str
    entries: Mapping[str, bytes]


def parse_htpasswd(
    text: str, file: str = "<htpasswd>", *, max_cost: int = MAX_BCRYPT_COST
) -> Htpasswd:
    """Parse htpasswd ``text``; any line that cannot be used raises ``ConfigError``."""
    entries: dict[str, bytes] = {}
    first_line: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, rest = line.partition(":")
        if not colon:
            raise ConfigError("not `user:hash` (no colon)", file=file, line=n)
        if not user:
            raise ConfigError("empty user name", file=file, line=n)
        if not _is_text(user) or user != user.strip():
            raise ConfigError("the user name has control characters or blanks", file=file, line=n)
        hashed = rest.split(":", 1)[0].strip()  # nginx allows `user:hash:comment`
        m = _BCRYPT.fullmatch(hashed)
        if m is None:
            kind = next((k for p, k in _REFUSED_PREFIXES if hashed.startswith(p)), None)
            if kind is None:
                kind = "a DES-crypt hash" if _DES_CRYPT.fullmatch(hashed) else "no known hash"
                kind += " (plain text?)" if kind == "no known hash" else ""
            raise ConfigError(f"user {user!r}: {kind}; {_ONLY_BCRYPT}", file=file, line=n)
        cost = int(m.group(1))
        if not 4 <= cost <= 31:
            raise ConfigError(
                f"user {user!r}: bcrypt cost {cost} is out of range", file=file, line=n
            )
        if cost > max_cost:
            raise ConfigError(
                f"user {user!r}: bcrypt cost {cost} is above the limit {max_cost} (every "
                f"failed login would burn ~{0.06 * 2 ** (cost - 10):.1f} s of CPU)",
                file=file,
                line=n,
            )
        if user in entries:
            raise ConfigError(
                f"user {user!r} is already defined on line {first_line[user]}", file=file, line=n
            )
        entries[user] = hashed.encode("ascii")
        first_line[user] = n
    return Htpasswd(file=file, entries=entries)


def load_htpasswd(path: str | Path, *, max_cost: int = MAX_BCRYPT_COST) -> Htpasswd:
    """Read and parse the htpasswd file at ``path`` (a plan-build step)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the htpasswd file: {exc}", file=str(p)) from None
    return parse_htpasswd(text, str(p), max_cost=max_cost)


_CacheEntry = tuple[AuthResult, float]


class BasicAuth:
    """Basic authentication against one ``Htpasswd``; see the module doc for the cache.

    ``check`` answers an ``AuthResult`` when it can without bcrypt (no or malformed
    credentials, a cache hit) and a ``SlowCheck`` otherwise. ``user_header`` names a
    field that carries the user name upstream (client-supplied copies are removed).
    """

    __slots__ = (
        "_allow",
        "_bad",
        "_bad_size",
        "_bad_ttl",
        "_deny",
        "_dummy",
        "_entries",
        "_lock",
        "_ok",
        "_ok_size",
        "_ok_ttl",
        "_secret",
        "_www",
    )

    def __init__(
        self,
        htpasswd: Htpasswd,
        *,
        realm: str = "ramparts",
        user_header: str | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        fail_cache_size: int = DEFAULT_FAIL_CACHE_SIZE,
        fail_cache_ttl: float = DEFAULT_FAIL_CACHE_TTL,
    ) -> None:
        if cache_size < 0 or fail_cache_size < 0 or cache_ttl < 0 or fail_cache_ttl < 0:
            raise ValueError("cache sizes and lifetimes cannot be negative")
        self._entries = dict(htpasswd.entries)
        self._www = (challenge("Basic", [("realm", realm), ("charset", "UTF-8")]),)
        strip = header_names([user_header]) if user_header else frozenset()
        self._allow: dict[str, AuthResult] = {}
        for user in self._entries:
            add = ((user_header.encode(), user.encode()),) if user_header else ()
            self._allow[user] = AuthResult.allow(DECIDED_BY, f"user:{user}", add, strip)
        self._deny = {r: AuthResult.deny(DECIDED_BY, 401, r, self._www) for r in _REASONS}
        self._ok: dict[bytes, _CacheEntry] = {}
        self._bad: dict[bytes, _CacheEntry] = {}
        self._ok_size, self._ok_ttl = cache_size, cache_ttl
        self._bad_size, self._bad_ttl = fail_cache_size, fail_cache_ttl
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        # The dummy hash unknown users are checked against: the file's most common cost.
        costs = Counter(int(h[4:6]) for h in self._entries.values())
        cost = costs.most_common(1)[0][0] if costs else 5
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))

    def _refuse(self, reason: str) -> AuthResult:
        result = self._deny.get(reason)
        return result if result is not None else AuthResult.deny(DECIDED_BY, 401, reason, self._www)

    def check(self, headers: Headers, now: float) -> AuthResult | SlowCheck:
        """The verdict, or the bcrypt work left to do. ``now`` dates cache entries: any
        steady clock, the same one on every call."""
        value, repeated = single_header(headers, b"authorization")
        if repeated:
            return self._refuse("Authorization repeated")
        if not value:
            return self._refuse("no credentials")
        key = hashlib.blake2b(value, key=self._secret, digest_size=32).digest()
        hit = self._ok.get(key)
        if hit is not None and now < hit[1]:
            return hit[0]
        hit = self._bad.get(key)
        if hit is not None and now < hit[1]:
            return hit[0]
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"basic":
            return self._refuse("not Basic credentials")
        try:
            decoded = b64decode(token.lstrip(b" "), validate=True)
        except (binascii.Error, ValueError):
            return self._refuse("malformed credentials: bad base64")
        raw_user, colon, password = decoded.partition(b":")
        if not colon:
            return self._refuse("malformed credentials: no colon")
        try:
            user = raw_user.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse("malformed credentials: not UTF-8")
        # The password is compared as bytes: only control characters are refused.
        if not _is_text(user) or _CONTROL.search(password):
            return self._refuse("malformed credentials: control characters")
        hashed = self._entries.get(user)
        return SlowCheck(DECIDED_BY, partial(self._verify, key, user, password, hashed, now))

    def check_blocking(self, headers: Headers, now: float) -> AuthResult:
        """``check`` with any bcrypt work done inline (tests, blocking callers)."""
        result = self.check(headers, now)
        return result.run() if isinstance(result, SlowCheck) else result

    def _verify(
        self, key: bytes, user: str, password: bytes, hashed: bytes | None, now: float
    ) -> AuthResult:
        """The bcrypt part; thread-safe (the caches change only under the lock)."""
        try:
            match = bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], hashed or self._dummy)
        except ValueError as exc:  # fail closed; the file was checked at load
            return self._refuse(f"bcrypt error: {exc}")
        if match and hashed is not None:
            result = self._allow[user]
            self._remember(self._ok, self._ok_size, key, result, now + self._ok_ttl)
        else:
            result = self._refuse("wrong password" if hashed is not None else "unknown user")
            self._remember(self._bad, self._bad_size, key, result, now + self._bad_ttl)
        return result

    def _remember(
        self,
        cache: dict[bytes, _CacheEntry],
        size: int,
        key: bytes,
        result: AuthResult,
        until: float,
    ) -> None:
        if size == 0:
            return
        with self._lock:
            cache.pop(key, None)
            while len(cache) >= size:
                del cache[next(iter(cache))]
            cache[key] = (result, until)
