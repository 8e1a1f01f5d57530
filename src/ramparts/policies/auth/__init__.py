"""Authentication at the proxy, as pure decision engines, one per file: a required header
(``header``), HTTP Basic against bcrypt htpasswd files (``basic``), JWT bearer tokens
(``jwt``) and nginx-style forward auth (``forward``). Each is built once from config values
and answers an ``AuthResult`` (``result``); Basic's bcrypt work comes back as a
``SlowCheck`` for the shell to run in a worker thread.

``decided_by`` is ``auth:header``, ``auth:basic``, ``auth:jwt`` or ``auth:forward``.

How a shell drives them (``now``: epoch seconds, ``time.time()``, for ``JwtAuth``, whose
claims are epoch dates; any steady scale, such as the monotonic clock, for the others)::

    result = engine.check(request.headers, now)
    if isinstance(result, SlowCheck):          # BasicAuth only: bcrypt, off the loop
        result = await loop.run_in_executor(pool, result.run)
    if not result.ok:
        return result.respond()                # 401 + WWW-Authenticate, decided_by
    result.apply(upstream_request_headers)     # identity headers in, spoofed copies out

    sub = forward.subrequest(method, uri, headers, client_ip=ip, scheme=scheme)
    try:
        status, answer_headers = await send(sub)   # the shell's I/O, within sub.timeout
    except (OSError, TimeoutError) as exc:
        result = forward.failed(str(exc))          # 500, as nginx
    else:
        result = forward.decide(status, answer_headers)
"""

from .basic import BasicAuth, Htpasswd, load_htpasswd, parse_htpasswd
from .forward import ForwardAuth, Subrequest
from .header import RequireHeader
from .jwt import (
    SUPPORTED_ALGORITHMS,
    JwtAuth,
    JwtKey,
    hmac_key,
    hmac_secret_from_env,
    load_hmac_secret,
    load_jwks,
    load_public_key,
    parse_jwks,
    public_key_from_pem,
)
from .result import AuthResult, SlowCheck

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "AuthResult",
    "BasicAuth",
    "ForwardAuth",
    "Htpasswd",
    "JwtAuth",
    "JwtKey",
    "RequireHeader",
    "SlowCheck",
    "Subrequest",
    "hmac_key",
    "hmac_secret_from_env",
    "load_hmac_secret",
    "load_htpasswd",
    "load_jwks",
    "load_public_key",
    "parse_htpasswd",
    "parse_jwks",
    "public_key_from_pem",
]
