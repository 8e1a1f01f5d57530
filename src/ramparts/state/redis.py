"""The fleet's store: rate-limit and connection-limit state, bans and event windows in Redis
(redis.asyncio), one round trip per decision, failing fast with ``StoreUnavailable``.

limit_req: one Lua script decides all the limits of a request atomically with the arithmetic
of ``ramparts.policies.ratelimit`` (integer floor division made exact for Lua's doubles).
A key's state is one string ``"<excess> <last>"`` set with ``PX``: it lives
``LimitReq.idle_ms`` (the time after which its state equals a new key's) plus a margin, so
expiry never changes a decision. Redis's eviction, not a key count, bounds the zones.

Time, two choices (``time_source``):

* ``"redis"`` (default): the script reads the server's clock (``TIME``) and ignores the
  caller's ``now_ms``. One clock for the whole fleet: hosts' clocks may disagree, and
  the caller cannot pass a per-host monotonic clock by mistake. Redis 7 replicates a
  script's effects, so ``TIME`` in a script that writes is allowed.
* ``"caller"``: the script uses ``now_ms``, which must then be wall-clock milliseconds,
  with the fleet's hosts NTP-synced (a skew of a few ms moves an excess by
  ``rate * skew / 1000``; nginx's clamps absorb a clock behind the stored ``last``). This is
  what makes the script testable against the pure engine with a fake clock.

limit_conn must survive a crashed process, which never releases its slots. Each
``(zone, key)`` is a hash: one field per process (a random id per store), value = the requests
it has in flight. Processes renew a lease in a sorted set (member: id, score: deadline on
Redis's clock) from every acquire and from a heartbeat task (every ``lease / 3``); the acquire
script ignores and deletes the fields of processes whose lease has run out, so a crashed
process's slots come back within one lease (15 s by default), and the keys it alone held
expire with it (each hash gets ``PEXPIRE lease``, renewed by its holders' heartbeats). An
acquire or release whose outcome is unknown (a timeout) and every key held across an outage
are repaired: the next heartbeat writes this process's true count into its field.
Per-connection leases (a sorted set of connections) were the alternative: they need a renewal
per connection, where this needs one per process.

Bans are keys with a TTL (``SET ... PX``), listed by ``SCAN`` on their prefix; event windows
are sorted sets of timestamps (Redis's clock). Every key starts with ``prefix``.

Failure: short socket timeouts, no client retries. A call that fails raises
``StoreUnavailable`` and opens a back-off window (``backoff_s``) during which calls fail at
once without touching the network; the first call after it tries again. "store unavailable"
is logged (logger ``ramparts``) once per outage and "store recovered" when a call succeeds.
An error answered by Redis (out of memory, a read-only replica, a key of the wrong type)
raises ``StoreUnavailable`` too, without back-off: Redis is up but cannot serve that call.
At most ``max_connections`` calls are in flight; a call that waits ``pool_timeout`` for one
of them fails with ``StoreUnavailable`` too, but this process being busy is not an outage:
no back-off, no log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import platform
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal, TypeVar, cast

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..clock import Clock, MonotonicClock
from ..policies.ratelimit import (
    MAX_CONN_KEY,
    MAX_REQ_KEY,
    PASS,
    UNLIMITED,
    Decision,
    LimitConn,
    LimitReq,
    Outcome,
)
from .resp import ReplyError, RespConnection, encode_command
from .store import Ban, StoreUnavailable

T = TypeVar("T")

__all__ = ["RedisStore"]

log = logging.getLogger("ramparts")

_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)

# Shared helpers: exact integer floor division for the integers (< 2^53) Lua holds as doubles.
_LUA_PRELUDE = """
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + idiv(tonumber(t[2]), 1000)
end
"""

#: Every limit_req of one request (``ramparts.policies.ratelimit.decide_req``).
#: KEYS[i]: state of check i, "<excess> <last>". ARGV[1]: now (ms) or "" for the server's
#: clock; ARGV[4i-2 .. 4i+1]: rate, burst, delay threshold, lifetime (ms) of check i.
#: Reply: {1} passed; {2, i, excess, delay_ms}; {3, i, excess, retry_after_ms}.
LIMIT_REQ_LUA = (
    _LUA_PRELUDE
    + """
local now = tonumber(ARGV[1]) or server_ms()
local n = #KEYS
local excesses, elapsed, lasts = {}, {}, {}
for i = 1, n do
  local rate, burst = tonumber(ARGV[4 * i - 2]), tonumber(ARGV[4 * i - 1])
  local state = redis.call('GET', KEYS[i])
  local excess, ms, stored, last = 0, 1, 0, now
  if state then
    local s, l = string.match(state, '^(%d+) (%-?%d+)$')
    stored, last = tonumber(s), tonumber(l)
    ms = now - last
    if ms < -60000 then ms = 1 elseif ms < 0 then ms = 0 end
    excess = stored - idiv(rate * ms, 1000) + 1000
    if excess < 0 then excess = 0 end
  end
  if excess > burst then
    local retry = -idiv(-(stored + 1000 - burst) * 1000, rate) - (now - last)
    if retry < 1 then retry = 1 end
    return {3, i, excess, retry}
  end
  excesses[i], elapsed[i], lasts[i] = excess, ms, last
end
local chosen, chosen_excess, max_delay = 0, 0, 0
for i = n, 1, -1 do
  local rate, threshold = tonumber(ARGV[4 * i - 2]), tonumber(ARGV[4 * i])
  local excess, last = excesses[i], lasts[i]
  if elapsed[i] ~= 0 then last = now end
  redis.call('SET', KEYS[i], string.format('%d %d', excess, last), 'PX', ARGV[4 * i + 1])
  if excess > threshold then
    local delay = idiv((excess - threshold) * 1000, rate)
    if delay > max_delay then chosen, chosen_excess, max_delay = i, excess, delay end
  end
end
if chosen == 0 then return {1} end
return {2, chosen, chosen_excess, max_delay}
"""
)

#: KEYS[1]: live processes (zset id -> lease deadline); KEYS[2..]: per-key count hashes.
#: ARGV[1]: this process's id; ARGV[2]: lease (ms); ARGV[1+i]: limit of KEYS[i].
#: Reply: 0 when every count was taken, else the (1-based) check that refused.
CONN_ACQUIRE_LUA = (
    _LUA_PRELUDE
    + """
local now = server_ms()
local me, lease = ARGV[1], tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, me)
redis.call('PEXPIRE', KEYS[1], 4 * lease)
for i = 2, #KEYS do
  local limit = tonumber(ARGV[1 + i])
  local fields = redis.call('HGETALL', KEYS[i])
  local total = 0
  for j = 1, #fields, 2 do
    local who, count = fields[j], tonumber(fields[j + 1])
    if who ~= me then
      local deadline = tonumber(redis.call('ZSCORE', KEYS[1], who))
      if deadline == nil or deadline < now then
        redis.call('HDEL', KEYS[i], who)
        count = 0
      end
    end
    total = total + count
  end
  if total >= limit then
    for k = 2, i - 1 do
      if redis.call('HINCRBY', KEYS[k], me, -1) <= 0 then redis.call('HDEL', KEYS[k], me) end
    end
    return i - 1
  end
  redis.call('HINCRBY', KEYS[i], me, 1)
  redis.call('PEXPIRE', KEYS[i], lease)
end
return 0
"""
)

#: KEYS: per-key count hashes; ARGV[1]: this process's id.
CONN_RELEASE_LUA = """
for i = 1, #KEYS do
  if redis.call('HINCRBY', KEYS[i], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[i], ARGV[1]) end
end
return 0
"""

#: KEYS[1]: live processes; KEYS[2..]: count hashes this process holds or must repair.
#: ARGV[1]: id; ARGV[2]: lease (ms); ARGV[1+i]: this process's true count for KEYS[i], or
#: "" to only renew the key's lifetime.
HEARTBEAT_LUA = (
    _LUA_PRELUDE
    + """
local now = server_ms()
local me, lease = ARGV[1], tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, me)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1)
redis.call('PEXPIRE', KEYS[1], 4 * lease)
for i = 2, #KEYS do
  local count = tonumber(ARGV[1 + i])
  if count and count > 0 then
    redis.call('HSET', KEYS[i], me, count)
  elseif count then
    redis.call('HDEL', KEYS[i], me)
  end
  redis.call('PEXPIRE', KEYS[i], lease)
end
return 0
"""
)

#: KEYS[1]: the event times (zset); ARGV: window (ms), cap, unique member suffix.
COUNT_EVENT_LUA = (
    _LUA_PRELUDE
    + """
local now = server_ms()
local window, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, string.format('%d:', now) .. ARGV[3])
local n = redis.call('ZCARD', KEYS[1])
if n > cap then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 1)
  n = cap
end
redis.call('PEXPIRE', KEYS[1], window)
return n
"""
)


class _Script:
    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


_LIMIT_REQ = _Script(LIMIT_REQ_LUA)
_CONN_ACQUIRE = _Script(CONN_ACQUIRE_LUA)
_CONN_RELEASE = _Script(CONN_RELEASE_LUA)
_HEARTBEAT = _Script(HEARTBEAT_LUA)
_COUNT_EVENT = _Script(COUNT_EVENT_LUA)

#: Keys renewed per heartbeat call.
_HEARTBEAT_BATCH = 500


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _same(x: Any) -> Any:
    return x


def _decision(reply: list[int], used: list[LimitReq]) -> Decision:
    """The Decision of a limit_req script reply: ``[1]`` passed, ``[2, i, excess, delay]``
    delayed by limit i, ``[3, i, excess, retry_after_ms]`` rejected by limit i."""
    if reply[0] == 1:
        return PASS
    _, index, excess, value = reply
    limit = used[index - 1]
    if reply[0] == 2:
        if limit.dry_run:
            return Decision(Outcome.DELAYED_DRY_RUN, limit, 0, excess)
        return Decision(Outcome.DELAYED, limit, value, excess)
    outcome = Outcome.REJECTED_DRY_RUN if limit.dry_run else Outcome.REJECTED
    return Decision(outcome, limit, 0, excess, value)


class RedisStore:
    """The ``Store`` protocol on Redis. ``url``: ``redis://host:port/db`` (or ``rediss://``,
    ``unix://``). Timeouts are in seconds; ``backoff_s`` is how long calls fail at once after
    a failure; ``pool_timeout`` how long a call waits for one of the ``max_connections``;
    ``conn_lease_s`` how long a silent process keeps its limit_conn slots. The whole fleet
    must use the same lease and prefix."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "ramparts:",
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        backoff_s: float = 1.0,
        max_connections: int = 64,
        pool_timeout: float = 1.0,
        time_source: Literal["redis", "caller"] = "redis",
        conn_lease_s: float = 15.0,
        expire_margin_ms: int = 1000,
        max_events: int = 10_000,
        clock: Clock | None = None,
    ) -> None:
        if time_source not in ("redis", "caller"):
            raise ValueError(f"time_source must be 'redis' or 'caller', not {time_source!r}")
        self._pool = ConnectionPool.from_url(
            url,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis = Redis(connection_pool=self._pool)
        self._where = url
        self._url = url
        self._socket_timeout = socket_timeout
        self._fast: RespConnection | None = None
        self._prefix = prefix
        self._caller_time = time_source == "caller"
        self._backoff_s = backoff_s
        self._slots = asyncio.Semaphore(max_connections)
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        self._clock = clock or MonotonicClock()
        self._down_since: float | None = None
        self._down_until = -math.inf
        self._lease_ms = max(1, round(conn_lease_s * 1000))
        self._expire_margin_ms = expire_margin_ms
        self._max_events = max_events
        self.process_id = f"{platform.node()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._procs_key = prefix + "conn-procs"
        self._held: Counter[str] = Counter()
        self._repair: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._events_sent = 0

    # -- failure handling ------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False from a failure until a call succeeds again."""
        return self._down_since is None

    @contextlib.asynccontextmanager
    async def _call(self) -> AsyncIterator[None]:
        """Around every use of the connection: the back-off gate, a connection slot, and
        the translation of connection failures into ``StoreUnavailable``."""
        now = self._clock.now()
        if now < self._down_until:
            raise StoreUnavailable(f"redis at {self._where} is unavailable (backing off)")
        slots = self._slots
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), self._pool_timeout)
            except TimeoutError:
                raise StoreUnavailable(
                    f"redis at {self._where}: all {self._max_connections} connections busy"
                    f" for {self._pool_timeout}s"
                ) from None
        else:
            await slots.acquire()
        try:
            yield
        except _DOWN as exc:
            self._down_until = self._clock.now() + self._backoff_s
            if self._down_since is None:
                self._down_since = now
                self._repair.update(self._held)
                log.warning(
                    "store unavailable: redis at %s: %s (calls fail for %.2fs, then retry)",
                    self._where,
                    exc or type(exc).__name__,
                    self._backoff_s,
                )
            raise StoreUnavailable(f"redis at {self._where}: {exc}") from exc
        except RedisError as exc:  # an answer, but an error: full, read-only, a bad key ...
            raise StoreUnavailable(f"redis at {self._where} answered: {exc}") from exc
        finally:
            slots.release()
        if self._down_since is not None:
            log.warning(
                "store recovered: redis at %s after %.2fs",
                self._where,
                self._clock.now() - self._down_since,
            )
            self._down_since = None

    async def _eval(self, script: _Script, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        redis = self._redis
        async with self._call():
            try:
                return await redis.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await redis.script_load(script.text)
                return await redis.evalsha(script.sha, len(keys), *keys, *args)

    # -- limit_req -------------------------------------------------------------------

    async def limit_req(self, checks: Sequence[tuple[LimitReq, str]], now_ms: int) -> Decision:
        result = self.limit_req_future(checks, now_ms, _same, _same)
        if result is None:
            return UNLIMITED
        out = await result
        if isinstance(out, Exception):
            raise out
        return cast(Decision, out)

    def limit_req_future(
        self,
        checks: Sequence[tuple[LimitReq, str]],
        now_ms: int,
        convert: Callable[[Decision], T],
        unavailable: Callable[[StoreUnavailable], T],
    ) -> asyncio.Future[T] | None:
        """The per-request fast path: all the limits of one request in one EVALSHA on the
        pipelined connection, without a coroutine. The future's result is ``convert`` of
        the decision, or ``unavailable`` of the failure; None when no limit applies (every
        key empty). Raises StoreUnavailable at once while backing off after a failure."""
        if self._clock.now() < self._down_until:
            raise StoreUnavailable(f"redis at {self._where} is unavailable (backing off)")
        keys: list[str] = []
        args: list[str | int] = [now_ms if self._caller_time else ""]
        used: list[LimitReq] = []
        prefix = self._prefix + "req:"
        margin = self._expire_margin_ms
        for limit, key in checks:
            if not key or len(key) > MAX_REQ_KEY:
                continue
            keys.append(f"{prefix}{limit.zone}:{key}")
            args += (limit.rate, limit.burst, limit.delay, limit.idle_ms + margin)
            used.append(limit)
        if not keys:
            return None
        cmd = encode_command(("EVALSHA", _LIMIT_REQ.sha, len(keys), *keys, *args))

        def on_reply(reply: Any) -> T:
            return convert(_decision(cast(list[int], reply), used))

        def on_error(exc: Exception) -> T:
            if isinstance(exc, ReplyError):
                return unavailable(StoreUnavailable(f"redis at {self._where} answered: {exc}"))
            return unavailable(StoreUnavailable(f"redis at {self._where}: {exc}"))

        def as_eval() -> bytes:
            return encode_command(("EVAL", _LIMIT_REQ.text, len(keys), *keys, *args))

        return self._fast_connection().call(cmd, on_reply, on_error, as_eval)

    def _fast_connection(self) -> RespConnection:
        conn = self._fast
        if conn is None or conn.closed:
            conn = self._fast = RespConnection(
                asyncio.get_running_loop(),
                self._url,
                timeout=self._socket_timeout,
                setup=[("SCRIPT", "LOAD", _LIMIT_REQ.text)],
                on_up=self._fast_up,
                on_down=self._fast_down,
            )
        return conn

    def _fast_reset(self) -> None:
        if self._fast is not None:
            self._fast.close()
            self._fast = None

    def _fast_up(self) -> None:
        if self._down_since is not None:
            log.warning(
                "store recovered: redis at %s after %.2fs",
                self._where,
                self._clock.now() - self._down_since,
            )
            self._down_since = None

    def _fast_down(self, exc: Exception) -> None:
        now = self._clock.now()
        self._down_until = now + self._backoff_s
        if self._down_since is None:
            self._down_since = now
            self._repair.update(self._held)
            log.warning(
                "store unavailable: redis at %s: %s (calls fail for %.2fs, then retry)",
                self._where,
                exc,
                self._backoff_s,
            )

    # -- limit_conn ------------------------------------------------------------------

    def _conn_keys(
        self, checks: Sequence[tuple[LimitConn, str]]
    ) -> tuple[list[str], list[LimitConn]]:
        prefix = self._prefix + "conn:"
        keys: list[str] = []
        used: list[LimitConn] = []
        for limit, key in checks:
            if key and len(key) <= MAX_CONN_KEY:
                keys.append(f"{prefix}{limit.zone}:{key}")
                used.append(limit)
        return keys, used

    async def conn_acquire(self, checks: Sequence[tuple[LimitConn, str]]) -> Decision:
        keys, used = self._conn_keys(checks)
        if not keys:
            return UNLIMITED
        self._start_heartbeat()
        args: list[str | int] = [self.process_id, self._lease_ms, *(lim.conn for lim in used)]
        try:
            refused = int(await self._eval(_CONN_ACQUIRE, [self._procs_key, *keys], args))
        except StoreUnavailable:
            self._repair.update(keys)  # did the script run? The heartbeat will make it true.
            raise
        if refused:
            limit = used[refused - 1]
            return Decision(Outcome.REJECTED_DRY_RUN if limit.dry_run else Outcome.REJECTED, limit)
        self._held.update(keys)
        return PASS

    async def conn_release(self, checks: Sequence[tuple[LimitConn, str]]) -> None:
        keys, _ = self._conn_keys(checks)
        if not keys:
            return
        held = self._held
        for k in keys:
            held[k] -= 1
            if held[k] <= 0:
                del held[k]
        try:
            await self._eval(_CONN_RELEASE, keys, [self.process_id])
        except StoreUnavailable:
            self._repair.update(keys)
            raise

    def conn_held(self) -> dict[str, int]:
        """This process's requests in flight, by Redis key."""
        return dict(self._held)

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._heartbeat_loop(), name="ramparts-redis-heartbeat"
            )

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                await self.heartbeat()
            except StoreUnavailable:
                pass  # logged once per outage by _call; the next beat retries
            except Exception:
                log.exception("limit_conn heartbeat failed; the next beat retries")

    async def heartbeat(self) -> None:
        """Renew this process's lease and the lifetime of the keys it holds, and write its
        true count into keys whose state is uncertain (after a failure)."""
        repair = self._repair
        self._repair = set()
        todo: list[tuple[str, str | int]] = [(k, self._held.get(k, 0)) for k in repair]
        todo += [(k, "") for k in self._held if k not in repair]
        try:
            for start in range(0, max(len(todo), 1), _HEARTBEAT_BATCH):
                batch = todo[start : start + _HEARTBEAT_BATCH]
                args: list[str | int] = [self.process_id, self._lease_ms, *(c for _, c in batch)]
                await self._eval(_HEARTBEAT, [self._procs_key, *(k for k, _ in batch)], args)
        except StoreUnavailable:
            self._repair |= repair
            raise

    # -- bans ------------------------------------------------------------------------

    def _ban_key(self, addr: str) -> str:
        return f"{self._prefix}ban:{addr}"

    async def ban(self, addr: str, seconds: float, reason: str) -> None:
        if not seconds > 0:
            raise ValueError("a ban lasts a positive number of seconds")
        px = None if math.isinf(seconds) else max(1, math.ceil(seconds * 1000))
        async with self._call():
            await self._redis.set(self._ban_key(addr), reason.encode(), px=px)

    async def unban(self, addr: str) -> bool:
        async with self._call():
            return bool(await self._redis.delete(self._ban_key(addr)))

    async def is_banned(self, addr: str) -> bool:
        async with self._call():
            return bool(await self._redis.exists(self._ban_key(addr)))

    async def bans(self) -> list[Ban]:
        head = self._ban_key("")
        async with self._call():
            keys = [
                cast(bytes, k)
                async for k in self._redis.scan_iter(match=_glob_escape(head) + "*", count=1000)
            ]
            async with self._redis.pipeline(transaction=False) as pipe:
                for k in keys:
                    pipe.get(k)
                    pipe.pttl(k)
                replies = await pipe.execute()
        out: list[Ban] = []
        start = len(head.encode())
        for i, k in enumerate(keys):
            reason, pttl = replies[2 * i], replies[2 * i + 1]
            if reason is None or pttl == -2:
                continue  # expired between SCAN and GET
            left = math.inf if pttl == -1 else pttl / 1000
            out.append(Ban(k[start:].decode(), left, cast(bytes, reason).decode()))
        out.sort()
        return out

    # -- event windows ---------------------------------------------------------------

    async def count_event(self, kind: str, key: str, window_s: float) -> int:
        self._events_sent += 1
        args: list[str | int] = [
            max(1, round(window_s * 1000)),
            self._max_events,
            f"{self.process_id}:{self._events_sent}",
        ]
        return int(await self._eval(_COUNT_EVENT, [f"{self._prefix}ev:{kind}:{key}"], args))

    # -- lifecycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        self._fast_reset()
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._redis.aclose()
        await self._pool.disconnect()
