"""Require a request header: a named field must be present (and, if values are given, carry
one of them), or the client gets 401 with a configurable ``WWW-Authenticate`` challenge.

Accepted values are kept as SHA-256 digests and a presented value is looked up by its
digest: the time the lookup takes says nothing about how much of a secret value (an API
key) was guessed right, unlike a byte-by-byte ``==``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ...http.headers import Headers
from .result import AuthResult, challenge, header_names, single_header

__all__ = ["RequireHeader"]

DECIDED_BY = "auth:header"


class RequireHeader:
    """``name`` must be present with a non-empty value, one of ``values`` when given.

    A repeated field is refused (two copies are ambiguous). ``strip`` removes the field
    from the upstream request once it was checked (an API key the backend need not see).
    """

    __slots__ = ("_allow", "_digests", "_missing", "_name", "_repeated", "_wrong")

    def __init__(
        self,
        name: str,
        values: Iterable[str] | None = None,
        *,
        realm: str = "ramparts",
        scheme: str = "ApiKey",
        strip: bool = False,
    ) -> None:
        (self._name,) = header_names([name])
        digests: set[bytes] = set()
        if values is not None:
            for value in values:
                if not value or value != value.strip(" \t"):
                    raise ValueError(f"{name}: an accepted value is empty or padded with blanks")
                digests.add(hashlib.sha256(value.encode()).digest())
            if not digests:
                raise ValueError(f"{name}: an empty list of accepted values accepts nothing")
        self._digests: frozenset[bytes] | None = frozenset(digests) if values is not None else None
        www = (challenge(scheme, [("realm", realm)]),)
        self._missing = AuthResult.deny(DECIDED_BY, 401, f"no {name} header", www)
        self._repeated = AuthResult.deny(DECIDED_BY, 401, f"{name} header repeated", www)
        self._wrong = AuthResult.deny(DECIDED_BY, 401, f"{name} has no accepted value", www)
        self._allow = AuthResult.allow(
            DECIDED_BY,
            f"header:{name}",
            strip_upstream=frozenset([self._name]) if strip else frozenset(),
        )

    def check(self, headers: Headers, now: float = 0.0) -> AuthResult:
        value, repeated = single_header(headers, self._name)
        if repeated:
            return self._repeated
        if not value:
            return self._missing
        if self._digests is not None and hashlib.sha256(value).digest() not in self._digests:
            return self._wrong
        return self._allow
