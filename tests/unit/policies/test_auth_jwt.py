"""JWT bearer tokens: every algorithm family, key loading and pinning (the key-confusion
attack), key choice by kid, the claims against a fake clock (leeway boundaries, checked
against PyJWT's own rules), claims forwarded upstream, every failure as 401, the cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.clock import FakeClock
from ramparts.errors import ConfigError
from ramparts.http.headers import Headers
from ramparts.policies.auth import (
    AuthResult,
    JwtAuth,
    hmac_key,
    hmac_secret_from_env,
    load_hmac_secret,
    load_jwks,
    load_public_key,
    parse_jwks,
    public_key_from_pem,
)

NOW = 1_700_000_000.0
SECRET = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"  # 64 bytes
PEM = serialization.Encoding.PEM
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


# ------------------------------------------------------------------------------- helpers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: object) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def bearer(token: str | bytes) -> Headers:
    raw = token.encode() if isinstance(token, str) else token
    return [(b"Host", b"api.example"), (b"Authorization", b"Bearer " + raw)]


def claims(**extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"sub": "123", "iat": int(NOW) - 10, "exp": int(NOW) + 300}
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_other() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "ES384": ec.generate_private_key(ec.SECP384R1()),
        "ES512": ec.generate_private_key(ec.SECP521R1()),
    }


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_pem(private: Any) -> bytes:
    data: bytes = private.public_key().public_bytes(PEM, SPKI)
    return data


def rsa_engine(private: rsa.RSAPrivateKey, **kw: Any) -> JwtAuth:
    kw.setdefault("algorithms", ["RS256"])
    return JwtAuth([public_key_from_pem(public_pem(private))], realm="api", **kw)


def hs_engine(**kw: Any) -> JwtAuth:
    kw.setdefault("algorithms", ["HS256"])
    return JwtAuth([hmac_key(SECRET)], realm="api", **kw)


def hs(payload: dict[str, Any], **headers: Any) -> str:
    return jwt.encode(payload, SECRET, algorithm="HS256", headers=headers or None)


def hs_raw(payload: object, **header: Any) -> str:
    """HS256 over exactly this payload (PyJWT's encode refuses some bad claims)."""
    signing_input = f"{segment({'alg': 'HS256', **header})}.{segment(payload)}"
    sig = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


def invalid(result: AuthResult, reason: str) -> None:
    assert not result.ok
    assert result.status == 401
    assert result.decided_by == "auth:jwt"
    assert result.reason == reason
    assert result.response_headers == (
        (
            b"WWW-Authenticate",
            b'Bearer realm="api", error="invalid_token", error_description="%s"' % reason.encode(),
        ),
    )


# ---------------------------------------------------------------------------- algorithms


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])
def test_rsa_algorithms(rsa_key: rsa.RSAPrivateKey, alg: str) -> None:
    engine = rsa_engine(rsa_key, algorithms=[alg])
    token = jwt.encode(claims(), rsa_key, algorithm=alg)
    result = engine.check(bearer(token), NOW)
    assert result.ok and result.identity == "sub:123" and result.decided_by == "auth:jwt"


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_ec_algorithms(ec_keys: dict[str, ec.EllipticCurvePrivateKey], alg: str) -> None:
    private = ec_keys[alg]
    engine = JwtAuth([public_key_from_pem(public_pem(private))], [alg])
    assert engine.check(bearer(jwt.encode(claims(), private, algorithm=alg)), NOW).ok


def test_eddsa(ed_key: ed25519.Ed25519PrivateKey) -> None:
    engine = JwtAuth([public_key_from_pem(public_pem(ed_key))], ["EdDSA"])
    assert engine.check(bearer(jwt.encode(claims(), ed_key, algorithm="EdDSA")), NOW).ok


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_algorithms(alg: str) -> None:
    engine = hs_engine(algorithms=[alg])
    assert engine.check(bearer(jwt.encode(claims(), SECRET, algorithm=alg)), NOW).ok


def test_a_certificate_gives_its_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(rsa_key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
        .sign(rsa_key, hashes.SHA256())
    )
    key = public_key_from_pem(cert.public_bytes(PEM))
    engine = JwtAuth([key], ["RS256"])
    assert engine.check(bearer(jwt.encode(claims(), rsa_key, algorithm="RS256")), NOW).ok


# ------------------------------------------------------------------------- config, keys


def test_alg_none_is_never_pinned() -> None:
    for none in ("none", "None", "NONE"):
        with pytest.raises(ValueError, match="never accepted"):
            hs_engine(algorithms=["HS256", none])


@pytest.mark.parametrize("algs", [[], ["HS1"], ["ES256K"], ["RSA-OAEP"]])
def test_unknown_or_empty_algorithm_lists_are_refused(algs: list[str]) -> None:
    with pytest.raises(ValueError):
        hs_engine(algorithms=algs)


def test_pinning_hs_with_a_public_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="key confusion"):
        rsa_engine(rsa_key, algorithms=["RS256", "HS256"])
    with pytest.raises(ValueError, match="key confusion"):
        JwtAuth([hmac_key(SECRET), public_key_from_pem(public_pem(rsa_key))], ["HS256"])


def test_pinning_rs_with_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="HMAC secret"):
        hs_engine(algorithms=["RS256"])
    with pytest.raises(ValueError, match="HMAC secret"):
        hs_engine(algorithms=["HS256", "ES256"])


def test_a_pinned_algorithm_needs_a_key_that_fits(
    ec_keys: dict[str, ec.EllipticCurvePrivateKey],
) -> None:
    p384 = public_key_from_pem(public_pem(ec_keys["ES384"]))
    with pytest.raises(ValueError, match="ES256 is pinned but no key fits"):
        JwtAuth([p384], ["ES256"])
    # RFC 7518 3.2: an HMAC key at least as long as the hash.
    with pytest.raises(ValueError, match="at least 64 bytes"):
        JwtAuth([hmac_key(SECRET[:32])], ["HS512"])
    with pytest.raises(ValueError, match="at least 32 bytes"):
        JwtAuth([hmac_key(b"short")], ["HS256"])


def test_hmac_secrets_shaped_like_public_keys_are_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigError, match="asymmetric key"):
        hmac_key(public_pem(rsa_key))
    with pytest.raises(ConfigError, match="empty"):
        hmac_key(b"")


def test_private_and_weak_keys_are_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    private = rsa_key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigError, match="private key"):
        public_key_from_pem(private, source="signer.pem")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigError, match="1024 bits"):
        public_key_from_pem(public_pem(weak))
    with pytest.raises(ConfigError, match="not a PEM"):
        public_key_from_pem(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    k1 = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(ConfigError, match="unsupported curve"):
        public_key_from_pem(public_pem(k1))


def test_key_files_and_environment(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    assert load_hmac_secret(tmp_path / "secret").key == SECRET
    assert hmac_secret_from_env("JWT_SECRET", {"JWT_SECRET": SECRET.decode()}).key == SECRET
    with pytest.raises(ConfigError, match="JWT_SECRET is not set"):
        hmac_secret_from_env("JWT_SECRET", {})
    (tmp_path / "pub.pem").write_bytes(public_pem(rsa_key))
    key = load_public_key(tmp_path / "pub.pem", kid="k1")
    assert key.kid == "k1" and key.family == "rsa"
    for loader in (load_hmac_secret, load_public_key, load_jwks):
        with pytest.raises(ConfigError, match="cannot read"):
            loader(tmp_path / "missing")


# -------------------------------------------------------------------------------- JWKS


def jwk(private: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    if isinstance(private, rsa.RSAPrivateKey):
        out: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        out = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        out = jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    if kid is not None:
        out["kid"] = kid
    out.update(extra)
    return out


@pytest.fixture(scope="module")
def jwks_engine(
    rsa_key: rsa.RSAPrivateKey,
    rsa_other: rsa.RSAPrivateKey,
    ec_keys: dict[str, ec.EllipticCurvePrivateKey],
) -> JwtAuth:
    doc = {
        "keys": [
            jwk(rsa_key, "rsa-1", use="sig", alg="RS256"),
            jwk(rsa_other, "rsa-2"),
            jwk(ec_keys["ES256"], "ec-1"),
            jwk(rsa_other, "enc-1", use="enc"),  # skipped: an encryption key
        ]
    }
    keys = parse_jwks(json.dumps(doc), "jwks.json")
    assert [k.kid for k in keys] == ["rsa-1", "rsa-2", "ec-1"]
    return JwtAuth(keys, ["RS256", "PS256", "ES256"], realm="api")


def test_jwks_picks_the_key_by_kid(
    jwks_engine: JwtAuth,
    rsa_key: rsa.RSAPrivateKey,
    rsa_other: rsa.RSAPrivateKey,
    ec_keys: dict[str, ec.EllipticCurvePrivateKey],
) -> None:
    def token(private: Any, alg: str, kid: str) -> str:
        return jwt.encode(claims(), private, algorithm=alg, headers={"kid": kid})

    assert jwks_engine.check(bearer(token(rsa_key, "RS256", "rsa-1")), NOW).ok
    assert jwks_engine.check(bearer(token(rsa_other, "PS256", "rsa-2")), NOW).ok
    assert jwks_engine.check(bearer(token(ec_keys["ES256"], "ES256", "ec-1")), NOW).ok
    # Signed by rsa-1's private key but naming rsa-2: the wrong key, a bad signature.
    invalid(jwks_engine.check(bearer(token(rsa_key, "RS256", "rsa-2")), NOW), "bad signature")
    # rsa-1's JWK says alg RS256: a PS256 token cannot use it.
    invalid(
        jwks_engine.check(bearer(token(rsa_key, "PS256", "rsa-1")), NOW),
        "key does not fit the algorithm",
    )
    # An RSA token naming the EC key.
    invalid(
        jwks_engine.check(bearer(token(rsa_key, "RS256", "ec-1")), NOW),
        "key does not fit the algorithm",
    )


def test_jwks_unknown_kid_is_refused(jwks_engine: JwtAuth, rsa_key: rsa.RSAPrivateKey) -> None:
    for kid in ("rsa-3", "enc-1", ""):
        token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": kid})
        invalid(jwks_engine.check(bearer(token), NOW), "unknown kid")


def test_jwks_several_keys_and_no_kid_is_refused(
    jwks_engine: JwtAuth, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    invalid(jwks_engine.check(bearer(token), NOW), "no kid and several keys")


def test_jwks_with_one_key_serves_tokens_without_kid(rsa_key: rsa.RSAPrivateKey) -> None:
    keys = parse_jwks(json.dumps({"keys": [jwk(rsa_key, "only")]}))
    engine = JwtAuth(keys, ["RS256"], realm="api")
    assert engine.check(bearer(jwt.encode(claims(), rsa_key, algorithm="RS256")), NOW).ok
    # With a kid, the kid must match.
    other = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "other"})
    invalid(engine.check(bearer(other), NOW), "unknown kid")


def test_a_single_key_without_kid_serves_any_kid(rsa_key: rsa.RSAPrivateKey) -> None:
    engine = rsa_engine(rsa_key)
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "anything"})
    assert engine.check(bearer(token), NOW).ok


def test_keys_usable_by_no_pinned_algorithm_do_not_count(
    rsa_key: rsa.RSAPrivateKey, ec_keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    keys = parse_jwks(json.dumps({"keys": [jwk(rsa_key, "r"), jwk(ec_keys["ES256"], "e")]}))
    engine = JwtAuth(keys, ["RS256"])
    assert engine.check(bearer(jwt.encode(claims(), rsa_key, algorithm="RS256")), NOW).ok


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{", "not JSON"),
        ("[]", '"keys" list'),
        ('{"keys": []}', "no signature key"),
        ('{"keys": [1]}', "a key is a JSON object"),
        ('{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"}]}', "private key"),
        ('{"keys": [{"kty": "XYZ"}]}', "unsupported key type"),
        ('{"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]}', "unusable key"),
        ('{"keys": [{"kty": "RSA", "kid": 7}]}', "kid is not a string"),
        ('{"keys": [{"kty": "RSA", "alg": "RSA-OAEP"}]}', "unsupported alg"),
        ('{"keys": [{"kty": "oct", "k": "c2hvcnQ", "use": "enc"}]}', "no signature key"),
    ],
)
def test_bad_jwks_documents_are_config_errors(doc: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_jwks(doc, "jwks.json")
    assert err.value.file == "jwks.json"


def test_jwks_duplicate_kid_and_mismatched_alg(
    rsa_key: rsa.RSAPrivateKey, ec_keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    with pytest.raises(ConfigError, match="appears twice") as err:
        parse_jwks(json.dumps({"keys": [jwk(rsa_key, "a"), jwk(rsa_key, "a")]}))
    assert err.value.field == "keys.1"
    with pytest.raises(ConfigError, match="does not fit its alg ES256"):
        parse_jwks(json.dumps({"keys": [jwk(rsa_key, "a", alg="ES256")]}))


def test_jwks_symmetric_keys_and_file(tmp_path: Path) -> None:
    doc = {"keys": [{"kty": "oct", "kid": "h", "k": b64url(SECRET)}]}
    (tmp_path / "jwks.json").write_text(json.dumps(doc))
    engine = JwtAuth(load_jwks(tmp_path / "jwks.json"), ["HS512"])
    token = jwt.encode(claims(), SECRET, algorithm="HS512", headers={"kid": "h"})
    assert engine.check(bearer(token), NOW).ok


# ---------------------------------------------------------------------- failure modes


def test_no_token_is_401_without_an_error_code() -> None:
    engine = hs_engine()
    challenge = ((b"WWW-Authenticate", b'Bearer realm="api"'),)
    for headers in ([(b"Host", b"a")], [(b"Host", b"a"), (b"Authorization", b"")]):
        result = engine.check(headers, NOW)
        assert result.status == 401 and result.response_headers == challenge
    # Another scheme is "no bearer token" too (RFC 6750 3.1).
    result = engine.check([(b"Authorization", b"Basic YTpi")], NOW)
    assert result.status == 401 and result.response_headers == challenge
    assert result.reason == "no bearer token"


def forge_none() -> str:
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims())}."


MALFORMED = [
    ("garbage", "malformed token: not three segments"),
    ("a.b", "malformed token: not three segments"),
    ("a.b.c.d", "malformed token: not three segments"),
    ("a.b.c.d.e", "encrypted tokens (JWE) are not accepted"),
    ("..", "malformed token: header is not JSON"),
    ("...", "malformed token: not three segments"),
    ("!!.e30.sig", "malformed token: bad base64url"),
    ("eyJhbGciOiJIUzI1NiJ9.e30.a", "malformed token: bad base64url"),  # 1 char: impossible
    (f"{b64url(b'[1]')}.e30.", "malformed token: header is not a JSON object"),
    (f"{segment({'typ': 'JWT'})}.e30.", "algorithm not accepted"),
    (f"{segment({'alg': 7})}.e30.", "algorithm not accepted"),
    (forge_none(), "algorithm not accepted"),
    (
        forge_none().replace(segment({"alg": "none", "typ": "JWT"}), segment({"alg": "NONE"})),
        "algorithm not accepted",
    ),
]


@pytest.mark.parametrize(("token", "reason"), MALFORMED)
def test_malformed_and_unsigned_tokens_are_401(token: str, reason: str) -> None:
    invalid(hs_engine().check(bearer(token), NOW), reason)


def test_alg_none_is_refused_even_with_a_valid_looking_signature() -> None:
    header = segment({"alg": "none"})
    body = segment(claims())
    sig = b64url(hmac.new(SECRET, f"{header}.{body}".encode(), hashlib.sha256).digest())
    invalid(hs_engine().check(bearer(f"{header}.{body}.{sig}"), NOW), "algorithm not accepted")


def test_key_confusion_hs256_signed_with_the_rsa_public_key_fails(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    """The classic attack: the public key is public, so an attacker HMAC-signs a token with
    its PEM as the secret and sets alg HS256, hoping the verifier feeds the same "key"
    to HMAC."""
    pem = public_pem(rsa_key)
    header = segment({"alg": "HS256", "typ": "JWT"})
    body = segment(claims(sub="admin"))
    signing_input = f"{header}.{body}".encode()
    forged = f"{header}.{body}.{b64url(hmac.new(pem, signing_input, hashlib.sha256).digest())}"
    # It is a real forgery: a verifier that takes the key bytes as an HMAC secret accepts it.
    sig = base64.urlsafe_b64decode(forged.split(".")[2] + "==")
    assert hmac.compare_digest(sig, hmac.new(pem, signing_input, hashlib.sha256).digest())
    # ramparts pins RS256 for this key: HS256 is not accepted ...
    engine = rsa_engine(rsa_key)
    invalid(engine.check(bearer(forged), NOW), "algorithm not accepted")
    # ... and could not be: a config pinning HS256 with this key is refused ...
    with pytest.raises(ValueError, match="key confusion"):
        rsa_engine(rsa_key, algorithms=["RS256", "HS256"])
    # ... and the PEM cannot be made an HMAC secret either (PyJWT's own guard).
    with pytest.raises(ConfigError):
        hmac_key(pem)
    with pytest.raises(jwt.InvalidKeyError):
        jwt.decode(forged, pem, algorithms=["HS256"])


def test_signature_failures(rsa_key: rsa.RSAPrivateKey, rsa_other: rsa.RSAPrivateKey) -> None:
    engine = rsa_engine(rsa_key)
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    header, body, sig = token.split(".")
    tampered = f"{header}.{segment(claims(sub='admin'))}.{sig}"
    invalid(engine.check(bearer(tampered), NOW), "bad signature")
    invalid(engine.check(bearer(f"{header}.{body}."), NOW), "bad signature")
    other = jwt.encode(claims(), rsa_other, algorithm="RS256")
    invalid(engine.check(bearer(other), NOW), "bad signature")
    hs = hs_engine()
    invalid(
        hs.check(bearer(jwt.encode(claims(), SECRET[::-1], algorithm="HS256")), NOW),
        "bad signature",
    )


def test_an_ec_signature_of_the_wrong_length_is_a_bad_signature(
    ec_keys: dict[str, ec.EllipticCurvePrivateKey],
) -> None:
    engine = JwtAuth([public_key_from_pem(public_pem(ec_keys["ES256"]))], ["ES256"], realm="api")
    token = jwt.encode(claims(), ec_keys["ES256"], algorithm="ES256")
    header, body, _ = token.split(".")
    invalid(engine.check(bearer(f"{header}.{body}.{b64url(b'x' * 7)}"), NOW), "bad signature")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (claims(exp=int(NOW) - 1), "token expired"),
        (claims(exp=int(NOW)), "token expired"),
        (claims(nbf=int(NOW) + 1), "token not yet valid"),
        (claims(iat=int(NOW) + 1), "token issued in the future"),
        (claims(exp=None), "missing claim exp"),
        (claims(exp="tomorrow"), "exp is not a number"),
        (claims(exp=True), "exp is not a number"),
        (claims(nbf=[1]), "nbf is not a number"),
        (claims(sub=123), "sub is not a string of text"),
        (claims(sub="alice\r\nX-Admin: 1"), "sub is not a string of text"),
        (claims(aud="someone"), "token has an audience and none is configured"),
    ],
)
def test_claim_failures_are_401(payload: dict[str, Any], reason: str) -> None:
    invalid(hs_engine().check(bearer(hs(payload)), NOW), reason)


def test_non_finite_and_huge_numeric_dates_are_refused() -> None:
    for text, reason in (
        (b'{"exp": NaN}', "malformed token: payload is not JSON"),
        (b'{"exp": Infinity}', "malformed token: payload is not JSON"),
        (b'{"exp": 1' + b"0" * 400 + b"}", "exp is not a number"),
    ):
        header = segment({"alg": "HS256"})
        body = b64url(text)
        sig = hmac.new(SECRET, f"{header}.{body}".encode(), hashlib.sha256).digest()
        invalid(hs_engine().check(bearer(f"{header}.{body}.{b64url(sig)}"), NOW), reason)


def test_payload_must_be_a_json_object() -> None:
    invalid(
        hs_engine().check(bearer(hs_raw([])), NOW), "malformed token: payload is not a JSON object"
    )
    header = segment({"alg": "HS256"})
    body = b64url(b"{")
    sig = hmac.new(SECRET, f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}.{b64url(sig)}"
    invalid(hs_engine().check(bearer(token), NOW), "malformed token: payload is not JSON")


def test_issuer() -> None:
    engine = hs_engine(issuer=["https://idp.example", "https://idp2.example"])
    assert engine.check(bearer(hs(claims(iss="https://idp2.example"))), NOW).ok
    invalid(engine.check(bearer(hs(claims(iss="https://evil.example"))), NOW), "wrong issuer")
    invalid(engine.check(bearer(hs_raw(claims(iss=["https://idp.example"]))), NOW), "wrong issuer")
    invalid(engine.check(bearer(hs(claims())), NOW), "missing claim iss")
    with pytest.raises(ValueError):
        hs_engine(issuer=[])


def test_audience() -> None:
    engine = hs_engine(audience="api")
    assert engine.check(bearer(hs(claims(aud="api"))), NOW).ok
    assert engine.check(bearer(hs(claims(aud=["web", "api"]))), NOW).ok
    invalid(engine.check(bearer(hs(claims(aud="web"))), NOW), "wrong audience")
    invalid(engine.check(bearer(hs(claims(aud=["web", "apis"]))), NOW), "wrong audience")
    invalid(engine.check(bearer(hs(claims(aud=[1]))), NOW), "malformed aud")
    invalid(engine.check(bearer(hs(claims())), NOW), "missing claim aud")
    invalid(engine.check(bearer(hs(claims(aud=[]))), NOW), "missing claim aud")


def test_required_claims_are_configurable() -> None:
    engine = hs_engine(required_claims=["exp", "jti"])
    invalid(engine.check(bearer(hs(claims())), NOW), "missing claim jti")
    assert engine.check(bearer(hs(claims(jti="x1"))), NOW).ok
    forever = hs_engine(required_claims=())
    assert forever.check(bearer(hs(claims(exp=None))), NOW).ok


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"crit": ["exp"]}, "unsupported critical header"),
        ({"b64": False}, "unsupported critical header"),
        ({"kid": 7}, "malformed token: kid is not a string"),
    ],
)
def test_header_failures(headers: dict[str, Any], reason: str) -> None:
    invalid(hs_engine().check(bearer(hs_raw(claims(), **headers)), NOW), reason)


def test_request_level_failures() -> None:
    engine = hs_engine()
    token = hs(claims())
    invalid(
        engine.check([*bearer(token), (b"authorization", b"Bearer x")], NOW),
        "Authorization repeated",
    )
    invalid(engine.check([(b"Authorization", b"Bearer")], NOW), "empty token")
    invalid(engine.check([(b"Authorization", b"Bearer    ")], NOW), "empty token")
    small = hs_engine(max_token_length=100)
    invalid(small.check(bearer(token), NOW), "token too long")
    # The scheme is case-insensitive and extra blanks are tolerated.
    assert engine.check([(b"authorization", b"bearer   " + token.encode())], NOW).ok


# ---------------------------------------------------------------- time and the leeway


@pytest.mark.parametrize("leeway", [0.0, 30.0])
def test_exp_boundary(leeway: float) -> None:
    clock = FakeClock(NOW)
    engine = hs_engine(leeway=leeway)
    token = bearer(hs(claims(exp=int(NOW))))
    # Valid while now < exp + leeway; refused from exp + leeway on.
    clock.set(NOW + leeway - 1)
    assert engine.check(token, clock.now()).ok
    clock.set(NOW + leeway - 0.001)
    assert hs_engine(leeway=leeway).check(token, clock.now()).ok
    clock.set(NOW + leeway)
    invalid(hs_engine(leeway=leeway).check(token, clock.now()), "token expired")
    # The cached verdict honours exp too.
    invalid(engine.check(token, clock.now()), "token expired")


@pytest.mark.parametrize("leeway", [0.0, 30.0])
def test_nbf_boundary(leeway: float) -> None:
    nbf = int(NOW) + 100
    token = bearer(hs(claims(nbf=nbf, iat=None)))
    # Valid from nbf - leeway on.
    invalid(hs_engine(leeway=leeway).check(token, nbf - leeway - 0.001), "token not yet valid")
    assert hs_engine(leeway=leeway).check(token, nbf - leeway).ok


@pytest.mark.parametrize("leeway", [0.0, 30.0])
def test_iat_boundary(leeway: float) -> None:
    iat = int(NOW) + 100
    token = bearer(hs(claims(iat=iat, exp=iat + 300)))
    invalid(hs_engine(leeway=leeway).check(token, iat - leeway - 0.5), "token issued in the future")
    assert hs_engine(leeway=leeway).check(token, iat - leeway).ok


def test_fractional_numeric_dates_are_compared_exactly() -> None:
    token = bearer(hs(claims(exp=NOW + 0.5)))
    assert hs_engine().check(token, NOW + 0.4).ok
    invalid(hs_engine().check(token, NOW + 0.5), "token expired")


class _FrozenDatetime(datetime):
    frozen = 0.0

    @classmethod
    def now(cls, tz: Any = None) -> _FrozenDatetime:
        return cls.fromtimestamp(cls.frozen, tz)


@settings(max_examples=300, deadline=None)
@given(
    exp=st.one_of(st.none(), st.integers(-40, 40)),
    nbf=st.one_of(st.none(), st.integers(-40, 40)),
    iat=st.one_of(st.none(), st.integers(-40, 40)),
    leeway=st.sampled_from([0, 1, 5, 30]),
    now=st.integers(-2, 2),
)
def test_time_claims_agree_with_pyjwt(
    exp: int | None, nbf: int | None, iat: int | None, leeway: int, now: int
) -> None:
    """PyJWT's own claim checks (on a frozen clock) are the reference for the comparisons."""
    base = int(NOW)
    payload = {k: base + v for k, v in (("exp", exp), ("nbf", nbf), ("iat", iat)) if v is not None}
    token = hs(payload)
    ours = hs_engine(leeway=leeway, required_claims=(), cache_size=0).check(
        bearer(token), base + now
    )
    with mock.patch("jwt.api_jwt.datetime", _FrozenDatetime):
        _FrozenDatetime.frozen = float(base + now)
        try:
            jwt.decode(token, SECRET, algorithms=["HS256"], leeway=leeway)
            theirs = True
        except jwt.InvalidTokenError:
            theirs = False
    assert ours.ok is theirs, ours.reason


# -------------------------------------------------------------- claims to upstream headers


def test_claims_are_forwarded_and_client_copies_stripped() -> None:
    engine = hs_engine(
        claim_headers={"sub": "X-User", "groups": "X-Groups", "admin": "X-Admin", "n": "X-N"}
    )
    token = hs(claims(groups=["dev", "ops", 7], admin=False, n=1.5))
    result = engine.check(bearer(token), NOW)
    assert result.ok
    upstream = [
        (b"Host", b"api.example"),
        (b"x-user", b"root"),
        (b"X-Groups", b"admins"),
        (b"X-Other", b"kept"),
    ]
    result.apply(upstream)
    assert upstream == [
        (b"Host", b"api.example"),
        (b"X-Other", b"kept"),
        (b"X-User", b"123"),
        (b"X-Groups", b"dev,ops,7"),
        (b"X-Admin", b"false"),
        (b"X-N", b"1.5"),
    ]


def test_an_absent_claim_still_strips_the_client_copy() -> None:
    engine = hs_engine(claim_headers={"email": "X-Email"})
    result = engine.check(bearer(hs(claims())), NOW)
    upstream = [(b"X-Email", b"ceo@example.com")]
    result.apply(upstream)
    assert upstream == []


@pytest.mark.parametrize(
    "value",
    [{"nested": 1}, "line\r\nX-Admin: true", "tab\x00nul", ["a,b"], [["x"]], [True]],
)
def test_claims_that_cannot_be_forwarded_exactly_fail_the_token(value: object) -> None:
    engine = hs_engine(claim_headers={"role": "X-Role"})
    invalid(engine.check(bearer(hs(claims(role=value))), NOW), "claim role cannot be forwarded")


def test_non_ascii_claims_are_forwarded_as_utf8() -> None:
    engine = hs_engine(claim_headers={"name": "X-Name"})
    result = engine.check(bearer(hs(claims(name="Zoë"))), NOW)
    assert result.upstream_headers == ((b"X-Name", "Zoë".encode()),)


def test_identity_without_sub() -> None:
    assert hs_engine().check(bearer(hs(claims(sub=None))), NOW).identity == "jwt"


def test_bad_claim_header_names_are_refused() -> None:
    with pytest.raises(ValueError, match="not a header field name"):
        hs_engine(claim_headers={"sub": "X User"})


# --------------------------------------------------------------------------------- cache


def test_a_verified_token_is_cached(rsa_key: rsa.RSAPrivateKey) -> None:
    engine = rsa_engine(rsa_key)
    headers = bearer(jwt.encode(claims(), rsa_key, algorithm="RS256"))
    first = engine.check(headers, NOW)
    assert first.ok
    assert engine.check(headers, NOW + 1) is first  # the hit: the same result object
    assert len(engine._cache) == 1


def test_the_cache_honours_nbf_and_a_clock_that_goes_back() -> None:
    engine = hs_engine(leeway=5.0)
    token = bearer(hs(claims(nbf=int(NOW), iat=None)))
    assert engine.check(token, NOW).ok
    assert engine.check(token, NOW - 5).ok
    invalid(engine.check(token, NOW - 5.5), "token not yet valid")


def test_tokens_without_exp_stay_cached_only_cache_ttl() -> None:
    engine = hs_engine(required_claims=(), cache_ttl=10.0)
    headers = bearer(hs(claims(exp=None)))
    first = engine.check(headers, NOW)
    assert engine.check(headers, NOW + 9.9) is first
    again = engine.check(headers, NOW + 10)
    assert again.ok and again is not first


def test_the_cache_is_bounded() -> None:
    engine = hs_engine(cache_size=3)
    tokens = [bearer(hs(claims(jti=str(i)))) for i in range(5)]
    for headers in tokens:
        assert engine.check(headers, NOW).ok
    assert len(engine._cache) == 3
    assert list(engine._cache) == [t[1][1][7:] for t in tokens[2:]]


def test_failures_are_not_cached() -> None:
    engine = hs_engine()
    invalid(engine.check(bearer(hs(claims(exp=int(NOW) - 1))), NOW), "token expired")
    assert engine._cache == {}
