"""Compiling a validated config into an immutable plan: listeners with their Host routers,
location matchers, phase chains, handlers and upstream groups. A reload builds a new plan
and swaps it whole, or keeps the old one and says why."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..firewall.model import RuleSet, Verdict
from ..net.packet import Packet
from ..pipeline.phases import Chain, ResponsePhase
from ..pipeline.router import HostRouter, LocationMatcher, parse_location
from ..pipeline.template import Template
from ..policies.headers import HeaderEdit
from .loader import LineMap, load_yaml, read_file, validate
from .policies import PolicyRuntime, policy_phases, waf_response_phases
from .schema import (
    AccessLogConfig,
    Config,
    HeadersConfig,
    HealthCheckConfig,
    LimitsConfig,
    LocationConfig,
    ServerConfig,
    UpstreamConfig,
)
from .units import parse_address

__all__ = [
    "ListenerPlan",
    "LocationPlan",
    "PeerPlan",
    "Plan",
    "ProxyRoute",
    "ReturnRoute",
    "ServerPlan",
    "StaticRoute",
    "UpstreamPlan",
    "compile_config",
    "load_plan",
    "parse_config",
]


@dataclass(frozen=True, slots=True)
class PeerPlan:
    host: str
    port: int
    weight: int
    max_fails: int
    fail_timeout: float
    backup: bool

    @property
    def label(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UpstreamPlan:
    name: str
    peers: tuple[PeerPlan, ...]
    balance: str
    keepalive: int
    keepalive_timeout: float
    keepalive_requests: int
    connect_timeout: float
    read_timeout: float
    send_timeout: float
    tries: int
    health_check: HealthCheckConfig | None


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    upstream: UpstreamPlan
    host: bytes | None  # None: pass the client's Host; b"": the peer address; else literal
    x_forwarded: bool
    connect_timeout: float
    read_timeout: float
    send_timeout: float


@dataclass(frozen=True, slots=True)
class ReturnRoute:
    status: int
    location: Template | None
    body: bytes
    content_type: bytes


@dataclass(frozen=True, slots=True)
class StaticRoute:
    root: Path
    strip_prefix: bytes
    index: tuple[str, ...]
    expires: float | None
    cache_control: bytes | None
    follow_symlinks: bool


Route = ProxyRoute | ReturnRoute | StaticRoute


@dataclass(frozen=True, slots=True)
class LocationPlan:
    spec: str
    name: str
    route: Route
    chain: Chain
    request_headers: HeaderEdit
    max_body_size: int
    hide_server: bool = False  # the response rules remove Server: the gateway's own too


@dataclass(frozen=True, slots=True)
class ServerPlan:
    index: int
    names: tuple[str, ...]
    primary_name: bytes
    matcher: LocationMatcher[LocationPlan]


@dataclass(frozen=True, slots=True)
class ListenerPlan:
    host: str
    port: int
    tls: bool
    ssl_context: ssl.SSLContext | None
    router: HostRouter[ServerPlan]
    _routes: dict[tuple[bytes | None, bytes], tuple[ServerPlan, LocationPlan | None]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def resolve(self, host: bytes | None, path: bytes) -> tuple[ServerPlan, LocationPlan | None]:
        """The server and location for a request (memoised: both lookups are pure)."""
        key = (host, path)
        hit = self._routes.get(key)
        if hit is None:
            server = self.router.select(host)
            hit = (server, server.matcher.match(path))
            if len(self._routes) < 8192:
                self._routes[key] = hit
        return hit


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs to serve, compiled once; never mutated."""

    source: str
    config: Config
    listeners: dict[tuple[str, int], ListenerPlan]
    upstreams: dict[str, UpstreamPlan]
    limits: LimitsConfig
    access_log: AccessLogConfig | None
    keep_encoded_slash: bool = False
    servers: tuple[ServerPlan, ...] = field(default=())
    firewall: RuleSet | None = None
    # The compiled classifier's lookup for ``firewall`` (verdicts identical to evaluate).
    firewall_lookup: Callable[[Packet], Verdict] | None = None
    # Run-time state the policy phases share (filled in by each worker).
    policy: PolicyRuntime = field(default_factory=PolicyRuntime)


def parse_config(text: str, file: str = "<config>") -> tuple[Config, LineMap]:
    data, lines = load_yaml(text, file)
    return validate(Config, data, lines), lines


def load_plan(path: str | Path) -> Plan:
    """Read, validate and compile a config file, or raise ConfigError."""

    def parse(text: str, file: str) -> Plan:
        config, lines = parse_config(text, file)
        return compile_config(config, lines)

    return read_file(path, parse)


def compile_config(config: Config, lines: LineMap) -> Plan:
    base = Path(lines.file).parent if lines.file and not lines.file.startswith("<") else Path()
    upstreams = {
        name: _upstream(name, up, lines, ("upstreams", name))
        for name, up in config.upstreams.items()
    }
    servers: list[ServerPlan] = []
    by_listen: dict[tuple[str, int], list[tuple[ServerConfig, ServerPlan]]] = {}
    tls_flags: dict[tuple[str, int], bool] = {}
    runtime = PolicyRuntime()
    for i, server in enumerate(config.servers):
        loc = ("servers", i)
        plan = _server(i, server, config.limits, upstreams, lines, loc, base, runtime, config)
        servers.append(plan)
        for j, listen in enumerate(server.listen):
            key = listen.host_port
            if key in tls_flags and tls_flags[key] != listen.tls:
                raise lines.error(
                    (*loc, "listen", j), f"{listen.address} is TLS for one server, not another"
                )
            tls_flags[key] = listen.tls
            by_listen.setdefault(key, []).append((server, plan))

    listeners: dict[tuple[str, int], ListenerPlan] = {}
    for key, entries in by_listen.items():
        defaults = [p for s, p in entries if s.default]
        if len(defaults) > 1:
            raise lines.error(
                ("servers", defaults[1].index, "default"),
                f"two default servers for {key[0]}:{key[1]}",
            )
        default = defaults[0] if defaults else entries[0][1]
        router = HostRouter([(s.server_names, p) for s, p in entries], default)
        ctx = None
        if tls_flags[key]:
            ctx = _tls_context(entries, lines, base)
        listeners[key] = ListenerPlan(key[0], key[1], tls_flags[key], ctx, router)

    firewall = None
    firewall_lookup = None
    if config.firewall is not None:
        from ..firewall.classifier import Classifier
        from ..firewall.files import load_ruleset

        rules = config.firewall.rules
        firewall = load_ruleset(rules if rules.is_absolute() else base / rules)
        firewall_lookup = Classifier(firewall).lookup
    return Plan(
        policy=runtime,
        firewall=firewall,
        firewall_lookup=firewall_lookup,
        source=lines.file,
        config=config,
        listeners=listeners,
        upstreams=upstreams,
        limits=config.limits,
        access_log=config.access_log,
        keep_encoded_slash=config.encoded_slash == "keep",
        servers=tuple(servers),
    )


def _upstream(
    name: str, up: UpstreamConfig, lines: LineMap, loc: tuple[str | int, ...]
) -> UpstreamPlan:
    peers = []
    for p in up.servers:
        host, port = parse_address(p.address, default_host="127.0.0.1")
        peers.append(PeerPlan(host, port, p.weight, p.max_fails, p.fail_timeout, p.backup))
    if all(p.backup for p in peers):
        raise lines.error((*loc, "servers"), "an upstream needs at least one non-backup peer")
    if up.balance == "ip_hash" and any(p.backup for p in peers):
        raise lines.error((*loc, "servers"), "ip_hash cannot be combined with backup peers")
    return UpstreamPlan(
        name=name,
        peers=tuple(peers),
        balance=up.balance,
        keepalive=up.keepalive,
        keepalive_timeout=up.keepalive_timeout,
        keepalive_requests=up.keepalive_requests,
        connect_timeout=up.connect_timeout,
        read_timeout=up.read_timeout,
        send_timeout=up.send_timeout,
        tries=up.tries,
        health_check=up.health_check,
    )


def _edits(h: HeadersConfig) -> tuple[HeaderEdit, HeaderEdit]:
    req = HeaderEdit(h.request.remove, h.request.set, h.request.add)
    resp = HeaderEdit(h.response.remove, h.response.set, h.response.add)
    return req, resp


def _server(
    index: int,
    server: ServerConfig,
    limits: LimitsConfig,
    upstreams: dict[str, UpstreamPlan],
    lines: LineMap,
    loc: tuple[str | int, ...],
    base: Path,
    runtime: PolicyRuntime,
    config: Config,
) -> ServerPlan:
    server_req, server_resp = _edits(server.headers)
    entries = []
    for j, location in enumerate(server.locations):
        lloc = (*loc, "locations", j)
        try:
            kind, pattern, nocase = parse_location(location.match)
        except Exception as exc:  # re.error or ValueError, both reported with the line
            raise lines.error((*lloc, "location"), f"bad location: {exc}") from None
        plan = _location(location, server_req, server_resp, limits, upstreams, lines, lloc, base)
        phases = policy_phases(config, server, location, runtime, lines, loc, lloc, base)
        after = waf_response_phases(server, location)
        if phases or after:
            chain = Chain(request=phases, response=after + plan.chain.response)
            plan = replace(plan, chain=chain)
        entries.append((kind, pattern, nocase, plan))
    try:
        matcher = LocationMatcher(entries)
    except ValueError as exc:
        raise lines.error((*loc, "locations"), str(exc)) from None
    names = tuple(server.server_names)
    primary = next((n for n in names if not n.startswith(("~", "*", "."))), "")
    return ServerPlan(
        index=index,
        names=names,
        primary_name=primary.encode(),
        matcher=matcher,
    )


def _location(
    location: LocationConfig,
    server_req: HeaderEdit,
    server_resp: HeaderEdit,
    limits: LimitsConfig,
    upstreams: dict[str, UpstreamPlan],
    lines: LineMap,
    loc: tuple[str | int, ...],
    base: Path,
) -> LocationPlan:
    req_edit, resp_edit = _edits(location.headers)
    req_edit = server_req.merged(req_edit)
    resp_edit = server_resp.merged(resp_edit)
    route: Route
    if location.proxy is not None:
        p = location.proxy
        up = upstreams.get(p.upstream)
        if up is None:
            if p.upstream.startswith("http://"):
                try:
                    peer_host, port = parse_address(p.upstream[7:].rstrip("/"))
                except ValueError as exc:
                    raise lines.error((*loc, "proxy", "upstream"), str(exc)) from None
                up = _upstream(
                    p.upstream,
                    UpstreamConfig.model_validate({"servers": [f"{peer_host}:{port}"]}),
                    lines,
                    (*loc, "proxy"),
                )
            else:
                known = ", ".join(upstreams) or "none defined"
                raise lines.error(
                    (*loc, "proxy", "upstream"),
                    f"unknown upstream {p.upstream!r} (known: {known})",
                )
        host_header: bytes | None
        if p.host == "$host":
            host_header = None
        elif p.host == "$upstream":
            host_header = b""
        else:
            host_header = p.host.encode()
        route = ProxyRoute(
            upstream=up,
            host=host_header,
            x_forwarded=p.x_forwarded,
            connect_timeout=p.connect_timeout or up.connect_timeout,
            read_timeout=p.read_timeout or up.read_timeout,
            send_timeout=p.send_timeout or up.send_timeout,
        )
    elif location.return_ is not None:
        r = location.return_
        try:
            template = Template(r.location) if r.location else None
        except ValueError as exc:
            raise lines.error((*loc, "return", "location"), str(exc)) from None
        route = ReturnRoute(
            status=r.status,
            location=template,
            body=(r.body or "").encode(),
            content_type=r.content_type.encode(),
        )
    else:
        s = location.static
        assert s is not None
        root = s.root if s.root.is_absolute() else (base / s.root)
        if not root.is_dir():
            raise lines.error((*loc, "static", "root"), f"not a directory: {root}")
        strip = b""
        if s.alias:
            kind, pattern, _ = parse_location(location.match)
            if kind == "regex":
                raise lines.error((*loc, "static", "alias"), "alias needs a prefix location")
            strip = pattern.encode().rstrip(b"/")
        route = StaticRoute(
            root=root.resolve(),
            strip_prefix=strip,
            index=tuple(s.index),
            expires=s.expires,
            cache_control=s.cache_control.encode() if s.cache_control else None,
            follow_symlinks=s.follow_symlinks,
        )
    response: tuple[ResponsePhase, ...] = () if resp_edit.empty else (resp_edit,)
    max_body = location.max_body_size
    return LocationPlan(
        spec=location.match,
        name=f"location {location.match}",
        route=route,
        chain=Chain(request=(), response=response),
        request_headers=req_edit,
        max_body_size=limits.max_body_size if max_body is None else max_body,
        hide_server=resp_edit.drops(b"server"),
    )


def _tls_context(
    entries: list[tuple[ServerConfig, ServerPlan]], lines: LineMap, base: Path
) -> ssl.SSLContext:
    from ..server.tls import TLSError, make_sni_context

    certs: list[tuple[tuple[str, ...], Path, Path, ServerConfig]] = []
    for server, plan in entries:
        if server.tls is None:
            raise lines.error(("servers", plan.index, "tls"), "a TLS address needs a certificate")
        cert = server.tls.certificate
        key = server.tls.key
        certs.append(
            (
                plan.names,
                cert if cert.is_absolute() else base / cert,
                key if key.is_absolute() else base / key,
                server,
            )
        )
    try:
        return make_sni_context(
            [
                (names, cert, key, s.tls.protocols, s.tls.ciphers)
                for names, cert, key, s in certs
                if s.tls
            ]
        )
    except TLSError as exc:
        raise lines.error(("servers", entries[exc.index][1].index, "tls"), str(exc)) from None
