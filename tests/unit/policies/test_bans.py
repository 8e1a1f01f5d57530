"""Bans: the table the connection phase consults, and fail2ban-style automatic bans
counted in a sliding window (a fake clock throughout)."""

from __future__ import annotations

import pytest

from ramparts.policies.bans import AutoBan, Ban, BanRule, BanTable, canonical_address


def test_canonical_address() -> None:
    assert canonical_address(" 192.0.2.7 ") == "192.0.2.7"
    assert canonical_address("::ffff:192.0.2.7") == "192.0.2.7"
    assert canonical_address("2001:DB8:0:0::1") == "2001:db8::1"
    with pytest.raises(ValueError, match=r"not an IP address: 'example\.com'"):
        canonical_address("example.com")


def test_ban_table_expires_and_never_shortens() -> None:
    t = BanTable()
    t.add(Ban("192.0.2.7", until=1600.0, reason="manual"))
    assert t.banned("192.0.2.7", 1000.0) == Ban("192.0.2.7", 1600.0, "manual")
    assert t.banned("192.0.2.8", 1000.0) is None
    t.add(Ban("192.0.2.7", until=1100.0))  # shorter: the longer one stays
    assert t.banned("192.0.2.7", 1200.0) is not None
    assert t.banned("192.0.2.7", 1600.0) is None  # ends exactly at until
    assert len(t) == 0
    t.add(Ban("192.0.2.9", until=2000.0))
    assert t.remove("192.0.2.9") and not t.remove("192.0.2.9")


def test_ban_table_replace_and_list() -> None:
    t = BanTable()
    t.add(Ban("198.51.100.1", 5000.0))
    t.replace([Ban("203.0.113.2", 1500.0, "auth"), Ban("203.0.113.1", 900.0)], now=1000.0)
    assert t.banned("198.51.100.1", 1000.0) is None
    assert [b.address for b in t.active(1000.0)] == ["203.0.113.2"]
    assert t.active(1000.0)[0].seconds_left(1000.0) == 500.0


def test_rule_matching_kinds() -> None:
    r = BanRule(("auth", "ratelimit:api", "403"), count=1, window=1, ban_seconds=1)
    assert r.matches("auth:basic", 401)
    assert r.matches("auth", 401)
    assert not r.matches("authz:x", 401)
    assert r.matches("ratelimit:api", 429)
    assert not r.matches("ratelimit:login", 429)
    assert r.matches("access:rule-1", 403)
    assert not r.matches("access:rule-1", 404)
    with pytest.raises(ValueError):
        BanRule((), 1, 1, 1)
    with pytest.raises(ValueError):
        BanRule(("auth",), 0, 1, 1)


def test_autoban_fires_on_the_nth_refusal_within_the_window() -> None:
    rule = BanRule(("auth",), count=3, window=60.0, ban_seconds=600.0)
    ab = AutoBan([rule])
    t = 1000.0
    assert ab.refused("192.0.2.1", "auth:basic", 401, t) == []
    assert ab.refused("192.0.2.1", "auth:basic", 401, t + 10) == []
    assert ab.refused("192.0.2.2", "auth:basic", 401, t + 10) == []  # another client
    assert ab.refused("192.0.2.1", "access:rule-1", 403, t + 11) == []  # another kind
    assert ab.refused("192.0.2.1", "auth:jwt", 401, t + 59) == [rule]
    # counting starts afresh after a ban fired
    assert ab.refused("192.0.2.1", "auth:jwt", 401, t + 60) == []


def test_autoban_window_slides() -> None:
    rule = BanRule(("401",), count=2, window=10.0, ban_seconds=60.0)
    ab = AutoBan([rule])
    assert ab.refused("c", "auth:basic", 401, 0.0) == []
    assert ab.refused("c", "auth:basic", 401, 10.5) == []  # first one fell out
    assert ab.refused("c", "auth:basic", 401, 20.5) == [rule]  # 10.5 and 20.5: exactly 10 s


def test_autoban_memory_is_bounded() -> None:
    ab = AutoBan([BanRule(("auth",), count=2, window=100.0, ban_seconds=1.0)], max_clients=3)
    for i in range(10):
        ab.refused(f"10.0.0.{i}", "auth", 401, 0.0)
    assert len(ab._seen[0]) == 3
    # the oldest were forgotten: a second refusal from 10.0.0.0 starts a new count
    assert ab.refused("10.0.0.0", "auth", 401, 1.0) == []
    assert ab.refused("10.0.0.9", "auth", 401, 1.0) != []
