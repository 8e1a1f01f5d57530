"""Forward authentication, the pure half of nginx's ``auth_request``: build the subrequest
to the auth service, and turn its answer into a verdict. The shell sends the subrequest.

The subrequest is a ``GET`` without a body (nginx's subrequests are GETs, and its
documented setup turns the body off). It carries the client's header fields (all
end-to-end ones, or only ``pass_headers`` when given) except the framing and hop-by-hop
ones, and these, set by ramparts (client-supplied copies are dropped, so a client cannot
pose as another URI or address):

- ``Host``: the auth service's authority;
- ``X-Original-URI``, ``X-Original-Method``, ``X-Original-URL`` (nginx-style setups:
  oauth2-proxy, Authelia), ``X-Forwarded-Method``, ``X-Forwarded-Proto``,
  ``X-Forwarded-Host``, ``X-Forwarded-Uri`` (Traefik-style ``forwardAuth`` setups);
- ``X-Forwarded-For`` and ``X-Real-IP``: the client address ramparts judged (after the
  real-IP phase), not the chain the client sent.

Every other ``X-Forwarded-*``, ``X-Original-*`` and ``Forwarded`` field of the client is
dropped too: an auth service may trust any of them.

The verdict follows nginx (``ngx_http_auth_request_module``): a 2xx allows, and the
``copy_headers`` fields of the answer are added to the upstream request (the client's own
copies are always removed); 401 refuses with 401 and passes the service's
``WWW-Authenticate`` fields on; 403 refuses with 403; any other status, and any failure
to get an answer (refused, reset, timeout, unparsable), is a 500. Observed with nginx
1.22.1 itself: a POST became a bodyless GET subrequest carrying the client's fields; 200,
204 and 299 allowed; 401 came back with the service's challenge; 403 stayed 403; 302, 304,
404, 429, 500, 502 and an unreachable service all gave the client 500.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ...http.headers import HOP_BY_HOP, Headers, get_header
from .result import AuthResult, header_names

__all__ = ["DEFAULT_TIMEOUT", "ForwardAuth", "Subrequest"]

DECIDED_BY = "auth:forward"
DEFAULT_TIMEOUT = 5.0

#: Set by ramparts on every subrequest; the client's copies never reach the auth service.
SET_HEADERS: frozenset[bytes] = frozenset(
    {
        b"host",
        b"x-original-uri",
        b"x-original-method",
        b"x-original-url",
        b"x-forwarded-method",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-uri",
        b"x-forwarded-for",
        b"x-real-ip",
    }
)
#: Never passed: the subrequest has no body, and hop-by-hop fields describe one connection.
_NEVER = HOP_BY_HOP | SET_HEADERS | {b"content-length", b"expect", b"forwarded"}
_SPOOFABLE = (b"x-forwarded-", b"x-original-")


@dataclass(frozen=True, slots=True)
class Subrequest:
    """The request head the shell sends to the auth service (no body)."""

    scheme: str
    host: str
    port: int
    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    timeout: float


class ForwardAuth:
    """``auth_request`` against the auth service at ``url`` (``http`` or ``https``).

    ``pass_headers``: the client fields sent to the service (None: all end-to-end ones,
    as nginx does). ``copy_headers``: fields of a 2xx answer added to the upstream request
    (nginx's ``auth_request_set`` + ``proxy_set_header``). ``identity_header``: the answer
    field that names the user for the access log (``user:<value>``). ``timeout``: for the
    shell, the whole exchange's budget in seconds.
    """

    __slots__ = (
        "_authority",
        "_copy",
        "_forbidden",
        "_identity",
        "_pass",
        "_strip",
        "_unauthorized",
        "host",
        "port",
        "scheme",
        "target",
        "timeout",
    )

    def __init__(
        self,
        url: str,
        *,
        pass_headers: Iterable[str] | None = None,
        copy_headers: Iterable[str] = (),
        identity_header: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad auth service URL {url!r}: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"the auth service URL must be http:// or https://, not {url!r}")
        if not parts.hostname:
            raise ValueError(f"the auth service URL {url!r} has no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials in the auth service URL: pass them as headers")
        if parts.fragment:
            raise ValueError("the auth service URL has a #fragment")
        if timeout <= 0:
            raise ValueError("the auth service timeout must be positive")
        default_port = 443 if parts.scheme == "https" else 80
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port if port is not None else default_port
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = host if self.port == default_port else f"{host}:{self.port}"
        self._authority = authority.encode("ascii")
        path = parts.path or "/"
        self.target = (path + (f"?{parts.query}" if parts.query else "")).encode("ascii")
        self.timeout = timeout
        self._pass = None if pass_headers is None else header_names(pass_headers)
        copy = header_names(copy_headers)
        self._copy = copy
        self._identity = header_names([identity_header]) if identity_header else frozenset()
        self._strip = copy
        self._unauthorized = "auth service answered 401"
        self._forbidden = AuthResult.deny(DECIDED_BY, 403, "auth service answered 403")

    def subrequest(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers,
        *,
        client_ip: str,
        scheme: str,
        connection_tokens: frozenset[bytes] = frozenset(),
    ) -> Subrequest:
        """The subrequest for a client request: its ``method``, the ``uri`` (path and query)
        the upstream will receive, its ``headers`` (``connection_tokens``: the fields its
        Connection header names, never passed), the judged ``client_ip`` and ``scheme``."""
        keep = self._pass
        out: list[tuple[bytes, bytes]] = [(b"Host", self._authority)]
        for name, value in headers:
            low = name.lower()
            if low in _NEVER or low in connection_tokens or low.startswith(_SPOOFABLE):
                continue
            if keep is not None and low not in keep:
                continue
            out.append((name, value))
        host = get_header(headers, b"host")
        ip = client_ip.encode("ascii")
        out += [
            (b"X-Original-URI", uri),
            (b"X-Original-Method", method),
            (b"X-Forwarded-Method", method),
            (b"X-Forwarded-Proto", scheme.encode("ascii")),
            (b"X-Forwarded-Uri", uri),
            (b"X-Forwarded-For", ip),
            (b"X-Real-IP", ip),
        ]
        if host:
            out += [
                (b"X-Forwarded-Host", host),
                (b"X-Original-URL", b"%s://%s%s" % (scheme.encode("ascii"), host, uri)),
            ]
        return Subrequest(
            scheme=self.scheme,
            host=self.host,
            port=self.port,
            method=b"GET",
            target=self.target,
            headers=tuple(out),
            timeout=self.timeout,
        )

    def decide(self, status: int, headers: Headers) -> AuthResult:
        """The verdict on the auth service's answer ``status`` and ``headers``."""
        if 200 <= status < 300:
            copy = self._copy
            add = tuple((n, v) for n, v in headers if n.lower() in copy) if copy else ()
            identity = "forward"
            if self._identity:
                for n, v in headers:
                    if n.lower() in self._identity:
                        identity = "user:" + v.decode("utf-8", "replace")
                        break
            return AuthResult.allow(DECIDED_BY, identity, add, self._strip)
        if status == 401:
            www = tuple((n, v) for n, v in headers if n.lower() == b"www-authenticate")
            return AuthResult.deny(DECIDED_BY, 401, self._unauthorized, www)
        if status == 403:
            return self._forbidden
        return AuthResult.deny(DECIDED_BY, 500, f"auth service answered {status}")

    def failed(self, reason: str) -> AuthResult:
        """The verdict when no answer came (timeout, connection refused or reset, a response
        that could not be parsed): 500, as nginx answers when its subrequest fails."""
        return AuthResult.deny(DECIDED_BY, 500, f"auth service failed: {reason}")
