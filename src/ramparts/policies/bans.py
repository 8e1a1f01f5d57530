"""Bans: addresses refused at the connection phase until a time, set by hand (``ramparts
ban``) or automatically after N refusals of a chosen kind within a window (fail2ban-style).

Pure: ``BanTable`` answers "is this peer banned now?" from a local copy (a dict lookup per
connection); ``AutoBan`` counts refusals per client and says when a rule fires. Where
bans are kept and how the copies stay in step (the memory store's bans file, Redis) is
the shell's business. Ban times are wall-clock (epoch seconds), because a ban is shared
by processes and hosts whose monotonic clocks have nothing in common.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["AutoBan", "Ban", "BanRule", "BanTable", "canonical_address"]


def canonical_address(text: str) -> str:
    """The one spelling of an address that bans are keyed by (IPv4-mapped IPv6 as IPv4,
    IPv6 compressed); ValueError if it is not an address."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


@dataclass(frozen=True, slots=True)
class Ban:
    address: str
    until: float  # epoch seconds
    reason: str = ""

    def seconds_left(self, now: float) -> float:
        return max(0.0, self.until - now)


class BanTable:
    """The bans in force, keyed by canonical address. Expired bans are dropped lazily."""

    __slots__ = ("_bans",)

    def __init__(self) -> None:
        self._bans: dict[str, Ban] = {}

    def __len__(self) -> int:
        return len(self._bans)

    def add(self, ban: Ban) -> None:
        """Add or extend: a shorter ban never cuts a longer one short."""
        old = self._bans.get(ban.address)
        if old is None or ban.until > old.until:
            self._bans[ban.address] = ban

    def remove(self, address: str) -> bool:
        return self._bans.pop(address, None) is not None

    def banned(self, address: str, now: float) -> Ban | None:
        """The ban on ``address`` (already canonical: the peer address) if in force."""
        ban = self._bans.get(address)
        if ban is None:
            return None
        if ban.until <= now:
            del self._bans[address]
            return None
        return ban

    def replace(self, bans: Iterable[Ban], now: float) -> None:
        """Take a fresh copy (from the shared store) in place of this one."""
        self._bans = {b.address: b for b in bans if b.until > now}

    def active(self, now: float) -> list[Ban]:
        return sorted((b for b in self._bans.values() if b.until > now), key=lambda b: b.address)


@dataclass(frozen=True, slots=True)
class BanRule:
    """Ban for ``ban_seconds`` a client refused ``count`` times within ``window`` seconds
    by a refusal of one of the kinds in ``on``: a layer (``auth``), a layer and rule
    (``ratelimit:api``), or a status (``401``)."""

    on: tuple[str, ...]
    count: int
    window: float
    ban_seconds: float
    name: str = ""

    def __post_init__(self) -> None:
        if self.count < 1 or self.window <= 0 or self.ban_seconds <= 0:
            raise ValueError("a ban rule needs count >= 1, a window and a ban time")
        if not self.on:
            raise ValueError("a ban rule needs at least one kind of refusal (on:)")

    def matches(self, decided_by: str, status: int) -> bool:
        for kind in self.on:
            if kind.isdigit():
                if int(kind) == status:
                    return True
            elif decided_by == kind or decided_by.startswith(kind + ":"):
                return True
        return False

    @property
    def label(self) -> str:
        return self.name or ",".join(self.on)


class AutoBan:
    """Counts refusals per (rule, client) in a sliding window, in memory, bounded to
    ``max_clients`` clients per rule (the least recently refused are forgotten first).
    ``refused`` returns the rules that fire for this refusal; the caller bans."""

    __slots__ = ("_seen", "max_clients", "rules")

    def __init__(self, rules: Sequence[BanRule], max_clients: int = 100_000) -> None:
        self.rules = tuple(rules)
        self.max_clients = max_clients
        self._seen: list[OrderedDict[str, deque[float]]] = [OrderedDict() for _ in self.rules]

    def relevant(self, decided_by: str, status: int) -> list[int]:
        """Indices of the rules this refusal counts for."""
        return [i for i, r in enumerate(self.rules) if r.matches(decided_by, status)]

    def refused(self, client: str, decided_by: str, status: int, now: float) -> list[BanRule]:
        fired: list[BanRule] = []
        for i in self.relevant(decided_by, status):
            rule = self.rules[i]
            seen = self._seen[i]
            times = seen.get(client)
            if times is None:
                if len(seen) >= self.max_clients:
                    seen.popitem(last=False)
                times = seen[client] = deque(maxlen=rule.count)
            else:
                seen.move_to_end(client)
            times.append(now)
            if len(times) == rule.count and now - times[0] <= rule.window:
                fired.append(rule)
                del seen[client]  # start afresh once the ban ends
        return fired
