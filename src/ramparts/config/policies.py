"""Compiling a location's traffic policies into request phases, in the order of the
request path: real client IP, access control, connection and rate limits,
authentication. A location inherits each policy from its server unless it sets its own
(as nginx's directives are inherited); ``auth: false`` turns an inherited one off.

Each phase is a small closure around a pure engine from policies/. What needs the event
loop (a rate limit's delay, the shared store, bcrypt in a thread, the forward-auth
subrequest) comes back as a ``Wait`` for the shell to run. State shared between requests
and across reloads (the store holding limit zones and bans, the thread pool) lives in the
plan's ``PolicyRuntime``, which each worker fills in after it has started.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..http.headers import Headers
from ..http.status import reason
from ..pipeline.context import Context
from ..pipeline.phases import BodyCheck, RequestPhase, Respond, ResponsePhase, Wait
from ..pipeline.template import Template
from ..policies.access import AccessList
from ..policies.auth import (
    AuthResult,
    BasicAuth,
    ForwardAuth,
    JwtAuth,
    RequireHeader,
    SlowCheck,
    Subrequest,
    hmac_secret_from_env,
    load_hmac_secret,
    load_htpasswd,
    load_jwks,
    load_public_key,
)
from ..policies.bans import BanTable
from ..policies.ratelimit import Decision, LimitConn, LimitReq, Outcome
from ..policies.realip import RealIP
from ..policies.waf import (
    Connection,
    Exclusion,
    ModSecurityEngine,
    OverLimit,
    RequestBodyInspection,
    ResponseBodyInspection,
    WafMode,
    WafPolicy,
    WafTransaction,
    inspect_request,
    inspect_request_body,
    inspect_request_head,
    inspect_response,
    inspect_response_body,
    parse_rule_ids,
)
from ..policies.waf import Outcome as WafOutcome
from ..policies.waf import Verdict as WafVerdict
from ..state.memory import MemoryStore
from ..state.redis import RedisStore
from ..state.store import Store, StoreUnavailable
from .loader import LineMap
from .schema import AuthConfig, Config, LocationConfig, ServerConfig, WafConfig

__all__ = [
    "PolicyRuntime",
    "forget_waf_engines",
    "inherited",
    "inspect_whole",
    "policy_phases",
    "waf_response_phases",
    "waf_warm_up",
]

log = logging.getLogger("ramparts")

Where = tuple[str | int, ...]

_FORBIDDEN = b"403 Forbidden\n"

# runs fn(job) in an inspection process: fn is inspect_whole or inspect_exchange
InspectFn = Callable[[Callable[[Any], Any], Any], Awaitable[tuple[Any, Any]]]
RunBlocking = Callable[[Callable[[], AuthResult]], Awaitable[AuthResult]]
FetchHead = Callable[[Subrequest], Awaitable[tuple[int, Headers]]]


class PolicyRuntime:
    """What the phases of one plan share at run time, per worker process: a way to run
    CPU-heavy checks (bcrypt) in the worker's thread pool, and the subrequest client. Set
    by the worker (``attach``) before the first request; a phase that runs without it
    fails closed."""

    def __init__(self) -> None:
        self.run_blocking: RunBlocking | None = None
        # runs a WAF transaction in an inspection process (set by the worker)
        self.inspect: InspectFn | None = None
        self.fetch_head: FetchHead | None = None
        # The shared state: ``memory`` when it lives in this process (decided inline),
        # else ``store`` (Redis: every decision is a round trip, awaited).
        self.memory: MemoryStore | None = None
        self.store: Store | None = None
        # The bans in force (the worker's copy): checked again on the client address the
        # real-IP phase found, since the connection phase saw only the proxy in front.
        self.bans: BanTable | None = None
        # one WAF engine per distinct policy of the plan (loading the CRS takes ~40 ms)
        self._waf: dict[WafPolicy, ModSecurityEngine] = {}

    def waf_keys(self) -> set[int]:
        """The keys of this plan's WAF engines (see ``inspect_whole``)."""
        return {id(e) for e in self._waf.values()}

    def waf_engine(self, cfg: WafConfig, base: Path) -> ModSecurityEngine:
        """The engine for a location's WAF settings, shared by equal settings."""
        policy = _waf_policy(cfg, base)
        engine = self._waf.get(policy)
        if engine is None:
            engine = self._waf[policy] = ModSecurityEngine(policy)
        return engine

    def attach(
        self, loop: Any, pool: Executor, store: Store | None = None, bans: BanTable | None = None
    ) -> None:
        """Bind to the worker's event loop, thread pool, store and bans (in the worker)."""
        self.store = store
        self.bans = bans
        self.memory = store if isinstance(store, MemoryStore) else None
        from ..server.subrequest import fetch_head

        def run_blocking(fn: Callable[[], AuthResult]) -> Awaitable[AuthResult]:
            return loop.run_in_executor(pool, fn)  # type: ignore[no-any-return]

        self.run_blocking = run_blocking
        self.fetch_head = fetch_head


def inherited(server: ServerConfig, location: LocationConfig, name: str) -> Any:
    """A policy setting of ``location``, or its server's when the location leaves it unset."""
    own = getattr(location, name)
    return own if own is not None else getattr(server, name)


def _where(server_at: Where, loc_at: Where, location: LocationConfig, name: str) -> Where:
    return (*loc_at, name) if getattr(location, name) is not None else (*server_at, name)


# -- real IP and access -------------------------------------------------------------------


def _realip_phase(rip: RealIP) -> RequestPhase:
    resolve = rip.resolve

    def real_ip(ctx: Context) -> Respond | Wait | None:
        ctx.client_ip = resolve(ctx.peer_ip, ctx.request.headers)
        return None

    return real_ip


def _ban_phase(runtime: PolicyRuntime) -> RequestPhase:
    def banned(ctx: Context) -> Respond | Wait | None:
        bans = runtime.bans
        if bans is None or not len(bans) or ctx.client_ip == ctx.peer_ip:
            return None
        ban = bans.banned(ctx.client_ip, time.time())
        if ban is None:
            return None
        return Respond(403, ((b"Content-Type", b"text/plain"),), _FORBIDDEN, "ban:" + ban.reason)

    return banned


def _access_phase(acl: AccessList) -> RequestPhase:
    check = acl.check
    answers = [
        Respond(403, ((b"Content-Type", b"text/plain"),), _FORBIDDEN, acl.decided_by(i + 1))
        for i in range(len(acl.rules))
    ]
    unknown = Respond(403, ((b"Content-Type", b"text/plain"),), _FORBIDDEN, "access:bad-address")

    def access(ctx: Context) -> Respond | Wait | None:
        try:
            pos = check(ctx.client_ip)
        except ValueError:
            return unknown  # fail closed: an address we cannot read is not allowed
        return answers[pos - 1] if pos else None

    return access


# -- authentication -------------------------------------------------------------------------


def _note_identity(ctx: Context, result: AuthResult) -> None:
    if result.identity:
        if ctx.vars is None:
            ctx.vars = {}
        ctx.vars["user"] = result.identity
    result.apply(ctx.request.headers)


def _auth_phase(
    engine: RequireHeader | JwtAuth | BasicAuth, runtime: PolicyRuntime
) -> RequestPhase:
    wall = isinstance(engine, JwtAuth)  # JWT dates are epoch seconds
    check = engine.check
    clock = time.time if wall else time.monotonic

    def finish(result: AuthResult, ctx: Context) -> Respond | None:
        if not result.ok:
            return result.respond()
        _note_identity(ctx, result)
        return None

    async def slow(ctx: Context, job: SlowCheck) -> Respond | Wait | None:
        run = runtime.run_blocking
        if run is None:
            raise RuntimeError("no thread pool for slow authentication checks")
        return finish(await run(job.run), ctx)

    def auth(ctx: Context) -> Respond | Wait | None:
        result = check(ctx.request.headers, clock())
        if type(result) is SlowCheck:
            return Wait(awaitable=slow(ctx, result))
        return finish(result, ctx)  # type: ignore[arg-type]

    return auth


def _forward_phase(engine: ForwardAuth, runtime: PolicyRuntime) -> RequestPhase:
    async def ask(ctx: Context) -> Respond | Wait | None:
        fetch = runtime.fetch_head
        if fetch is None:
            raise RuntimeError("no subrequest client")
        req = ctx.request
        sub = engine.subrequest(
            req.method,
            req.uri,
            req.headers,
            client_ip=ctx.client_ip,
            scheme=ctx.scheme,
            connection_tokens=req.conn_tokens,
        )
        try:
            status, headers = await fetch(sub)
        except (OSError, TimeoutError) as exc:
            result = engine.failed(str(exc) or type(exc).__name__)
        else:
            result = engine.decide(status, headers)
        if not result.ok:
            return result.respond()
        _note_identity(ctx, result)
        return None

    def forward(ctx: Context) -> Respond | Wait | None:
        return Wait(awaitable=ask(ctx))

    return forward


def _path(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else base / p


def _auth_engine(cfg: AuthConfig, base: Path) -> RequireHeader | JwtAuth | BasicAuth | ForwardAuth:
    if cfg.header is not None:
        h = cfg.header
        return RequireHeader(h.name, h.values, realm=h.realm)
    if cfg.basic is not None:
        return BasicAuth(load_htpasswd(_path(base, cfg.basic.htpasswd)), realm=cfg.basic.realm)
    if cfg.jwt is not None:
        j = cfg.jwt
        if j.secret_file is not None:
            keys = [load_hmac_secret(_path(base, j.secret_file))]
        elif j.secret_env is not None:
            keys = [hmac_secret_from_env(j.secret_env, os.environ)]
        elif j.public_key is not None:
            keys = [load_public_key(_path(base, j.public_key))]
        else:
            assert j.jwks is not None
            keys = list(load_jwks(_path(base, j.jwks)))
        return JwtAuth(
            keys,
            j.algorithms,
            issuer=j.issuer,
            audience=j.audience,
            leeway=j.leeway,
            required_claims=tuple(j.required_claims),
            claim_headers=j.claims_to_headers or None,
            realm=j.realm,
        )
    r = cfg.request
    assert r is not None
    return ForwardAuth(
        r.url, pass_headers=r.pass_headers, copy_headers=r.copy_headers, timeout=r.timeout
    )


# -- rate and connection limits ---------------------------------------------------------------


KeyOf = Callable[[Context], str]


def _client_ip(ctx: Context) -> str:
    return ctx.client_ip


def key_of(source: str) -> KeyOf:
    """A limit's key from its template: the client address itself (the usual key, and the
    hot path), else the rendered template as text."""
    if source.strip() in ("$remote_addr", "$binary_remote_addr", "${remote_addr}"):
        return _client_ip
    template = Template(source)

    def render(ctx: Context) -> str:
        return template.render(ctx).decode("latin-1")

    return render


def _ms() -> int:
    return int(time.monotonic() * 1000)


def _note(ctx: Context, name: str, value: str) -> None:
    if ctx.vars is None:
        ctx.vars = {}
    ctx.vars[name] = value


def _rejection(d: Decision) -> Respond:
    status = d.status
    headers: tuple[tuple[bytes, bytes], ...] = ((b"Content-Type", b"text/plain"),)
    if d.retry_after_ms:
        headers += ((b"Retry-After", b"%d" % d.retry_after),)
    body = b"%d %s\n" % (status, reason(status))
    return Respond(status, headers, body, d.decided_by)


def _store_down(layer: str) -> Respond:
    return Respond(503, ((b"Content-Type", b"text/plain"),), b"503 Service Unavailable\n", layer)


def _limit_req_phase(
    checks: list[tuple[LimitReq, KeyOf]], runtime: PolicyRuntime, fail_closed: bool
) -> RequestPhase:
    single = checks[0] if len(checks) == 1 else None
    closed = _store_down("ratelimit:store-unavailable")

    def outcome(ctx: Context, d: Decision) -> Respond | Wait | None:
        o = d.outcome
        if o is Outcome.PASSED or o is Outcome.NONE:
            return None
        _note(ctx, "limit_req", o.name)
        if o is Outcome.DELAYED:
            return Wait(d.delay_ms / 1000)
        if o is Outcome.REJECTED:
            return _rejection(d)
        return None  # a dry run: noted, not applied

    async def shared(ctx: Context, keyed: list[tuple[LimitReq, str]]) -> Respond | Wait | None:
        store = runtime.store
        assert store is not None
        try:
            d = await store.limit_req(keyed, _ms())
        except StoreUnavailable:
            _note(ctx, "limit_req", "STORE_UNAVAILABLE")
            return closed if fail_closed else None
        return outcome(ctx, d)

    def limit_req(ctx: Context) -> Respond | Wait | None:
        memory = runtime.memory
        if memory is not None and single is not None:
            limit, key = single
            return outcome(ctx, memory.limit_req_one(limit, key(ctx), _ms()))
        keyed = [(limit, key(ctx)) for limit, key in checks]
        if memory is not None:
            return outcome(ctx, memory.limit_req_sync(keyed, _ms()))
        store = runtime.store
        if isinstance(store, RedisStore):
            # The pipelined fast path: a future the reply resolves, no coroutine.
            def down(exc: StoreUnavailable) -> Respond | Wait | None:
                _note(ctx, "limit_req", "STORE_UNAVAILABLE")
                return closed if fail_closed else None

            try:
                fut = store.limit_req_future(keyed, _ms(), lambda d: outcome(ctx, d), down)
            except StoreUnavailable as exc:
                return down(exc)
            return None if fut is None else Wait(awaitable=fut)
        if store is None:
            raise RuntimeError("no store for rate limits")
        return Wait(awaitable=shared(ctx, keyed))

    return limit_req


def _limit_conn_phase(
    checks: list[tuple[LimitConn, KeyOf]], runtime: PolicyRuntime, fail_closed: bool
) -> RequestPhase:
    closed = _store_down("limitconn:store-unavailable")

    def outcome(ctx: Context, d: Decision, keyed: list[tuple[LimitConn, str]]) -> Respond | None:
        o = d.outcome
        if o is Outcome.PASSED:
            memory = runtime.memory
            if memory is not None:
                release: Callable[[], None] = lambda: memory.conn_release_sync(keyed)  # noqa: E731
            else:
                store = runtime.store
                assert store is not None

                def release() -> None:
                    task = asyncio.ensure_future(store.conn_release(keyed))
                    task.add_done_callback(_quiet)

            if ctx.cleanup is None:
                ctx.cleanup = []
            ctx.cleanup.append(release)
            return None
        if o is Outcome.NONE:
            return None
        _note(ctx, "limit_conn", o.name)
        return _rejection(d) if o is Outcome.REJECTED else None

    async def shared(ctx: Context, keyed: list[tuple[LimitConn, str]]) -> Respond | Wait | None:
        store = runtime.store
        assert store is not None
        try:
            d = await store.conn_acquire(keyed)
        except StoreUnavailable:
            _note(ctx, "limit_conn", "STORE_UNAVAILABLE")
            return closed if fail_closed else None
        return outcome(ctx, d, keyed)

    def limit_conn(ctx: Context) -> Respond | Wait | None:
        keyed = [(limit, key(ctx)) for limit, key in checks]
        memory = runtime.memory
        if memory is not None:
            return outcome(ctx, memory.conn_acquire_sync(keyed), keyed)
        if runtime.store is None:
            raise RuntimeError("no store for connection limits")
        return Wait(awaitable=shared(ctx, keyed))

    return limit_conn


def _quiet(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("releasing a connection-limit slot failed: %s", task.exception())


def _limits(
    config: Config,
    server: ServerConfig,
    location: LocationConfig,
    runtime: PolicyRuntime,
    fail: Callable[[str, Exception], ConfigError],
) -> list[RequestPhase]:
    phases: list[RequestPhase] = []
    conns = inherited(server, location, "limit_conn")
    if conns:
        status = inherited(server, location, "limit_conn_status") or 503
        dry = bool(inherited(server, location, "limit_conn_dry_run"))
        cchecks: list[tuple[LimitConn, KeyOf]] = []
        closed = False
        for c in conns:
            zone = config.limit_conn_zones.get(c.zone)
            if zone is None:
                known = ", ".join(config.limit_conn_zones) or "none defined"
                raise fail("limit_conn", ValueError(f"unknown zone {c.zone!r} (known: {known})"))
            try:
                cchecks.append(
                    (LimitConn(c.zone, c.max, status=status, dry_run=dry), key_of(zone.key))
                )
            except ValueError as exc:
                raise fail("limit_conn", exc) from None
            closed = closed or zone.on_store_error == "closed"
        phases.append(_limit_conn_phase(cchecks, runtime, closed))
    reqs = inherited(server, location, "limit_req")
    if reqs:
        status = inherited(server, location, "limit_req_status") or 503
        dry = bool(inherited(server, location, "limit_req_dry_run"))
        rchecks: list[tuple[LimitReq, KeyOf]] = []
        closed = False
        for r in reqs:
            rzone = config.limit_req_zones.get(r.zone)
            if rzone is None:
                known = ", ".join(config.limit_req_zones) or "none defined"
                raise fail("limit_req", ValueError(f"unknown zone {r.zone!r} (known: {known})"))
            try:
                limit = LimitReq(
                    r.zone,
                    rzone.rate,
                    r.burst,
                    delay=r.delay,
                    nodelay=r.nodelay,
                    status=status,
                    dry_run=dry,
                )
                rchecks.append((limit, key_of(rzone.key)))
            except ValueError as exc:
                raise fail("limit_req", exc) from None
            closed = closed or rzone.on_store_error == "closed"
        phases.append(_limit_req_phase(rchecks, runtime, closed))
    return phases


# -- the WAF ---------------------------------------------------------------------------------


def _waf_policy(cfg: WafConfig, base: Path) -> WafPolicy:
    mode = {"on": WafMode.ON, "detection_only": WafMode.DETECTION_ONLY}[cfg.mode]
    exclusions = tuple(
        Exclusion(
            rule_id=None if e.id is None else parse_rule_ids(str(e.id)),
            tag=e.tag,
            target=e.target,
            path_prefix=e.path,
        )
        for e in cfg.exclude
    )
    rules: tuple[str | Path, ...] = (*cfg.rules, *(_path(base, f) for f in cfg.rules_files))
    return WafPolicy(
        mode=mode,
        paranoia_level=cfg.paranoia,
        inbound_threshold=cfg.inbound_threshold,
        outbound_threshold=cfg.outbound_threshold,
        block_status=cfg.status,
        crs=_path(base, cfg.crs),
        exclusions=exclusions,
        rules_before_crs=tuple(cfg.rules_before_crs),
        rules=rules,
        request_body=RequestBodyInspection(
            limit=cfg.body_limit,
            over_limit=OverLimit.REJECT
            if cfg.over_limit == "reject"
            else OverLimit.INSPECT_PARTIAL,
        ),
        response_body=ResponseBodyInspection(
            enabled=cfg.response_body, limit=cfg.response_body_limit
        ),
    )


def _audit_log(cfg: WafConfig, base: Path) -> Path | None:
    return None if cfg.audit_log is None else _path(base, cfg.audit_log)


def _note_waf(ctx: Context, outcome: WafOutcome, audit: Path | None) -> None:
    """What the WAF found, into the access log (and the audit log for a block)."""
    if not outcome.matches:
        return
    if ctx.vars is None:
        ctx.vars = {}
    ctx.vars["waf_rules"] = list(outcome.rule_ids)
    ctx.vars["waf_score"] = outcome.inbound_score
    ctx.vars["waf_messages"] = outcome.messages[:20]
    if outcome.blocked and audit is not None:
        _write_audit(audit, ctx, outcome)


def _write_audit(path: Path, ctx: Context, outcome: WafOutcome) -> None:
    req = ctx.request
    record = {
        "time": time.time(),
        "client": ctx.client_ip,
        "peer": f"{ctx.peer_ip}:{ctx.peer_port}",
        "method": req.method.decode("latin-1"),
        "target": req.target.decode("latin-1"),
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in req.headers],
        "status": outcome.verdict.status,
        "decided_by": outcome.verdict.decided_by,
        "inbound_score": outcome.inbound_score,
        "outbound_score": outcome.outbound_score,
        "matches": [
            {"id": m.rule_id, "message": m.message, "data": m.data, "severity": m.severity}
            for m in outcome.matches
        ],
    }
    try:
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    except OSError as exc:
        log.error("cannot write the WAF audit log %s: %s", path, exc)


#: Requests with at most this many body bytes are inspected on the event loop (about a
#: millisecond, as nginx's ModSecurity module does in its own loop), and their
#: transaction stays open for the response head; longer bodies, which can take
#: ModSecurity tens or hundreds of milliseconds, go to an inspection process whole
#: (handing a request over costs about 0.8 ms of CPU there, so small ones stay here;
#: their responses are not inspected).
WAF_INLINE_BODY = 8192

# The engines of this process's plans, by key: what an inspection process (forked from a
# worker, so it has them too) looks its engine up by.
_WAF_ENGINES: dict[int, ModSecurityEngine] = {}

#: (engine key, client ip, client port, server ip, server port, method, target, version,
#: headers, body): one request, as it crosses to an inspection process.
Inspection = tuple[int, str, int, str, int, bytes, bytes, str, list[tuple[bytes, bytes]], bytes]


def forget_waf_engines(keep: set[int]) -> None:
    """Drop the engines of plans no longer served (before new inspection processes fork)."""
    for key in list(_WAF_ENGINES):
        if key not in keep:
            del _WAF_ENGINES[key]


def waf_warm_up() -> None:
    """Nothing: submitted once so that a new inspection pool forks its processes now."""


#: Response bodies of at most this many bytes are inspected on the event loop (the CRS
#: takes about 0.1 ms a kilobyte: 50 ms for a 512 KB page); longer ones in an inspection
#: process, which runs the exchange again in a transaction of its own.
WAF_INLINE_RESPONSE = 16384

#: (the request as in Inspection, response status, response headers, response body)
ResponseInspection = tuple[Inspection, int, list[tuple[bytes, bytes]], bytes]


def _inspect(job: Inspection) -> tuple[WafTransaction, WafVerdict]:
    key, client_ip, client_port, server_ip, server_port, method, target, version, headers, body = (
        job
    )
    txn = _WAF_ENGINES[key].transaction()
    conn = Connection(client_ip, client_port, server_ip, server_port)
    return txn, inspect_request(txn, conn, method, target, version, headers, body)


def inspect_whole(job: Inspection) -> tuple[WafVerdict, WafOutcome]:
    """One request's whole transaction (connection, URI, head, body, logging), in the
    process that runs it."""
    txn, verdict = _inspect(job)
    return verdict, txn.finish()


def inspect_exchange(job: ResponseInspection) -> tuple[WafVerdict, WafOutcome]:
    """A response's inspection, in the process that runs it: a new transaction takes the
    request again (it passed on the worker: the same rules decide the same way), then
    the response head and body (``b""`` when its body is not inspected)."""
    request, status, headers, body = job
    txn, verdict = _inspect(request)
    if not verdict.blocked:
        verdict = inspect_response(txn, status, "1.1", headers, body)
    return verdict, txn.finish()


def _merge(request: WafOutcome, response: WafOutcome) -> WafOutcome:
    """One exchange's outcome from its request's and, inspected apart, its response's:
    the response side adds the rules of the response phases and the outbound score."""
    seen = {m.rule_id for m in request.matches}
    extra = tuple(m for m in response.matches if m.phase >= 3 and m.rule_id not in seen)
    return replace(
        request,
        matches=request.matches + extra,
        outbound_score=response.outbound_score,
        verdict=response.verdict if response.blocked else request.verdict,
        partial=request.partial or response.partial,
    )


class _WafExchange:
    """One exchange's WAF state from its request phase to its response and its log line:
    the transaction still open on the loop (``txn``), or, for a request inspected in a
    process, that inspection's outcome; the request as an inspection job, for a response
    inspected in a process; and that response inspection's outcome."""

    __slots__ = (
        "audit",
        "body_wanted",
        "engine",
        "head",
        "job",
        "outcome",
        "responded",
        "response",
        "runtime",
        "txn",
    )

    def __init__(
        self,
        engine: ModSecurityEngine,
        runtime: PolicyRuntime,
        audit: Path | None,
        job: Inspection,
        txn: WafTransaction | None,
        outcome: WafOutcome | None,
    ) -> None:
        self.engine = engine
        self.runtime = runtime
        self.audit = audit
        self.job = job
        self.txn = txn
        self.outcome = outcome
        self.response: WafOutcome | None = None
        self.responded = False
        self.head: tuple[int, list[tuple[bytes, bytes]]] = (0, [])
        self.body_wanted = False

    def note(self, ctx: Context) -> None:
        """When the exchange ends: what the WAF found, into the logs."""
        outcome = self.txn.finish() if self.txn is not None else self.outcome
        if outcome is None:
            return
        if self.response is not None:
            outcome = _merge(outcome, self.response)
        _note_waf(ctx, outcome, self.audit)

    def respond(self, ctx: Context, status: int, headers: Headers) -> None:
        """The upstream's response head: judged now, or held for its body (``ctx.hold``)
        when the body is inspected or the request was inspected in a process."""
        self.responded = True
        txn = self.txn
        if txn is not None:
            verdict = txn.process_response_headers(status, "1.1", headers)
            if verdict.blocked:
                ctx.refuse = verdict.respond()
                return
            if not txn.response_body_wanted:
                verdict = inspect_response_body(txn, b"")
                if verdict.blocked:
                    ctx.refuse = verdict.respond()
                return
            self.body_wanted = True
            limit = txn.response_body_limit
        else:
            # Its request went to a process: so does its response (head and body).
            self.body_wanted = self.engine.wants_response_body(status, headers)
            limit = self.engine.policy.response_body.limit if self.body_wanted else 0
        self.head = (status, list(headers))
        ctx.hold = BodyCheck(limit, self.check_body)

    def check_body(self, body: bytes, complete: bool) -> Respond | Awaitable[Respond | None] | None:
        """The held response body: a short one inspected here, in the transaction open
        on the loop; a long one, or any of a request inspected in a process, in a
        process."""
        txn = self.txn
        inspect = self.runtime.inspect
        if txn is not None and (len(body) <= WAF_INLINE_RESPONSE or inspect is None):
            verdict = inspect_response_body(txn, body)
            return verdict.respond() if verdict.blocked else None
        if inspect is None:
            return None  # (no process: the request was inspected here, above)
        status, headers = self.head
        return self._remote(inspect, status, headers, body if self.body_wanted else b"")

    async def _remote(
        self, inspect: InspectFn, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Respond | None:
        remote: tuple[WafVerdict, WafOutcome] = await inspect(
            inspect_exchange, (self.job, status, headers, body)
        )
        verdict, outcome = remote
        self.response = outcome
        return verdict.respond() if verdict.blocked else None


def _waf_phase(
    engine: ModSecurityEngine, audit: Path | None, runtime: PolicyRuntime
) -> RequestPhase:
    """The WAF on a request: its whole transaction (head and body, read up to the limit).
    A request with a body over WAF_INLINE_BODY bytes is inspected in an inspection
    process, so that a long inspection (tens of milliseconds, with the GIL held by
    ModSecurity) never stalls the event loop; smaller ones inline."""
    key = id(engine)
    _WAF_ENGINES[key] = engine
    limit = engine.request_body_limit + 1

    def job(ctx: Context, body: bytes) -> Inspection:
        req = ctx.request
        return (
            key,
            ctx.client_ip,
            ctx.peer_port,
            ctx.local[0],
            ctx.local[1],
            req.method,
            req.target,
            req.version,
            list(req.headers),
            body,
        )

    def opened(
        ctx: Context, request: Inspection, txn: WafTransaction | None, outcome: WafOutcome | None
    ) -> None:
        """The request passed: its WAF state waits for the response and the log line."""
        state = _WafExchange(engine, runtime, audit, request, txn, outcome)
        ctx.scratch = state
        if ctx.cleanup is None:
            ctx.cleanup = []
        ctx.cleanup.append(lambda: state.note(ctx))

    async def run(
        ctx: Context, txn: WafTransaction, body: bytes | Awaitable[bytes]
    ) -> Respond | Wait | None:
        if not isinstance(body, bytes):
            body = await body
        inspect = runtime.inspect
        if inspect is None or len(body) <= WAF_INLINE_BODY:
            # On the loop, in the transaction that judged the head: it stays open for
            # the response, and ends (logged) when the exchange does.
            verdict = inspect_request_body(txn, body)
            if verdict.blocked:
                _note_waf(ctx, txn.finish(), audit)
                return verdict.respond()
            opened(ctx, job(ctx, body), txn, None)
            return None
        # A long body: the whole request, head again, in an inspection process.
        txn.finish()
        request = job(ctx, body)
        remote: tuple[WafVerdict, WafOutcome] = await inspect(inspect_whole, request)
        verdict, outcome = remote
        if verdict.blocked:
            _note_waf(ctx, outcome, audit)
            return verdict.respond()
        opened(ctx, request, None, outcome)
        return None

    def waf(ctx: Context) -> Respond | Wait | None:
        req = ctx.request
        txn = engine.transaction()
        conn = Connection(ctx.client_ip, ctx.peer_port, ctx.local[0], ctx.local[1])
        verdict = inspect_request_head(txn, conn, req.method, req.target, req.version, req.headers)
        if verdict.blocked:
            # Refused on its head: no byte of a body is read (nor a 100 Continue sent).
            _note_waf(ctx, txn.finish(), audit)
            return verdict.respond()
        if not (req.chunked or req.content_length):
            verdict = inspect_request_body(txn, b"")
            if verdict.blocked:
                _note_waf(ctx, txn.finish(), audit)
                return verdict.respond()
            opened(ctx, job(ctx, b""), txn, None)
            return None
        if not req.chunked and req.content_length >= limit:
            verdict = txn.declare_request_body(req.content_length)
            if verdict.blocked:
                txn.finish()
                return verdict.respond()  # 413 before the body is read
        return Wait(awaitable=run(ctx, txn, ctx.read_body(limit)))

    return waf


# -- the chain ---------------------------------------------------------------------------------


def policy_phases(
    config: Config,
    server: ServerConfig,
    location: LocationConfig,
    runtime: PolicyRuntime,
    lines: LineMap,
    server_at: Where,
    loc_at: Where,
    base: Path,
) -> tuple[RequestPhase, ...]:
    """The request phases of ``location`` (with what it inherits from ``server``).
    Configuration values the engines refuse raise ConfigError with their line."""
    phases: list[RequestPhase] = []

    def fail(name: str, exc: Exception) -> ConfigError:
        where = _where(server_at, loc_at, location, name)
        if isinstance(exc, ConfigError):
            if exc.file is not None:
                return exc  # located in a file of its own (a rule file, an htpasswd)
            # Text from the configuration itself (an inline WAF rule, field "rules.N"):
            # place it at that entry of the file.
            sub: tuple[str | int, ...] = ()
            if exc.field:
                sub = tuple(int(p) if p.isdigit() else p for p in exc.field.split("."))
            return lines.error((*where, *sub), exc.reason)
        return lines.error(where, str(exc))

    rip = inherited(server, location, "real_ip")
    if rip is not None:
        try:
            phases.append(_realip_phase(RealIP(rip.trusted, rip.header, rip.recursive)))
        except ValueError as exc:
            raise fail("real_ip", exc) from None
        phases.append(_ban_phase(runtime))
    access = inherited(server, location, "access")
    if access:
        entries = [
            ("allow", a.allow, a.id or "") if a.allow is not None else ("deny", a.deny, a.id or "")
            for a in access
        ]
        try:
            phases.append(_access_phase(AccessList(entries)))
        except ValueError as exc:
            raise fail("access", exc) from None
    phases.extend(_limits(config, server, location, runtime, fail))
    auth = inherited(server, location, "auth")
    if auth:
        try:
            engine = _auth_engine(auth, base)
        except (ValueError, ConfigError) as exc:
            raise fail("auth", exc) from None
        if isinstance(engine, ForwardAuth):
            phases.append(_forward_phase(engine, runtime))
        else:
            phases.append(_auth_phase(engine, runtime))
    waf = inherited(server, location, "waf")
    if waf and waf.mode != "off":
        try:
            waf_engine = runtime.waf_engine(waf, base)
        except (ValueError, ConfigError) as exc:
            raise fail("waf", exc) from None
        phases.append(_waf_phase(waf_engine, _audit_log(waf, base), runtime))
    return tuple(phases)


def waf_response_phases(
    server: ServerConfig, location: LocationConfig
) -> tuple[ResponsePhase, ...]:
    """The WAF's look at an upstream's response head (the CRS's outbound rules), when the
    WAF is on. A refusal replaces the answer (``ctx.refuse``)."""
    waf = inherited(server, location, "waf")
    return (_waf_response,) if waf and waf.mode != "off" else ()


def _waf_response(ctx: Context, status: int, headers: Headers) -> None:
    state = ctx.scratch
    if type(state) is not _WafExchange or ctx.upstream_status == 0 or state.responded:
        return  # no WAF here, the gateway's own answer, or its answer instead of a refusal
    state.respond(ctx, status, headers)
