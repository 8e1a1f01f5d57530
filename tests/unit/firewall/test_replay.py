"""``fw replay``: captures written here with dpkt, replayed through the stateful firewall."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import dpkt
import pytest

from ramparts.firewall.conntrack import ConnTracker, FlowTuple
from ramparts.firewall.model import Action, Rule, RuleSet
from ramparts.firewall.replay import ProgressBar, ReplayError, quoted_tuple, replay_pcap
from ramparts.net import parse_ipset, parse_ports
from ramparts.net.addr import parse_ip
from ramparts.net.packet import ACK, PSH, SYN

CLIENT, SERVER, STRANGER = "192.0.2.10", "203.0.113.5", "198.51.100.9"
T0 = 1_700_000_000.0

RULES = RuleSet.of(
    [
        Rule(Action.ACCEPT, id="est", ct_state=frozenset({"established", "related"})),
        Rule(
            Action.ACCEPT,
            id="https",
            proto=6,
            dport=parse_ports(443),
            ct_state=frozenset({"new"}),
        ),
        Rule(Action.DROP, id="telnet", proto=6, dport=parse_ports(23)),
        Rule(Action.ACCEPT, id="dns", proto=17, dport=parse_ports(53)),
        Rule(Action.ACCEPT, id="ping", proto=58, icmp_type=128),
    ]
)


# -- building captures ------------------------------------------------------------------


def ip4(src: str, dst: str, proto: int, l4: dpkt.Packet | bytes, **kw: int) -> dpkt.ip.IP:
    return dpkt.ip.IP(
        src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=64, data=l4, **kw
    )


def ip6(src: str, dst: str, proto: int, l4: dpkt.Packet) -> dpkt.ip6.IP6:
    pkt = dpkt.ip6.IP6(
        src=socket.inet_pton(socket.AF_INET6, src),
        dst=socket.inet_pton(socket.AF_INET6, dst),
        nxt=proto,
        hlim=64,
        data=l4,
    )
    pkt.plen = len(bytes(l4))
    return pkt


def tcp(src: str, dst: str, sport: int, dport: int, flags: int) -> dpkt.ip.IP:
    return ip4(src, dst, 6, dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=1))


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"q") -> dpkt.ip.IP:
    seg = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    seg.ulen = len(bytes(seg))
    return ip4(src, dst, 17, seg)


def ether(net: dpkt.Packet, ethertype: int = 0x0800) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=ethertype, data=net))


def cooked(net: dpkt.Packet, ethertype: int) -> bytes:
    return bytes(dpkt.sll.SLL(type=0, hrd=1, hlen=6, hdr=b"\x02" * 8, ethtype=ethertype)) + bytes(
        net
    )


ARP = bytes(
    dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\xff" * 6, type=0x0806, data=dpkt.arp.ARP())
)


def write(
    path: Path,
    frames: list[tuple[float, bytes]],
    *,
    linktype: int = dpkt.pcap.DLT_EN10MB,
    pcapng: bool = False,
) -> Path:
    with path.open("wb") as f:
        writer = (
            dpkt.pcapng.Writer(f, linktype=linktype)
            if pcapng
            else dpkt.pcap.Writer(f, linktype=linktype)
        )
        for ts, frame in frames:
            writer.writepkt(frame, ts=ts)
    return path


def basic_frames() -> list[tuple[float, bytes]]:
    """An allowed handshake with data, a blocked SYN, an unsolicited SYN-ACK, an ARP."""
    return [
        (T0 + 0.000, ether(tcp(CLIENT, SERVER, 51000, 443, SYN))),
        (T0 + 0.010, ether(tcp(SERVER, CLIENT, 443, 51000, SYN | ACK))),
        (T0 + 0.020, ether(tcp(CLIENT, SERVER, 51000, 443, ACK))),
        (T0 + 0.030, ether(tcp(CLIENT, SERVER, 51000, 443, PSH | ACK))),
        (T0 + 0.100, ether(tcp(CLIENT, SERVER, 51001, 23, SYN))),
        (T0 + 0.200, ether(tcp(STRANGER, CLIENT, 443, 40000, SYN | ACK))),
        (T0 + 0.300, ARP),
    ]


def ip_int(text: str) -> int:
    return parse_ip(text)[1]


# -- the report -------------------------------------------------------------------------


@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap", "pcapng"])
def test_replay_counts_hits_per_rule_and_lists_the_dropped_packets(
    tmp_path: Path, pcapng: bool
) -> None:
    path = write(tmp_path / "basic.cap", basic_frames(), pcapng=pcapng)
    report = replay_pcap(RULES, path, progress=False)
    assert (report.frames, report.evaluated, report.skipped["non-ip"]) == (7, 6, 1)
    assert report.rule_hits == [3, 1, 1, 0, 0]
    assert (report.default_hits, report.table_full_hits) == (1, 0)
    assert (report.accepted, report.dropped, report.rejected) == (4, 2, 0)
    assert dict(report.ct_states) == {"new": 2, "established": 3, "invalid": 1}

    telnet, synack = report.dropped_packets
    assert telnet.time == pytest.approx(T0 + 0.1)
    assert telnet.five_tuple == f"tcp {CLIENT}:51001 -> {SERVER}:23"
    assert (telnet.flags, telnet.decided_by, telnet.index) == ("S", "firewall:telnet", 3)
    assert telnet.reason == "new flow (SYN)"
    assert telnet.packet.ct_state == "new"
    assert synack.five_tuple == f"tcp {STRANGER}:443 -> {CLIENT}:40000"
    assert (synack.flags, synack.decided_by, synack.index) == ("SA", "firewall:default", None)
    assert synack.packet.ct_state == "invalid"
    assert synack.reason == "SYN-ACK with no flow"

    assert report.conntrack is not None
    s = report.conntrack
    assert (s.entries, s.inserted, s.invalid, s.refused_full) == (1, 1, 1, 0)
    assert report.first_time == pytest.approx(T0)
    assert report.last_time == pytest.approx(T0 + 0.3)


def test_render_prints_the_hit_table_the_counters_and_the_drops(tmp_path: Path) -> None:
    report = replay_pcap(RULES, write(tmp_path / "b.pcap", basic_frames()), progress=False)
    text = report.render()
    lines = text.splitlines()
    assert "evaluated 6: accepted 4, dropped 2, rejected 0; skipped: non-ip 1" in text
    row = next(line for line in lines if line.startswith("1 ") and "est" in line)
    assert row.split()[:5] == ["1", "est", "accept", "3", "50.0"]
    default = next(line for line in lines if "default" in line and line.startswith("-"))
    assert default.split()[:4] == ["-", "default", "drop", "1"]
    assert any(line.split()[:4] == ["-", "conntrack:table-full", "drop", "0"] for line in lines)
    assert "inserted 1, refused (table full) 0" in text
    assert "dropped or rejected packets: 2" in text
    drop = next(line for line in lines if line.startswith("+0.100000"))
    assert f"{CLIENT}:51001 -> {SERVER}:23" in drop and "firewall:telnet" in drop
    drop = next(line for line in lines if line.startswith("+0.200000"))
    assert "invalid" in drop and "SYN-ACK with no flow" in drop


def test_render_caps_the_dropped_list_and_says_how_many_more(tmp_path: Path) -> None:
    frames = [(T0 + i, ether(tcp(STRANGER, CLIENT, 443, 40000 + i, SYN | ACK))) for i in range(5)]
    report = replay_pcap(RULES, write(tmp_path / "d.pcap", frames), False, max_dropped=3)
    assert report.dropped == 5 and len(report.dropped_packets) == 3
    assert "... and 3 more" in report.render(max_dropped=2)
    assert "... and 2 more" in report.render()
    empty = replay_pcap(RULES, write(tmp_path / "e.pcap", []), False)
    assert empty.frames == 0 and "no packet dropped" in empty.render()


def test_the_capture_clock_drives_the_timeouts(tmp_path: Path) -> None:
    frames = [
        (T0, ether(tcp(CLIENT, SERVER, 51000, 443, SYN))),
        (T0 + 121.0, ether(tcp(SERVER, CLIENT, 443, 51000, SYN | ACK))),  # SYN_SENT is over
    ]
    report = replay_pcap(RULES, write(tmp_path / "slow.pcap", frames), False)
    assert report.dropped_packets[0].packet.ct_state == "invalid"
    assert report.conntrack is not None and report.conntrack.expired == 1


def test_a_full_table_shows_as_its_own_row_and_in_the_dropped_list(tmp_path: Path) -> None:
    frames = [
        (T0, ether(tcp(CLIENT, SERVER, 51000, 443, SYN))),
        (T0 + 1, ether(tcp(CLIENT, SERVER, 51001, 443, SYN))),
    ]
    path = write(tmp_path / "full.pcap", frames)
    report = replay_pcap(RULES, path, False, conntrack=ConnTracker(max_entries=1))
    assert report.table_full_hits == 1 and report.rule_hits[1] == 1
    (refused,) = report.dropped_packets
    assert (refused.decided_by, refused.index) == ("conntrack:table-full", None)
    assert report.conntrack is not None and report.conntrack.refused_full == 1


# -- link types, protocols, what is skipped ---------------------------------------------


def test_linux_cooked_capture_with_ipv6_udp_and_icmpv6(tmp_path: Path) -> None:
    a, b = "2001:db8::10", "2001:db8::53"
    query = dpkt.udp.UDP(sport=53000, dport=53, data=b"q")
    query.ulen = 9
    answer = dpkt.udp.UDP(sport=53, dport=53000, data=b"a")
    answer.ulen = 9
    echo = dpkt.icmp6.ICMP6(type=128, code=0, data=dpkt.icmp6.ICMP6.Echo(id=5, seq=1))
    reply = dpkt.icmp6.ICMP6(type=129, code=0, data=dpkt.icmp6.ICMP6.Echo(id=5, seq=1))
    stray = dpkt.icmp6.ICMP6(type=129, code=0, data=dpkt.icmp6.ICMP6.Echo(id=6, seq=1))
    frames = [
        (T0, cooked(ip6(a, b, 17, query), 0x86DD)),
        (T0 + 0.1, cooked(ip6(b, a, 17, answer), 0x86DD)),
        (T0 + 0.2, cooked(ip6(a, b, 58, echo), 0x86DD)),
        (T0 + 0.3, cooked(ip6(b, a, 58, reply), 0x86DD)),
        (T0 + 0.4, cooked(ip6(b, a, 58, stray), 0x86DD)),
        (T0 + 0.5, cooked(tcp(CLIENT, SERVER, 51000, 443, SYN), 0x0800)),
    ]
    path = write(tmp_path / "sll.pcap", frames, linktype=dpkt.pcap.DLT_LINUX_SLL)
    report = replay_pcap(RULES, path, False)
    assert report.rule_hits == [2, 1, 0, 1, 1]
    assert report.default_hits == 1
    (stray_drop,) = report.dropped_packets
    assert stray_drop.packet.ct_state == "invalid"
    assert stray_drop.five_tuple == f"icmpv6 {b} -> {a}"
    assert stray_drop.flags == "type 129/0"


def test_an_icmp_error_quoting_a_tracked_flow_is_related(tmp_path: Path) -> None:
    query = udp(CLIENT, SERVER, 53000, 53)
    quoted = bytes(query)[:28]  # IP header and the first 8 bytes of UDP, as routers send
    unreachable = dpkt.icmp.ICMP(type=3, code=3, data=b"\x00\x00\x00\x00" + quoted)
    frames = [
        (T0, ether(query)),
        (T0 + 0.05, ether(ip4(SERVER, CLIENT, 1, unreachable))),
        (T0 + 0.06, ether(ip4(STRANGER, CLIENT, 1, unreachable))),  # any sender may say so
    ]
    report = replay_pcap(RULES, write(tmp_path / "icmp.pcap", frames), False)
    assert report.rule_hits == [2, 0, 0, 1, 0]
    assert report.ct_states["related"] == 2


def test_quoted_tuple_reads_cut_ipv4_and_ipv6_headers() -> None:
    q = bytes(udp(CLIENT, SERVER, 53000, 53))[:28]
    assert quoted_tuple(q) == FlowTuple(4, 17, ip_int(CLIENT), ip_int(SERVER), 53000, 53)
    assert quoted_tuple(q[:23]) is None  # the ports are cut off
    echo = dpkt.icmp6.ICMP6(type=128, code=0, data=dpkt.icmp6.ICMP6.Echo(id=9, seq=1))
    raw6 = bytes(ip6("2001:db8::1", "2001:db8::2", 58, echo))
    assert quoted_tuple(raw6) == FlowTuple(
        6, 58, ip_int("2001:db8::1"), ip_int("2001:db8::2"), 9, 128
    )
    assert quoted_tuple(b"") is None and quoted_tuple(b"\x10" * 40) is None


def test_fragments_and_truncated_frames_are_skipped_and_counted(tmp_path: Path) -> None:
    later_fragment = ip4(CLIENT, SERVER, 17, b"\x00" * 16, offset=2)  # 16 bytes in
    cut = ether(tcp(CLIENT, SERVER, 51000, 443, SYN))[:30]  # IP header cut short
    frames = [(T0, ether(later_fragment)), (T0 + 1, cut)]
    report = replay_pcap(RULES, write(tmp_path / "frag.pcap", frames), False)
    assert dict(report.skipped) == {"fragment": 1, "truncated": 1}
    assert report.evaluated == 0


def test_inside_addresses_give_packets_a_direction(tmp_path: Path) -> None:
    rules = RuleSet.of(
        [
            Rule(Action.ACCEPT, id="est", ct_state=frozenset({"established"})),
            Rule(Action.ACCEPT, id="out", direction="out", ct_state=frozenset({"new"})),
        ]
    )
    frames = [
        (T0, ether(tcp(CLIENT, SERVER, 51000, 443, SYN))),
        (T0 + 0.1, ether(tcp(SERVER, CLIENT, 443, 51000, SYN | ACK))),
        (T0 + 0.2, ether(tcp(SERVER, CLIENT, 40000, 22, SYN))),
    ]
    path = write(tmp_path / "dir.pcap", frames)
    without = replay_pcap(rules, path, False)
    assert without.rule_hits == [0, 0] and without.default_hits == 3
    report = replay_pcap(rules, path, False, inside=parse_ipset("192.0.2.0/24"))
    assert report.rule_hits == [1, 1] and report.default_hits == 1
    assert report.dropped_packets[0].packet.direction == "in"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "No such file"), (b"not a capture" * 10, "not a pcap or pcapng capture")],
)
def test_unreadable_captures_raise_a_replay_error(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "bad.pcap"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ReplayError, match=message):
        replay_pcap(RULES, path, False)


def test_an_unsupported_link_type_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "wifi.pcap", [], linktype=dpkt.pcap.DLT_IEEE802_11)
    with pytest.raises(ReplayError, match="link type 105 is not supported"):
        replay_pcap(RULES, path, False)


# -- the progress bar -------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_only_when_it_changes() -> None:
    term = Terminal()
    bar = ProgressBar(200, term, width=10)
    bar.update(50, 1)
    bar.update(51, 2)  # still 25 %: not redrawn
    bar.update(200, 3)
    bar.close()
    assert term.getvalue() == (
        "\rreplay [##--------]  25%  1 packets\rreplay [##########] 100%  3 packets\n"
    )


def test_progress_bar_stays_silent_off_a_terminal() -> None:
    log = io.StringIO()
    bar = ProgressBar(100, log)
    bar.update(100, 1)
    bar.close()
    assert log.getvalue() == ""


def test_replay_draws_the_bar_only_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path / "p.pcap", basic_frames())
    term = Terminal()
    replay_pcap(RULES, path, progress=True, stream=term)
    assert term.getvalue().startswith("\rreplay [")
    assert term.getvalue().endswith("100%  7 packets\n")
    quiet = Terminal()
    replay_pcap(RULES, path, progress=False, stream=quiet)
    assert quiet.getvalue() == ""


# -- the command ------------------------------------------------------------------------


def test_fw_replay_command_prints_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ramparts.cli import main

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "default: drop\n"
        "rules:\n"
        "  - {id: est, action: accept, state: [established, related]}\n"
        "  - {id: https, action: accept, proto: tcp, dport: 443, state: new}\n"
        "  - {id: telnet, action: drop, proto: tcp, dport: 23}\n"
    )
    capture = write(tmp_path / "basic.pcap", basic_frames())
    assert main(["fw", "replay", str(rules), str(capture), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "evaluated 6: accepted 4, dropped 2, rejected 0; skipped: non-ip 1" in out
    assert "firewall:telnet" in out and "SYN-ACK with no flow" in out
