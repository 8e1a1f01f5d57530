"""The store protocol: the shared state the gateway's policies need (rate-limit and
connection-limit counters, bans, event counts for automatic bans), and the store errors.

``MemoryStore`` (one process, the default) and ``RedisStore`` (a fleet) implement it; the same
behaviour tests run against both. A store decides with the rules of
``ramparts.policies.ratelimit``; it only owns where the state lives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from ..errors import RampartsError
from ..policies.ratelimit import Decision, LimitConn, LimitReq

__all__ = ["Ban", "Store", "StoreError", "StoreUnavailable"]


class StoreError(RampartsError):
    """A store could not do what was asked."""


class StoreUnavailable(StoreError):
    """The store cannot answer: down, timing out, in its back-off window after a failure,
    all its connections busy, or (Redis) answering with an error (out of memory, a read-only
    replica, a key holding something else). The caller decides whether to fail open or
    closed."""


class Ban(NamedTuple):
    """One banned address; ``seconds_left`` is ``math.inf`` for a ban without end."""

    address: str
    seconds_left: float
    reason: str


class Store(Protocol):
    """Shared state behind one interface. Every method may raise ``StoreUnavailable``."""

    async def limit_req(self, checks: Sequence[tuple[LimitReq, str]], now_ms: int) -> Decision:
        """Decide every ``limit_req`` of one request atomically (each limit with this
        request's key; an empty key is not limited). ``now_ms``: milliseconds on the
        caller's clock (a store may use its own clock instead, see ``RedisStore``)."""
        ...

    async def conn_acquire(self, checks: Sequence[tuple[LimitConn, str]]) -> Decision:
        """Count one more request in flight for every limit, or none. PASSED means the
        request holds its slots until ``conn_release`` with the same checks."""
        ...

    async def conn_release(self, checks: Sequence[tuple[LimitConn, str]]) -> None:
        """Give back the slots taken by a PASSED ``conn_acquire`` with these checks."""
        ...

    async def ban(self, addr: str, seconds: float, reason: str) -> None:
        """Ban ``addr`` for ``seconds`` (``math.inf``: until unbanned); a new ban of a banned
        address replaces the old one."""
        ...

    async def unban(self, addr: str) -> bool:
        """Lift a ban; False when ``addr`` was not banned."""
        ...

    async def bans(self) -> list[Ban]:
        """The bans in force, sorted by address."""
        ...

    async def is_banned(self, addr: str) -> bool: ...

    async def count_event(self, kind: str, key: str, window_s: float) -> int:
        """Record one event of ``kind`` for ``key`` (a failed login by an address ...) and
        return how many were recorded in the last ``window_s`` seconds, this one included
        (a sliding window, as fail2ban's findtime)."""
        ...

    async def aclose(self) -> None:
        """Release connections and background tasks."""
        ...
