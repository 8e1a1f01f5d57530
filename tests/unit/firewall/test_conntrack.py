"""Connection tracking: netfilter's TCP state machine and timeouts, UDP and ICMP flows,
classification (new / established / related / invalid), the table limit."""

from __future__ import annotations

import pytest

from ramparts.clock import FakeClock
from ramparts.firewall.conntrack import (
    ConnTracker,
    Flow,
    FlowTuple,
    Outcome,
    TcpState,
    Timeouts,
    flow_tuple,
    reply_tuple,
)
from ramparts.net.packet import ACK, FIN, PSH, RST, SYN, URG, Packet

CLIENT, SERVER = "192.0.2.10", "203.0.113.5"
CPORT, SPORT = 51000, 443
DAY = 86_400.0


def c2s(flags: int, sport: int = CPORT) -> Packet:
    return Packet.make(CLIENT, SERVER, "tcp", sport, SPORT, tcp_flags=flags)


def s2c(flags: int, dport: int = CPORT) -> Packet:
    return Packet.make(SERVER, CLIENT, "tcp", SPORT, dport, tcp_flags=flags)


def only_flow(ct: ConnTracker, now: float) -> Flow:
    flows = list(ct.flows(now))
    assert len(flows) == 1
    return flows[0]


def established(ct: ConnTracker, clock: FakeClock) -> Flow:
    for p in (c2s(SYN), s2c(SYN | ACK), c2s(ACK)):
        ct.track(p, clock.now())
    flow = only_flow(ct, clock.now())
    assert flow.tcp_state is TcpState.ESTABLISHED
    return flow


# -- defaults ---------------------------------------------------------------------------


def test_default_timeouts_are_the_kernels() -> None:
    t = Timeouts()
    assert [t.tcp(s) for s in TcpState if s is not TcpState.NONE] == [
        120.0,  # SYN_SENT
        60.0,  # SYN_RECV
        432_000.0,  # ESTABLISHED, 5 days
        120.0,  # FIN_WAIT
        60.0,  # CLOSE_WAIT
        30.0,  # LAST_ACK
        120.0,  # TIME_WAIT
        10.0,  # CLOSE
        120.0,  # SYN_SENT2
    ]
    assert (t.udp_unreplied, t.udp_stream, t.udp_stream_after) == (30.0, 120.0, 2.0)
    assert (t.icmp, t.generic) == (30.0, 600.0)


def test_reply_tuple_swaps_the_ends_and_answers_icmp_queries() -> None:
    syn = flow_tuple(c2s(SYN))
    synack = flow_tuple(s2c(SYN | ACK))
    assert syn is not None and synack is not None
    assert reply_tuple(syn) == synack
    assert reply_tuple(synack) == syn
    ping = Packet.make(CLIENT, SERVER, "icmp", icmp_type=8, icmp_code=0)
    pong = Packet.make(SERVER, CLIENT, "icmp", icmp_type=0, icmp_code=0)
    assert reply_tuple(flow_tuple(ping, icmp_id=7) or FlowTuple(4, 1, 0, 0)) == flow_tuple(
        pong, icmp_id=7
    )
    # an ICMP error forms no flow of its own
    assert flow_tuple(Packet.make(SERVER, CLIENT, "icmp", icmp_type=3, icmp_code=3)) is None


# -- TCP --------------------------------------------------------------------------------


def test_handshake_data_and_fin_teardown_walk_the_states_with_their_timeouts() -> None:
    clock = FakeClock(1000.0)
    ct = ConnTracker()
    steps = [
        # packet,             outcome,              state after,            timeout
        (c2s(SYN), Outcome.NEW, TcpState.SYN_SENT, 120.0),
        (s2c(SYN | ACK), Outcome.ESTABLISHED, TcpState.SYN_RECV, 60.0),
        (c2s(ACK), Outcome.ESTABLISHED, TcpState.ESTABLISHED, 432_000.0),
        (c2s(PSH | ACK), Outcome.ESTABLISHED, TcpState.ESTABLISHED, 432_000.0),
        (s2c(PSH | ACK), Outcome.ESTABLISHED, TcpState.ESTABLISHED, 432_000.0),
        (c2s(FIN | ACK), Outcome.ESTABLISHED, TcpState.FIN_WAIT, 120.0),
        (s2c(ACK), Outcome.ESTABLISHED, TcpState.CLOSE_WAIT, 60.0),
        (s2c(FIN | ACK), Outcome.ESTABLISHED, TcpState.LAST_ACK, 30.0),
        (c2s(ACK), Outcome.ESTABLISHED, TcpState.TIME_WAIT, 120.0),
    ]
    for packet, outcome, state, timeout in steps:
        clock.advance(0.5)
        c = ct.track(packet, clock.now())
        assert (c.outcome, c.tcp_state) == (outcome, state), packet
        flow = only_flow(ct, clock.now())
        assert flow.tcp_state is state
        assert flow.expires == clock.now() + timeout, state
    assert flow.assured and flow.seen_reply
    assert (flow.packets_original, flow.packets_reply) == (5, 4)
    clock.advance(119.999)
    assert len(list(ct.flows(clock.now()))) == 1
    clock.advance(0.001)  # TIME_WAIT's 120 s are up
    assert list(ct.flows(clock.now())) == []
    assert ct.stats(clock.now()).expired == 1


def test_a_lone_syn_expires_after_120s_and_a_late_syn_ack_is_invalid() -> None:
    clock = FakeClock()
    ct = ConnTracker()
    ct.track(c2s(SYN), clock.now())
    clock.advance(119.9)
    assert ct.lookup(c2s(SYN), clock.now()) is not None
    clock.advance(0.1)
    assert ct.lookup(c2s(SYN), clock.now()) is None
    c = ct.track(s2c(SYN | ACK), clock.now())
    assert c.outcome is Outcome.INVALID
    assert c.reason == "SYN-ACK with no flow"


def test_an_idle_established_flow_lives_five_days() -> None:
    clock = FakeClock()
    ct = ConnTracker()
    established(ct, clock)
    clock.advance(5 * DAY - 1)
    assert ct.track(s2c(ACK), clock.now()).outcome is Outcome.ESTABLISHED  # refreshed
    clock.advance(5 * DAY - 1)
    assert len(ct) == 1
    clock.advance(1)
    assert ct.track(s2c(ACK), clock.now()).outcome is Outcome.INVALID
    assert ct.stats(clock.now()).expired == 1


def test_rst_closes_the_flow_which_lingers_ten_seconds() -> None:
    clock = FakeClock()
    ct = ConnTracker()
    established(ct, clock)
    clock.advance(1)
    c = ct.track(s2c(RST | ACK), clock.now())
    assert (c.outcome, c.tcp_state) == (Outcome.ESTABLISHED, TcpState.CLOSE)
    flow = only_flow(ct, clock.now())
    assert flow.expires == clock.now() + 10.0
    clock.advance(5)
    assert ct.track(c2s(ACK), clock.now()).tcp_state is TcpState.CLOSE  # stragglers pass
    clock.advance(10)
    assert len(list(ct.flows(clock.now()))) == 0


def test_rst_as_the_only_reply_removes_the_flow_at_once() -> None:
    clock = FakeClock()
    ct = ConnTracker()
    ct.track(c2s(SYN), clock.now())
    c = ct.track(s2c(RST | ACK), clock.now())  # connection refused
    assert c.outcome is Outcome.ESTABLISHED
    assert len(ct) == 0
    assert ct.stats(clock.now()).removed == 1


@pytest.mark.parametrize(
    ("flags", "what"),
    [
        (SYN | ACK, "SYN-ACK"),
        (ACK, "ACK"),
        (PSH | ACK, "ACK"),
        (FIN | ACK, "FIN"),
        (RST, "RST"),
    ],
)
def test_tcp_without_a_flow_is_invalid_unless_it_is_a_syn(flags: int, what: str) -> None:
    ct = ConnTracker()
    c = ct.track(s2c(flags), 0.0)
    assert c.outcome is Outcome.INVALID
    assert c.ct_state == "invalid"
    assert c.reason == f"{what} with no flow"
    assert len(ct) == 0
    assert ct.stats(0.0).invalid == 1


def test_tcp_loose_picks_up_a_flow_from_a_mid_stream_ack() -> None:
    ct = ConnTracker(tcp_loose=True)
    c = ct.track(c2s(ACK), 0.0)
    assert (c.outcome, c.tcp_state) == (Outcome.NEW, TcpState.ESTABLISHED)
    assert ct.track(s2c(ACK), 1.0).outcome is Outcome.ESTABLISHED
    # SYN-ACK and FIN still cannot open a flow
    assert ct.track(s2c(SYN | ACK, dport=9), 1.0).outcome is Outcome.INVALID


@pytest.mark.parametrize(
    "flags",
    [0, FIN, SYN | FIN, SYN | RST, FIN | PSH | URG, SYN | ACK | URG],
    ids=["null", "fin-alone", "syn-fin", "syn-rst", "xmas", "syn-ack-urg"],
)
def test_flag_combinations_the_kernel_refuses_are_invalid(flags: int) -> None:
    clock = FakeClock()
    ct = ConnTracker()
    flow = established(ct, clock)
    expires = flow.expires
    c = ct.track(c2s(flags), clock.now() + 1)
    assert c.outcome is Outcome.INVALID
    assert c.reason.startswith("invalid TCP flag combination")
    assert flow.tcp_state is TcpState.ESTABLISHED and flow.expires == expires


def test_ack_from_the_client_before_the_syn_ack_is_invalid() -> None:
    ct = ConnTracker()
    ct.track(c2s(SYN), 0.0)
    c = ct.track(c2s(ACK), 1.0)
    assert c.outcome is Outcome.INVALID
    assert c.reason == "ACK in SYN_SENT (original direction)"
    assert only_flow(ct, 1.0).tcp_state is TcpState.SYN_SENT


def test_a_retransmitted_syn_is_still_new_and_opens_nothing_more() -> None:
    ct = ConnTracker()
    first = ct.track(c2s(SYN), 0.0)
    again = ct.track(c2s(SYN), 3.0)
    assert first.creates and not again.creates
    assert again.outcome is Outcome.NEW
    assert len(ct) == 1
    assert only_flow(ct, 3.0).expires == 123.0
    assert ct.stats(3.0).inserted == 1


def test_simultaneous_open_passes_through_syn_sent2() -> None:
    ct = ConnTracker()
    a, b = (
        Packet.make(CLIENT, SERVER, "tcp", 7000, 7001, tcp_flags=SYN),
        Packet.make(SERVER, CLIENT, "tcp", 7001, 7000, tcp_flags=SYN),
    )
    ct.track(a, 0.0)
    c = ct.track(b, 0.1)  # the other end's SYN crosses ours
    assert (c.outcome, c.tcp_state) == (Outcome.ESTABLISHED, TcpState.SYN_SENT2)
    assert only_flow(ct, 0.1).expires == 0.1 + 120.0
    c = ct.track(Packet.make(CLIENT, SERVER, "tcp", 7000, 7001, tcp_flags=SYN | ACK), 0.2)
    assert c.tcp_state is TcpState.SYN_RECV
    c = ct.track(Packet.make(CLIENT, SERVER, "tcp", 7000, 7001, tcp_flags=ACK), 0.3)
    assert c.tcp_state is TcpState.ESTABLISHED


def test_a_new_syn_on_a_time_wait_flow_reopens_it() -> None:
    clock = FakeClock()
    ct = ConnTracker()
    established(ct, clock)
    for p in (c2s(FIN | ACK), s2c(FIN | ACK), c2s(ACK)):
        ct.track(p, clock.now())
    old = only_flow(ct, clock.now())
    assert old.tcp_state is TcpState.TIME_WAIT
    clock.advance(1)
    c = ct.track(c2s(SYN), clock.now())
    assert (c.outcome, c.tcp_state, c.creates) == (Outcome.NEW, TcpState.SYN_SENT, True)
    new = only_flow(ct, clock.now())
    assert new is not old and not new.seen_reply
    assert ct.stats(clock.now()).removed == 1


def test_a_syn_on_a_live_flow_is_ignored_and_its_syn_ack_resynchronises() -> None:
    clock = FakeClock()
    ct = ConnTracker()
    flow = established(ct, clock)
    expires = flow.expires
    clock.advance(1)
    c = ct.track(c2s(SYN), clock.now())  # the client lost its state and starts over
    assert (c.outcome, c.ignored, c.tcp_state) == (Outcome.ESTABLISHED, True, TcpState.ESTABLISHED)
    assert flow.tcp_state is TcpState.ESTABLISHED and flow.expires == expires  # untouched
    c = ct.track(s2c(SYN | ACK), clock.now())
    assert (c.ignored, c.tcp_state) == (False, TcpState.SYN_RECV)
    assert flow.expires == clock.now() + 60.0
    assert ct.track(c2s(ACK), clock.now()).tcp_state is TcpState.ESTABLISHED


def test_ipv6_flows_are_tracked_alike() -> None:
    ct = ConnTracker()
    syn = Packet.make("2001:db8::1", "2001:db8::2", "tcp", 40000, 22, tcp_flags=SYN)
    synack = Packet.make("2001:db8::2", "2001:db8::1", "tcp", 22, 40000, tcp_flags=SYN | ACK)
    assert ct.track(syn, 0.0).outcome is Outcome.NEW
    assert ct.track(synack, 0.1).tcp_state is TcpState.SYN_RECV
    # the same addresses in IPv4 clothes are another flow
    assert ct.track(c2s(SYN | ACK), 0.2).outcome is Outcome.INVALID


# -- UDP --------------------------------------------------------------------------------


def dns_query(sport: int = 53000) -> Packet:
    return Packet.make(CLIENT, "198.51.100.53", "udp", sport, 53)


def dns_answer(dport: int = 53000, sport: int = 53) -> Packet:
    return Packet.make("198.51.100.53", CLIENT, "udp", sport, dport)


def test_udp_reply_is_matched_and_a_short_exchange_keeps_the_30s_timeout() -> None:
    ct = ConnTracker()
    assert ct.track(dns_query(), 0.0).outcome is Outcome.NEW
    assert ct.track(dns_query(), 0.5).outcome is Outcome.NEW  # no reply yet: still new
    c = ct.track(dns_answer(), 1.0)
    assert c.outcome is Outcome.ESTABLISHED and c.reply
    flow = only_flow(ct, 1.0)
    assert flow.expires == 31.0 and not flow.assured
    assert ct.track(dns_answer(sport=5353), 1.0).outcome is Outcome.NEW  # another port
    assert ct.lookup(dns_query(), 30.999) is not None
    assert ct.lookup(dns_query(), 31.0) is None


def test_udp_unreplied_flow_expires_after_30s() -> None:
    ct = ConnTracker()
    ct.track(dns_query(), 0.0)
    assert ct.lookup(dns_query(), 29.9) is not None
    assert ct.track(dns_answer(), 30.0).outcome is Outcome.NEW  # the answer came too late
    assert ct.stats(30.0).expired == 1


def test_udp_stream_still_active_after_2s_gets_120s_and_is_assured() -> None:
    ct = ConnTracker()
    ct.track(dns_query(), 0.0)
    ct.track(dns_answer(), 0.1)
    ct.track(dns_query(), 1.5)
    flow = only_flow(ct, 1.5)
    assert (flow.expires, flow.assured) == (31.5, False)  # within 2 s: not a stream yet
    ct.track(dns_answer(), 2.5)
    assert (flow.expires, flow.assured) == (122.5, True)
    assert flow.state_name == "ASSURED"


# -- ICMP -------------------------------------------------------------------------------


def ping(icmp_type: int, src: str = CLIENT, dst: str = SERVER, proto: str = "icmp") -> Packet:
    return Packet.make(src, dst, proto, icmp_type=icmp_type, icmp_code=0)


def test_icmp_echo_reply_matches_its_request_by_identifier() -> None:
    ct = ConnTracker()
    assert ct.track(ping(8), 0.0, icmp_id=7).outcome is Outcome.NEW
    assert ct.track(ping(0, SERVER, CLIENT), 0.2, icmp_id=8).outcome is Outcome.INVALID
    c = ct.track(ping(0, SERVER, CLIENT), 0.2, icmp_id=7)
    assert c.outcome is Outcome.ESTABLISHED
    assert only_flow(ct, 0.2).expires == 30.2
    assert ct.lookup(ping(8), 30.2, icmp_id=7) is None


def test_icmp_echo_reply_without_a_request_is_invalid() -> None:
    ct = ConnTracker()
    c = ct.track(ping(0, SERVER, CLIENT), 0.0, icmp_id=1)
    assert c.outcome is Outcome.INVALID
    assert c.reason == "ICMP type 0 answers no request"
    assert len(ct) == 0


def test_icmpv6_echo_is_tracked_and_neighbour_discovery_is_not() -> None:
    ct = ConnTracker()
    a, b = "2001:db8::1", "2001:db8::2"
    assert ct.track(ping(128, a, b, "icmpv6"), 0.0, icmp_id=3).outcome is Outcome.NEW
    assert ct.track(ping(129, b, a, "icmpv6"), 0.1, icmp_id=3).outcome is Outcome.ESTABLISHED
    c = ct.track(ping(135, a, b, "icmpv6"), 0.2)  # neighbour solicitation
    assert c.outcome is Outcome.UNTRACKED and c.ct_state is None
    assert len(ct) == 1


def test_icmp_error_quoting_a_tracked_flow_is_related_and_changes_nothing() -> None:
    ct = ConnTracker()
    ct.track(dns_query(), 0.0)
    quoted = flow_tuple(dns_query())
    unreachable = Packet.make("198.51.100.1", CLIENT, "icmp", icmp_type=3, icmp_code=3)
    c = ct.track(unreachable, 1.0, inner=quoted)
    assert c.outcome is Outcome.RELATED and c.ct_state == "related"
    assert c.flow is only_flow(ct, 1.0)
    assert c.flow.expires == 30.0  # not refreshed by the error
    # the quoted header read the other way round finds the same flow
    assert ct.track(unreachable, 1.0, inner=flow_tuple(dns_answer())).outcome is Outcome.RELATED
    assert ct.track(unreachable, 1.0).outcome is Outcome.INVALID  # nothing quoted
    unknown = flow_tuple(dns_query(sport=1))
    c = ct.track(unreachable, 1.0, inner=unknown)
    assert c.outcome is Outcome.INVALID and c.reason.startswith("ICMP error quotes no flow")


def test_other_protocols_get_a_generic_600s_flow() -> None:
    ct = ConnTracker()
    gre_out = Packet.make(CLIENT, SERVER, 47)
    gre_back = Packet.make(SERVER, CLIENT, 47)
    assert ct.track(gre_out, 0.0).outcome is Outcome.NEW
    assert ct.track(gre_back, 1.0).outcome is Outcome.ESTABLISHED
    assert only_flow(ct, 1.0).expires == 601.0


# -- the table --------------------------------------------------------------------------


def test_a_full_table_refuses_new_flows_and_keeps_the_existing_ones() -> None:
    clock = FakeClock()
    ct = ConnTracker(max_entries=2)
    established(ct, clock)
    ct.track(c2s(SYN, sport=51001), clock.now())
    assert len(ct) == 2
    c = ct.classify(c2s(SYN, sport=51002), clock.now())
    assert c.outcome is Outcome.NEW  # what it is ...
    c = ct.commit(c, clock.now())
    assert c.outcome is Outcome.REFUSED and c.ct_state == "new"  # ... and what became of it
    assert c.reason == "conntrack table full"
    assert len(ct) == 2
    # both existing flows go on
    assert ct.track(s2c(PSH | ACK), clock.now()).outcome is Outcome.ESTABLISHED
    c = ct.track(s2c(SYN | ACK, dport=51001), clock.now())
    assert c.tcp_state is TcpState.SYN_RECV
    ct.track(c2s(SYN, sport=51003), clock.now())
    s = ct.stats(clock.now())
    assert (s.entries, s.max_entries, s.inserted, s.refused_full) == (2, 2, 2, 2)
    assert s.early_dropped == 0


def test_expired_flows_make_room_before_anything_is_refused() -> None:
    ct = ConnTracker(max_entries=1)
    ct.track(dns_query(), 0.0)
    assert ct.track(dns_query(sport=1), 10.0).outcome is Outcome.REFUSED
    assert ct.track(dns_query(sport=1), 30.0).outcome is Outcome.NEW
    s = ct.stats(30.0)
    assert (s.entries, s.expired, s.refused_full, s.inserted) == (1, 1, 1, 2)


def test_early_drop_evicts_the_oldest_unassured_flow_never_an_assured_one() -> None:
    clock = FakeClock()
    ct = ConnTracker(max_entries=2, early_drop=True)
    assured = established(ct, clock)
    assert assured.assured
    ct.track(c2s(SYN, sport=2), clock.now())  # half open
    c = ct.track(c2s(SYN, sport=3), clock.now())
    assert c.outcome is Outcome.NEW
    assert ct.lookup(c2s(SYN, sport=2), clock.now()) is None  # evicted
    assert ct.lookup(c2s(ACK), clock.now()) is assured
    # make the remaining half-open flow assured: nothing left to evict
    ct.track(s2c(SYN | ACK, dport=3), clock.now())
    ct.track(c2s(ACK, sport=3), clock.now())
    ct.track(c2s(ACK, sport=3), clock.now())
    assert ct.track(c2s(SYN, sport=4), clock.now()).outcome is Outcome.REFUSED
    s = ct.stats(clock.now())
    assert (s.entries, s.early_dropped, s.refused_full) == (2, 1, 1)


def test_a_stale_classification_cannot_be_committed() -> None:
    ct = ConnTracker()
    first = ct.classify(c2s(SYN), 0.0)
    ct.track(c2s(SYN, sport=9), 0.0)
    with pytest.raises(RuntimeError, match="stale"):
        ct.commit(first, 0.0)


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ConnTracker(max_entries=0)


def test_stats_as_dict_names_every_counter() -> None:
    ct = ConnTracker(max_entries=5)
    ct.track(c2s(SYN), 0.0)
    ct.track(s2c(ACK, dport=1), 0.0)
    assert ct.stats(0.0).as_dict() == {
        "entries": 1,
        "max_entries": 5,
        "inserted": 1,
        "refused_full": 0,
        "early_dropped": 0,
        "invalid": 1,
        "expired": 0,
        "removed": 0,
    }
