"""Choosing a peer: passive health (nginx max_fails / fail_timeout), active health marks,
and the balancers (smooth weighted round-robin, least connections, client-IP hash).
Pure code: the shell passes ``now`` and reports outcomes."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from ..config.plan import PeerPlan

__all__ = ["Balancer", "PeerState", "make_balancer"]


class PeerState:
    """What is known about one peer's health and load."""

    __slots__ = (
        "_current",
        "active",
        "down_until",
        "fails",
        "first_fail",
        "health_down",
        "health_streak",
        "label",
        "plan",
        "requests",
    )

    def __init__(self, plan: PeerPlan) -> None:
        self.plan = plan
        self.label = plan.label
        self.fails = 0
        self.first_fail = 0.0
        self.down_until = 0.0
        self.active = 0
        self.requests = 0
        self.health_down = False
        self.health_streak = 0
        self._current = 0

    def available(self, now: float) -> bool:
        if self.health_down:
            return False
        mf = self.plan.max_fails
        return not (mf and self.fails >= mf and now < self.down_until)

    def failed(self, now: float) -> None:
        """A connection error or timeout (nginx's "unsuccessful attempt")."""
        if self.fails and now - self.first_fail > self.plan.fail_timeout:
            self.fails = 0
        if not self.fails:
            self.first_fail = now
        self.fails += 1
        mf = self.plan.max_fails
        if mf and self.fails >= mf:
            self.down_until = now + self.plan.fail_timeout

    def succeeded(self) -> None:
        if self.fails:
            self.fails = 0

    def __repr__(self) -> str:
        return f"<Peer {self.label} fails={self.fails} active={self.active}>"


class Balancer:
    """Picks a peer among the available ones; primaries first, backups when none is."""

    kind = "round_robin"

    def __init__(self, peers: Sequence[PeerState]) -> None:
        self.peers = tuple(peers)
        self.primary = tuple(p for p in peers if not p.plan.backup)
        self.backup = tuple(p for p in peers if p.plan.backup)
        self.single = self.primary[0] if len(self.peers) == 1 else None

    def choose(
        self, key: str, now: float, exclude: frozenset[PeerState] | set[PeerState] = frozenset()
    ) -> PeerState | None:
        single = self.single
        if single is not None:
            if single not in exclude and single.available(now):
                return single
            return None
        found = self._pick(self.primary, key, now, exclude)
        if found is None and self.backup:
            found = self._pick(self.backup, key, now, exclude)
        return found

    def _candidates(
        self, peers: Sequence[PeerState], now: float, exclude: frozenset[PeerState] | set[PeerState]
    ) -> list[PeerState]:
        return [p for p in peers if p not in exclude and p.available(now)]

    def _pick(
        self,
        peers: Sequence[PeerState],
        key: str,
        now: float,
        exclude: frozenset[PeerState] | set[PeerState],
    ) -> PeerState | None:
        return _smooth_wrr(self._candidates(peers, now, exclude))


def _smooth_wrr(candidates: list[PeerState]) -> PeerState | None:
    """nginx's smooth weighted round-robin: even spread, proportional to weight."""
    if not candidates:
        return None
    total = 0
    best: PeerState | None = None
    for p in candidates:
        w = p.plan.weight
        p._current += w
        total += w
        if best is None or p._current > best._current:
            best = p
    assert best is not None
    best._current -= total
    return best


class LeastConnBalancer(Balancer):
    """Fewest active requests per unit of weight; ties broken by round-robin."""

    kind = "least_conn"

    def _pick(
        self,
        peers: Sequence[PeerState],
        key: str,
        now: float,
        exclude: frozenset[PeerState] | set[PeerState],
    ) -> PeerState | None:
        candidates = self._candidates(peers, now, exclude)
        if not candidates:
            return None
        low = min(p.active / p.plan.weight for p in candidates)
        return _smooth_wrr([p for p in candidates if p.active / p.plan.weight == low])


class IPHashBalancer(Balancer):
    """The same client address goes to the same peer while it is available; when it is
    not, the address is rehashed over the remaining peers (weights respected)."""

    kind = "ip_hash"

    def _pick(
        self,
        peers: Sequence[PeerState],
        key: str,
        now: float,
        exclude: frozenset[PeerState] | set[PeerState],
    ) -> PeerState | None:
        ring: list[PeerState] = [p for p in peers for _ in range(p.plan.weight)]
        if not ring:
            return None
        h = zlib.crc32(key.encode())
        for attempt in range(20):
            p = ring[(h + attempt * 0x9E3779B1) % len(ring)]
            if p not in exclude and p.available(now):
                return p
        return _smooth_wrr(self._candidates(peers, now, exclude))


def make_balancer(kind: str, peers: Sequence[PeerState]) -> Balancer:
    cls = {"round_robin": Balancer, "least_conn": LeastConnBalancer, "ip_hash": IPHashBalancer}
    return cls[kind](peers)
