"""MemoryStore on its own: its synchronous hot-path methods agree with the async protocol,
its zones are bounded, and bans and event windows follow its (fake) clock. The behaviour it
shares with RedisStore is tested against both in tests/integration/test_redis_store.py."""

from __future__ import annotations

import asyncio
import math

import pytest

from ramparts.clock import FakeClock
from ramparts.policies.ratelimit import PASS, UNLIMITED, LimitConn, LimitReq, Outcome
from ramparts.state import Ban, MemoryStore, Store


def test_memory_store_implements_the_protocol() -> None:
    store: Store = MemoryStore()
    assert asyncio.run(store.is_banned("x")) is False


def test_the_hot_path_and_the_protocol_decide_alike() -> None:
    a, b = MemoryStore(), MemoryStore()
    lim = LimitReq("z", "3r/s", 2, delay=1)
    for now in [0, 0, 5, 10, 400, 401, 402, 403, 2000, 2000, 2000]:
        one = a.limit_req_one(lim, "k", now)
        many = asyncio.run(b.limit_req([(lim, "k")], now))
        assert one == many
    assert a.limit_req_one(lim, "", 0) is UNLIMITED


def test_a_passing_request_allocates_no_decision() -> None:
    store = MemoryStore()
    lim = LimitReq("z", "5r/s", 5, nodelay=True)
    assert store.limit_req_one(lim, "k", 0) is PASS
    assert store.limit_req_sync([(lim, "k")], 1) is PASS


def test_zones_are_bounded_per_zone() -> None:
    store = MemoryStore(max_keys=10, zone_keys={"small": 2})
    small, big = LimitReq("small", "1r/s"), LimitReq("big", "1r/s")
    for i in range(20):
        store.limit_req_one(small, f"k{i}", 0)
        store.limit_req_one(big, f"k{i}", 0)
    assert len(store.req_zone(small).entries) == 2
    assert len(store.req_zone(big).entries) == 10
    # the evicted keys are new again
    assert store.limit_req_one(small, "k0", 0) is PASS


def test_conn_sync_and_count() -> None:
    store = MemoryStore()
    lim = LimitConn("c", 1)
    assert store.conn_acquire_sync([(lim, "k")]) is PASS
    assert store.conn_count(lim, "k") == 1
    assert store.conn_acquire_sync([(lim, "k")]).outcome is Outcome.REJECTED
    store.conn_release_sync([(lim, "k")])
    assert store.conn_count(lim, "k") == 0
    assert store.conn_count(LimitConn("other", 1), "k") == 0


def test_bans_follow_the_clock() -> None:
    clock = FakeClock(100.0)
    store = MemoryStore(clock=clock)
    store.ban_sync("10.0.0.1", 60, "too many logins")
    store.ban_sync("10.0.0.2", math.inf, "manual")
    assert store.is_banned_sync("10.0.0.1") and store.is_banned_sync("10.0.0.2")
    clock.advance(59.5)
    assert store.bans_sync() == [
        Ban("10.0.0.1", pytest.approx(0.5), "too many logins"),  # type: ignore[arg-type]
        Ban("10.0.0.2", math.inf, "manual"),
    ]
    clock.advance(0.5)
    assert not store.is_banned_sync("10.0.0.1")
    assert [b.address for b in store.bans_sync()] == ["10.0.0.2"]
    assert store.unban_sync("10.0.0.2") is True
    assert store.unban_sync("10.0.0.2") is False


def test_a_new_ban_replaces_the_old_one() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.ban_sync("a", 10, "first")
    store.ban_sync("a", 100, "second")
    clock.advance(50)  # the first ban's expiry must not lift the second
    store.ban_sync("b", 1, "other")  # runs the expiry of old heap entries
    assert store.bans_sync()[0] == Ban("a", 50.0, "second")


def test_expired_bans_are_dropped_without_being_read() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for i in range(1000):
        store.ban_sync(f"10.0.{i // 256}.{i % 256}", 1, "flood")
    clock.advance(2)
    store.ban_sync("192.0.2.1", 1, "new")
    assert len(store._bans) == 1


@pytest.mark.parametrize("seconds", [0, -1, math.nan])
def test_a_ban_needs_a_positive_duration(seconds: float) -> None:
    with pytest.raises(ValueError):
        MemoryStore().ban_sync("a", seconds, "x")


def test_event_windows_slide() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    counts = []
    for _ in range(3):
        counts.append(store.count_event_sync("login", "1.2.3.4", 10))
        clock.advance(4)
    # events at 0, 4, 8; now 12: the one at 0 left the window (12 - 10 = 2)
    counts.append(store.count_event_sync("login", "1.2.3.4", 10))
    assert counts == [1, 2, 3, 3]
    assert store.count_event_sync("login", "5.6.7.8", 10) == 1
    assert store.count_event_sync("404", "1.2.3.4", 10) == 1


def test_event_windows_are_bounded() -> None:
    store = MemoryStore(clock=FakeClock(), max_event_keys=3, max_events=5)
    assert [store.count_event_sync("k", "a", 60) for _ in range(8)] == [1, 2, 3, 4, 5, 5, 5, 5]
    for key in "bcd":
        store.count_event_sync("k", key, 60)
    assert store.count_event_sync("k", "a", 60) == 1  # "a" was the least recently counted
