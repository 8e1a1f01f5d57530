"""The gateway configuration as frozen, validated objects: what a YAML file may say.

Names and defaults follow nginx where a user would expect them (client_max_body_size is
``limits.max_body_size``, proxy_connect_timeout is ``connect_timeout`` ...). Every model
refuses unknown fields, so a typo is an error with its line, never silently ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from .units import Duration, Size, parse_address

__all__ = [
    "AccessLogConfig",
    "AccessRuleConfig",
    "AuthConfig",
    "BanRuleConfig",
    "BasicAuthConfig",
    "Config",
    "FirewallConfig",
    "ForwardAuthConfig",
    "HeaderAuthConfig",
    "HeaderRules",
    "HealthCheckConfig",
    "JWTAuthConfig",
    "LimitConnConfig",
    "LimitConnZoneConfig",
    "LimitReqConfig",
    "LimitReqZoneConfig",
    "LimitsConfig",
    "ListenConfig",
    "LocationConfig",
    "PeerConfig",
    "ProxyConfig",
    "RealIPConfig",
    "ReturnConfig",
    "ServerConfig",
    "StaticConfig",
    "StoreConfig",
    "TLSConfig",
    "UpstreamConfig",
    "WafConfig",
    "WafExclusionConfig",
]

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_header_name(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise ValueError(f"not a valid header name: {name!r}")
    return name


def _check_header_value(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError("a header value cannot contain CR, LF or NUL")
    return value


class LimitsConfig(_Model):
    """Per-worker client limits; each answered with its own status."""

    max_connections: int = Field(10000, ge=1, description="Open client connections per worker.")
    max_header_size: Size = Field(
        16384, ge=256, description="Request line and headers together; over it: 431."
    )
    max_headers: int = Field(100, ge=1, description="Header fields per request; over it: 431.")
    max_uri_length: Size = Field(8192, ge=16, description="Request-target length; over it: 414.")
    max_body_size: Size = Field(
        1048576, ge=0, description="Request body size; over it: 413. 0 means unlimited."
    )
    client_header_timeout: Duration = Field(
        60.0, gt=0, description="Time to receive the whole request head."
    )
    client_body_timeout: Duration = Field(
        60.0, gt=0, description="Longest pause between two reads of the request body."
    )
    keepalive_timeout: Duration = Field(
        75.0, ge=0, description="Idle time allowed between requests on one connection."
    )
    keepalive_requests: int = Field(1000, ge=1, description="Requests served per connection.")
    send_timeout: Duration = Field(
        60.0, gt=0, description="Longest time a response write may wait for the client to read."
    )


class ListenConfig(_Model):
    """One listening address of a server."""

    address: str = Field(description="host:port, [v6]:port or a port number.")
    tls: bool = Field(False, description="Terminate TLS on this address.")

    @field_validator("address", mode="before")
    @classmethod
    def _address(cls, v: object) -> object:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if isinstance(v, str):
            parse_address(v)
        return v

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_address(self.address)


class TLSConfig(_Model):
    """A certificate for a server; on a shared address the SNI name picks the server's."""

    certificate: Path = Field(description="PEM certificate chain.")
    key: Path = Field(description="PEM private key.")
    protocols: list[Literal["TLSv1.2", "TLSv1.3"]] = Field(
        default_factory=lambda: ["TLSv1.2", "TLSv1.3"],  # type: ignore[arg-type]
        min_length=1,
        description="TLS versions offered; only 1.2 and 1.3 exist here.",
    )
    ciphers: str = Field(
        "ECDHE+AESGCM:ECDHE+CHACHA20",
        description="OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are always modern).",
    )


class HeaderRules(_Model):
    """Header changes in one direction. ``hide``/``remove`` drop fields, ``set`` replaces
    them, ``add`` appends."""

    remove: list[str] = Field(
        default_factory=list,
        validation_alias=AliasChoices("hide", "remove"),
        description="Field names to drop ('hide' and 'remove' are the same key).",
    )
    set: dict[str, str] = Field(
        default_factory=dict, description="Fields to replace (any existing copy is dropped)."
    )
    add: dict[str, str] = Field(default_factory=dict, description="Fields to append.")

    @field_validator("remove")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        return [_check_header_name(n) for n in v]

    @field_validator("set", "add")
    @classmethod
    def _fields(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            _check_header_name(name)
            _check_header_value(value)
        return v


class HeadersConfig(_Model):
    request: HeaderRules = Field(default_factory=HeaderRules)
    response: HeaderRules = Field(default_factory=HeaderRules)


class ProxyConfig(_Model):
    """Relay the request to an upstream group."""

    upstream: str = Field(description="Name of an upstream group, or http://host:port.")
    host: str = Field(
        "$host",
        description="Host header sent upstream: '$host' passes the client's, "
        "'$upstream' the peer address, anything else is sent as written.",
    )
    x_forwarded: bool = Field(
        True, description="Append X-Forwarded-For and set X-Forwarded-Proto / -Host."
    )
    connect_timeout: Duration | None = Field(
        None, gt=0, description="Overrides the upstream's connect_timeout; unset: the upstream's."
    )
    read_timeout: Duration | None = Field(
        None, gt=0, description="Overrides the upstream's read_timeout; unset: the upstream's."
    )
    send_timeout: Duration | None = Field(
        None, gt=0, description="Overrides the upstream's send_timeout; unset: the upstream's."
    )


class ReturnConfig(_Model):
    """Answer from the gateway itself: a redirect or a fixed body."""

    status: int = Field(ge=200, le=599)
    location: str | None = Field(
        None, description="Redirect target; may use $scheme $host $request_uri $uri $args."
    )
    body: str | None = None
    content_type: str = "text/plain; charset=utf-8"

    @model_validator(mode="after")
    def _redirect(self) -> ReturnConfig:
        if self.status in (301, 302, 303, 307, 308) and not self.location:
            raise ValueError(f"a {self.status} needs a location")
        if self.location is not None:
            _check_header_value(self.location)
        return self


class StaticConfig(_Model):
    """Serve files from a directory; the request path (without the location prefix when
    ``alias`` is true) is looked up under ``root`` and may never leave it."""

    root: Path
    alias: bool = Field(False, description="Strip the location's prefix (nginx alias).")
    index: list[str] = Field(default_factory=lambda: ["index.html"])
    expires: Duration | None = Field(
        None,
        description="Sets Expires, and Cache-Control max-age unless cache_control is given.",
    )
    cache_control: str | None = Field(None, description="Cache-Control value, as written.")
    follow_symlinks: bool = Field(
        False, description="Serve symlinks whose target stays inside root."
    )


# -- traffic policies ------------------------------------------------------------------


class RealIPConfig(_Model):
    """The client address from a header set by trusted proxies (nginx realip:
    set_real_ip_from, real_ip_header, real_ip_recursive). Headers from any other peer are
    ignored, so a client cannot choose its own address."""

    trusted: list[str] = Field(
        min_length=1,
        validation_alias=AliasChoices("from", "trusted"),
        description="Trusted proxies: addresses and CIDRs, IPv4 or IPv6 (set_real_ip_from).",
    )
    header: str = Field(
        "X-Real-IP", description="X-Real-IP (nginx's default), X-Forwarded-For, or any name."
    )
    recursive: bool = Field(
        False, description="Skip trusted addresses from the right: the rightmost untrusted wins."
    )

    @field_validator("header")
    @classmethod
    def _header(cls, v: str) -> str:
        return _check_header_name(v)


class AccessRuleConfig(_Model):
    """One allow or deny entry: an address, a CIDR, or 'all'."""

    allow: str | None = None
    deny: str | None = None
    id: str | None = Field(None, description="Name for logs; default rule-N (1-based).")

    @model_validator(mode="after")
    def _one(self) -> AccessRuleConfig:
        if (self.allow is None) == (self.deny is None):
            raise ValueError("an access rule is exactly one of allow: or deny:")
        return self


class LimitReqZoneConfig(_Model):
    """A rate-limit zone (nginx limit_req_zone): the key, the rate, the number of keys kept."""

    key: str = Field("$remote_addr", description="Template: $remote_addr, $http_NAME, $uri ...")
    rate: str = Field(description="Requests per second or minute: '10r/s', '30r/m'.")
    size: int = Field(
        100_000, ge=1, description="Keys kept; the least recently used idle ones are evicted."
    )
    on_store_error: Literal["open", "closed"] = Field(
        "open",
        description="When the shared store cannot answer: let requests through (open) or "
        "refuse them with 503 (closed).",
    )

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: str) -> str:
        if not re.fullmatch(r"\s*[1-9]\d*\s*r/[sm]\s*", v):
            raise ValueError(f"a rate is written like 10r/s or 30r/m, not {v!r}")
        return v.strip()


class LimitConnZoneConfig(_Model):
    """A connection-limit zone (nginx limit_conn_zone)."""

    key: str = Field("$remote_addr", description="Template, as for limit_req_zones.")
    size: int = Field(100_000, ge=1, description="Keys kept; a full zone refuses new keys.")
    on_store_error: Literal["open", "closed"] = "open"


class LimitReqConfig(_Model):
    """Apply a rate-limit zone (nginx limit_req): burst, and nodelay or delay=N."""

    zone: str
    burst: int = Field(0, ge=0)
    nodelay: bool = False
    delay: int = Field(0, ge=0, description="Requests of the burst let through undelayed.")

    @model_validator(mode="after")
    def _delay(self) -> LimitReqConfig:
        if self.nodelay and self.delay:
            raise ValueError("nodelay and delay exclude each other")
        return self


class LimitConnConfig(_Model):
    """Apply a connection-limit zone (nginx limit_conn): requests in flight per key."""

    zone: str
    max: int = Field(ge=1)


class BasicAuthConfig(_Model):
    """HTTP Basic against an htpasswd file of bcrypt hashes (htpasswd -B)."""

    htpasswd: Path
    realm: str = "restricted"


class JWTAuthConfig(_Model):
    """Bearer JSON Web Tokens: signature, exp, nbf, iss and aud, algorithms pinned."""

    algorithms: list[str] = Field(min_length=1, description="Accepted, e.g. [RS256]; never none.")
    secret_file: Path | None = Field(None, description="HMAC secret (HS*), read from a file.")
    secret_env: str | None = Field(None, description="HMAC secret from this environment name.")
    public_key: Path | None = Field(None, description="PEM public key (RS*, PS*, ES*, EdDSA).")
    jwks: Path | None = Field(None, description="JWKS file; keys chosen by the token's kid.")
    issuer: str | None = None
    audience: list[str] | None = None
    leeway: Duration = Field(0.0, ge=0, description="Clock skew allowed on exp and nbf.")
    required_claims: list[str] = Field(default_factory=lambda: ["exp"])
    claims_to_headers: dict[str, str] = Field(
        default_factory=dict, description="Claims sent upstream as headers: {sub: X-User}."
    )
    realm: str = "api"

    @field_validator("audience", mode="before")
    @classmethod
    def _aud(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("claims_to_headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v.values():
            _check_header_name(name)
        return v

    @model_validator(mode="after")
    def _one_key(self) -> JWTAuthConfig:
        keys = [k for k in (self.secret_file, self.secret_env, self.public_key, self.jwks) if k]
        if len(keys) != 1:
            raise ValueError("jwt needs exactly one of secret_file, secret_env, public_key, jwks")
        return self


class HeaderAuthConfig(_Model):
    """Require a request header (an API key), optionally one of given values."""

    name: str
    values: list[str] | None = None
    realm: str = "api"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_header_name(v)


class ForwardAuthConfig(_Model):
    """Ask an auth service first (nginx auth_request): 2xx lets the request through,
    401/403 go back to the client, anything else is a 500."""

    url: str = Field(description="http(s)://host:port/path of the auth service.")
    pass_headers: list[str] = Field(
        default_factory=lambda: ["Authorization", "Cookie"],
        description="Request headers sent to the auth service.",
    )
    copy_headers: list[str] = Field(
        default_factory=list, description="Auth response headers copied to the upstream request."
    )
    timeout: Duration = Field(5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("the auth service is reached at http(s)://host:port/path")
        return v


class AuthConfig(_Model):
    """Authentication at the proxy: exactly one method."""

    basic: BasicAuthConfig | None = None
    jwt: JWTAuthConfig | None = None
    header: HeaderAuthConfig | None = None
    request: ForwardAuthConfig | None = None

    @model_validator(mode="after")
    def _one(self) -> AuthConfig:
        chosen = [x for x in (self.basic, self.jwt, self.header, self.request) if x is not None]
        if len(chosen) != 1:
            raise ValueError("auth needs exactly one of basic, jwt, header, request")
        return self


class WafExclusionConfig(_Model):
    """Leave rules out: by id (or an id range '942100-942199'), by tag, or only a target
    of a rule ('ARGS:password' with id); optionally only under a path prefix."""

    id: int | str | None = None
    tag: str | None = None
    target: str | None = Field(None, description="With id: remove this target, e.g. ARGS:q")
    path: str | None = Field(None, description="Only for request paths under this prefix.")

    @model_validator(mode="after")
    def _what(self) -> WafExclusionConfig:
        if (self.id is None) == (self.tag is None):
            raise ValueError("an exclusion names exactly one of id or tag")
        if self.target is not None and self.id is None:
            raise ValueError("a target exclusion needs the rule id")
        if isinstance(self.id, str) and not re.fullmatch(r"\d+(-\d+)?", self.id.strip()):
            raise ValueError(f"not a rule id or id range: {self.id!r}")
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError("path is a request path prefix starting with /")
        return self


class WafConfig(_Model):
    """The web application firewall: the OWASP Core Rule Set through ModSecurity."""

    mode: Literal["on", "off", "detection_only"] = Field(
        "on", description="on: block; detection_only: log what would be blocked; off."
    )
    paranoia: int = Field(1, ge=1, le=4, description="CRS paranoia level.")
    inbound_threshold: int = Field(5, ge=1, description="Inbound anomaly score that blocks.")
    outbound_threshold: int = Field(4, ge=1, description="Outbound anomaly score that blocks.")
    crs: Path = Field(
        Path("/usr/share/modsecurity-crs"),
        description="The Core Rule Set directory (3.x or 4.x; Debian's modsecurity-crs).",
    )
    exclude: list[WafExclusionConfig] = Field(default_factory=list)
    rules_before_crs: list[str] = Field(
        default_factory=list,
        description="Rules loaded before the CRS (e.g. a SecAction setting a tx variable).",
    )
    rules: list[str] = Field(default_factory=list, description="Extra rules, inline.")
    rules_files: list[Path] = Field(default_factory=list, description="Extra rule files.")
    body_limit: Size = Field(1024 * 1024, ge=1, description="Request body bytes inspected.")
    over_limit: Literal["reject", "inspect_partial"] = Field(
        "reject", description="A larger body: 413, or inspect its first body_limit bytes."
    )
    response_body: bool = Field(
        False,
        description="Inspect response bodies too (text/html, text/plain, text/xml): the "
        "answer is held back until its body, or its first response_body_limit bytes, has "
        "been inspected, so a refused answer never reaches the client in part.",
    )
    response_body_limit: Size = Field(
        512 * 1024,
        ge=1,
        description="Bytes of a response body held and inspected; past them, the rest "
        "streams uninspected.",
    )
    status: int = Field(403, ge=400, le=599, description="The status of a blocked request.")
    audit_log: Path | None = Field(
        None, description="JSON lines: every blocked transaction in full."
    )


class _Policies(_Model):
    """Traffic policies, set on a server (for all its locations) or a location. A location
    inherits each from its server unless it sets its own (as nginx's directives do)."""

    real_ip: RealIPConfig | None = None
    access: list[AccessRuleConfig] | None = Field(
        None, description="allow/deny entries, first match wins; no match allows."
    )
    limit_req: list[LimitReqConfig] | None = None
    limit_req_status: int | None = Field(None, ge=400, le=599, description="Default 503.")
    limit_req_dry_run: bool | None = None
    limit_conn: list[LimitConnConfig] | None = None
    limit_conn_status: int | None = Field(None, ge=400, le=599, description="Default 503.")
    limit_conn_dry_run: bool | None = None
    auth: AuthConfig | Literal[False] | None = Field(
        None, description="An auth method, or false to turn off an inherited one."
    )
    waf: WafConfig | Literal[False] | None = Field(
        None, description="The WAF, or false to turn off an inherited one."
    )


class StoreConfig(_Model):
    """Where rate-limit, connection-limit and ban state lives: in each worker's memory, or
    in Redis, shared by every worker and every ramparts of a fleet."""

    backend: Literal["memory", "redis"] = "memory"
    url: str = Field("redis://127.0.0.1:6379/0", description="redis://[:password@]host:port/db")
    prefix: str = "ramparts:"
    timeout: Duration = Field(0.25, gt=0, description="Per-command timeout.")
    retry: Duration = Field(
        1.0, gt=0, description="After a failure, calls fail at once for this long, then retry."
    )
    bans_file: Path | None = Field(
        None,
        description="With the memory backend: the file bans are kept in, shared by the "
        "workers and the `ramparts ban` command.",
    )


class BanRuleConfig(_Model):
    """fail2ban-style: ban a client after ``count`` refusals of a kind within ``window``."""

    refused_by: list[str] = Field(
        min_length=1,
        description="Kinds of refusal: a layer (auth, access, ratelimit, limitconn, waf), a "
        "layer:rule (ratelimit:api), or a status (401).",
    )
    count: int = Field(ge=1)
    window: Duration = Field(gt=0)
    ban: Duration = Field(gt=0, description="How long the ban lasts.")


class LocationConfig(_Policies):
    """A location, matched like nginx: '= /exact', '^~ /prefix', '~ regex', '~* regex'
    (case-insensitive) or '/prefix'."""

    match: str = Field(alias="location")
    proxy: ProxyConfig | None = None
    return_: ReturnConfig | None = Field(None, alias="return")
    static: StaticConfig | None = None
    headers: HeadersConfig = Field(default_factory=HeadersConfig)
    max_body_size: Size | None = None

    @model_validator(mode="after")
    def _one_handler(self) -> LocationConfig:
        handlers = [h for h in (self.proxy, self.return_, self.static) if h is not None]
        if len(handlers) != 1:
            raise ValueError("a location needs exactly one of proxy, return, static")
        return self


class ServerConfig(_Policies):
    """A virtual server: where it listens, which Host names it answers, its locations."""

    listen: list[ListenConfig] = Field(min_length=1)
    server_names: list[str] = Field(
        default_factory=list,
        description="Exact names, '*.example.com', '.example.com' or '~regex'.",
    )
    default: bool = Field(False, description="Default server for its addresses.")
    tls: TLSConfig | None = None
    headers: HeadersConfig = Field(default_factory=HeadersConfig)
    locations: list[LocationConfig] = Field(min_length=1)

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, v: Any) -> Any:
        if isinstance(v, str | int | dict):
            v = [v]
        if isinstance(v, list):
            return [{"address": str(x)} if isinstance(x, str | int) else x for x in v]
        return v

    @model_validator(mode="after")
    def _tls(self) -> ServerConfig:
        has_tls = any(x.tls for x in self.listen)
        if has_tls and self.tls is None:
            raise ValueError("a server with a TLS listen address needs tls: certificate, key")
        if self.tls is not None and not has_tls:
            raise ValueError("tls: is set but no listen address has tls: true")
        return self


class PeerConfig(_Model):
    """One peer of an upstream group."""

    address: str
    weight: int = Field(1, ge=1, le=1000)
    max_fails: int = Field(
        1, ge=0, description="Failures within fail_timeout that mark it down; 0 never."
    )
    fail_timeout: Duration = Field(10.0, gt=0)
    backup: bool = False

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        parse_address(v, default_host="127.0.0.1")
        return v


class HealthCheckConfig(_Model):
    """Active health checks: a GET to each peer every ``interval``."""

    path: str = "/"
    host: str | None = None
    interval: Duration = Field(5.0, gt=0)
    timeout: Duration = Field(2.0, gt=0)
    fails: int = Field(2, ge=1, description="Consecutive failures that mark a peer down.")
    passes: int = Field(1, ge=1, description="Consecutive successes that bring it back.")
    expect_status: tuple[int, int] = Field((200, 399))

    @field_validator("expect_status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> Any:
        if isinstance(v, int):
            return (v, v)
        if isinstance(v, str) and "-" in v:
            lo, _, hi = v.partition("-")
            if lo.strip().isdigit() and hi.strip().isdigit():
                return (int(lo), int(hi))
            raise ValueError(f"not a status range: {v!r} (use e.g. 200-399)")
        return v

    @field_validator("expect_status")
    @classmethod
    def _status_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        lo, hi = v
        if not (100 <= lo <= hi <= 599):
            raise ValueError("expect_status must be statuses 100-599, low before high")
        return v


class UpstreamConfig(_Model):
    """A group of peers with balancing, keep-alive pools, timeouts and health."""

    servers: list[PeerConfig] = Field(min_length=1)
    balance: Literal["round_robin", "least_conn", "ip_hash"] = "round_robin"
    keepalive: int = Field(64, ge=0, description="Idle connections kept per peer.")
    keepalive_timeout: Duration = Field(60.0, gt=0)
    keepalive_requests: int = Field(1000, ge=1)
    connect_timeout: Duration = Field(60.0, gt=0)
    read_timeout: Duration = Field(60.0, gt=0)
    send_timeout: Duration = Field(60.0, gt=0)
    tries: int = Field(
        0, ge=0, description="Peers tried per request; 0 means each peer at most once."
    )
    health_check: HealthCheckConfig | None = None

    @field_validator("servers", mode="before")
    @classmethod
    def _servers(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"address": x} if isinstance(x, str) else x for x in v]
        return v


class AccessLogConfig(_Model):
    """JSON-lines access log written through a buffer (nginx ``buffer=32k flush=5s``)."""

    path: str = Field(description="File to append to; '-' for standard output.")
    buffer: Size = Field(32768, ge=0)
    flush: Duration = Field(5.0, gt=0)


class FirewallConfig(_Model):
    """The L3/L4 rule set every accepted connection is checked against before a byte of it
    is read: accepted connections go on, dropped ones are closed at once, rejected ones
    reset."""

    rules: Path = Field(
        description="Rule file (YAML or CSV; see docs/firewall-rules.md), relative to "
        "this configuration file."
    )


class Config(_Model):
    """A whole gateway configuration file."""

    workers: int = Field(1, ge=1, le=256, description="Worker processes (SO_REUSEPORT).")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout: Duration = Field(
        30.0, ge=0, description="How long SIGTERM waits for in-flight requests."
    )
    limits: LimitsConfig = Field(default_factory=lambda: LimitsConfig.model_validate({}))
    encoded_slash: Literal["reject", "keep"] = Field(
        "reject", description="An encoded slash (%2F) in a path: 400, or kept escaped."
    )
    access_log: AccessLogConfig | None = None
    firewall: FirewallConfig | None = None
    store: StoreConfig = Field(default_factory=lambda: StoreConfig.model_validate({}))
    limit_req_zones: dict[str, LimitReqZoneConfig] = Field(default_factory=dict)
    limit_conn_zones: dict[str, LimitConnZoneConfig] = Field(default_factory=dict)
    bans: list[BanRuleConfig] = Field(
        default_factory=list, description="Automatic bans; enforced before a byte is read."
    )
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    servers: list[Annotated[ServerConfig, Field()]] = Field(min_length=1)
