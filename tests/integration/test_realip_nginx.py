"""Differential tests against nginx itself: ``RealIP.resolve`` must give nginx's
``$remote_addr`` and ``AccessList.check`` nginx's 200/403, for the same configuration and
the same request.

One nginx (started and stopped here) has a server block per configuration variant, each
listening three times on loopback so the peer is ``127.0.0.1``, ``::1`` or the IPv4-mapped
``::ffff:127.0.0.1``, and answering ``$remote_addr``. Several hundred generated requests
(multiple X-Forwarded-For lines, X-Real-IP, a custom header; spaces, commas, empty
elements, ports, IPv6, odd and unreadable elements, trusted chains) go to every listener,
pipelined on one keep-alive connection each.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ramparts.http.headers import Headers
from ramparts.policies.access import AccessList
from ramparts.policies.realip import RealIP

from ..peers import NGINX, start_nginx
from ..support import Response, free_port, read_response, running, wait_port


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")

HAS_V6 = _has_ipv6_loopback()

# --- configurations -----------------------------------------------------------------------

CHAIN = ["127.0.0.1", "::1", "10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"]


@dataclass(frozen=True)
class Variant:
    name: str
    trusted: tuple[str, ...]
    header: str
    recursive: bool


VARIANTS = [
    Variant("xff", ("127.0.0.1", "::1"), "X-Forwarded-For", False),
    Variant("xff-chain", tuple(CHAIN), "X-Forwarded-For", False),
    Variant("xff-recursive", tuple(CHAIN), "X-Forwarded-For", True),
    # Not spelt "X-Forwarded-For": nginx reads only the first line of that name.
    Variant("xff-lowercase", tuple(CHAIN), "x-forwarded-for", True),
    Variant("x-real-ip", ("127.0.0.0/8", "::1"), "X-Real-IP", False),
    Variant("x-real-ip-recursive", tuple(CHAIN), "X-Real-IP", True),
    Variant("custom", ("127.0.0.1", "::1"), "X-Client-IP", False),
    Variant("custom-recursive", tuple(CHAIN), "X-Client-IP", True),
    Variant("trust-all", ("0.0.0.0/0", "::/0"), "X-Forwarded-For", True),
    # Host bits: nginx warns and masks them (10.0.0.0/8, 2001:db8::/32).
    Variant("host-bits", ("127.0.0.1/32", "::1", "10.1.2.3/8", "2001:db8::1/32"),
            "X-Forwarded-For", True),
    # The peer is not trusted (127.0.0.1 from IPv4, the mapped peer judged as IPv4).
    Variant("peer-untrusted", ("10.0.0.0/8", "2001:db8::/32"), "X-Forwarded-For", True),
    Variant("v6-only", ("::1", "2001:db8::/32"), "X-Forwarded-For", True),
]  # fmt: skip

PEERS = ["127.0.0.1", "::1", "::ffff:127.0.0.1"] if HAS_V6 else ["127.0.0.1"]

ACLS: dict[str, list[tuple[str, str]]] = {
    "mixed": [
        ("deny", "10.1.2.3"),
        ("allow", "10.0.0.0/8"),
        ("allow", "2001:db8::/32"),
        ("deny", "192.168.0.0/16"),
        ("allow", "1.2.3.0/28"),
        ("deny", "all"),
    ],
    "v4-only": [("allow", "1.2.3.4"), ("deny", "1.2.3.0/24"), ("deny", "10.0.0.0/9")],
    # No IPv4 rule: nginx judges mapped clients by their IPv6 address.
    "v6-only": [("deny", "::ffff:0:0/96"), ("allow", "2001:db8::/33"), ("deny", "::/0")],
    "v6-only-mapped-host": [("deny", "::ffff:10.1.2.3"), ("allow", "::ffff:10.0.0.0/104")],
    # One IPv4 rule: mapped clients are judged as IPv4, so ::/0 no longer refuses them.
    "v6-deny-v4-allow": [("deny", "::/0"), ("allow", "10.0.0.0/8")],
    "host-bits": [("deny", "10.1.2.3/8"), ("allow", "2001:db8::1/16"), ("deny", "all")],
    "allow-first": [("allow", "all"), ("deny", "10.0.0.0/8")],
    "zero-prefixes": [("deny", "0.0.0.0/0"), ("allow", "::/0")],
    "single-hosts": [("deny", "1.2.3.4"), ("deny", "2001:db8::7"), ("allow", "all")],
}

# --- generated requests -------------------------------------------------------------------

TRUSTED_ELEMENTS = [
    "127.0.0.1", "::1", "10.0.0.1", "10.20.30.40", "192.168.1.1", "2001:db8::7",
    "2001:db8:0:0:1:0:0:1", "::ffff:10.9.8.7", "10.0.0.1:8080", "[2001:db8::1]:443",
    "[10.1.1.1]:80", "010.001.002.003", "2001:DB8::A", "::ffff:127.0.0.1",
]  # fmt: skip
UNTRUSTED_ELEMENTS = [
    "1.2.3.4", "203.0.113.7", "8.8.8.8", "2001:db9::1", "fd00::5", "::ffff:1.2.3.4",
    "FE80::ABCD", "0.0.0.0", "::", "1.2.3.4:80", "[2001:db9::2]:8443", "[1.2.3.4]:1",
    "1.2.3.4:65535", "1.2.3.4:0080", "172.16.0.1",
]  # fmt: skip
ODD_ELEMENTS = [
    "01.2.3.4", "1..2.3", "...", "::102", "::101", "::1.2.3.4", "::0.1.0.0", ":1::2",
    "::2:3:4:5:6:7:8", "1:2:3:4:5:6::", "1:2:3:4:5:6:1.2.3.4", "0000000001.2.3.4",
    "[::ffff:10.0.0.1]:99", "::ffff:0.0.0.0",
]  # fmt: skip
BAD_ELEMENTS = [
    "unknown", "_hidden", "1.2.3", "1.2.3.4.5", "256.1.1.1", "255.255.255.255",
    "::ffff:255.255.255.255", "1:2:3:4:5:6:7::", "1::2::3", "fe80::1%eth0", "[::1]",
    "[::1]:", "[::1]x80", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:80:90", "1.2.3.4;",
    "0x1.2.3.4", "1.2.3.-4", "\t1.2.3.4", "10.0.0.1\t", ":::", "12345::1",
    "1:2:3:4:5:6:7:8:9", "[1.2.3.4]", "localhost", "[[::1]]:80", "1.2.3.4:+80",
    "1:2:3:4:5:6:7:1.2.3.4", ":1.2.3.4", "::1.2.3", "1.2.3.4:99999999999999999999999",
]  # fmt: skip
SEPARATORS = [", ", ",", " ", ",,", " , ", "  ", ", ,", ",  ,"]
NAMES = {
    "xff": ["X-Forwarded-For", "x-forwarded-for", "X-FORWARDED-FOR"],
    "real": ["X-Real-IP", "x-real-ip"],
    "custom": ["X-Client-IP", "x-client-ip"],
}

HANDPICKED: list[list[tuple[str, str]]] = [
    [],
    [("X-Forwarded-For", "1.2.3.4")],
    [("X-Forwarded-For", "1.2.3.4, 10.0.0.1")],
    [("X-Forwarded-For", "10.0.0.2, 10.0.0.1")],
    [("X-Forwarded-For", "1.2.3.4, 5.6.7.8, 10.0.0.1, 192.168.0.1")],
    [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "10.0.0.1")],
    [("X-Forwarded-For", "10.0.0.3"), ("X-Forwarded-For", "10.0.0.1, 10.0.0.2")],
    [("X-Forwarded-For", "5.5.5.5, 10.0.0.3"), ("x-forwarded-for", "10.0.0.1")],
    [("X-Forwarded-For", "garbage"), ("X-Forwarded-For", "10.0.0.1")],
    [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "garbage")],
    [("X-Forwarded-For", ""), ("X-Forwarded-For", "10.0.0.1")],
    [("X-Forwarded-For", "10.0.0.1"), ("X-Forwarded-For", "")],
    [("X-Forwarded-For", "")],
    [("X-Forwarded-For", " ")],
    [("X-Forwarded-For", ",")],
    [("X-Forwarded-For", ", ,")],
    [("X-Forwarded-For", ",1.2.3.4")],
    [("X-Forwarded-For", ", 1.2.3.4")],
    [("X-Forwarded-For", ",10.0.0.1")],
    [("X-Forwarded-For", "1.2.3.4,")],
    [("X-Forwarded-For", "1.2.3.4, ,")],
    [("X-Forwarded-For", "1.2.3.4,,10.0.0.1")],
    [("X-Forwarded-For", "1.2.3.4 10.0.0.1")],
    [("X-Forwarded-For", "1.2.3.4;10.0.0.1")],
    [("X-Forwarded-For", "1.2.3.4,\t10.0.0.1")],
    [("X-Forwarded-For", "\t10.0.0.1")],
    [("X-Forwarded-For", "unknown, 10.0.0.1")],
    [("X-Forwarded-For", "2001:db9::1, 2001:db8::1")],
    [("X-Forwarded-For", "[2001:db9::1]:80, [2001:db8::1]:443")],
    [("X-Forwarded-For", "::ffff:1.2.3.4, ::ffff:10.0.0.1")],
    [("X-Forwarded-For", "::ffff:10.0.0.1")],
    [("X-Forwarded-For", "1.2.3.4:80")],
    [("X-Forwarded-For", "[::1]")],
    [("X-Forwarded-For", "255.255.255.255")],
    [("X-Forwarded-For", "1.2.3.4, 255.255.255.255")],
    [("X-Real-IP", "1.2.3.4")],
    [("X-Real-IP", "1.2.3.4"), ("X-Real-IP", "5.6.7.8")],
    [("X-Real-IP", "1.2.3.4, 10.0.0.1")],
    [("X-Real-IP", "garbage"), ("X-Real-IP", "5.6.7.8")],
    [("X-Real-IP", ""), ("X-Real-IP", "5.6.7.8")],
    [("x-real-ip", "2001:db8::9")],
    [("X-Client-IP", "9.9.9.9"), ("X-Client-IP", "8.8.8.8")],
    [("X-Client-IP", "9.9.9.9, 10.0.0.1")],
    [("X-Forwarded-For", "7.7.7.7"), ("X-Real-IP", "8.8.8.8"), ("X-Client-IP", "9.9.9.9")],
]


def _element(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4:
        return rng.choice(TRUSTED_ELEMENTS)
    if roll < 0.7:
        return rng.choice(UNTRUSTED_ELEMENTS)
    if roll < 0.85:
        return rng.choice(ODD_ELEMENTS)
    return rng.choice(BAD_ELEMENTS)


def _value(rng: random.Random) -> str:
    if rng.random() < 0.04:
        return rng.choice(["", " ", ",", " , "])
    value = _element(rng)
    for _ in range(rng.choices([0, 1, 2, 3, 4], [3, 4, 3, 2, 1])[0]):
        value += rng.choice(SEPARATORS) + _element(rng)
    if rng.random() < 0.12:
        value = rng.choice([",", ", ", " ,", "  "]) + value
    if rng.random() < 0.12:
        value += rng.choice([",", ", ", " ", " ,"])
    return value


def generated_cases(count: int, seed: int = 20221019) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        lines: list[tuple[str, str]] = []
        for kind, weights in (
            ("xff", [2, 4, 3, 1]),
            ("real", [3, 3, 1, 0]),
            ("custom", [3, 3, 1, 0]),
        ):
            for _ in range(rng.choices([0, 1, 2, 3], weights)[0]):
                lines.append((rng.choice(NAMES[kind]), _value(rng)))
        rng.shuffle(lines)
        cases.append(lines)
    return cases


CASES = HANDPICKED + generated_cases(360)

# --- talking to nginx ---------------------------------------------------------------------


def _request(lines: list[tuple[str, str]]) -> bytes:
    head = "GET / HTTP/1.1\r\nHost: realip.test\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in lines)
    return (head + "\r\n").encode("latin-1")


def _headers(lines: list[tuple[str, str]]) -> Headers:
    # The values as sent; RealIP trims the surrounding spaces itself, as nginx does.
    return [(b"Host", b"realip.test")] + [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in lines
    ]


def ask(family: int, port: int, requests: list[bytes], batch: int = 64) -> list[Response]:
    """Send ``requests`` pipelined on one keep-alive connection; the responses in order."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    out: list[Response] = []
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10.0)
        s.connect((host, port))
        buf = bytearray()
        for i in range(0, len(requests), batch):
            chunk = requests[i : i + batch]
            s.sendall(b"".join(chunk))
            out.extend(read_response(s, buf) for _ in chunk)
    return out


def _free_port(taken: set[int]) -> int:
    """A port free on 127.0.0.1 and on ::1, not handed out before."""
    while True:
        port = free_port()
        if port in taken:
            continue
        if HAS_V6:
            try:
                with socket.socket(socket.AF_INET6) as s:
                    s.bind(("::1", port))
            except OSError:
                continue
        taken.add(port)
        return port


def _listen(peer: str, port: int) -> str:
    if peer == "127.0.0.1":
        return f"listen 127.0.0.1:{port};"
    if peer == "::1":
        return f"listen [::1]:{port};"
    return f"listen [::ffff:127.0.0.1]:{port} ipv6only=off;"


@dataclass
class Nginx:
    realip: dict[tuple[str, str], int]  # (variant, peer) -> port
    access: dict[str, int]  # acl name -> port


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    scratch: Path = tmp_path_factory.mktemp("realip-nginx")
    taken: set[int] = set()
    blocks = ["access_log off;", "keepalive_requests 100000;"]
    realip: dict[tuple[str, str], int] = {}
    for v in VARIANTS:
        listens = []
        for peer in PEERS:
            realip[v.name, peer] = port = _free_port(taken)
            listens.append(_listen(peer, port))
        trusted = "".join(f"    set_real_ip_from {t};\n" for t in v.trusted)
        blocks.append(
            "server {\n    " + "\n    ".join(listens) + "\n" + trusted
            + f"    real_ip_header {v.header};\n"
            + f"    real_ip_recursive {'on' if v.recursive else 'off'};\n"
            + '    location / { return 200 "$remote_addr"; }\n}'
        )  # fmt: skip
    access: dict[str, int] = {}
    for name, rules in ACLS.items():
        access[name] = port = _free_port(taken)
        allow_deny = "".join(f"        {action} {target};\n" for action, target in rules)
        blocks.append(
            f"server {{\n    listen 127.0.0.1:{port};\n    set_real_ip_from 127.0.0.1;\n"
            f"    real_ip_header X-Real-IP;\n    location / {{\n{allow_deny}"
            # ``return`` would answer in the rewrite phase, before allow/deny run.
            "        try_files /nonexistent @answer;\n    }\n"
            '    location @answer { return 200 "$remote_addr"; }\n}'
        )
    v6_ports = {port for (_, peer), port in realip.items() if peer == "::1"}
    with running(start_nginx(scratch, "\n".join(blocks), sorted(taken - v6_ports))):
        for port in v6_ports:
            wait_port(port, "::1")
        yield Nginx(realip, access)


# --- the tests ----------------------------------------------------------------------------


def test_the_case_list_is_large_and_varied() -> None:
    assert len(CASES) >= 400
    multi_xff = sum(1 for c in CASES if sum(n.lower() == "x-forwarded-for" for n, _ in c) > 1)
    assert multi_xff >= 50


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
@pytest.mark.parametrize("peer", PEERS)
def test_resolve_agrees_with_nginx(nginx: Nginx, variant: Variant, peer: str) -> None:
    engine = RealIP(variant.trusted, variant.header, variant.recursive)
    family = socket.AF_INET6 if peer == "::1" else socket.AF_INET
    answers = ask(family, nginx.realip[variant.name, peer], [_request(c) for c in CASES])
    mismatches = []
    for case, answer in zip(CASES, answers, strict=True):
        assert answer.status == 200, (case, answer)
        ours = engine.resolve(peer, _headers(case))
        theirs = answer.body.decode("latin-1")
        if ours != theirs:
            mismatches.append(f"{case!r}: nginx {theirs!r}, ramparts {ours!r}")
    assert not mismatches, f"{len(mismatches)} of {len(CASES)} differ:\n" + "\n".join(
        mismatches[:25]
    )


def _access_addresses(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    fixed = [
        "10.1.2.3", "10.1.2.4", "10.0.0.0", "10.255.255.255", "11.0.0.0", "192.168.0.1",
        "1.2.3.4", "1.2.3.5", "1.2.3.15", "1.2.3.16", "127.0.0.1", "0.0.0.0",
        "2001:db8::7", "2001:db8::8", "2001:db8:8000::1", "2001:db9::1", "::1", "::",
        "::ffff:10.1.2.3", "::ffff:10.1.2.4", "::ffff:1.2.3.4", "::ffff:192.168.0.1",
        "::ffff:0.0.0.0", "::10.1.2.3", "fe80::1", "garbage", "",
    ]  # fmt: skip
    out = list(fixed)
    while len(out) < count:
        roll = rng.random()
        if roll < 0.25:
            v4 = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
        elif roll < 0.35:
            v4 = f"1.2.3.{rng.randrange(32)}"
        elif roll < 0.45:
            v4 = f"192.168.{rng.randrange(256)}.{rng.randrange(256)}"
        elif roll < 0.6:
            v4 = ".".join(str(rng.randrange(256)) for _ in range(4))
        elif roll < 0.8:
            out.append(f"2001:db8:{rng.randrange(1 << 16):x}::{rng.randrange(1 << 16):x}")
            continue
        else:
            out.append(":".join(f"{rng.randrange(1 << 16):x}" for _ in range(8)))
            continue
        out.append(v4 if rng.random() < 0.7 else "::ffff:" + v4)
    return out


ACCESS_ADDRESSES = _access_addresses(300)


@pytest.mark.parametrize("acl", list(ACLS))
def test_access_agrees_with_nginx(nginx: Nginx, acl: str) -> None:
    realip = RealIP(["127.0.0.1"], "X-Real-IP")
    rules = AccessList(ACLS[acl])
    cases = [[("X-Real-IP", a)] for a in ACCESS_ADDRESSES]
    answers = ask(socket.AF_INET, nginx.access[acl], [_request(c) for c in cases])
    mismatches = []
    for case, answer in zip(cases, answers, strict=True):
        client = realip.resolve("127.0.0.1", _headers(case))
        denied_by = rules.check(client)
        ours = 403 if denied_by else 200
        if ours != answer.status or (ours == 200 and answer.body.decode() != client):
            mismatches.append(
                f"{case[0][1]!r} (client {client}): nginx {answer.status}, ramparts {ours}"
                + (f" by {rules.decided_by(denied_by)}" if denied_by else "")
            )
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ:\n" + "\n".join(
        mismatches[:25]
    )
