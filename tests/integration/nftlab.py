"""A three-namespace lab for putting nftables verdicts next to ramparts' own: a client (C),
a router (R) and a server (S), joined by veth pairs::

    C eth0 ---- lan0 R wan0 ---- eth0 S        (R's interface names are parameters)

Everything lives in namespaces the lab creates (unique names) and deletes, even on
failure; addresses exist only inside them. R forwards (rp_filter off, ICMP rate limits
off) and routes by the input interface, so a probe with any source and destination
crosses it: what enters on lan0 leaves on wan0 and the other way round. R's own answers
(a TCP reset, an ICMP unreachable for a reject) go back to the side the probe came from:
probes from S are marked in R's prerouting, and ``fwmark_reflect`` gives the answer the
same mark, which routes it to S; unmarked answers go to C.

A probe is a crafted frame (dpkt) sent on C's or S's eth0 through an AF_PACKET socket,
so any 5-tuple can be sent. Each carries its number in the IPv4 identification or the
IPv6 flow label, the TCP sequence number and the ICMP echo identifier. Captures on both
eth0s (AF_PACKET, both directions) then tell what the kernel did with each probe:
``accept`` (it arrived on the far side), ``reject`` (R's reset or ICMP error about it came
back, and which one), or ``drop`` (neither).

Sockets are opened inside a namespace by switching the calling thread with setns(2) for
the moment of the socket() call; a socket keeps its namespace afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import select
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import dpkt

from ramparts.net.packet import SYN, Packet

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35  # Linux; the socket module does not name it
_libc = ctypes.CDLL(None, use_errno=True)

# Addresses the lab uses itself, and ranges a router never forwards: probes avoid them.
_LINKS4 = ipaddress.ip_network("198.18.0.0/15")
_LINKS6 = ipaddress.ip_network("fd00:72::/32")
_NOT_FORWARDED = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/3",  # multicast, class E, broadcast
        "::/8",  # unspecified, loopback, IPv4-mapped and -compatible
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
]
_EXCLUDED = [*_NOT_FORWARDED, _LINKS4, _LINKS6]

MAC = {
    "c": "02:72:00:00:00:0c",
    "r_in": "02:72:00:00:01:0c",
    "r_out": "02:72:00:00:01:05",
    "s": "02:72:00:00:00:05",
}
ADDR = {
    "c4": "198.18.1.2",
    "r_in4": "198.18.1.1",
    "r_out4": "198.18.2.1",
    "s4": "198.18.2.2",
    "c6": "fd00:72:1::2",
    "r_in6": "fd00:72:1::1",
    "r_out6": "fd00:72:2::1",
    "s6": "fd00:72:2::2",
}
_MARK_FROM_S = 0x72


def run(*cmd: str, ns: str | None = None, stdin: str | None = None, check: bool = True) -> str:
    """Run a command (inside namespace ``ns``); its stdout. Bounded by a timeout."""
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    done = subprocess.run(
        full, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed: {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Switch this thread into network namespace ``name`` for the block."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {name}: {os.strerror(e)}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - cannot recover
                os._exit(70)
    finally:
        os.close(own)
        os.close(target)


def forwardable(version: int, addr: int) -> bool:
    """An address a probe may carry: a router forwards it and the lab does not use it."""
    a = ipaddress.IPv4Address(addr) if version == 4 else ipaddress.IPv6Address(addr)
    return not any(a.version == n.version and a in n for n in _EXCLUDED)


# -- probes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    """One crafted first packet: a TCP SYN, a UDP datagram, an ICMP(v6) echo request, or
    a bare IP packet of another protocol, sent from side ``side`` (c or s)."""

    id: int
    side: str
    version: int
    src: int
    dst: int
    proto: int
    sport: int = 0
    dport: int = 0

    @property
    def icmp_type(self) -> int | None:
        if (self.version, self.proto) in ((4, 1), (6, 58)):
            return 8 if self.version == 4 else 128
        return None

    @property
    def seq(self) -> int:
        return (self.id * 7919) & 0xFFFFFFFF

    def packet(
        self, iface: str, out_iface: str | None = None, ct_state: str | None = "new"
    ) -> Packet:
        """The packet as ramparts' rules see it at R: arriving on ``iface``, forwarded out
        of ``out_iface``."""
        icmp = self.icmp_type
        return Packet(
            self.version,
            self.src,
            self.dst,
            self.proto,
            self.sport if self.proto in (6, 17) else 0,
            self.dport if self.proto in (6, 17) else 0,
            icmp_type=icmp,
            icmp_code=0 if icmp is not None else None,
            tcp_flags=SYN if self.proto == 6 else 0,
            iface=iface,
            out_iface=out_iface,
            ct_state=ct_state,
        )

    def _checksummed(self, payload: bytes) -> bytes:
        """``payload`` (made even) plus a word that makes its ones-complement sum zero.
        For a protocol other than TCP and UDP (GRE, AH, ESP, SCTP aside) the kernel's
        reject verifies exactly that, with no pseudo-header, before it answers, and
        stays silent when it fails (nf_reject_verify_csum, nf_ip_checksum)."""
        if len(payload) % 2:
            payload += b"\x00"
        total = sum(int.from_bytes(payload[i : i + 2], "big") for i in range(0, len(payload), 2))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return payload + ((~total) & 0xFFFF).to_bytes(2, "big")

    def frame(self, src_mac: str, dst_mac: str) -> bytes:
        payload = b"ramparts-probe-" + self.id.to_bytes(4, "big")
        l4: bytes | dpkt.Packet
        if self.proto == 6:
            l4 = dpkt.tcp.TCP(
                sport=self.sport, dport=self.dport, seq=self.seq, flags=dpkt.tcp.TH_SYN, win=64240
            )
        elif self.proto == 17:
            l4 = dpkt.udp.UDP(sport=self.sport, dport=self.dport, data=payload)
            l4.ulen = len(l4)
        elif self.proto == 1 and self.version == 4:
            echo = dpkt.icmp.ICMP.Echo(id=self.id & 0xFFFF, seq=1, data=payload)
            l4 = dpkt.icmp.ICMP(type=8, code=0, data=echo)
        elif self.proto == 58 and self.version == 6:
            echo = dpkt.icmp6.ICMP6.Echo(id=self.id & 0xFFFF, seq=1, data=payload)
            l4 = dpkt.icmp6.ICMP6(type=128, code=0, data=echo)
        elif self.proto == 47:
            l4 = b"\x00\x00\x08\x00" + payload  # GRE version 0 carrying "IPv4"
        else:
            l4 = self._checksummed(payload)
        if self.version == 4:
            ip: dpkt.Packet = dpkt.ip.IP(
                src=self.src.to_bytes(4, "big"),
                dst=self.dst.to_bytes(4, "big"),
                p=self.proto,
                ttl=64,
                id=self.id & 0xFFFF,
                data=l4,
            )
            ip.len = len(ip)
            etype = dpkt.ethernet.ETH_TYPE_IP
        else:
            ip = dpkt.ip6.IP6(
                src=self.src.to_bytes(16, "big"),
                dst=self.dst.to_bytes(16, "big"),
                nxt=self.proto,
                hlim=64,
                data=l4,
            )
            ip.flow = self.id & 0xFFFFF
            ip.plen = len(bytes(l4))
            etype = dpkt.ethernet.ETH_TYPE_IP6
        eth = dpkt.ethernet.Ethernet(
            src=bytes.fromhex(src_mac.replace(":", "")),
            dst=bytes.fromhex(dst_mac.replace(":", "")),
            type=etype,
            data=ip,
        )
        return bytes(eth)


@dataclass(frozen=True, slots=True)
class Seen:
    """What the kernel did with a probe: accept, drop or reject (and its answer)."""

    verdict: str
    reply: str | None = None  # "tcp-reset", "icmp 3/3", "icmpv6 1/4"


@dataclass
class Captured:
    """A frame seen on an eth0: its kernel timestamp, direction and bytes."""

    time: float
    outgoing: bool
    data: bytes


def _ip_of(eth: dpkt.ethernet.Ethernet) -> dpkt.Packet | None:
    ip = eth.data
    return ip if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) else None


def _marker(ip: dpkt.Packet) -> int:
    return int(ip.id) if isinstance(ip, dpkt.ip.IP) else int(ip.flow)


def _addr_int(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _proto_of(ip: dpkt.Packet) -> int:
    return int(ip.p) if isinstance(ip, dpkt.ip.IP) else int(ip.nxt)


# -- the lab ----------------------------------------------------------------------------


@dataclass
class Lab:
    """Three namespaces; use as a context manager (deleted on exit, even after errors)."""

    r_in: str = "lan0"
    r_out: str = "wan0"
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    _sockets: dict[str, socket.socket] = field(default_factory=dict)
    _next_id: int = 1
    _used: set[tuple[int, int, int, int, int, int]] = field(default_factory=set)

    @property
    def c(self) -> str:
        return f"rpc{self.tag}"

    @property
    def r(self) -> str:
        return f"rpr{self.tag}"

    @property
    def s(self) -> str:
        return f"rps{self.tag}"

    def iface_of(self, side: str) -> str:
        """R's interface a probe from ``side`` enters by."""
        return self.r_in if side == "c" else self.r_out

    def egress_of(self, side: str) -> str:
        """R's interface a probe from ``side`` is forwarded out of."""
        return self.r_out if side == "c" else self.r_in

    def seen_at_r(self, p: Probe) -> Packet:
        """Probe ``p`` as R's forward hook sees it (input and output interface)."""
        return p.packet(self.iface_of(p.side), self.egress_of(p.side))

    # setup / teardown --------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        c, r, s = self.c, self.r, self.s
        for ns in (c, r, s):
            run("ip", "netns", "add", ns)
        run("ip", "link", "add", "eth0", "netns", c, "address", MAC["c"], "type", "veth",
            "peer", "name", self.r_in, "netns", r, "address", MAC["r_in"])  # fmt: skip
        run("ip", "link", "add", "eth0", "netns", s, "address", MAC["s"], "type", "veth",
            "peer", "name", self.r_out, "netns", r, "address", MAC["r_out"])  # fmt: skip
        for ns in (c, r, s):
            for key, value in (
                ("net.ipv6.conf.all.accept_dad", "0"),
                ("net.ipv6.conf.default.accept_dad", "0"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
            ):
                run("sysctl", "-qw", f"{key}={value}", ns=ns)
        for key, value in (
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv4.icmp_ratelimit", "0"),
            ("net.ipv4.icmp_msgs_per_sec", "1000000"),
            ("net.ipv4.icmp_msgs_burst", "1000000"),
            ("net.ipv6.icmp.ratelimit", "0"),
            ("net.ipv4.fwmark_reflect", "1"),
            ("net.ipv6.fwmark_reflect", "1"),
            (f"net.ipv4.conf.{self.r_in}.rp_filter", "0"),
            (f"net.ipv4.conf.{self.r_out}.rp_filter", "0"),
        ):
            run("sysctl", "-qw", f"{key}={value}", ns=r)
        a = ADDR
        for ns, dev, v4, v6 in (
            (c, "eth0", a["c4"], a["c6"]),
            (r, self.r_in, a["r_in4"], a["r_in6"]),
            (r, self.r_out, a["r_out4"], a["r_out6"]),
            (s, "eth0", a["s4"], a["s6"]),
        ):
            run("ip", "addr", "add", f"{v4}/30", "dev", dev, ns=ns)
            run("ip", "addr", "add", f"{v6}/64", "dev", dev, "nodad", ns=ns)
            run("ip", "link", "set", dev, "up", ns=ns)
            run("ip", "link", "set", "lo", "up", ns=ns)
        # Permanent neighbours: no ARP or ND while probes are in flight.
        for ns, dev, peers in (
            (r, self.r_in, (("c4", "c"), ("c6", "c"))),
            (r, self.r_out, (("s4", "s"), ("s6", "s"))),
            (c, "eth0", (("r_in4", "r_in"), ("r_in6", "r_in"))),
            (s, "eth0", (("r_out4", "r_out"), ("r_out6", "r_out"))),
        ):
            for addr_key, mac_key in peers:
                run("ip", "neigh", "replace", a[addr_key], "lladdr", MAC[mac_key],
                    "dev", dev, "nud", "permanent", ns=ns)  # fmt: skip
        for ns, gw4, gw6 in ((c, a["r_in4"], a["r_in6"]), (s, a["r_out4"], a["r_out6"])):
            run("ip", "route", "add", "default", "via", gw4, ns=ns)
            run("ip", "-6", "route", "add", "default", "via", gw6, ns=ns)
        # R: forward by input interface; its own answers go where the probe came from.
        for fam, to_s, to_c in (("-4", a["s4"], a["c4"]), ("-6", a["s6"], a["c6"])):
            run("ip", fam, "route", "add", "default", "via", to_s, "dev", self.r_out,
                "table", "100", ns=r)  # fmt: skip
            run("ip", fam, "route", "add", "default", "via", to_c, "dev", self.r_in,
                "table", "101", ns=r)  # fmt: skip
            run("ip", fam, "rule", "add", "pref", "100", "iif", self.r_in, "lookup", "100", ns=r)
            run("ip", fam, "rule", "add", "pref", "101", "iif", self.r_out, "lookup", "101", ns=r)
            run("ip", fam, "rule", "add", "pref", "102", "iif", "lo", "fwmark",
                str(_MARK_FROM_S), "lookup", "100", ns=r)  # fmt: skip
            run("ip", fam, "rule", "add", "pref", "103", "iif", "lo", "lookup", "101", ns=r)
        run(
            "nft",
            "-f",
            "-",
            ns=r,
            stdin=(
                "table inet lab_mark {\n"
                "\tchain pre {\n"
                "\t\ttype filter hook prerouting priority raw; policy accept;\n"
                f'\t\tiifname "{self.r_out}" meta mark set {_MARK_FROM_S}\n'
                "\t}\n}\n"
            ),
        )
        for side, ns in (("c", c), ("s", s)):
            with in_netns(ns):
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind(("eth0", 0))
            sock.setblocking(False)
            self._sockets[side] = sock
            with in_netns(ns):
                tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            tx.bind(("eth0", 0))
            self._sockets[f"{side}-tx"] = tx

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        for ns in (self.c, self.r, self.s):
            if not os.path.exists(f"/run/netns/{ns}"):
                continue
            pids = run("ip", "netns", "pids", ns, check=False).split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            run("ip", "netns", "del", ns, check=False)

    # probes --------------------------------------------------------------------------

    def probe(
        self, side: str, version: int, src: int, dst: int, proto: int, sport: int, dport: int
    ) -> Probe | None:
        """A new probe, or None when the kernel would not treat it as a first packet
        of its own (an address R does not forward, or the reverse of an earlier probe,
        which conntrack would take for a reply)."""
        if not (forwardable(version, src) and forwardable(version, dst)):
            return None
        if proto not in (6, 17):
            sport = dport = 0
        key = (version, src, dst, proto, sport, dport)
        if (version, dst, src, proto, dport, sport) in self._used:
            return None
        self._used.add(key)
        p = Probe(self._next_id, side, version, src, dst, proto, sport, dport)
        self._next_id += 1
        if self._next_id > 0xFFFF:
            raise RuntimeError("the lab numbers at most 65535 probes (the IPv4 id)")
        return p

    def drain(self, quiet: float = 0.3, limit: float = 10.0) -> dict[str, list[Captured]]:
        """Everything captured on both sides until nothing arrived for ``quiet`` s."""
        out: dict[str, list[Captured]] = {"c": [], "s": []}
        socks = {self._sockets["c"]: "c", self._sockets["s"]: "s"}
        deadline = time.monotonic() + limit
        last = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < quiet:
            ready, _, _ = select.select(list(socks), [], [], 0.05)
            for sock in ready:
                for _ in range(10_000):
                    try:
                        data, anc, _flags, addr = sock.recvmsg(65535, 64)
                    except BlockingIOError:
                        break
                    stamp = time.time()
                    for level, kind, raw in anc:
                        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                            sec, nsec = (
                                int.from_bytes(raw[:8], "little"),
                                int.from_bytes(raw[8:16], "little"),
                            )
                            stamp = sec + nsec / 1e9
                    out[socks[sock]].append(Captured(stamp, addr[2] == PACKET_OUTGOING, data))
                    last = time.monotonic()
        return out

    def send(self, side: str, frames: Iterable[bytes], gap: float = 0.0003) -> None:
        tx = self._sockets[f"{side}-tx"]
        for frame in frames:
            for _ in range(100):
                try:
                    tx.send(frame)
                    break
                except OSError as exc:  # the veth queue is full: let it drain
                    if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                        raise
                    time.sleep(0.002)
            if gap:
                time.sleep(gap)

    def run_probes(self, probes: list[Probe]) -> dict[int, Seen]:
        """Send the probes (from their sides) and say what the kernel did with each."""
        self.drain(quiet=0.05)
        for side, src_mac, dst_mac in (("c", MAC["c"], MAC["r_in"]), ("s", MAC["s"], MAC["r_out"])):
            mine = [p for p in probes if p.side == side]
            self.send(side, (p.frame(src_mac, dst_mac) for p in mine))
        frames = self.drain()
        by_id = {p.id: p for p in probes}
        arrived: set[int] = set()
        replies: dict[int, str] = {}
        for side, captured in frames.items():
            for cap in captured:
                if cap.outgoing:
                    continue
                found = self._classify(cap.data, by_id, side)
                if found is None:
                    continue
                pid, what = found
                if what == "arrived":
                    arrived.add(pid)
                else:
                    replies[pid] = what
        seen: dict[int, Seen] = {}
        for p in probes:
            if p.id in arrived and p.id in replies:
                raise AssertionError(f"probe {p} both arrived and was answered")
            if p.id in arrived:
                seen[p.id] = Seen("accept")
            elif p.id in replies:
                seen[p.id] = Seen("reject", replies[p.id])
            else:
                seen[p.id] = Seen("drop")
        return seen

    def _classify(self, data: bytes, by_id: dict[int, Probe], side: str) -> tuple[int, str] | None:
        """(probe id, "arrived") for a forwarded probe seen on the far side, (probe id,
        answer) for R's answer to a probe seen on the probe's side, else None."""
        try:
            ip = _ip_of(dpkt.ethernet.Ethernet(data))
        except (dpkt.UnpackError, ValueError):
            return None
        if ip is None:
            return None
        v = 4 if isinstance(ip, dpkt.ip.IP) else 6
        src, dst, proto = _addr_int(ip.src), _addr_int(ip.dst), _proto_of(ip)
        p = by_id.get(_marker(ip))
        if (
            p is not None
            and p.side != side
            and (p.version, p.src, p.dst, p.proto)
            == (
                v,
                src,
                dst,
                proto,
            )
        ):
            return p.id, "arrived"
        l4 = ip.data
        if proto == 6 and isinstance(l4, dpkt.tcp.TCP) and l4.flags & dpkt.tcp.TH_RST:
            for q in by_id.values():
                if (
                    q.side == side
                    and q.proto == 6
                    and (q.version, q.dst, q.src, q.dport, q.sport)
                    == (v, src, dst, l4.sport, l4.dport)
                    and l4.ack == (q.seq + 1) & 0xFFFFFFFF
                ):
                    return q.id, "tcp-reset"
            return None
        error_types = {4: (1, 3), 6: (58, 1)}[v]
        if proto == error_types[0] and isinstance(l4, dpkt.icmp.ICMP | dpkt.icmp6.ICMP6):
            if l4.type != error_types[1]:
                return None
            inner_raw = bytes(l4.data)[4:]  # unused/MTU word, then the quoted packet
            try:
                inner = dpkt.ip.IP(inner_raw) if v == 4 else dpkt.ip6.IP6(inner_raw)
            except (dpkt.UnpackError, dpkt.NeedData, ValueError):
                return None
            q = by_id.get(_marker(inner))
            if (
                q is not None
                and q.side == side
                and (q.src, q.dst)
                == (
                    _addr_int(inner.src),
                    _addr_int(inner.dst),
                )
            ):
                family = "icmp" if v == 4 else "icmpv6"
                return q.id, f"{family} {l4.type}/{l4.code}"
        return None

    # kernel helpers --------------------------------------------------------------------

    def counters(self, family: str, table: str) -> list[tuple[str, int]]:
        """(comment, packets) of every rule of ``table`` in R, in order."""
        import json

        listing = json.loads(run("nft", "-j", "list", "table", family, table, ns=self.r))
        out: list[tuple[str, int]] = []
        for item in listing["nftables"]:
            rule = item.get("rule")
            if not rule:
                continue
            packets = sum(int(e["counter"]["packets"]) for e in rule["expr"] if "counter" in e)
            out.append((str(rule.get("comment", "")), packets))
        return out


def expected_reply(reject_with: str | None, version: int) -> str:
    """The answer nft sends for a ramparts reject (as formats/nftables.py renders it)."""
    if reject_with == "tcp-reset":
        return "tcp-reset"
    kind = {
        None: "port",
        "icmp-port-unreachable": "port",
        "icmpv6-port-unreachable": "port",
        "icmp-host-unreachable": "host",
        "icmp-net-unreachable": "net",
        "icmp-admin-prohibited": "admin",
        "icmpv6-admin-prohibited": "admin",
    }[reject_with]
    if version == 4:
        return "icmp 3/" + {"port": "3", "host": "1", "net": "0", "admin": "13"}[kind]
    return "icmpv6 1/" + {"port": "4", "host": "3", "net": "0", "admin": "1"}[kind]
