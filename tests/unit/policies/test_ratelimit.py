"""limit_req and limit_conn rules, driven with explicit millisecond clocks (no sockets, no
sleeping): nginx's arithmetic, the per-location loop over several limits, dry run, statuses,
Retry-After, zone eviction."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ramparts.clock import FakeClock
from ramparts.policies.ratelimit import (
    IDLE_EXPIRE_MS,
    NODELAY,
    PASS,
    UNLIMITED,
    ConnZone,
    Decision,
    LimitConn,
    LimitReq,
    Outcome,
    ReqZone,
    conn_acquire,
    conn_release,
    decide_req,
    decide_req_one,
    parse_rate,
)


class Zones:
    """Zone tables for the engine, and a millisecond clock (a FakeClock in seconds)."""

    def __init__(self, max_keys: int = 1000) -> None:
        self.req: dict[str, ReqZone] = {}
        self.conn: dict[str, ConnZone] = {}
        self.max_keys = max_keys
        self.clock = FakeClock(5000.0)

    @property
    def now(self) -> int:
        return round(self.clock.now() * 1000)

    def wait(self, ms: int) -> None:
        self.clock.advance(ms / 1000)

    def req_zone(self, limit: LimitReq) -> ReqZone:
        if limit.zone not in self.req:
            self.req[limit.zone] = ReqZone(limit.zone, limit.rate, self.max_keys)
        return self.req[limit.zone]

    def conn_zone(self, limit: LimitConn) -> ConnZone:
        if limit.zone not in self.conn:
            self.conn[limit.zone] = ConnZone(limit.zone, self.max_keys)
        return self.conn[limit.zone]

    def hit(self, checks: Sequence[tuple[LimitReq, str]], at: int | None = None) -> Decision:
        return decide_req(checks, self.now if at is None else at, self.req_zone)

    def one(self, limit: LimitReq, key: str = "k", at: int | None = None) -> Decision:
        now = self.now if at is None else at
        return decide_req_one(limit, key, now, self.req_zone(limit))

    def state(self, limit: LimitReq, key: str = "k") -> list[int]:
        return self.req_zone(limit).entries[key]

    def acquire(self, checks: Sequence[tuple[LimitConn, str]]) -> Decision:
        return conn_acquire(checks, self.conn_zone)

    def release(self, checks: Sequence[tuple[LimitConn, str]]) -> None:
        conn_release(checks, self.conn_zone)


def outcomes(decisions: Sequence[Decision]) -> list[str]:
    return [d.outcome.name for d in decisions]


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "milli"),
    [("5r/s", 5000), ("1r/s", 1000), ("30r/m", 500), ("1r/m", 16), ("7r/m", 116), ("5", 5000)],
)
def test_rates_are_milli_requests_per_second_truncated_like_nginx(text: str, milli: int) -> None:
    assert parse_rate(text) == milli


@pytest.mark.parametrize("text", ["0r/s", "1.5r/s", "r/s", "5r/h", "-1r/s", "", "five"])
def test_invalid_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_limit_units_are_nginx_units() -> None:
    lim = LimitReq("api", "5r/s", 10, delay=4)
    assert (lim.rate, lim.burst, lim.delay, lim.nodelay) == (5000, 10000, 4000, False)
    assert LimitReq("api", "5r/s", 10, nodelay=True).delay == NODELAY
    assert LimitReq("api", "5r/s").delay == 0  # the default: delay everything above the rate
    assert lim.decided_by == "ratelimit:api"
    assert LimitConn("c", 3).decided_by == "limitconn:c"
    assert lim.describe() == "zone=api rate=5r/s burst=10 delay=4"
    # a key idle this long is a new key again: (burst + 1) periods
    assert LimitReq("a", "5r/s", 3).idle_ms == 800
    assert LimitReq("a", "3r/s").idle_ms == 334


@pytest.mark.parametrize(
    "make",
    [
        lambda: LimitReq("a", "5r/s", -1),
        lambda: LimitReq("a", "5r/s", 2, delay=1, nodelay=True),
        lambda: LimitReq("a", "5r/s", status=399),
        lambda: LimitReq("a", "5r/s", status=600),
        lambda: LimitReq("a:b", "5r/s"),
        lambda: LimitReq("", "5r/s"),
        lambda: LimitConn("c", 0),
        lambda: LimitConn("c", 1, status=200),
    ],
)
def test_invalid_limits_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


# -- one limit ---------------------------------------------------------------------------


def test_a_new_key_starts_at_excess_zero() -> None:
    z = Zones()
    lim = LimitReq("a", "1r/s")  # burst 0
    assert z.one(lim) is PASS
    assert z.state(lim) == [0, z.now]


def test_without_burst_one_request_per_period() -> None:
    z = Zones()
    lim = LimitReq("a", "5r/s")
    assert z.one(lim) is PASS
    z.wait(199)
    d = z.one(lim)
    assert d.outcome is Outcome.REJECTED
    assert d.excess == 1000 - 5000 * 199 // 1000 == 5
    z.wait(1)  # 200 ms after the accepted one
    assert z.one(lim) is PASS


def test_excess_is_integer_arithmetic() -> None:
    z = Zones()
    lim = LimitReq("a", "3r/s", 5)  # default delay threshold 0
    z.one(lim)
    z.wait(100)
    d = z.one(lim)
    # 0 - 3000 * 100 // 1000 + 1000 = 700 -> delayed 700 * 1000 // 3000 = 233 ms
    assert (d.outcome, d.excess, d.delay_ms) == (Outcome.DELAYED, 700, 233)
    z.wait(1)
    d = z.one(lim)
    # 700 - 3000 * 1 // 1000 + 1000 = 1697 -> 565 ms
    assert (d.excess, d.delay_ms) == (1697, 565)
    z.wait(1)
    assert z.one(lim).excess == 1697 - 3 + 1000


def test_one_request_per_minute_is_really_one_per_62_5_seconds() -> None:
    """nginx stores 1r/m as 16 milli-requests per second (1000 // 60): a minute drains 960."""
    z = Zones()
    lim = LimitReq("a", "1r/m")
    z.one(lim)
    z.wait(60_000)
    d = z.one(lim)
    assert (d.outcome, d.excess) == (Outcome.REJECTED, 40)
    z.wait(2_500)
    assert z.one(lim) is PASS


def test_a_rejected_request_does_not_change_the_state() -> None:
    z = Zones()
    lim = LimitReq("a", "5r/s")
    assert z.one(lim) is PASS
    before = list(z.state(lim))
    z.wait(100)
    assert z.one(lim).outcome is Outcome.REJECTED
    assert z.state(lim) == before
    z.wait(100)  # 200 ms after the accepted request: the rejected one cost nothing
    assert z.one(lim) is PASS


def test_last_is_kept_when_the_clock_steps_back_a_little() -> None:
    """ms < 0 counts as 0 and ``last`` is only moved when ms != 0."""
    z = Zones()
    lim = LimitReq("a", "5r/s", 5)
    z.one(lim, at=1000)
    d = z.one(lim, at=900)  # 100 ms in the past: no drain, last stays 1000
    assert (d.excess, z.state(lim)) == (1000, [1000, 1000])
    d = z.one(lim, at=1200)  # 200 ms after last=1000 (not 300 after 900)
    assert d.excess == 1000 - 1000 + 1000


def test_a_clock_far_in_the_past_counts_as_one_ms() -> None:
    """ms < -60000 counts as 1: a little drain, and ``last`` moves back to now."""
    z = Zones()
    lim = LimitReq("a", "5r/s", 5)
    z.one(lim, at=100_000)
    d = z.one(lim, at=30_000)
    assert (d.excess, d.delay_ms) == (995, 199)
    assert z.state(lim) == [995, 30_000]
    assert z.one(lim, at=30_200).excess == 995


def test_nodelay_lets_the_burst_through_at_once() -> None:
    z = Zones()
    lim = LimitReq("a", "5r/s", 3, nodelay=True)
    got = [z.one(lim) for _ in range(5)]  # all at the same ms
    assert outcomes(got) == ["PASSED"] * 4 + ["REJECTED"]
    assert got[4].excess == 4000


def test_delay_n_lets_n_through_then_delays() -> None:
    z = Zones()
    lim = LimitReq("a", "4r/s", 5, delay=2)
    got = [z.one(lim) for _ in range(7)]
    assert outcomes(got) == ["PASSED"] * 3 + ["DELAYED"] * 3 + ["REJECTED"]
    # excess 3000, 4000, 5000 above a threshold of 2000, at 4 r/s
    assert [d.delay_ms for d in got[3:6]] == [250, 500, 750]


def test_default_delays_everything_above_the_rate() -> None:
    z = Zones()
    lim = LimitReq("a", "2r/s", 2)
    got = [z.one(lim) for _ in range(4)]
    assert outcomes(got) == ["PASSED", "DELAYED", "DELAYED", "REJECTED"]
    assert [d.delay_ms for d in got[1:3]] == [500, 1000]
    assert got[1].decided_by == "ratelimit:a"


def test_a_delay_that_rounds_to_zero_passes() -> None:
    """nginx: ``if (!delay)`` the request passes even though its excess is above the
    threshold (here 1000 milli-requests at 2000 r/s: 0.5 ms)."""
    z = Zones()
    lim = LimitReq("a", "2000r/s", 5)
    z.one(lim)
    assert z.one(lim) is PASS
    assert z.state(lim)[0] == 1000


def test_rejection_status_and_decision() -> None:
    z = Zones()
    lim = LimitReq("a", "5r/s", status=429)
    z.one(lim)
    d = z.one(lim)
    assert (d.rejected, d.status, d.decided_by) == (True, 429, "ratelimit:a")
    assert LimitReq("b", "5r/s").status == 503
    assert d.outcome.variable == "REJECTED"
    assert UNLIMITED.outcome.variable == ""
    assert PASS.status == 0 and PASS.decided_by == ""


def test_empty_and_overlong_keys_are_not_limited() -> None:
    z = Zones()
    lim = LimitReq("a", "1r/s")
    for _ in range(3):
        assert z.one(lim, "") is UNLIMITED
        assert z.one(lim, "x" * 65536) is UNLIMITED
        assert z.hit([(lim, "")]) is UNLIMITED
    assert z.one(lim, "x" * 65535) is PASS
    assert z.one(lim, "x" * 65535).outcome is Outcome.REJECTED


def test_keys_are_independent() -> None:
    z = Zones()
    lim = LimitReq("a", "1r/s")
    assert [z.one(lim, k) for k in "abc"] == [PASS] * 3
    assert outcomes([z.one(lim, k) for k in "abc"]) == ["REJECTED"] * 3


# -- dry run -----------------------------------------------------------------------------


def test_dry_run_rejects_nothing_and_charges_nothing_for_a_would_be_rejection() -> None:
    z = Zones()
    lim = LimitReq("a", "5r/s", dry_run=True, status=429)
    assert z.one(lim) is PASS
    z.wait(100)
    d = z.one(lim)
    assert d.outcome is Outcome.REJECTED_DRY_RUN
    assert (d.rejected, d.status, d.decided_by) == (False, 0, "ratelimit:a")
    z.wait(100)
    assert z.one(lim) is PASS  # the dry-run rejection was not charged


def test_dry_run_delays_nothing_but_charges_like_a_delay() -> None:
    z, real = Zones(), Zones()
    dry = LimitReq("a", "2r/s", 2, dry_run=True)
    lim = LimitReq("a", "2r/s", 2)
    got = [z.one(dry) for _ in range(4)]
    assert outcomes(got) == ["PASSED", "DELAYED_DRY_RUN", "DELAYED_DRY_RUN", "REJECTED_DRY_RUN"]
    assert [d.delay_ms for d in got] == [0, 0, 0, 0]
    assert [d.excess for d in got[1:]] == [1000, 2000, 3000]
    for _ in range(4):
        real.one(lim)
    assert z.state(dry) == real.state(lim)


# -- several limits ----------------------------------------------------------------------


def test_when_a_later_limit_rejects_earlier_limits_are_not_charged() -> None:
    z = Zones()
    a = LimitReq("a", "2r/s", 1, nodelay=True)
    b = LimitReq("b", "2r/s")
    assert z.hit([(a, "k"), (b, "g1")]) is PASS
    before = list(z.state(a))
    d = z.hit([(a, "k"), (b, "g1")])
    assert (d.outcome, d.limit) == (Outcome.REJECTED, b)
    assert z.state(a) == before
    z.wait(20)
    assert z.hit([(a, "k"), (b, "g2")]) is PASS  # a: 1000 - 40 <= 1000
    z.wait(20)
    d = z.hit([(a, "k"), (b, "g3")])  # a: 960 - 40 + 1000 > 1000
    assert (d.outcome, d.limit, d.excess) == (Outcome.REJECTED, a, 1920)


def test_when_an_earlier_limit_rejects_later_limits_are_not_looked_up() -> None:
    z = Zones()
    a = LimitReq("a", "2r/s")
    b = LimitReq("b", "2r/s", 5, nodelay=True)
    z.hit([(a, "k"), (b, "g")])
    d = z.hit([(a, "k"), (b, "new-key")])
    assert (d.outcome, d.limit) == (Outcome.REJECTED, a)
    assert "new-key" not in z.req["b"].entries
    assert z.state(b, "g") == [0, z.now]


def test_a_key_created_by_an_earlier_limit_stays_new_when_a_later_rejects() -> None:
    """nginx creates the earlier limit's node at lookup; if a later limit rejects, the node
    stays, never charged, and the next request sees it as new (excess 0)."""
    z = Zones()
    a = LimitReq("a", "1r/s")
    b = LimitReq("b", "1r/s")
    z.hit([(a, "x"), (b, "g")])
    z.wait(10)
    assert z.hit([(a, "fresh"), (b, "g")]).limit is b
    assert "fresh" in z.req["a"].entries
    z.wait(10)
    assert z.hit([(a, "fresh"), (b, "other")]) is PASS
    assert z.state(a, "fresh") == [0, z.now]


def test_the_longest_delay_wins_and_names_its_zone() -> None:
    z = Zones()
    a = LimitReq("a", "5r/s", 5)
    b = LimitReq("b", "2r/s", 5, delay=1)
    z.hit([(a, "k1"), (b, "g")])
    d = z.hit([(a, "k1"), (b, "g")])  # a: 1000 -> 200 ms; b: 1000 <= 1000 -> 0
    assert (d.outcome, d.limit, d.delay_ms, d.excess) == (Outcome.DELAYED, a, 200, 1000)
    d = z.hit([(a, "k2"), (b, "g")])  # a: new; b: 2000 -> 500 ms
    assert (d.limit, d.delay_ms) == (b, 500)
    d = z.hit([(a, "k1"), (b, "g")])  # a: 2000 -> 400 ms; b: 3000 -> 1000 ms
    assert (d.limit, d.delay_ms, d.excess) == (b, 1000, 3000)
    assert z.state(a, "k1")[0] == 2000  # every limit was charged


def test_on_equal_delays_the_later_limit_is_named() -> None:
    z = Zones()
    a = LimitReq("a", "2r/s", 5)
    b = LimitReq("b", "2r/s", 5)
    z.hit([(a, "k"), (b, "k")])
    d = z.hit([(a, "k"), (b, "k")])
    assert (d.limit, d.delay_ms) == (b, 500)


def test_empty_keys_skip_their_limit_only() -> None:
    z = Zones()
    a = LimitReq("a", "5r/s", 1, nodelay=True)
    b = LimitReq("b", "1r/s")
    assert z.hit([(a, "k"), (b, "")]) is PASS
    assert z.hit([(a, "k"), (b, "")]) is PASS
    assert z.hit([(a, "k"), (b, "")]).limit is a
    assert z.hit([(a, ""), (b, "g")]) is PASS
    assert z.hit([(a, ""), (b, "g")]).limit is b
    assert z.hit([(a, ""), (b, "")]) is UNLIMITED


def test_several_limits_and_one_limit_agree() -> None:
    z1, z2 = Zones(), Zones()
    lim = LimitReq("a", "3r/s", 2, delay=1)
    for step in [0, 10, 10, 100, 0, 400, 1, 1, 2000]:
        z1.wait(step)
        z2.wait(step)
        assert z1.one(lim) == z2.hit([(lim, "k")])


# -- Retry-After -------------------------------------------------------------------------


def test_retry_after_is_the_wait_until_one_request_passes() -> None:
    z = Zones()
    lim = LimitReq("a", "2r/s", 1, nodelay=True)
    z.one(lim)
    z.one(lim)
    z.wait(100)
    d = z.one(lim)
    # stored 1000 at t0; need 1000 + 1000 - 1000 = 1000 drained: 500 ms after t0
    assert (d.outcome, d.retry_after_ms, d.retry_after) == (Outcome.REJECTED, 400, 1)
    z.wait(399)
    assert z.one(lim).outcome is Outcome.REJECTED
    z.wait(1)
    assert z.one(lim) is PASS


def test_retry_after_rounds_up_to_seconds() -> None:
    z = Zones()
    lim = LimitReq("a", "1r/m")
    z.one(lim)
    d = z.one(lim)
    # 1000 milli-requests at 16 per second: 62500 ms
    assert (d.retry_after_ms, d.retry_after) == (62500, 63)


@given(
    rate=st.sampled_from(["1r/s", "3r/s", "7r/s", "10r/s", "7r/m", "30r/m", "450r/m"]),
    burst=st.integers(0, 5),
    stored_frac=st.integers(0, 1000),
    since=st.integers(-60000, 5000),
)
def test_retry_after_is_exact(rate: str, burst: int, stored_frac: int, since: int) -> None:
    """A rejected request told to wait w ms passes after w ms and, when the clock did not
    step back, is still rejected one ms earlier."""
    lim = LimitReq("a", rate, burst)
    stored = min(lim.burst, stored_frac * lim.burst // 1000)
    last, now = 1_000_000, 1_000_000 + since
    zone = ReqZone("a", lim.rate, 10)
    zone.entries["k"] = [stored, last]
    d = decide_req_one(lim, "k", now, zone)
    if d.outcome is not Outcome.REJECTED:
        return
    w = d.retry_after_ms
    assert w >= 1
    zone.entries["k"] = [stored, last]
    assert decide_req_one(lim, "k", now + w, zone).outcome is not Outcome.REJECTED
    if since >= 0 and w > 1:
        zone.entries["k"] = [stored, last]
        assert decide_req_one(lim, "k", now + w - 1, zone).outcome is Outcome.REJECTED


# -- zone eviction -----------------------------------------------------------------------


def test_a_full_zone_evicts_its_least_recently_used_key() -> None:
    z = Zones(max_keys=3)
    lim = LimitReq("a", "1r/s")
    for k in "abc":
        z.one(lim, k)
    z.wait(10)
    z.one(lim, "a")  # a is used again (rejected, but bumped all the same)
    z.one(lim, "d")
    assert list(z.req["a"].entries) == ["c", "a", "d"]
    assert z.one(lim, "b") is PASS  # forgotten: new again (and c goes)
    assert list(z.req["a"].entries) == ["a", "d", "b"]


def test_idle_drained_keys_are_evicted_when_a_key_is_added() -> None:
    """Before adding a key, up to two LRU keys idle >= 60 s and drained are dropped."""
    z = Zones()
    lim = LimitReq("a", "1r/s", 5, nodelay=True)
    for k in "abc":
        z.one(lim, k)
    z.wait(IDLE_EXPIRE_MS - 1)
    z.one(lim, "d")
    assert list(z.req["a"].entries) == ["a", "b", "c", "d"]  # not idle long enough
    z.wait(1)
    z.one(lim, "e")
    assert list(z.req["a"].entries) == ["c", "d", "e"]  # two at a time


def test_idle_keys_not_yet_drained_stay() -> None:
    z = Zones()
    lim = LimitReq("a", "1r/m", 5, nodelay=True)
    for _ in range(3):
        z.one(lim, "slow")  # excess 2000 at 16 per second: 125 s to drain
    z.wait(IDLE_EXPIRE_MS)
    z.one(lim, "new")
    assert "slow" in z.req["a"].entries


def test_idle_keys_go_only_once_they_equal_a_new_key() -> None:
    """Unlike nginx, which would forget this key after 60 s (its excess alone has drained)
    and so give it a request 2.5 s early."""
    z = Zones()
    lim = LimitReq("a", "1r/m")
    z.one(lim, "k")
    z.wait(IDLE_EXPIRE_MS)
    z.one(lim, "other")
    assert "k" in z.req["a"].entries
    assert z.one(lim, "k").outcome is Outcome.REJECTED  # 40 milli-requests still count
    z.wait(62_500)
    z.one(lim, "third")
    assert list(z.req["a"].entries) == ["third"]


def test_a_clock_stepping_back_evicts_nothing() -> None:
    z = Zones()
    lim = LimitReq("a", "5r/s")
    z.one(lim, "k", at=200_000)
    z.one(lim, "other", at=100_000)
    assert "k" in z.req["a"].entries
    assert z.one(lim, "k", at=100_000).outcome is Outcome.REJECTED  # ms < -60000 -> 1


def test_a_forced_eviction_also_drops_idle_drained_keys() -> None:
    z = Zones(max_keys=4)
    lim = LimitReq("a", "1r/s")
    for k in "abcd":
        z.one(lim, k)
    z.wait(IDLE_EXPIRE_MS)
    z.one(lim, "d")  # d is busy again; a, b, c are idle and drained
    zone = z.req["a"]
    zone._expire(z.now, 0)
    assert list(zone.entries) == ["d"]


# -- limit_conn --------------------------------------------------------------------------


def test_limit_conn_counts_requests_in_flight() -> None:
    z = Zones()
    lim = LimitConn("c", 2, status=429)
    checks = [(lim, "k")]
    assert [z.acquire(checks), z.acquire(checks)] == [PASS, PASS]
    d = z.acquire(checks)
    assert (d.outcome, d.status, d.decided_by) == (Outcome.REJECTED, 429, "limitconn:c")
    assert z.conn["c"].counts == {"k": 2}
    z.release(checks)
    assert z.conn["c"].counts == {"k": 1}
    assert z.acquire(checks) is PASS
    z.release(checks)
    z.release(checks)
    assert z.conn["c"].counts == {}  # a key with nothing in flight is forgotten
    z.release(checks)  # a stray release is harmless
    assert z.conn["c"].counts == {}


def test_limit_conn_default_status_is_503() -> None:
    z = Zones()
    lim = LimitConn("c", 1)
    z.acquire([(lim, "k")])
    assert z.acquire([(lim, "k")]).status == 503


def test_limit_conn_empty_and_overlong_keys_are_not_limited() -> None:
    z = Zones()
    lim = LimitConn("c", 1)
    for _ in range(3):
        assert z.acquire([(lim, "")]) is UNLIMITED
        assert z.acquire([(lim, "x" * 256)]) is UNLIMITED
    assert z.acquire([(lim, "x" * 255)]) is PASS
    assert z.acquire([(lim, "x" * 255)]).outcome is Outcome.REJECTED


def test_limit_conn_gives_back_earlier_slots_when_a_later_limit_rejects() -> None:
    z = Zones()
    per_key = LimitConn("key", 5)
    per_group = LimitConn("group", 1)
    assert z.acquire([(per_key, "k1"), (per_group, "g")]) is PASS
    d = z.acquire([(per_key, "k2"), (per_group, "g")])
    assert (d.outcome, d.limit) == (Outcome.REJECTED, per_group)
    assert z.conn["key"].counts == {"k1": 1}


def test_limit_conn_dry_run_passes_and_holds_nothing() -> None:
    z = Zones()
    lim = LimitConn("c", 1, dry_run=True, status=429)
    assert z.acquire([(lim, "k")]) is PASS
    d = z.acquire([(lim, "k")])
    assert (d.outcome, d.rejected, d.status) == (Outcome.REJECTED_DRY_RUN, False, 0)
    assert z.conn["c"].counts == {"k": 1}


def test_limit_conn_full_zone_refuses_new_keys() -> None:
    """nginx answers with the limit's status when its zone has no room for a new key."""
    z = Zones(max_keys=2)
    lim = LimitConn("c", 10)
    assert z.acquire([(lim, "a")]) is PASS
    assert z.acquire([(lim, "b")]) is PASS
    assert z.acquire([(lim, "c")]).outcome is Outcome.REJECTED
    assert z.acquire([(lim, "a")]) is PASS  # known keys still count
    z.release([(lim, "b")])
    assert z.acquire([(lim, "c")]) is PASS


def test_decisions_compare_by_value() -> None:
    lim = LimitReq("a", "5r/s")
    assert Decision(Outcome.DELAYED, lim, 200, 1000) == Decision(
        Outcome.DELAYED, LimitReq("a", "5r/s"), 200, 1000
    )
    assert Decision(Outcome.DELAYED, lim, 200, 1000) != Decision(Outcome.DELAYED, lim, 201, 1000)
    assert "DELAYED" in repr(Decision(Outcome.DELAYED, lim, 200, 1000))
    assert hash(PASS) == hash(Decision(Outcome.PASSED))
