"""Peer health (nginx max_fails / fail_timeout, active health marks) and the balancers."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest

from ramparts.config.plan import PeerPlan
from ramparts.server.balance import (
    Balancer,
    IPHashBalancer,
    LeastConnBalancer,
    PeerState,
    make_balancer,
)

NOW = 1000.0


def peer(
    port: int,
    weight: int = 1,
    *,
    max_fails: int = 1,
    fail_timeout: float = 10.0,
    backup: bool = False,
    host: str = "127.0.0.1",
) -> PeerState:
    return PeerState(PeerPlan(host, port, weight, max_fails, fail_timeout, backup))


def picks(b: Balancer, n: int, key: str = "", now: float = NOW) -> list[int]:
    out = []
    for _ in range(n):
        p = b.choose(key, now)
        assert p is not None
        out.append(p.plan.port)
    return out


# -- passive health ----------------------------------------------------------------------


def test_peer_state_starts_healthy() -> None:
    p = peer(1)
    assert p.available(NOW)
    assert p.fails == 0
    assert p.active == 0
    assert p.health_down is False
    assert p.label == "127.0.0.1:1"
    assert "127.0.0.1:1" in repr(p)


def test_ipv6_label() -> None:
    assert peer(80, host="::1").label == "[::1]:80"


def test_one_failure_marks_down_for_fail_timeout() -> None:
    p = peer(1, max_fails=1, fail_timeout=10.0)
    p.failed(100.0)
    assert not p.available(100.0)
    assert not p.available(109.999)
    assert p.available(110.0)
    assert p.available(200.0)


def test_max_fails_within_fail_timeout() -> None:
    p = peer(1, max_fails=3, fail_timeout=10.0)
    p.failed(100.0)
    assert p.available(100.0)
    p.failed(105.0)
    assert p.available(105.0)
    p.failed(109.0)
    assert not p.available(109.0)
    assert not p.available(118.9)
    assert p.available(119.0)  # down for fail_timeout after the last failure


def test_failures_spread_wider_than_fail_timeout_do_not_add_up() -> None:
    p = peer(1, max_fails=2, fail_timeout=10.0)
    p.failed(100.0)
    p.failed(111.0)  # the first is out of the window: count restarts
    assert p.fails == 1
    assert p.available(111.0)
    p.failed(115.0)
    assert p.fails == 2
    assert not p.available(115.0)


def test_success_resets_failures() -> None:
    p = peer(1, max_fails=2, fail_timeout=10.0)
    p.failed(100.0)
    p.succeeded()
    assert p.fails == 0
    p.failed(101.0)
    assert p.available(101.0)


def test_max_fails_zero_never_marks_down() -> None:
    p = peer(1, max_fails=0)
    for t in range(10):
        p.failed(NOW + t)
    assert p.available(NOW + 9)


def test_health_down_excludes_regardless_of_failures() -> None:
    p = peer(1, max_fails=0)
    p.health_down = True
    assert not p.available(NOW)
    p.health_down = False
    assert p.available(NOW)


# -- round robin -------------------------------------------------------------------------


def test_smooth_weighted_round_robin_matches_nginx() -> None:
    # nginx's documented sequence for weights a=5, b=1, c=1
    b = Balancer([peer(1, 5), peer(2, 1), peer(3, 1)])
    names = {1: "a", 2: "b", 3: "c"}
    seq = [names[p] for p in picks(b, 7)]
    assert seq == ["a", "a", "b", "a", "c", "a", "a"]
    # and the cycle repeats exactly
    assert [names[p] for p in picks(b, 7)] == seq


@pytest.mark.parametrize("weights", [(1, 1, 1), (3, 2, 1), (1, 10), (4, 4, 2, 7), (100, 1)])
def test_distribution_over_a_cycle_matches_weights(weights: tuple[int, ...]) -> None:
    b = Balancer([peer(i, w) for i, w in enumerate(weights, start=1)])
    total = sum(weights)
    for _ in range(3):
        counts = Counter(picks(b, total))
        assert counts == {i: w for i, w in enumerate(weights, start=1)}


def test_equal_weights_alternate() -> None:
    b = Balancer([peer(1), peer(2), peer(3)])
    assert picks(b, 6) == [1, 2, 3, 1, 2, 3]


def test_smooth_spread_never_repeats_a_light_peer() -> None:
    b = Balancer([peer(1, 2), peer(2, 1)])
    seq = picks(b, 9)
    for x, y in pairwise(seq):
        assert not (x == y == 2)


def test_unavailable_peer_is_skipped() -> None:
    a, b_, c = peer(1), peer(2), peer(3)
    bal = Balancer([a, b_, c])
    b_.failed(NOW)
    assert set(picks(bal, 6)) == {1, 3}
    assert set(picks(bal, 6, now=NOW + 10)) == {1, 2, 3}  # recovered


def test_exclude_for_retries() -> None:
    a, b_ = peer(1), peer(2)
    bal = Balancer([a, b_])
    for _ in range(4):
        chosen = bal.choose("", NOW, exclude={a})
        assert chosen is b_
    assert bal.choose("", NOW, exclude=frozenset({a, b_})) is None


def test_no_peer_available() -> None:
    a, b_ = peer(1), peer(2)
    a.health_down = b_.health_down = True
    assert Balancer([a, b_]).choose("", NOW) is None


def test_single_peer() -> None:
    a = peer(1)
    bal = Balancer([a])
    assert bal.choose("", NOW) is a
    assert bal.choose("", NOW, exclude={a}) is None
    a.failed(NOW)
    assert bal.choose("", NOW) is None
    assert bal.choose("", NOW + 10) is a


# -- backup peers ------------------------------------------------------------------------


def test_backup_only_when_every_primary_is_down() -> None:
    a, b_, spare = peer(1), peer(2), peer(9, backup=True)
    bal = Balancer([a, b_, spare])
    assert 9 not in picks(bal, 20)
    a.failed(NOW)
    assert set(picks(bal, 10)) == {2}
    b_.health_down = True
    assert picks(bal, 3) == [9, 9, 9]
    # a primary back: the backup is idle again
    assert 9 not in picks(bal, 10, now=NOW + 10)


def test_backup_used_when_primaries_are_excluded() -> None:
    a, spare = peer(1), peer(9, backup=True)
    bal = Balancer([a, spare])
    assert bal.choose("", NOW, exclude={a}) is spare
    assert bal.choose("", NOW, exclude={a, spare}) is None


def test_backups_are_balanced_among_themselves() -> None:
    a, s1, s2 = peer(1), peer(8, backup=True), peer(9, backup=True)
    a.health_down = True
    assert Counter(picks(Balancer([a, s1, s2]), 4)) == {8: 2, 9: 2}


# -- least connections -------------------------------------------------------------------


def test_least_conn_prefers_fewest_active() -> None:
    a, b_, c = peer(1), peer(2), peer(3)
    bal = LeastConnBalancer([a, b_, c])
    a.active, b_.active, c.active = 5, 1, 3
    assert bal.choose("", NOW) is b_
    b_.active = 6
    assert bal.choose("", NOW) is c


def test_least_conn_weights_divide_active() -> None:
    a, b_ = peer(1, weight=4), peer(2, weight=1)
    a.active, b_.active = 6, 2  # 1.5 vs 2.0 per unit of weight
    assert LeastConnBalancer([a, b_]).choose("", NOW) is a


def test_least_conn_ties_are_round_robin() -> None:
    a, b_, c = peer(1), peer(2), peer(3)
    c.active = 10
    bal = LeastConnBalancer([a, b_, c])
    assert Counter(picks(bal, 10)) == {1: 5, 2: 5}


def test_least_conn_skips_unavailable() -> None:
    a, b_ = peer(1), peer(2)
    b_.active = 100
    a.failed(NOW)
    assert LeastConnBalancer([a, b_]).choose("", NOW) is b_


# -- client-IP hash ----------------------------------------------------------------------


def ip_hash(n: int = 4) -> tuple[IPHashBalancer, list[PeerState]]:
    peers = [peer(i) for i in range(1, n + 1)]
    return IPHashBalancer(peers), peers


def test_ip_hash_is_sticky() -> None:
    bal, _ = ip_hash()
    for client in ("192.0.2.1", "198.51.100.77", "2001:db8::1"):
        first = bal.choose(client, NOW)
        assert first is not None
        for _ in range(10):
            assert bal.choose(client, NOW) is first


def test_ip_hash_spreads_clients() -> None:
    bal, _ = ip_hash()
    chosen = Counter(picks_for(bal, [f"10.0.{i // 256}.{i % 256}" for i in range(400)]))
    assert set(chosen) == {1, 2, 3, 4}
    assert min(chosen.values()) > 40


def picks_for(bal: Balancer, keys: list[str], now: float = NOW) -> list[int]:
    out = []
    for k in keys:
        p = bal.choose(k, now)
        assert p is not None
        out.append(p.plan.port)
    return out


def test_ip_hash_rehashes_when_the_peer_is_down_and_returns_after() -> None:
    bal, peers = ip_hash()
    keys = [f"203.0.113.{i}" for i in range(64)]
    before = picks_for(bal, keys)
    down = peers[0]
    down.failed(NOW)
    during = picks_for(bal, keys)
    for k, b, d in zip(keys, before, during, strict=True):
        assert d != 1
        if b != 1:
            assert d == b, f"{k} moved although its peer is up"
    # the rehash is stable too
    assert picks_for(bal, keys) == during
    # once the peer is back, every client goes home
    assert picks_for(bal, keys, now=NOW + 10) == before


def test_ip_hash_respects_weights() -> None:
    heavy, light = peer(1, weight=9), peer(2, weight=1)
    bal = IPHashBalancer([heavy, light])
    chosen = Counter(picks_for(bal, [f"10.1.{i // 256}.{i % 256}" for i in range(1000)]))
    assert chosen[1] > 3 * chosen[2] > 0


def test_ip_hash_with_everything_down() -> None:
    bal, peers = ip_hash(3)
    for p in peers:
        p.health_down = True
    assert bal.choose("192.0.2.1", NOW) is None


def test_ip_hash_exclude_picks_another() -> None:
    bal, _ = ip_hash()
    first = bal.choose("192.0.2.1", NOW)
    assert first is not None
    second = bal.choose("192.0.2.1", NOW, exclude={first})
    assert second is not None
    assert second is not first


# -- factory -----------------------------------------------------------------------------


def test_make_balancer() -> None:
    peers = [peer(1), peer(2)]
    assert type(make_balancer("round_robin", peers)) is Balancer
    assert isinstance(make_balancer("least_conn", peers), LeastConnBalancer)
    assert isinstance(make_balancer("ip_hash", peers), IPHashBalancer)
    assert make_balancer("ip_hash", peers).kind == "ip_hash"
    with pytest.raises(KeyError):
        make_balancer("random", peers)


def test_least_conn_with_everything_down() -> None:
    a, b_ = peer(1), peer(2)
    a.failed(NOW)
    b_.health_down = True
    assert LeastConnBalancer([a, b_]).choose("", NOW) is None
