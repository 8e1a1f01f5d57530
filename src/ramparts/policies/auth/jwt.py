"""JWT bearer tokens (RFC 7519, RFC 6750): signature, algorithm pinning, key choice by
``kid``, time and audience claims against the caller's clock, and claims forwarded upstream.

Keys come from config, loaded once when the plan is built: an HMAC secret (a file or an
environment variable), PEM public keys or certificates, or a JWKS file. Signatures are
checked with PyJWT's algorithm implementations; everything around them is done here, so
that time is the ``now`` the caller passes (PyJWT's own claim checks read the wall clock)
and every refusal has one exact reason.

Rules, in the order they are applied:

- The accepted algorithms are pinned in config. ``none`` never is. A config that pins an
  HMAC algorithm (HS*) alongside a public key, or a public-key algorithm alongside an HMAC
  secret, is refused: that mix is the key-confusion attack (a token HMAC-signed with the
  public key as the secret). HMAC secrets shorter than the hash are refused (RFC 7518
  3.2), and so are RSA keys under 2048 bits, private keys and JWKs carrying private parts.
- Key choice: a token with a ``kid`` uses the key of that ``kid``; an unknown ``kid`` is
  refused, unless the config holds a single key without a ``kid`` (then it is that key).
  A token without ``kid`` uses the only key if there is exactly one usable key, and is
  refused when there are several (trying each would let one token cost N verifications).
  The key must fit the token's algorithm: family, curve, and the JWK's ``alg`` if it has one.
- Claims, with ``leeway`` seconds of clock skew (PyJWT's comparisons): refused when
  ``now >= exp + leeway``, ``now < nbf - leeway`` or ``iat > now + leeway`` (a test checks
  these against PyJWT itself on a frozen clock); a time claim that is not a finite number
  is refused (Python's json would read NaN, and NaN compares false); ``iss`` must be
  one of ``issuer`` when set; ``aud`` must name one of ``audience`` when set, and a token
  that names an audience is refused when none is configured (RFC 7519 4.1.3, as PyJWT).
  ``required_claims`` (``exp`` by default: a token without it never expires) must be there.
  ``sub``, when present, must be a string without control characters (it names the
  identity in the access log: ``sub:<sub>``, or ``jwt`` without one).
- ``claim_headers`` maps claims to upstream request fields (``sub`` -> ``X-User``); the
  client's own copies of those fields are always removed. Strings, numbers, booleans and
  lists of strings or numbers (joined with ``,``) can be forwarded; a claim that cannot be
  forwarded exactly (an object, a control character, a list item holding a comma) fails
  the token rather than being sent half-true.

Refusals are 401 with ``WWW-Authenticate: Bearer realm=..., error="invalid_token",
error_description=...`` (RFC 6750 3), or without ``error`` when the request has no bearer
token at all, or credentials of another scheme (RFC 6750 3.1). A malformed request (an empty
token, two Authorization fields) is 401 ``invalid_token`` too, not RFC 6750's 400
``invalid_request``: every failure to authenticate answers alike. The descriptions are fixed
strings, never token content.

Verified tokens are cached (bounded, oldest out first), keyed by the token itself and kept
only while the token is valid (``nbf``/``iat`` to ``exp``, plus leeway; ``cache_ttl`` for a
token without ``exp``): a hit is one dict lookup and one chained comparison. Failures are
not cached: refusing a token costs at most one signature check.
"""

from __future__ import annotations

import binascii
import json
import re
from base64 import urlsafe_b64decode
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import (
    Algorithm,
    ECAlgorithm,
    HMACAlgorithm,
    OKPAlgorithm,
    RSAAlgorithm,
    get_default_algorithms,
)
from jwt.exceptions import InvalidKeyError

from ...errors import ConfigError
from ...http.headers import Headers
from .result import AuthResult, challenge, header_names, single_header

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_CACHE_TTL",
    "MAX_TOKEN_LENGTH",
    "SUPPORTED_ALGORITHMS",
    "JwtAuth",
    "JwtKey",
    "hmac_key",
    "hmac_secret_from_env",
    "load_hmac_secret",
    "load_jwks",
    "load_public_key",
    "parse_jwks",
    "public_key_from_pem",
]

DECIDED_BY = "auth:jwt"
DEFAULT_CACHE_SIZE = 1024
#: How long a verified token without ``exp`` stays cached.
DEFAULT_CACHE_TTL = 300.0
#: Longer tokens are refused before any parsing (this also bounds the cache's memory).
MAX_TOKEN_LENGTH = 8192
MIN_RSA_BITS = 2048

PublicKey = RSAPublicKey | EllipticCurvePublicKey | Ed25519PublicKey | Ed448PublicKey
KeyMaterial = bytes | PublicKey

_FAMILY = {
    "HS256": "hmac",
    "HS384": "hmac",
    "HS512": "hmac",
    "RS256": "rsa",
    "RS384": "rsa",
    "RS512": "rsa",
    "PS256": "rsa",
    "PS384": "rsa",
    "PS512": "rsa",
    "ES256": "ec",
    "ES384": "ec",
    "ES512": "ec",
    "EdDSA": "okp",
}
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset(_FAMILY)
_CURVE = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
#: RFC 7518 3.2: an HMAC key at least as long as the hash output.
_HMAC_MIN = {"HS256": 32, "HS384": 48, "HS512": 64}
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth")
_B64URL = re.compile(rb"[A-Za-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class JwtKey:
    """One verification key: an HMAC secret (bytes) or a public key, its ``kid`` if it has
    one, the single algorithm it may verify when its JWK says so, and where it came from."""

    key: KeyMaterial
    kid: str | None = None
    alg: str | None = None
    source: str = "<key>"

    @property
    def family(self) -> str:
        key = self.key
        if isinstance(key, bytes):
            return "hmac"
        if isinstance(key, RSAPublicKey):
            return "rsa"
        if isinstance(key, EllipticCurvePublicKey):
            return "ec"
        return "okp"

    def fits(self, alg: str) -> bool:
        """Whether this key may verify a token signed with ``alg``."""
        if self.alg is not None and self.alg != alg:
            return False
        if _FAMILY.get(alg) != self.family:
            return False
        curve = _CURVE.get(alg)
        if curve is not None:
            assert isinstance(self.key, EllipticCurvePublicKey)
            return self.key.curve.name == curve
        if alg in _HMAC_MIN:
            assert isinstance(self.key, bytes)
            return len(self.key) >= _HMAC_MIN[alg]
        return True


# ---------------------------------------------------------------------------------- keys


def _checked_public(key: object, source: str, *, field: str | None = None) -> PublicKey:
    if isinstance(key, RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"the RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are needed",
                file=source,
                field=field,
            )
        return key
    if isinstance(key, EllipticCurvePublicKey):
        if key.curve.name not in _CURVE.values():
            raise ConfigError(
                f"unsupported curve {key.curve.name} (P-256, P-384 and P-521 are)",
                file=source,
                field=field,
            )
        return key
    if isinstance(key, Ed25519PublicKey | Ed448PublicKey):
        return key
    raise ConfigError(
        f"not an RSA, EC or EdDSA public key ({type(key).__name__})", file=source, field=field
    )


def hmac_key(secret: bytes, *, kid: str | None = None, source: str = "<secret>") -> JwtKey:
    """An HMAC secret as a key; refuses an empty one and anything shaped like a public key
    (PEM, SSH, DER, JWK JSON: the key-confusion attack's ingredient)."""
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except InvalidKeyError as exc:
        raise ConfigError(f"unusable HMAC secret: {exc}", file=source) from None
    return JwtKey(key=bytes(secret), kid=kid, source=source)


def load_hmac_secret(path: str | Path, *, kid: str | None = None) -> JwtKey:
    """The HMAC secret in the file at ``path`` (trailing line ends removed)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the secret: {exc}", file=str(p)) from None
    return hmac_key(data.rstrip(b"\r\n"), kid=kid, source=str(p))


def hmac_secret_from_env(
    name: str, environ: Mapping[str, str], *, kid: str | None = None
) -> JwtKey:
    """The HMAC secret in environment variable ``name`` of ``environ`` (pass ``os.environ``)."""
    value = environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is not set or empty", file="<env>")
    return hmac_key(value.encode(), kid=kid, source=f"${name}")


def public_key_from_pem(data: bytes, *, kid: str | None = None, source: str = "<pem>") -> JwtKey:
    """A PEM public key or X.509 certificate as a key. Private keys are refused: the gateway
    verifies, it never needs the signing key."""
    if b"PRIVATE KEY" in data:
        raise ConfigError("a private key: give the public key (or certificate)", file=source)
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"not a PEM public key or certificate: {exc}", file=source) from None
    return JwtKey(key=_checked_public(key, source), kid=kid, source=source)


def load_public_key(path: str | Path, *, kid: str | None = None) -> JwtKey:
    """The PEM public key or certificate in the file at ``path``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the key: {exc}", file=str(p)) from None
    return public_key_from_pem(data, kid=kid, source=str(p))


def _jwk_key(jwk: dict[str, Any], source: str, field: str) -> KeyMaterial:
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            return _checked_public(RSAAlgorithm.from_jwk(jwk), source, field=field)
        if kty == "EC":
            return _checked_public(ECAlgorithm.from_jwk(jwk), source, field=field)
        if kty == "OKP":
            return _checked_public(OKPAlgorithm.from_jwk(jwk), source, field=field)
        if kty == "oct":
            secret = HMACAlgorithm.from_jwk(jwk)
            return hmac_key(secret, source=source).key
    except (InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"unusable key: {exc}", file=source, field=field) from None
    raise ConfigError(f"unsupported key type {kty!r}", file=source, field=field)


def parse_jwks(text: str, file: str = "<jwks>") -> tuple[JwtKey, ...]:
    """The signature keys of a JWKS document (RFC 7517 5). Keys marked for encryption
    (``use`` other than ``sig``, or ``key_ops`` without ``verify``) are skipped; a key
    that cannot be used, private key parts, a duplicate ``kid`` or no key at all is a
    ``ConfigError``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not JSON: {exc.msg}", file=file, line=exc.lineno) from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ConfigError('a JWKS is an object with a "keys" list', file=file)
    out: list[JwtKey] = []
    seen: set[str] = set()
    for i, jwk in enumerate(data["keys"]):
        field = f"keys.{i}"
        if not isinstance(jwk, dict):
            raise ConfigError("a key is a JSON object", file=file, field=field)
        use, ops = jwk.get("use"), jwk.get("key_ops")
        if (use is not None and use != "sig") or (isinstance(ops, list) and "verify" not in ops):
            continue
        if any(m in jwk for m in _PRIVATE_JWK_MEMBERS):
            raise ConfigError(
                "private key material in a JWKS: publish the public key only",
                file=file,
                field=field,
            )
        kid, alg = jwk.get("kid"), jwk.get("alg")
        if kid is not None and not isinstance(kid, str):
            raise ConfigError("kid is not a string", file=file, field=field)
        if alg is not None and alg not in SUPPORTED_ALGORITHMS:
            raise ConfigError(f"unsupported alg {alg!r}", file=file, field=field)
        if kid is not None:
            if kid in seen:
                raise ConfigError(f"kid {kid!r} appears twice", file=file, field=field)
            seen.add(kid)
        key = JwtKey(key=_jwk_key(jwk, file, field), kid=kid, alg=alg, source=file)
        if alg is not None and not key.fits(alg):
            raise ConfigError(f"the key does not fit its alg {alg}", file=file, field=field)
        out.append(key)
    if not out:
        raise ConfigError("no signature key in the JWKS", file=file)
    return tuple(out)


def load_jwks(path: str | Path) -> tuple[JwtKey, ...]:
    """The signature keys of the JWKS file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the JWKS: {exc}", file=str(p)) from None
    return parse_jwks(text, str(p))


# -------------------------------------------------------------------------------- engine


class _Refused(Exception):
    """A token refusal inside ``JwtAuth._verify``; ``args[0]`` is the fixed reason."""


def _b64url(segment: bytes) -> bytes:
    if not _B64URL.fullmatch(segment):
        raise _Refused("malformed token: bad base64url")
    try:
        return urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise _Refused("malformed token: bad base64url") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN and Infinity


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise _Refused(f"malformed token: {what} is not JSON") from None
    if not isinstance(value, dict):
        raise _Refused(f"malformed token: {what} is not a JSON object")
    return value


def _number(payload: dict[str, Any], claim: str) -> float | None:
    value = payload.get(claim)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused(f"{claim} is not a number")
    try:
        return float(value)
    except OverflowError:
        raise _Refused(f"{claim} is not a number") from None


def _forwardable(value: object) -> bytes | None:
    """A claim as a header value, or None when it cannot be forwarded exactly."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    elif isinstance(value, list):
        items = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                return None
            item = str(item)
            if "," in item:
                return None
            items.append(item)
        text = ",".join(items)
    else:
        return None
    if _CONTROL.search(text):
        return None
    return text.encode()


class JwtAuth:
    """Bearer JWT authentication; see the module doc for the rules and the cache."""

    __slots__ = (
        "_algorithms",
        "_audience",
        "_by_kid",
        "_cache",
        "_cache_size",
        "_cache_ttl",
        "_claim_headers",
        "_denials",
        "_issuer",
        "_leeway",
        "_max_length",
        "_missing",
        "_realm",
        "_required",
        "_single",
        "_strip",
        "_verifiers",
    )

    def __init__(
        self,
        keys: Iterable[JwtKey],
        algorithms: Iterable[str],
        *,
        issuer: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        leeway: float = 0.0,
        required_claims: Iterable[str] = ("exp",),
        claim_headers: Mapping[str, str] | None = None,
        realm: str = "ramparts",
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        max_token_length: int = MAX_TOKEN_LENGTH,
    ) -> None:
        keys = tuple(keys)
        algs = tuple(dict.fromkeys(algorithms))
        if not algs:
            raise ValueError("no algorithm is accepted: pin at least one")
        for alg in algs:
            if alg.lower() == "none":
                raise ValueError('alg "none" (unsigned tokens) is never accepted')
            if alg not in SUPPORTED_ALGORITHMS:
                known = ", ".join(sorted(SUPPORTED_ALGORITHMS))
                raise ValueError(f"unsupported algorithm {alg!r} (supported: {known})")
        if not keys:
            raise ValueError("no verification key")
        hmac_algs = [a for a in algs if _FAMILY[a] == "hmac"]
        public_algs = [a for a in algs if _FAMILY[a] != "hmac"]
        for key in keys:
            if hmac_algs and key.family != "hmac":
                raise ValueError(
                    f"{hmac_algs[0]} is pinned but {key.source} holds a public key: a token "
                    "HMAC-signed with the public key as the secret would pass (key confusion)"
                )
            if public_algs and key.family == "hmac":
                raise ValueError(
                    f"{public_algs[0]} is pinned but {key.source} holds an HMAC secret: "
                    "pin HS256/HS384/HS512 for secrets"
                )
        for alg in algs:
            if not any(key.fits(alg) for key in keys):
                need = f" of at least {_HMAC_MIN[alg]} bytes" if alg in _HMAC_MIN else ""
                raise ValueError(f"{alg} is pinned but no key{need} fits it")
        usable = [key for key in keys if any(key.fits(alg) for alg in algs)]
        by_kid: dict[str, JwtKey] = {}
        for key in usable:
            if key.kid is not None:
                if key.kid in by_kid:
                    raise ValueError(f"two keys have kid {key.kid!r}")
                by_kid[key.kid] = key
        if leeway < 0 or cache_size < 0 or cache_ttl < 0 or max_token_length < 1:
            raise ValueError("leeway, cache size and lifetime cannot be negative")
        self._algorithms = frozenset(algs)
        registry = get_default_algorithms()
        self._verifiers: dict[str, Algorithm] = {alg: registry[alg] for alg in algs}
        self._by_kid = by_kid
        self._single = usable[0] if len(usable) == 1 else None
        self._issuer = frozenset([issuer] if isinstance(issuer, str) else issuer or ())
        if issuer is not None and not self._issuer:
            raise ValueError("an empty issuer list accepts no token")
        self._audience = frozenset([audience] if isinstance(audience, str) else audience or ())
        if audience is not None and not self._audience:
            raise ValueError("an empty audience list accepts no token")
        self._leeway = float(leeway)
        self._required = tuple(dict.fromkeys(required_claims))
        mapping = dict(claim_headers or {})
        self._strip = header_names(mapping.values())
        self._claim_headers = tuple((claim, name.encode()) for claim, name in mapping.items())
        self._realm = realm
        self._missing = AuthResult.deny(
            DECIDED_BY, 401, "no bearer token", (challenge("Bearer", [("realm", realm)]),)
        )
        self._denials: dict[str, AuthResult] = {}
        self._cache: dict[bytes, tuple[AuthResult, float, float]] = {}
        self._cache_size = cache_size
        self._cache_ttl = cache_ttl
        self._max_length = max_token_length

    def _refuse(self, reason: str) -> AuthResult:
        # Reasons are fixed strings (and config claim names): a small, bounded set.
        result = self._denials.get(reason)
        if result is not None:
            return result
        www = challenge(
            "Bearer",
            [("realm", self._realm), ("error", "invalid_token"), ("error_description", reason)],
        )
        result = self._denials[reason] = AuthResult.deny(DECIDED_BY, 401, reason, (www,))
        return result

    def check(self, headers: Headers, now: float) -> AuthResult:
        """Allow or refuse the request's bearer token at time ``now`` (epoch seconds)."""
        value, repeated = single_header(headers, b"authorization")
        if repeated:
            return self._refuse("Authorization repeated")
        if not value:
            return self._missing
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"bearer":
            return self._missing  # another scheme: no bearer token (RFC 6750 3.1)
        token = token.strip(b" ")
        hit = self._cache.get(token)
        if hit is not None and hit[1] <= now < hit[2]:
            return hit[0]
        try:
            result, valid_from, valid_until = self._verify(token, now)
        except _Refused as exc:
            if hit is not None:
                self._cache.pop(token, None)
            return self._refuse(str(exc.args[0]))
        if self._cache_size:
            cache = self._cache
            while len(cache) >= self._cache_size:
                del cache[next(iter(cache))]
            cache[token] = (result, valid_from, valid_until)
        return result

    def _verify(self, token: bytes, now: float) -> tuple[AuthResult, float, float]:
        if not token:
            raise _Refused("empty token")
        if len(token) > self._max_length:
            raise _Refused("token too long")
        segments = token.split(b".")
        if len(segments) == 5:
            raise _Refused("encrypted tokens (JWE) are not accepted")
        if len(segments) != 3:
            raise _Refused("malformed token: not three segments")
        header = _json_object(_b64url(segments[0]), "header")
        signature = _b64url(segments[2])
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _Refused("algorithm not accepted")
        if "crit" in header or header.get("b64", True) is not True:
            raise _Refused("unsupported critical header")
        kid = header.get("kid")
        if kid is None:
            key = self._single
            if key is None:
                raise _Refused("no kid and several keys")
        elif not isinstance(kid, str):
            raise _Refused("malformed token: kid is not a string")
        else:
            key = self._by_kid.get(kid)
            if key is None:
                single = self._single
                if single is None or single.kid is not None:
                    raise _Refused("unknown kid")
                key = single
        if not key.fits(alg):
            raise _Refused("key does not fit the algorithm")
        signing_input = token[: len(segments[0]) + 1 + len(segments[1])]
        try:
            good = self._verifiers[alg].verify(signing_input, key.key, signature)
        except (ValueError, TypeError, InvalidKeyError):
            good = False
        if not good:
            raise _Refused("bad signature")
        payload = _json_object(_b64url(segments[1]), "payload")
        return self._claims(payload, now)

    def _claims(self, payload: dict[str, Any], now: float) -> tuple[AuthResult, float, float]:
        for claim in self._required:
            if payload.get(claim) is None:
                raise _Refused(f"missing claim {claim}")
        leeway = self._leeway
        valid_from = float("-inf")
        valid_until = now + self._cache_ttl
        iat = _number(payload, "iat")
        if iat is not None:
            if iat > now + leeway:
                raise _Refused("token issued in the future")
            valid_from = iat - leeway
        nbf = _number(payload, "nbf")
        if nbf is not None:
            if nbf > now + leeway:
                raise _Refused("token not yet valid")
            valid_from = max(valid_from, nbf - leeway)
        exp = _number(payload, "exp")
        if exp is not None:
            if exp <= now - leeway:
                raise _Refused("token expired")
            valid_until = exp + leeway
        if self._issuer:
            iss = payload.get("iss")
            if iss is None:
                raise _Refused("missing claim iss")
            if not isinstance(iss, str) or iss not in self._issuer:
                raise _Refused("wrong issuer")
        aud = payload.get("aud")
        if self._audience:
            if not aud:
                raise _Refused("missing claim aud")
            auds = [aud] if isinstance(aud, str) else aud
            if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
                raise _Refused("malformed aud")
            if self._audience.isdisjoint(auds):
                raise _Refused("wrong audience")
        elif aud:
            raise _Refused("token has an audience and none is configured")
        sub = payload.get("sub")
        if sub is not None and (not isinstance(sub, str) or _CONTROL.search(sub)):
            raise _Refused("sub is not a string of text")
        add = []
        for claim, name in self._claim_headers:
            value = payload.get(claim)
            if value is None:
                continue
            encoded = _forwardable(value)
            if encoded is None:
                raise _Refused(f"claim {claim} cannot be forwarded")
            add.append((name, encoded))
        identity = f"sub:{sub}" if sub is not None else "jwt"
        result = AuthResult.allow(DECIDED_BY, identity, tuple(add), self._strip)
        return result, valid_from, valid_until
