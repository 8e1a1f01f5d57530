"""RedisStore on a real redis-server (started by the tests on 127.0.0.1), and the behaviour
every store shares, run against MemoryStore and RedisStore alike.

Redis-only: the Lua script and the pure engine agree on random request sequences; keys expire
once their state equals a new key's; scripts are reloaded after SCRIPT FLUSH; Redis down
-> StoreUnavailable at once, logged once, recovered when redis-server comes back; limit_conn
slots of a crashed (SIGKILLed) process come back after its lease.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from ramparts.clock import FakeClock
from ramparts.policies.ratelimit import (
    PASS,
    UNLIMITED,
    LimitConn,
    LimitReq,
    Outcome,
    ReqZone,
    decide_req,
)
from ramparts.state import MemoryStore, RedisStore, Store, StoreUnavailable

from ..peers import start_redis
from ..support import ROOT, Proc

T = TypeVar("T")
T0 = 1_700_000_000_000  # caller clock (ms) the shared tests start at


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    proc, port = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield port
    finally:
        proc.stop()


def url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


class Harness:
    """One store under test, its event loop, and a way to let time pass for what the store
    times itself (bans, event windows): the fake clock for memory, real time for Redis."""

    def __init__(self, kind: str, port: int) -> None:
        self.kind = kind
        self.runner = asyncio.Runner()
        self.clock = FakeClock()
        self.store: Store
        if kind == "memory":
            self.store = MemoryStore(clock=self.clock)
        else:
            self.store = RedisStore(url(port), prefix=prefix(), time_source="caller")

    def run(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return self.runner.run(wrap())

    def pass_time(self, seconds: float) -> None:
        if self.kind == "memory":
            self.clock.advance(seconds)
        else:
            time.sleep(seconds)

    def req(self, checks: list[tuple[LimitReq, str]], now: int) -> str:
        d = self.run(self.store.limit_req(checks, T0 + now))
        return d.outcome.name + (f":{d.limit.zone}" if d.limit and d.outcome.value > 1 else "")

    def close(self) -> None:
        self.run(self.store.aclose())
        self.runner.close()


@pytest.fixture(params=["memory", "redis"])
def h(request: pytest.FixtureRequest) -> Iterator[Harness]:
    port = request.getfixturevalue("redis_server") if request.param == "redis" else 0
    harness = Harness(request.param, port)
    try:
        yield harness
    finally:
        harness.close()


# -- the shared behaviour ----------------------------------------------------------------


def test_limit_req_burst_delay_and_rejection(h: Harness) -> None:
    lim = LimitReq("a", "2r/s", 2)
    decisions = [h.run(h.store.limit_req([(lim, "k")], T0)) for _ in range(4)]
    assert [d.outcome for d in decisions] == [
        Outcome.PASSED,
        Outcome.DELAYED,
        Outcome.DELAYED,
        Outcome.REJECTED,
    ]
    assert [d.delay_ms for d in decisions] == [0, 500, 1000, 0]
    assert (decisions[3].status, decisions[3].retry_after_ms) == (503, 500)
    assert h.req([(lim, "k")], 500) == "DELAYED:a"  # 2000 - 1000 + 1000 -> 1000 ms


def test_limit_req_nodelay_and_delay_n(h: Harness) -> None:
    nodelay = LimitReq("n", "5r/s", 2, nodelay=True)
    delay1 = LimitReq("d", "5r/s", 2, delay=1)
    assert [h.req([(nodelay, "k")], 0) for _ in range(4)] == [
        "PASSED",
        "PASSED",
        "PASSED",
        "REJECTED:n",
    ]
    assert [h.req([(delay1, "k")], 0) for _ in range(4)] == [
        "PASSED",
        "PASSED",
        "DELAYED:d",
        "REJECTED:d",
    ]
    assert h.req([(nodelay, "k")], 199) == "REJECTED:n"
    assert h.req([(nodelay, "k")], 200) == "PASSED"


def test_limit_req_clock_clamps(h: Harness) -> None:
    lim = LimitReq("a", "5r/s", 5)
    h.req([(lim, "k")], 100_000)
    d = h.run(h.store.limit_req([(lim, "k")], T0 + 99_900))  # back 100 ms: no drain
    assert d.excess == 1000
    d = h.run(h.store.limit_req([(lim, "k")], T0 + 30_000))  # back > 60 s: one ms
    assert d.excess == 1995


def test_limit_req_several_limits(h: Harness) -> None:
    a = LimitReq("a", "2r/s", 1, nodelay=True)
    b = LimitReq("b", "2r/s")
    assert h.req([(a, "k"), (b, "g1")], 0) == "PASSED"
    assert h.req([(a, "k"), (b, "g1")], 0) == "REJECTED:b"  # a not charged
    assert h.req([(a, "k"), (b, "g2")], 20) == "PASSED"
    assert h.req([(a, "k"), (b, "g3")], 40) == "REJECTED:a"
    c = LimitReq("c", "5r/s", 5)
    e = LimitReq("e", "2r/s", 5, delay=1)
    h.req([(c, "k"), (e, "g")], 0)
    assert h.req([(c, "k"), (e, "g")], 0) == "DELAYED:c"  # 200 ms vs 0
    assert h.req([(c, "k2"), (e, "g")], 0) == "DELAYED:e"  # 0 vs 500 ms


def test_limit_req_empty_keys_and_dry_run(h: Harness) -> None:
    lim = LimitReq("a", "1r/s")
    assert h.run(h.store.limit_req([(lim, "")], T0)) is UNLIMITED
    assert h.run(h.store.limit_req([], T0)) is UNLIMITED
    dry = LimitReq("d", "5r/s", 1, dry_run=True)
    got = [h.req([(dry, "k")], 0) for _ in range(3)]
    assert got == ["PASSED", "DELAYED_DRY_RUN:d", "REJECTED_DRY_RUN:d"]
    d = h.run(h.store.limit_req([(dry, "k")], T0))
    assert (d.rejected, d.status, d.delay_ms) == (False, 0, 0)


def test_limit_conn(h: Harness) -> None:
    per_key = LimitConn("key", 2, status=429)
    per_group = LimitConn("group", 1)
    a = [(per_key, "k1"), (per_group, "g1")]
    b = [(per_key, "k1"), (per_group, "g2")]
    c = [(per_key, "k1"), (per_group, "g3")]
    assert h.run(h.store.conn_acquire(a)) is PASS
    assert h.run(h.store.conn_acquire(b)) is PASS
    d = h.run(h.store.conn_acquire(c))
    assert (d.outcome, d.decided_by, d.status) == (Outcome.REJECTED, "limitconn:key", 429)
    d = h.run(h.store.conn_acquire([(per_key, "k2"), (per_group, "g1")]))
    assert d.decided_by == "limitconn:group"
    # the group's refusal gave k2's slot back: k2 can still take two
    assert h.run(h.store.conn_acquire([(per_key, "k2"), (per_group, "g4")])) is PASS
    assert h.run(h.store.conn_acquire([(per_key, "k2"), (per_group, "g5")])) is PASS
    h.run(h.store.conn_release(a))
    assert h.run(h.store.conn_acquire(c)) is PASS
    assert h.run(h.store.conn_acquire([(per_key, "")])) is UNLIMITED
    dry = LimitConn("dry", 1, dry_run=True)
    assert h.run(h.store.conn_acquire([(dry, "k")])) is PASS
    d = h.run(h.store.conn_acquire([(dry, "k")]))
    assert (d.outcome, d.rejected) == (Outcome.REJECTED_DRY_RUN, False)
    h.run(h.store.conn_release([(dry, "k")]))
    assert h.run(h.store.conn_acquire([(dry, "k")])) is PASS


def test_bans(h: Harness) -> None:
    s = h.store
    h.run(s.ban("192.0.2.1", 0.4, "brute force"))
    h.run(s.ban("2001:db8::1", 60, "scanner"))
    h.run(s.ban("192.0.2.9", math.inf, "manual"))
    assert h.run(s.is_banned("192.0.2.1")) is True
    assert h.run(s.is_banned("192.0.2.2")) is False
    bans = h.run(s.bans())
    assert [(b.address, b.reason) for b in bans] == [
        ("192.0.2.1", "brute force"),
        ("192.0.2.9", "manual"),
        ("2001:db8::1", "scanner"),
    ]
    assert 0 < bans[0].seconds_left <= 0.4
    assert bans[1].seconds_left == math.inf
    assert 59 < bans[2].seconds_left <= 60
    h.pass_time(0.5)
    assert h.run(s.is_banned("192.0.2.1")) is False
    assert [b.address for b in h.run(s.bans())] == ["192.0.2.9", "2001:db8::1"]
    h.run(s.ban("2001:db8::1", 30, "again"))  # replaces
    assert h.run(s.bans())[1].reason == "again"
    assert h.run(s.unban("2001:db8::1")) is True
    assert h.run(s.unban("2001:db8::1")) is False
    assert [b.address for b in h.run(s.bans())] == ["192.0.2.9"]


def test_count_event_sliding_window(h: Harness) -> None:
    s = h.store
    counts = [h.run(s.count_event("login", "192.0.2.1", 0.5)) for _ in range(3)]
    assert counts == [1, 2, 3]
    assert h.run(s.count_event("login", "192.0.2.2", 0.5)) == 1
    assert h.run(s.count_event("404", "192.0.2.1", 0.5)) == 1
    h.pass_time(0.6)
    assert h.run(s.count_event("login", "192.0.2.1", 0.5)) == 1


# -- Redis only --------------------------------------------------------------------------


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    return asyncio.run(main())


RATES = ["1r/s", "2r/s", "5r/s", "10r/s", "1000r/s", "1r/m", "7r/m", "450r/m"]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[LimitReq], list[tuple[int, list[str]]]]:
    """1-3 limits (any rate unit, burst, nodelay / delay=N / default, dry run) and up to 40
    requests: steps of the caller's clock (back and forth, past the 60 s clamp) and a key per
    limit ("" included)."""
    n = draw(st.integers(1, 3))
    limits = []
    for i in range(n):
        mode = draw(st.integers(-1, 3))  # -1: nodelay, 0: default, N: delay=N
        limits.append(
            LimitReq(
                f"z{i}",
                draw(st.sampled_from(RATES)),
                draw(st.integers(0, 5)),
                nodelay=mode == -1,
                delay=max(mode, 0),
                dry_run=draw(st.booleans()),
            )
        )
    steps = draw(
        st.lists(
            st.tuples(
                st.one_of(
                    st.sampled_from([0, 0, 1, 10, 50, 100, 250, 500, 1000]),
                    st.integers(-100, 3000),
                    st.sampled_from([-70_000, -60_001, -60_000, 60_000, 65_000]),
                ),
                st.lists(st.sampled_from(["", "a", "b"]), min_size=n, max_size=n),
            ),
            min_size=1,
            max_size=40,
        )
    )
    return limits, steps


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_lua_script_and_pure_engine_agree(
    redis_server: int, scenario: tuple[list[LimitReq], list[tuple[int, list[str]]]]
) -> None:
    limits, steps = scenario

    # The pure engine with zones that never forget a key: evicting idle keys is the memory
    # store's business (and a clock stepping back after an eviction would tell).
    zones = {lim.zone: ReqZone(lim.zone, lim.rate, 1000, idle_expire_ms=1 << 62) for lim in limits}

    async def go() -> None:
        redis = RedisStore(url(redis_server), prefix=prefix(), time_source="caller")
        now = T0
        try:
            for i, (dt, keys) in enumerate(steps):
                now += dt
                checks = list(zip(limits, keys, strict=True))
                expected = decide_req(checks, now, lambda lim: zones[lim.zone])
                got = await redis.limit_req(checks, now)
                assert got == expected, f"step {i}"
        finally:
            await redis.aclose()

    run(go)


def test_state_keys_expire_once_they_equal_a_new_key(redis_server: int) -> None:
    p = prefix()
    lim = LimitReq("a", "5r/s", 3)

    async def go() -> tuple[int, int]:
        store = RedisStore(url(redis_server), prefix=p, time_source="caller", expire_margin_ms=500)
        client = Redis.from_url(url(redis_server))
        try:
            await store.limit_req([(lim, "k")], T0)
            return await client.pttl(f"{p}req:a:k"), lim.idle_ms
        finally:
            await store.aclose()
            await client.aclose()

    pttl, idle = run(go)
    assert idle == 800  # (3 + 1) periods of 200 ms
    assert idle < pttl <= idle + 500


def test_time_from_redis_ignores_the_callers_clock(redis_server: int) -> None:
    lim = LimitReq("a", "2r/s", 1, nodelay=True)

    async def go() -> list[Outcome]:
        store = RedisStore(url(redis_server), prefix=prefix())  # time_source="redis"
        try:
            out = [(await store.limit_req([(lim, "k")], 0)).outcome for _ in range(3)]
            await asyncio.sleep(0.55)
            out.append((await store.limit_req([(lim, "k")], 0)).outcome)
            return out
        finally:
            await store.aclose()

    assert run(go) == [Outcome.PASSED, Outcome.PASSED, Outcome.REJECTED, Outcome.PASSED]


def test_scripts_are_reloaded_after_a_flush(redis_server: int) -> None:
    lim = LimitReq("a", "1r/s")

    async def go() -> list[Outcome]:
        store = RedisStore(url(redis_server), prefix=prefix(), time_source="caller")
        client = Redis.from_url(url(redis_server))
        try:
            first = await store.limit_req([(lim, "k")], T0)
            await client.script_flush()
            second = await store.limit_req([(lim, "k")], T0)
            return [first.outcome, second.outcome]
        finally:
            await store.aclose()
            await client.aclose()

    assert run(go) == [Outcome.PASSED, Outcome.REJECTED]


def test_an_error_answer_is_unavailable_but_not_an_outage(redis_server: int) -> None:
    p = prefix()
    lim = LimitReq("a", "1r/s")

    async def go() -> bool:
        store = RedisStore(url(redis_server), prefix=p, time_source="caller")
        client = Redis.from_url(url(redis_server))
        try:
            await client.set(f"{p}req:a:k", "not a state")
            with pytest.raises(StoreUnavailable, match="answered"):
                await store.limit_req([(lim, "k")], T0)
            return store.available and (await store.limit_req([(lim, "k2")], T0)) is PASS
        finally:
            await store.aclose()
            await client.aclose()

    assert run(go)


def test_prefixes_keep_stores_apart(redis_server: int) -> None:
    async def go() -> tuple[list[str], list[str]]:
        a = RedisStore(url(redis_server), prefix=prefix())
        b = RedisStore(url(redis_server), prefix=prefix())
        try:
            await a.ban("192.0.2.1", 10, "a")
            await b.ban("192.0.2.2", 10, "b")
            return [x.address for x in await a.bans()], [x.address for x in await b.bans()]
        finally:
            await a.aclose()
            await b.aclose()

    assert run(go) == (["192.0.2.1"], ["192.0.2.2"])


def test_many_bans_are_listed_across_scan_pages(redis_server: int) -> None:
    async def go() -> int:
        store = RedisStore(url(redis_server), prefix=prefix() + "[x]*?:")  # glob characters
        try:
            for i in range(0, 2500, 50):
                await asyncio.gather(
                    *(store.ban(f"10.1.{j // 250}.{j % 250}", 60, "s") for j in range(i, i + 50))
                )
            return len(await store.bans())
        finally:
            await store.aclose()

    assert run(go) == 2500


def test_unavailable_fails_fast_logs_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proc, port = start_redis(tmp_path / "r1")
    procs = [proc]
    lim = LimitReq("a", "1r/s")
    caplog.set_level(logging.WARNING, logger="ramparts")

    async def go() -> None:
        store = RedisStore(
            url(port),
            prefix=prefix(),
            time_source="caller",
            socket_timeout=0.2,
            connect_timeout=0.2,
            backoff_s=0.3,
        )
        try:
            assert (await store.limit_req([(lim, "k")], T0)).outcome is Outcome.PASSED
            procs[0].stop()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.limit_req([(lim, "k")], T0)
            # no client retries: redis-py's defaults would retry 10 times with back-off
            assert time.monotonic() - started < 1.5
            assert store.available is False
            for call in (
                store.limit_req([(lim, "k")], T0),
                store.conn_acquire([(LimitConn("c", 1), "k")]),
                store.is_banned("x"),
                store.count_event("e", "k", 1),
            ):
                with pytest.raises(StoreUnavailable, match="backing off"):
                    await call
            procs.append(start_redis(tmp_path / "r2", port)[0])
            await asyncio.sleep(0.35)
            # back, empty: the key is new again
            assert (await store.limit_req([(lim, "k")], T0)).outcome is Outcome.PASSED
            assert store.available is True
            assert (await store.limit_req([(lim, "k")], T0)).outcome is Outcome.REJECTED
        finally:
            await store.aclose()

    try:
        run(go)
    finally:
        for p in procs:
            p.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "ramparts"]
    assert [m.split(":")[0] for m in messages] == ["store unavailable", "store recovered"]


def test_a_busy_process_is_not_an_outage(
    redis_server: int, caplog: pytest.LogCaptureFixture
) -> None:
    """More calls than connections wait ``pool_timeout`` for one, then fail, without the
    back-off and the log that mean "Redis is down"."""
    caplog.set_level(logging.WARNING, logger="ramparts")

    async def go() -> tuple[int, int, bool]:
        store = RedisStore(url(redis_server), prefix=prefix(), max_connections=1, pool_timeout=0)
        try:
            results = await asyncio.gather(
                *(store.is_banned(f"a{i}") for i in range(20)), return_exceptions=True
            )
            busy = [r for r in results if isinstance(r, StoreUnavailable)]
            assert all("busy" in str(r) for r in busy)
            assert await store.is_banned("a") is False  # no back-off window
            return len(busy), results.count(False), store.available
        finally:
            await store.aclose()

    busy, answered, available = run(go)
    assert busy > 0 and answered > 0 and available
    assert not [r for r in caplog.records if r.name == "ramparts"]


def test_a_stalled_redis_times_out(tmp_path: Path) -> None:
    """redis-server stopped (SIGSTOP): the call fails after the socket timeout, not later;
    once it runs again (SIGCONT) and the back-off has passed, calls succeed."""
    proc, port = start_redis(tmp_path)

    async def go() -> None:
        store = RedisStore(
            url(port), prefix=prefix(), socket_timeout=0.2, connect_timeout=0.2, backoff_s=0.2
        )
        try:
            assert await store.is_banned("a") is False
            proc.signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await store.is_banned("a")
                assert 0.15 < time.monotonic() - started < 1.5
            finally:
                proc.signal(signal.SIGCONT)
            await asyncio.sleep(0.25)
            assert await store.is_banned("a") is False
            assert store.available
        finally:
            await store.aclose()

    try:
        run(go)
    finally:
        proc.stop()


def test_unreachable_from_the_start(tmp_path: Path) -> None:
    proc, port = start_redis(tmp_path)
    proc.stop()

    async def go() -> None:
        store = RedisStore(url(port), prefix=prefix(), backoff_s=0.1)
        try:
            with pytest.raises(StoreUnavailable):
                await store.ban("a", 1, "x")
        finally:
            await store.aclose()

    run(go)


_HOLDER = """
import asyncio, sys
from ramparts.policies.ratelimit import LimitConn
from ramparts.state.redis import RedisStore

async def main():
    store = RedisStore(sys.argv[1], prefix=sys.argv[2], conn_lease_s=0.6)
    for _ in range(2):
        d = await store.conn_acquire([(LimitConn("c", 2), "k")])
        assert d.outcome.name == "PASSED", d
    print("held", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_conn_slots_of_a_crashed_process_come_back(redis_server: int) -> None:
    p = prefix()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url(redis_server), p],
        stdout=subprocess.PIPE,
        env={"PYTHONPATH": str(ROOT / "src")},
    )
    lim = LimitConn("c", 2)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"

        async def go() -> None:
            store = RedisStore(url(redis_server), prefix=p, conn_lease_s=0.6)
            try:
                # the holder is alive: its heartbeat keeps its slots past its lease
                await asyncio.sleep(1.0)
                assert (await store.conn_acquire([(lim, "k")])).outcome is Outcome.REJECTED
                holder.kill()
                holder.wait()
                deadline = time.monotonic() + 5
                while (await store.conn_acquire([(lim, "k")])).outcome is Outcome.REJECTED:
                    assert time.monotonic() < deadline, "the dead process still holds its slots"
                    await asyncio.sleep(0.1)
                client = Redis.from_url(url(redis_server))
                fields = await client.hgetall(f"{p}conn:c:k")
                await client.aclose()
                assert fields == {store.process_id.encode(): b"1"}
            finally:
                await store.aclose()

        run(go)
    finally:
        Proc(holder, Path("/dev/null")).stop()


def test_heartbeat_restores_slots_after_redis_lost_them(tmp_path: Path) -> None:
    proc, port = start_redis(tmp_path / "r1")
    procs = [proc]
    lim = LimitConn("c", 1)

    async def go() -> None:
        a = RedisStore(url(port), prefix="hb:", backoff_s=0.1, conn_lease_s=30)
        b = RedisStore(url(port), prefix="hb:", backoff_s=0.1, conn_lease_s=30)
        try:
            assert await a.conn_acquire([(lim, "k")]) is PASS
            procs[0].stop()
            with pytest.raises(StoreUnavailable):
                await a.heartbeat()
            procs.append(start_redis(tmp_path / "r2", port)[0])  # empty
            await asyncio.sleep(0.15)
            await a.heartbeat()
            assert (await b.conn_acquire([(lim, "k")])).outcome is Outcome.REJECTED
            await a.conn_release([(lim, "k")])
            assert await b.conn_acquire([(lim, "k")]) is PASS
        finally:
            await a.aclose()
            await b.aclose()

    try:
        run(go)
    finally:
        for p in procs:
            p.stop()
