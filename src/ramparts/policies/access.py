"""IP access control: nginx's ``allow`` / ``deny`` (ngx_http_access_module), exactly.

An ordered list of rules, each ``allow`` or ``deny`` of an address, a CIDR or ``all``,
IPv4 and IPv6. The first rule that matches the client decides; when none matches the
request is allowed, as in nginx, so a list meant to admit only some clients ends with
``deny all``. The client is the address after the real-IP phase.

nginx keeps IPv4 and IPv6 rules in two lists (``all`` goes in both). An IPv4-mapped IPv6
client (``::ffff:192.0.2.1``) is judged as IPv4 against the IPv4 list, but only if there
is an IPv4 rule at all: with IPv6 rules only, nginx judges it as the IPv6 address it is
(``deny ::/0`` alone refuses it). This engine does the same; ``warnings`` points out
IPv4-mapped prefixes, which only ever match in that corner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .realip import DEFAULT_CACHE_SIZE, parse_cidr, parse_socket_addr

__all__ = ["ALLOWED", "AccessList", "AccessRule"]

#: ``AccessList.check`` result of an allowed client.
ALLOWED = 0

_V4_ALL = 0xFFFFFFFF
_V6_HIGH = ((1 << 128) - 1) >> 32  # the upper 96 bits of a full IPv6 mask


@dataclass(frozen=True, slots=True)
class AccessRule:
    """One configured rule; ``position`` counts from 1 in configuration order."""

    position: int
    action: str  # "allow" or "deny"
    target: str  # address, CIDR or "all", as written
    id: str = ""

    @property
    def deny(self) -> bool:
        return self.action == "deny"

    @property
    def name(self) -> str:
        """The rule in ``decided_by``: its id, else ``rule-<position>``."""
        return self.id or f"rule-{self.position}"


class AccessList:
    """Compiled ``allow`` / ``deny`` rules of one scope, built once per plan.

    ``rules`` are ``(action, target)`` or ``(action, target, id)``. ``check`` is the hot
    path: a dict lookup for a client seen before, no allocation.
    """

    __slots__ = ("_cache", "_cache_size", "_deny_at", "_v4", "_v6", "rules", "warnings")

    def __init__(
        self,
        rules: Iterable[tuple[str, ...]],
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        compiled: list[AccessRule] = []
        warnings: list[str] = []
        v4: list[tuple[int, int, int]] = []
        v6: list[tuple[int, int, int]] = []
        for position, entry in enumerate(rules, 1):
            if not isinstance(entry, tuple) or len(entry) not in (2, 3):
                raise ValueError(f"access rule {position}: expected (action, target[, id])")
            action, target = str(entry[0]).strip(), str(entry[1]).strip()
            rule_id = str(entry[2]).strip() if len(entry) == 3 else ""
            where = f"access rule {position} ({entry[0]} {entry[1]})"
            if action not in ("allow", "deny"):
                raise ValueError(f"{where}: the action must be 'allow' or 'deny'")
            if target == "all":
                v4.append((0, 0, position))
                v6.append((0, 0, position))
            else:
                try:
                    version, net, mask, host_bits = parse_cidr(target)
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                if host_bits:
                    warnings.append(f"{where}: low address bits of {target} are meaningless")
                if version == 4:
                    v4.append((mask, net, position))
                else:
                    if mask >> 32 == _V6_HIGH and net >> 32 == 0xFFFF:
                        warnings.append(
                            f"{where}: an IPv4-mapped prefix matches only while the list "
                            "has no IPv4 rule (nginx judges mapped clients as IPv4)"
                        )
                    v6.append((mask, net, position))
            compiled.append(AccessRule(position, action, target, rule_id))
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.rules: tuple[AccessRule, ...] = tuple(compiled)
        self.warnings: tuple[str, ...] = tuple(warnings)
        self._v4 = tuple(v4)
        self._v6 = tuple(v6)
        # position -> the check result when that rule matches (position 0: no rule).
        self._deny_at = (ALLOWED, *(r.position if r.deny else ALLOWED for r in compiled))
        self._cache: dict[str, int] = {}
        self._cache_size = cache_size

    def check(self, client_ip: str) -> int:
        """``ALLOWED`` (0), or the position (from 1) of the ``deny`` rule that refuses
        ``client_ip``. Raises ValueError if ``client_ip`` is not an address (deny then)."""
        position = self._cache.get(client_ip)
        if position is None:
            position = self.match(client_ip)
        return self._deny_at[position]

    def match(self, client_ip: str) -> int:
        """The position of the first rule that matches ``client_ip`` (``allow`` or
        ``deny``), 0 when none does: what a trace shows."""
        position = self._cache.get(client_ip)
        if position is None:
            position = self._match(client_ip)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[client_ip] = position
        return position

    def decided_by(self, position: int) -> str:
        """``access:<rule id>`` or ``access:rule-<position>`` for a rule position."""
        return "access:" + self.rules[position - 1].name

    def _match(self, client_ip: str) -> int:
        found = parse_socket_addr(client_ip)
        if found is None:
            raise ValueError(f"access: not an IP address: {client_ip!r}")
        version, value = found
        if version == 6:
            if self._v4 and value >> 32 == 0xFFFF:
                value &= _V4_ALL
            elif self._v6:
                for mask, net, position in self._v6:
                    if value & mask == net:
                        return position
                return 0
            else:
                return 0
        for mask, net, position in self._v4:
            if value & mask == net:
                return position
        return 0
