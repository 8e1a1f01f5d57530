"""The in-process store (the default): rate-limit and connection-limit zones, bans and event
windows in bounded tables, with synchronous methods for the request hot path.

The ``*_sync`` methods are the store: the async methods of the ``Store`` protocol only wrap
them. Not thread-safe: one store per process (per event loop), like an nginx worker's view of
its zones — except that nginx workers share their zones, and processes sharing a port here
need ``RedisStore`` to share limits.

Rate limits take the caller's ``now_ms`` (no clock read on the hot path); bans and event
windows, which are not on that path, read the store's clock (seconds).
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence

from ..clock import Clock, MonotonicClock
from ..policies.ratelimit import (
    UNLIMITED,
    ConnZone,
    Decision,
    LimitConn,
    LimitReq,
    ReqZone,
    conn_acquire,
    conn_release,
    decide_req,
    decide_req_one,
)
from .store import Ban

__all__ = [
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_EVENT_KEYS",
    "DEFAULT_MAX_KEYS",
    "MemoryStore",
]

#: Keys per limit_req / limit_conn zone (nginx's 1m zone holds about 8000-16000).
DEFAULT_MAX_KEYS = 100_000
#: (kind, key) pairs whose events are counted; the least recently counted go first.
DEFAULT_MAX_EVENT_KEYS = 100_000
#: Events remembered per (kind, key): the count saturates there.
DEFAULT_MAX_EVENTS = 10_000


class MemoryStore:
    """Zones, bans and event windows of one process.

    ``max_keys`` bounds every zone; ``zone_keys`` overrides it per zone name (nginx sizes
    each zone in its ``limit_req_zone``).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
        zone_keys: Mapping[str, int] | None = None,
        max_event_keys: int = DEFAULT_MAX_EVENT_KEYS,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        self._clock = clock or MonotonicClock()
        self._max_keys = max_keys
        self._zone_keys = dict(zone_keys or {})
        self._req: dict[str, ReqZone] = {}
        self._conn: dict[str, ConnZone] = {}
        self._bans: dict[str, tuple[float, str]] = {}
        self._ban_heap: list[tuple[float, str]] = []
        self._events: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._max_event_keys = max_event_keys
        self._max_events = max_events

    # -- limit_req -------------------------------------------------------------------

    def req_zone(self, limit: LimitReq) -> ReqZone:
        """The table of ``limit``'s zone (created on first use)."""
        zone = self._req.get(limit.zone)
        if zone is None:
            size = self._zone_keys.get(limit.zone, self._max_keys)
            zone = self._req[limit.zone] = ReqZone(limit.zone, limit.rate, size)
        return zone

    def limit_req_one(self, limit: LimitReq, key: str, now_ms: int) -> Decision:
        """The hot path for a location with one ``limit_req``."""
        if not key:
            return UNLIMITED
        zone = self._req.get(limit.zone)
        if zone is None:
            zone = self.req_zone(limit)
        return decide_req_one(limit, key, now_ms, zone)

    def limit_req_sync(self, checks: Sequence[tuple[LimitReq, str]], now_ms: int) -> Decision:
        return decide_req(checks, now_ms, self.req_zone)

    async def limit_req(self, checks: Sequence[tuple[LimitReq, str]], now_ms: int) -> Decision:
        return decide_req(checks, now_ms, self.req_zone)

    # -- limit_conn ------------------------------------------------------------------

    def conn_zone(self, limit: LimitConn) -> ConnZone:
        zone = self._conn.get(limit.zone)
        if zone is None:
            size = self._zone_keys.get(limit.zone, self._max_keys)
            zone = self._conn[limit.zone] = ConnZone(limit.zone, size)
        return zone

    def conn_acquire_sync(self, checks: Sequence[tuple[LimitConn, str]]) -> Decision:
        return conn_acquire(checks, self.conn_zone)

    def conn_release_sync(self, checks: Sequence[tuple[LimitConn, str]]) -> None:
        conn_release(checks, self.conn_zone)

    async def conn_acquire(self, checks: Sequence[tuple[LimitConn, str]]) -> Decision:
        return conn_acquire(checks, self.conn_zone)

    async def conn_release(self, checks: Sequence[tuple[LimitConn, str]]) -> None:
        conn_release(checks, self.conn_zone)

    def conn_count(self, limit: LimitConn, key: str) -> int:
        """Requests in flight for ``key`` in ``limit``'s zone."""
        zone = self._conn.get(limit.zone)
        return zone.counts.get(key, 0) if zone is not None else 0

    # -- bans ------------------------------------------------------------------------

    def ban_sync(self, addr: str, seconds: float, reason: str) -> None:
        if not seconds > 0:
            raise ValueError("a ban lasts a positive number of seconds")
        now = self._clock.now()
        self._expire_bans(now)
        until = now + seconds
        self._bans[addr] = (until, reason)
        if not math.isinf(until):
            heapq.heappush(self._ban_heap, (until, addr))

    def unban_sync(self, addr: str) -> bool:
        entry = self._bans.pop(addr, None)
        return entry is not None and entry[0] > self._clock.now()

    def is_banned_sync(self, addr: str) -> bool:
        entry = self._bans.get(addr)
        if entry is None:
            return False
        if entry[0] > self._clock.now():
            return True
        del self._bans[addr]
        return False

    def bans_sync(self) -> list[Ban]:
        now = self._clock.now()
        self._expire_bans(now)
        return [
            Ban(addr, until - now, reason)
            for addr, (until, reason) in sorted(self._bans.items())
            if until > now
        ]

    def _expire_bans(self, now: float) -> None:
        heap, bans = self._ban_heap, self._bans
        while heap and heap[0][0] <= now:
            until, addr = heapq.heappop(heap)
            entry = bans.get(addr)
            if entry is not None and entry[0] == until:
                del bans[addr]

    async def ban(self, addr: str, seconds: float, reason: str) -> None:
        self.ban_sync(addr, seconds, reason)

    async def unban(self, addr: str) -> bool:
        return self.unban_sync(addr)

    async def bans(self) -> list[Ban]:
        return self.bans_sync()

    async def is_banned(self, addr: str) -> bool:
        return self.is_banned_sync(addr)

    # -- event windows ---------------------------------------------------------------

    def count_event_sync(self, kind: str, key: str, window_s: float) -> int:
        now = self._clock.now()
        events = self._events
        name = (kind, key)
        times = events.get(name)
        if times is None:
            if len(events) >= self._max_event_keys:
                events.popitem(last=False)
            times = events[name] = deque(maxlen=self._max_events)
        else:
            events.move_to_end(name)
        horizon = now - window_s
        while times and times[0] <= horizon:
            times.popleft()
        times.append(now)
        return len(times)

    async def count_event(self, kind: str, key: str, window_s: float) -> int:
        return self.count_event_sync(kind, key, window_s)

    async def aclose(self) -> None:
        return None
