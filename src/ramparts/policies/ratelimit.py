"""Request-rate and connection limits with the semantics of nginx's ``limit_req`` and
``limit_conn`` (ngx_http_limit_req_module.c, ngx_http_limit_conn_module.c, 1.22): the limit
objects, the decisions, and the pure decision engines over in-memory zone tables.

This module is the specification of the arithmetic; ``state/redis.py`` runs the same rules in
a Lua script. Everything is integer arithmetic on nginx's units:

* a rate is kept in milli-requests per second: ``5r/s`` is 5000, ``30r/m`` is
  ``30 * 1000 // 60`` = 500 (integer division, so ``1r/m`` is 16, not 16.67, exactly as
  nginx stores it);
* ``burst`` and the ``delay=`` threshold are in milli-requests too (``burst=3`` is 3000);
  ``nodelay`` is a threshold no excess reaches; the default threshold is 0 (every request
  above the rate is delayed);
* time is an integer number of milliseconds, passed in by the caller (``now``): nothing here
  reads a clock.

One limit, one key (``lookup`` in nginx)::

    ms = now - last             # then: ms < -60000 -> 1, ms < 0 -> 0 (a clock that stepped back)
    excess = max(0, stored - rate * ms // 1000 + 1000)
    excess > burst  -> REJECTED, the stored state is left alone
    otherwise       -> stored = excess; last = now if ms != 0
    excess > delay  -> DELAYED by (excess - delay) * 1000 // rate ms, else PASSED

A key seen for the first time starts at excess 0 (its first request is free). An empty key is
not limited (nginx skips it); so is a key longer than nginx accepts (65535 bytes for
limit_req, 255 for limit_conn: nginx logs an error and skips the limit, and so do we, minus
the log).

Several limits on one request (nginx's per-location loop): limits are looked up in order; the
first whose excess would exceed its burst rejects the request and nothing is charged to any
limit (earlier limits that had passed their lookup keep their old state; later limits are
not even looked up). When none rejects, every limit is charged and the request waits for the
largest of their delays; on a tie the later limit is the one named. nginx charges the last
limit during its lookup and the earlier ones afterwards (``ngx_http_limit_req_account``) at
the same ``now``, which gives the same numbers as charging them all after the loop, as done
here.

Differences from nginx, all deliberate:

* ``status`` and ``dry_run`` (``limit_req_status``, ``limit_req_dry_run``) are per location
  in nginx; here each limit carries them so that a decision is self-contained. A location's
  limits are built with the same values; if they differ, the deciding limit's apply.
* Zones are bounded by a number of keys, not bytes. The eviction follows nginx's: before a
  new key is added, up to two least-recently-used keys idle for 60 s or more are dropped;
  if the zone is still full, the least recently used key is dropped whatever its state
  (plus up to two more idle ones). An idle key is dropped only once its state equals a new
  key's (``excess - rate * ms // 1000 + 1000 <= 0``, the rule Redis's key expiry follows
  too), so dropping idle keys never changes a decision. nginx drops them as soon as
  ``excess - rate * ms // 1000 <= 0`` with ``ms = |now - last|``, so it forgets a key that
  would still count: one whose 60 s of drain covers its excess but not the 1000 the next
  request adds (any ``1r/m`` key: it needs 62.5 s, not 60, to take a request), or any key
  after the clock stepped back more than a minute.
  A limit_conn zone that is full refuses the new key's request, as nginx does when its
  zone is out of memory.
* Retry-After: nginx sends none. A rejection here carries ``retry_after_ms``, the smallest
  wait after which this limit would accept one request (if nothing else is accepted
  meanwhile): ``ceil((stored + 1000 - burst) * 1000 / rate) - (now - last)``, at least 1;
  ``retry_after`` is that in whole seconds, rounded up, for the header.
* nginx gives a key created by an earlier limit of a request ``last = 0`` on its monotonic
  clock and relies on the uptime to drain it to 0; we use a time far in the past so that the
  result (excess 0) does not depend on where the caller's clock starts.

Decisions: the hot path allocates nothing for a request that passes (``PASS`` and
``UNLIMITED`` are shared, read-only instances); a delay or a rejection allocates one small
``Decision`` that names the limit that decided (``decided_by``: ``ratelimit:<zone>`` or
``limitconn:<zone>``).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Final

__all__ = [
    "IDLE_EXPIRE_MS",
    "MAX_CONN_KEY",
    "MAX_REQ_KEY",
    "NODELAY",
    "PASS",
    "UNLIMITED",
    "ConnZone",
    "Decision",
    "LimitConn",
    "LimitReq",
    "Outcome",
    "ReqZone",
    "conn_acquire",
    "conn_release",
    "decide_req",
    "decide_req_one",
    "drain",
    "parse_rate",
    "retry_after_ms",
]

#: nginx's ``nodelay``: a delay threshold (milli-requests) that no excess reaches.
NODELAY: Final = 1 << 62
#: Longest key nginx limits; a longer one is skipped (not limited).
MAX_REQ_KEY: Final = 65535
MAX_CONN_KEY: Final = 255
#: An idle zone entry may be evicted after this long, once its excess has drained to zero.
IDLE_EXPIRE_MS: Final = 60000
#: ``last`` of an entry never charged: far enough in the past that any rate drains it to 0.
_NEVER: Final = -(1 << 62)

_ZONE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_RATE = re.compile(r"([0-9]+)(r/s|r/m)?")


class Outcome(IntEnum):
    """What a limit did to a request; the names are nginx's ``$limit_req_status`` values
    (``$limit_conn_status`` uses PASSED, REJECTED and REJECTED_DRY_RUN). ``NONE``: no limit
    applied (every key was empty), where nginx leaves the variable unset."""

    NONE = 0
    PASSED = 1
    DELAYED = 2
    REJECTED = 3
    DELAYED_DRY_RUN = 4
    REJECTED_DRY_RUN = 5

    @property
    def variable(self) -> str:
        """The value nginx gives ``$limit_req_status`` ("" when unset)."""
        return "" if self is Outcome.NONE else self.name


def parse_rate(text: str) -> int:
    """nginx's ``rate=`` value ("5r/s", "30r/m", or a bare "5" meaning r/s) in
    milli-requests per second, truncated as nginx does (``rate * 1000 / scale``)."""
    m = _RATE.fullmatch(text.strip())
    if m is None or int(m.group(1)) <= 0:
        raise ValueError(f"invalid rate {text!r}: expected like '5r/s' or '30r/m'")
    scale = 60 if m.group(2) == "r/m" else 1
    return int(m.group(1)) * 1000 // scale


def _check_zone(zone: str) -> None:
    if not _ZONE_NAME.fullmatch(zone):
        raise ValueError(f"invalid zone name {zone!r}: letters, digits, '_', '.', '-'")


def _check_status(status: int) -> None:
    if not 400 <= status <= 599:
        raise ValueError(f"status {status} is not between 400 and 599")


class LimitReq:
    """One ``limit_req`` bound to its zone: ``LimitReq("api", "5r/s", burst=10, delay=4)``.

    ``rate``, ``burst`` and ``delay`` are stored in nginx's units (milli-requests per second,
    milli-requests); ``rate_text`` keeps the configured form. ``nodelay=True`` is nginx's
    ``nodelay``; ``delay=N`` lets N requests of the burst through undelayed; neither means
    every request above the rate is delayed. The zone's rate is the limit's: limits sharing a
    zone name must share a rate (the configuration guarantees it, as nginx does by declaring
    the rate on the zone).
    """

    __slots__ = (
        "burst",
        "decided_by",
        "delay",
        "dry_run",
        "idle_ms",
        "rate",
        "rate_text",
        "status",
        "zone",
    )

    def __init__(
        self,
        zone: str,
        rate: str,
        burst: int = 0,
        *,
        delay: int = 0,
        nodelay: bool = False,
        status: int = 503,
        dry_run: bool = False,
    ) -> None:
        _check_zone(zone)
        _check_status(status)
        if burst < 0 or delay < 0:
            raise ValueError("burst and delay must not be negative")
        if nodelay and delay:
            raise ValueError("nodelay and delay= exclude each other")
        self.zone = zone
        self.rate_text = rate
        self.rate = parse_rate(rate)
        self.burst = burst * 1000
        self.delay = NODELAY if nodelay else delay * 1000
        self.status = status
        self.dry_run = dry_run
        self.decided_by = "ratelimit:" + zone
        # After this long without a request, a key's state equals a new key's (excess 0):
        # the drain rate * ms // 1000 has then covered the largest stored excess (burst)
        # plus the 1000 a request adds.
        self.idle_ms = -(-(self.burst + 1000) * 1000 // self.rate)

    @property
    def nodelay(self) -> bool:
        return self.delay == NODELAY

    def describe(self) -> str:
        """The limit as nginx would spell it."""
        parts = [f"zone={self.zone}", f"rate={self.rate_text}"]
        if self.burst:
            parts.append(f"burst={self.burst // 1000}")
        if self.nodelay:
            parts.append("nodelay")
        elif self.delay:
            parts.append(f"delay={self.delay // 1000}")
        if self.status != 503:
            parts.append(f"status={self.status}")
        if self.dry_run:
            parts.append("dry_run")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"LimitReq({self.describe()})"


class LimitConn:
    """One ``limit_conn``: at most ``conn`` requests in flight per key of ``zone``."""

    __slots__ = ("conn", "decided_by", "dry_run", "status", "zone")

    def __init__(self, zone: str, conn: int, *, status: int = 503, dry_run: bool = False) -> None:
        _check_zone(zone)
        _check_status(status)
        if conn <= 0:
            raise ValueError("a connection limit must be positive")
        self.zone = zone
        self.conn = conn
        self.status = status
        self.dry_run = dry_run
        self.decided_by = "limitconn:" + zone

    def __repr__(self) -> str:
        extra = (f" status={self.status}" if self.status != 503 else "") + (
            " dry_run" if self.dry_run else ""
        )
        return f"LimitConn(zone={self.zone} {self.conn}{extra})"


class Decision:
    """The answer for one request. ``limit`` is the limit that decided (None when the
    request passed everything); ``delay_ms`` is the wait to apply (only for DELAYED; a dry
    run never waits); ``excess`` is the deciding limit's excess in milli-requests (what nginx
    logs); ``retry_after_ms`` is set on a limit_req rejection. Shared instances (``PASS``,
    ``UNLIMITED``) are read-only."""

    __slots__ = ("delay_ms", "excess", "limit", "outcome", "retry_after_ms")

    def __init__(
        self,
        outcome: Outcome,
        limit: LimitReq | LimitConn | None = None,
        delay_ms: int = 0,
        excess: int = 0,
        retry_after_ms: int = 0,
    ) -> None:
        self.outcome = outcome
        self.limit = limit
        self.delay_ms = delay_ms
        self.excess = excess
        self.retry_after_ms = retry_after_ms

    @property
    def rejected(self) -> bool:
        """The request must be answered with ``status`` (a dry run never is)."""
        return self.outcome is Outcome.REJECTED

    @property
    def status(self) -> int:
        """The HTTP status to answer a rejected request with, else 0."""
        if self.outcome is Outcome.REJECTED and self.limit is not None:
            return self.limit.status
        return 0

    @property
    def decided_by(self) -> str:
        """``ratelimit:<zone>`` / ``limitconn:<zone>``, or "" when no limit decided."""
        return self.limit.decided_by if self.limit is not None else ""

    @property
    def retry_after(self) -> int:
        """``retry_after_ms`` in whole seconds, rounded up (the Retry-After value)."""
        return -(-self.retry_after_ms // 1000)

    def _key(self) -> tuple[object, ...]:
        zone = self.limit.zone if self.limit is not None else None
        return (self.outcome, zone, self.delay_ms, self.excess, self.retry_after_ms)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        zone = self.limit.zone if self.limit is not None else None
        return (
            f"Decision({self.outcome.name}, zone={zone}, delay_ms={self.delay_ms}, "
            f"excess={self.excess}, retry_after_ms={self.retry_after_ms})"
        )


PASS: Final = Decision(Outcome.PASSED)
UNLIMITED: Final = Decision(Outcome.NONE)


def drain(stored: int, last: int, now: int, rate: int) -> tuple[int, int]:
    """(excess, ms): the excess a request at ``now`` would bring a key with state
    (``stored``, ``last``) to, and the clamped elapsed time nginx uses."""
    ms = now - last
    if ms < 0:
        ms = 1 if ms < -60000 else 0
    excess = stored - rate * ms // 1000 + 1000
    return (excess if excess > 0 else 0), ms


def retry_after_ms(stored: int, last: int, now: int, rate: int, burst: int) -> int:
    """After a rejection: the smallest wait after which this limit accepts one request."""
    wait = -(-(stored + 1000 - burst) * 1000 // rate) - (now - last)
    return wait if wait > 1 else 1


class ReqZone:
    """One limit_req zone in memory: key -> ``[excess, last]``, least recently used first,
    at most ``max_keys`` keys (evicted as nginx does; see the module docstring)."""

    __slots__ = ("entries", "idle_expire_ms", "max_keys", "name", "rate")

    def __init__(
        self, name: str, rate: int, max_keys: int, idle_expire_ms: int = IDLE_EXPIRE_MS
    ) -> None:
        if max_keys <= 0:
            raise ValueError("a zone holds at least one key")
        self.name = name
        self.rate = rate
        self.max_keys = max_keys
        self.idle_expire_ms = idle_expire_ms
        self.entries: OrderedDict[str, list[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def new_entry(self, key: str, now: int) -> list[int]:
        """Add ``key`` (never charged), making room first as nginx does."""
        entries = self.entries
        if entries:
            self._expire(now, 1)
            if len(entries) >= self.max_keys:
                self._expire(now, 0)
        entry = [0, _NEVER]
        entries[key] = entry
        return entry

    def _expire(self, now: int, n: int) -> None:
        # ngx_http_limit_req_expire: n == 1 drops up to two idle entries from the least
        # recently used end; n == 0 first drops the oldest one whatever its state. An idle
        # entry goes only once it equals a new key (nginx: once its excess alone drained).
        entries = self.entries
        while n < 3:
            if not entries:
                return
            key, (stored, last) = next(iter(entries.items()))
            if n:
                ms = now - last
                if ms < self.idle_expire_ms or stored - self.rate * ms // 1000 + 1000 > 0:
                    return
            n += 1
            del entries[key]


class ConnZone:
    """One limit_conn zone in memory: key -> requests in flight (only keys with some)."""

    __slots__ = ("counts", "max_keys", "name")

    def __init__(self, name: str, max_keys: int) -> None:
        if max_keys <= 0:
            raise ValueError("a zone holds at least one key")
        self.name = name
        self.max_keys = max_keys
        self.counts: dict[str, int] = {}


def _rejected(limit: LimitReq, excess: int, entry: list[int], now: int) -> Decision:
    return Decision(
        Outcome.REJECTED_DRY_RUN if limit.dry_run else Outcome.REJECTED,
        limit,
        0,
        excess,
        retry_after_ms(entry[0], entry[1], now, limit.rate, limit.burst),
    )


def _delayed(limit: LimitReq, excess: int, delay: int) -> Decision:
    if limit.dry_run:
        return Decision(Outcome.DELAYED_DRY_RUN, limit, 0, excess)
    return Decision(Outcome.DELAYED, limit, delay, excess)


def decide_req_one(limit: LimitReq, key: str, now: int, zone: ReqZone) -> Decision:
    """One limit, one key: the hot path (a dict lookup, a few integer operations). A caller
    may bind ``zone`` (``MemoryStore.req_zone(limit)``) once and call this directly."""
    if not key or len(key) > MAX_REQ_KEY:
        return UNLIMITED
    entries = zone.entries
    entry = entries.get(key)
    if entry is None:
        entry = zone.new_entry(key, now)
    else:
        entries.move_to_end(key)
    ms = now - entry[1]
    if ms < 0:
        ms = 1 if ms < -60000 else 0
    rate = limit.rate
    excess = entry[0] - rate * ms // 1000 + 1000
    if excess < 0:
        excess = 0
    if excess > limit.burst:
        return _rejected(limit, excess, entry, now)
    entry[0] = excess
    if ms:
        entry[1] = now
    threshold = limit.delay
    if excess <= threshold:
        return PASS
    delay = (excess - threshold) * 1000 // rate
    return _delayed(limit, excess, delay) if delay else PASS


def decide_req(
    checks: Sequence[tuple[LimitReq, str]], now: int, zone_of: Callable[[LimitReq], ReqZone]
) -> Decision:
    """Several limits on one request (``checks``: each limit with this request's key), in
    nginx's order; ``zone_of`` gives a limit's zone table. The limits' zones are distinct
    (nginx refuses a zone twice in one location)."""
    if len(checks) == 1:
        limit, key = checks[0]
        return decide_req_one(limit, key, now, zone_of(limit)) if key else UNLIMITED
    passed: list[tuple[LimitReq, list[int], int, int]] = []
    for limit, key in checks:
        if not key or len(key) > MAX_REQ_KEY:
            continue
        zone = zone_of(limit)
        entries = zone.entries
        entry = entries.get(key)
        if entry is None:
            entry = zone.new_entry(key, now)
        else:
            entries.move_to_end(key)
        excess, ms = drain(entry[0], entry[1], now, limit.rate)
        if excess > limit.burst:
            return _rejected(limit, excess, entry, now)
        passed.append((limit, entry, excess, ms))
    if not passed:
        return UNLIMITED
    chosen: LimitReq | None = None
    max_delay = chosen_excess = 0
    for limit, entry, excess, ms in reversed(passed):
        entry[0] = excess
        if ms:
            entry[1] = now
        if excess > limit.delay:
            delay = (excess - limit.delay) * 1000 // limit.rate
            if delay > max_delay:
                max_delay, chosen, chosen_excess = delay, limit, excess
    if chosen is None:
        return PASS
    return _delayed(chosen, chosen_excess, max_delay)


def conn_acquire(
    checks: Sequence[tuple[LimitConn, str]], zone_of: Callable[[LimitConn], ConnZone]
) -> Decision:
    """Count one more request in flight for every limit, or none: the first limit at its
    maximum (or whose full zone cannot take a new key) rejects, and the slots this request
    took in earlier limits are given back. Call ``conn_release`` with the same checks when
    the request ends, only if the outcome was PASSED (nothing is held otherwise)."""
    result = UNLIMITED
    for i, (limit, key) in enumerate(checks):
        if not key or len(key) > MAX_CONN_KEY:
            continue
        result = PASS
        zone = zone_of(limit)
        counts = zone.counts
        held = counts.get(key)
        if held is None:
            if len(counts) < zone.max_keys:
                counts[key] = 1
                continue
        elif held < limit.conn:
            counts[key] = held + 1
            continue
        conn_release(checks[:i], zone_of)
        return Decision(Outcome.REJECTED_DRY_RUN if limit.dry_run else Outcome.REJECTED, limit)
    return result


def conn_release(
    checks: Sequence[tuple[LimitConn, str]], zone_of: Callable[[LimitConn], ConnZone]
) -> None:
    """The request counted by ``conn_acquire`` with these checks has ended."""
    for limit, key in checks:
        if not key or len(key) > MAX_CONN_KEY:
            continue
        counts = zone_of(limit).counts
        held = counts.get(key, 0)
        if held > 1:
            counts[key] = held - 1
        else:
            counts.pop(key, None)
