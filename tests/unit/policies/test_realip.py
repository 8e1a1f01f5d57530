"""The real-IP engine without sockets: nginx's address reader and printer, the header
scan (last X-Forwarded-For line first, elements from the right, recursive or not), and
configuration errors. A literal transcription of nginx's C scan is the property-test
reference; tests/integration/test_realip_nginx.py checks the same against nginx itself."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ramparts.http.headers import Headers
from ramparts.policies.realip import (
    RealIP,
    format_addr,
    parse_addr,
    parse_addr_port,
    parse_cidr,
    parse_socket_addr,
)

CHAIN = ["127.0.0.1", "::1", "10.0.0.0/8", "2001:db8::/32"]


def xff(*values: str, name: bytes = b"X-Forwarded-For") -> Headers:
    return [(b"Host", b"example.com"), *((name, v.encode("latin-1")) for v in values)]


def text(token: str) -> str | None:
    found = parse_addr_port(token.encode())
    return None if found is None else format_addr(*found)


# --- nginx's address reader ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("0.0.0.0", "0.0.0.0"),
        # ngx_inet_addr: leading zeros and empty octets are read, decimal.
        ("010.001.002.003", "10.1.2.3"),
        ("0000000001.2.3.4", "1.2.3.4"),
        ("1..2.3", "1.0.2.3"),
        ("...", "0.0.0.0"),
        ("1.2.3.", "1.2.3.0"),
        # 255.255.255.255 is ngx_inet_addr's error value.
        ("255.255.255.255", None),
        ("256.1.1.1", None),
        ("1.2.3", None),
        ("1.2.3.4.5", None),
        ("0x1.2.3.4", None),
        ("1.2.3.-4", None),
        ("1.2.3.٤", None),
        ("", None),
        ("unknown", None),
    ],
)
def test_ipv4_reader(token: str, expected: str | None) -> None:
    assert text(token) == expected


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("::1", "::1"),
        ("::", "::"),
        ("2001:DB8::A", "2001:db8::a"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
        ("1::", "1::"),
        ("1:2:3:4:5:6::", "1:2:3:4:5:6::"),
        # One group of zeros is not shortened; '::' in front may stand for one group...
        ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"),
        # ...but not at the end, in nginx's reader.
        ("1:2:3:4:5:6:7::", None),
        # One leading ':' is skipped.
        (":1::2", "1::2"),
        (":1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
        (":::", None),
        ("1::2::3", None),
        ("12345::1", None),
        ("1:2:3:4:5:6:7:8:9", None),
        ("fe80::1%eth0", None),
        # IPv4 tails, and how nginx prints addresses with zeros in front.
        ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
        ("::ffff:0102:0304", "::ffff:1.2.3.4"),
        ("::ffff:0.0.0.0", "::ffff:0.0.0.0"),
        ("::ffff:255.255.255.255", None),
        ("::1.2.3.4", "::1.2.3.4"),
        ("::102", "::0.0.1.2"),
        ("::101", "::101"),
        ("::ff", "::ff"),
        ("::0.1.0.0", "::0.1.0.0"),
        ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
        ("1:2:3:4:5:6:7:1.2.3.4", None),
        (":1.2.3.4", None),
        ("::1.2.3", None),
        ("::ab.1.2.3", None),
    ],
)
def test_ipv6_reader_and_printer(token: str, expected: str | None) -> None:
    assert text(token) == expected


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("192.0.2.1:80", "192.0.2.1"),
        ("192.0.2.1:65535", "192.0.2.1"),
        ("192.0.2.1:0080", "192.0.2.1"),
        ("192.0.2.1:0", None),
        ("192.0.2.1:65536", None),
        ("192.0.2.1:", None),
        ("192.0.2.1:+80", None),
        ("192.0.2.1:80:90", None),
        ("192.0.2.1:99999999999999999999999", None),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[192.0.2.1]:80", "192.0.2.1"),
        ("[::ffff:10.0.0.1]:99", "::ffff:10.0.0.1"),
        ("[::1]", None),
        ("[::1]:", None),
        ("[::1]x80", None),
        ("[[::1]]:80", None),
        ("[1.2.3.4]", None),
        # Without brackets the colons belong to the address: the last group is 0x80.
        ("2001:db8::1:80", "2001:db8::1:80"),
    ],
)
def test_ports_are_read_and_dropped(token: str, expected: str | None) -> None:
    assert text(token) == expected


def test_parse_addr_keeps_mapped_addresses_as_ipv6() -> None:
    assert parse_addr(b"::ffff:10.0.0.1") == (6, 0xFFFF0A000001)
    assert parse_addr(b"10.0.0.1") == (4, 0x0A000001)
    assert parse_addr(b"10.0.0.1:80") is None


def _ngx_inet_addr(text: bytes) -> int | None:
    """ngx_inet_addr, character by character."""
    addr = octet = dots = 0
    for c in text:
        if 0x30 <= c <= 0x39:
            octet = octet * 10 + c - 0x30
            if octet > 255:
                return None
        elif c == 0x2E:
            addr, octet, dots = (addr << 8) + octet, 0, dots + 1
        else:
            return None
    if dots != 3:
        return None
    addr = ((addr << 8) + octet) & 0xFFFFFFFF
    return None if addr == 0xFFFFFFFF else addr


@given(st.text(alphabet="0123456789.", max_size=20))
def test_ipv4_reader_is_ngx_inet_addr(token: str) -> None:
    found = parse_addr(token.encode())
    assert (found[1] if found is not None and found[0] == 4 else None) == _ngx_inet_addr(
        token.encode()
    )


@given(st.ip_addresses())
def test_every_canonical_address_is_read(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    if addr.version == 4 and int(addr) == 0xFFFFFFFF:
        assert parse_addr(str(addr).encode()) is None
        return
    if not str(addr).endswith("255.255.255.255"):  # Python 3.13 prints mapped dotted
        assert parse_addr(str(addr).encode()) == (addr.version, int(addr))
    assert parse_addr(addr.exploded.encode()) == (addr.version, int(addr))
    if addr.version == 6:
        assert parse_addr_port(f"[{addr}]:443".encode()) == (6, int(addr))
    else:
        assert parse_addr_port(f"{addr}:443".encode()) == (4, int(addr))


def _dotted_tail(value: int) -> bool:
    """nginx's rule for printing the last 32 bits dotted (zero run at the start)."""
    words = [(value >> (112 - 16 * k)) & 0xFFFF for k in range(8)]
    lead = next((k for k, w in enumerate(words) if w), 8)
    return (
        (lead == 5 and words[5] == 0xFFFF)
        or lead == 6
        or (lead == 7 and words[7] >> 8 != 0 and words[7] & 0xFF != 1)
    )


@example(ipaddress.IPv6Address("::ffff:255.255.255.255"))
@example(ipaddress.IPv6Address("::102"))
@given(st.ip_addresses(v=6))
def test_ipv6_printer_is_canonical_and_read_back(addr: ipaddress.IPv6Address) -> None:
    value = int(addr)
    printed = format_addr(6, value)
    assert ipaddress.IPv6Address(printed) == addr
    if printed.endswith("255.255.255.255"):
        # nginx prints ::ffff:255.255.255.255 but cannot read it (its IPv4 error value).
        assert parse_addr(printed.encode()) is None
    else:
        assert parse_addr(printed.encode()) == (6, value)
    if not _dotted_tail(value):
        assert printed == str(addr)  # RFC 5952, as Python writes it


def test_ipv4_printer() -> None:
    assert format_addr(4, 0) == "0.0.0.0"
    assert format_addr(4, 0xC0000201) == "192.0.2.1"
    assert format_addr(4, 0xFFFFFFFF) == "255.255.255.255"


# --- configuration ------------------------------------------------------------------------


def test_parse_cidr() -> None:
    assert parse_cidr("10.0.0.0/8") == (4, 0x0A000000, 0xFF000000, False)
    assert parse_cidr(" 192.0.2.7 ") == (4, 0xC0000207, 0xFFFFFFFF, False)
    assert parse_cidr("10.1.2.3/8") == (4, 0x0A000000, 0xFF000000, True)
    assert parse_cidr("0.0.0.0/0") == (4, 0, 0, False)
    assert parse_cidr("2001:db8::1/32") == (6, 0x20010DB8 << 96, ((1 << 32) - 1) << 96, True)
    assert parse_cidr("::/0") == (6, 0, 0, False)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "  ",
        "unix:",
        "localhost",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/",
        "10.0.0.0/8/8",
        "10.0.0.0/255.0.0.0",
        "10.0.0.0/+8",
        "010.0.0.1",
        "1.2.3",
        "fe80::1%eth0",
        "all",
    ],
)
def test_bad_trusted_entries_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="set_real_ip_from"):
        RealIP(["127.0.0.1", bad], "X-Forwarded-For")


def test_mapped_prefixes_are_refused_with_the_ipv4_form() -> None:
    with pytest.raises(ValueError, match=r"write 10\.0\.0\.0/8"):
        RealIP(["::ffff:10.0.0.0/104"])
    with pytest.raises(ValueError, match=r"write 192\.0\.2\.1/32"):
        RealIP(["::ffff:192.0.2.1"])
    # A wider IPv6 prefix is fine: in nginx it matches non-mapped addresses only.
    assert RealIP(["::/0"]).is_trusted("::ffff:10.0.0.1") is False


@pytest.mark.parametrize("header", ["", "X Forwarded", "X-Forwarded-For:", "é", "proxy_protocol"])
def test_bad_header_names_are_refused(header: str) -> None:
    with pytest.raises(ValueError, match="real_ip_header"):
        RealIP(["127.0.0.1"], header)


def test_an_empty_trusted_list_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RealIP([], "X-Forwarded-For")


def test_host_bits_are_cleared_with_a_warning() -> None:
    engine = RealIP(["10.1.2.3/8", "127.0.0.1"], "X-Forwarded-For")
    assert engine.warnings == (
        "set_real_ip_from: low address bits of '10.1.2.3/8' are meaningless",
    )
    assert engine.is_trusted("10.200.0.1")
    assert RealIP(["10.0.0.0/8"]).warnings == ()


def test_trusted_is_a_string_or_any_iterable() -> None:
    assert RealIP("127.0.0.1").trusted == ("127.0.0.1",)
    once = RealIP(iter([" 127.0.0.1 ", "10.0.0.0/8"]))
    assert once.trusted == ("127.0.0.1", "10.0.0.0/8")
    assert once.is_trusted("10.1.1.1") and not once.is_trusted("192.0.2.1")


# --- the peer -----------------------------------------------------------------------------


def test_headers_from_an_untrusted_peer_are_ignored() -> None:
    engine = RealIP(["10.0.0.0/8"], "X-Forwarded-For", recursive=True)
    assert engine.resolve("192.0.2.9", xff("1.2.3.4")) == "192.0.2.9"
    assert engine.resolve("10.0.0.1", xff("1.2.3.4")) == "1.2.3.4"


def test_a_mapped_peer_is_matched_as_ipv4() -> None:
    engine = RealIP(["127.0.0.1"], "X-Forwarded-For")
    assert engine.resolve("::ffff:127.0.0.1", xff("1.2.3.4")) == "1.2.3.4"
    assert RealIP(["::1"]).is_trusted("::ffff:0.0.0.1") is False


def test_ipv6_peers_and_scopes() -> None:
    engine = RealIP(["::1", "fe80::/10"], "X-Forwarded-For")
    assert engine.resolve("::1", xff("2001:db8::1")) == "2001:db8::1"
    assert engine.resolve("fe80::1%eth0", xff("1.2.3.4")) == "1.2.3.4"
    assert engine.resolve("127.0.0.1", xff("1.2.3.4")) == "127.0.0.1"


def test_peers_are_read_as_socket_addresses() -> None:
    engine = RealIP(["255.0.0.0/8"], "X-Forwarded-For")
    assert engine.resolve("255.255.255.255", xff("1.2.3.4")) == "1.2.3.4"
    assert engine.resolve("::ffff:255.255.255.255", xff("1.2.3.4")) == "1.2.3.4"
    # As a header element, nginx cannot read it.
    assert engine.resolve("255.1.1.1", xff("255.255.255.255")) == "255.1.1.1"
    assert parse_socket_addr("fe80::1%eth0") == (6, (0xFE80 << 112) | 1)
    assert parse_socket_addr("1.2.3.255.255.255.255") is None


def test_an_unreadable_peer_is_not_trusted() -> None:
    engine = RealIP(["0.0.0.0/0", "::/0"], "X-Forwarded-For")
    assert engine.resolve("unix:/run/sock", xff("1.2.3.4")) == "unix:/run/sock"
    assert engine.resolve("", xff("1.2.3.4")) == ""


def test_no_header_keeps_the_peer() -> None:
    engine = RealIP(["127.0.0.1"], "X-Forwarded-For", recursive=True)
    assert engine.resolve("127.0.0.1", [(b"Host", b"x")]) == "127.0.0.1"
    assert engine.resolve("127.0.0.1", []) == "127.0.0.1"


# --- the scan -----------------------------------------------------------------------------


def test_without_recursion_the_rightmost_element_wins() -> None:
    engine = RealIP(CHAIN, "X-Forwarded-For")
    assert engine.resolve("127.0.0.1", xff("1.2.3.4, 5.6.7.8, 10.0.0.1")) == "10.0.0.1"
    assert engine.resolve("127.0.0.1", xff("1.2.3.4, garbage")) == "127.0.0.1"


def test_recursion_takes_the_rightmost_untrusted_element() -> None:
    engine = RealIP(CHAIN, "X-Forwarded-For", recursive=True)
    headers = xff("1.2.3.4, 5.6.7.8, 10.0.0.1, 10.0.0.2")
    assert engine.resolve("127.0.0.1", headers) == "5.6.7.8"


def test_recursion_takes_the_leftmost_when_all_are_trusted() -> None:
    engine = RealIP(CHAIN, "X-Forwarded-For", recursive=True)
    assert engine.resolve("127.0.0.1", xff("10.0.0.3, 10.0.0.2 10.0.0.1")) == "10.0.0.3"
    assert engine.resolve("127.0.0.1", xff("10.0.0.3", "10.0.0.2", "10.0.0.1")) == "10.0.0.3"


def test_an_unreadable_element_stops_the_scan() -> None:
    engine = RealIP(CHAIN, "X-Forwarded-For", recursive=True)
    assert engine.resolve("127.0.0.1", xff("1.2.3.4, unknown, 10.0.0.2")) == "10.0.0.2"
    assert engine.resolve("127.0.0.1", xff("1.2.3.4, 10.0.0.2, unknown")) == "127.0.0.1"
    assert engine.resolve("127.0.0.1", xff("1.2.3.4, 10.0.0.2;")) == "127.0.0.1"


def test_every_x_forwarded_for_line_counts_last_line_first() -> None:
    engine = RealIP(CHAIN, "X-Forwarded-For", recursive=True)
    headers = [*xff("1.2.3.4, 10.0.0.9", "10.0.0.8"), (b"x-forwarded-for", b"10.0.0.7")]
    assert engine.resolve("127.0.0.1", headers) == "1.2.3.4"
    # An unreadable or empty earlier line keeps the leftmost address of the later one.
    assert engine.resolve("127.0.0.1", xff("garbage", "10.0.0.8, 10.0.0.9")) == "10.0.0.8"
    assert engine.resolve("127.0.0.1", xff("", "10.0.0.8")) == "10.0.0.8"
    # An untrusted leftmost element ends the walk before the earlier line.
    assert engine.resolve("127.0.0.1", xff("10.0.0.1", "5.5.5.5, 10.0.0.8")) == "5.5.5.5"


def test_without_recursion_only_the_last_line_counts() -> None:
    engine = RealIP(CHAIN, "X-Forwarded-For")
    assert engine.resolve("127.0.0.1", xff("1.2.3.4", "5.6.7.8")) == "5.6.7.8"
    assert engine.resolve("127.0.0.1", xff("1.2.3.4", "garbage")) == "127.0.0.1"
    assert engine.resolve("127.0.0.1", xff("1.2.3.4", "")) == "127.0.0.1"


def test_other_headers_use_their_first_field_only() -> None:
    for name in ("X-Real-IP", "X-Client-IP", "x-real-ip"):
        engine = RealIP(CHAIN, name, recursive=True)
        headers = xff("1.2.3.4", "5.6.7.8", name=name.upper().encode())
        assert engine.resolve("127.0.0.1", headers) == "1.2.3.4", name
        headers = xff("garbage", "5.6.7.8", name=name.lower().encode())
        assert engine.resolve("127.0.0.1", headers) == "127.0.0.1", name


def test_x_real_ip_is_a_list_too() -> None:
    engine = RealIP(CHAIN, "X-Real-IP", recursive=True)
    assert engine.resolve("127.0.0.1", xff("1.2.3.4, 10.0.0.1", name=b"X-Real-IP")) == "1.2.3.4"
    engine = RealIP(CHAIN, "X-Real-IP")
    assert engine.resolve("127.0.0.1", xff("1.2.3.4, 10.0.0.1", name=b"X-Real-IP")) == "10.0.0.1"


def test_x_forwarded_for_must_be_spelt_exactly_for_all_lines() -> None:
    """nginx compares the configured name with "X-Forwarded-For" case-sensitively; any
    other spelling is an ordinary header: its first line only."""
    headers = xff("1.2.3.4", "5.6.7.8")
    assert RealIP(CHAIN, "X-Forwarded-For").resolve("127.0.0.1", headers) == "5.6.7.8"
    assert RealIP(CHAIN, "x-forwarded-for").resolve("127.0.0.1", headers) == "1.2.3.4"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        ("  1.2.3.4  ", "1.2.3.4"),
        ("1.2.3.4,", "1.2.3.4"),
        ("1.2.3.4 , ,", "1.2.3.4"),
        (", 1.2.3.4", "1.2.3.4"),
        # The first character always belongs to the leftmost element.
        (",1.2.3.4", "127.0.0.1"),
        (",", "127.0.0.1"),
        (", ,", "127.0.0.1"),
        ("", "127.0.0.1"),
        ("   ", "127.0.0.1"),
        # Tabs are neither trimmed nor separators (nginx 1.22).
        ("\t1.2.3.4", "127.0.0.1"),
        ("1.2.3.4\t", "127.0.0.1"),
        ("5.5.5.5,\t1.2.3.4", "127.0.0.1"),
        ("1.2.3.4;", "127.0.0.1"),
        ("[2001:db8::5]:8080", "2001:db8::5"),
        ("1.2.3.4:80", "1.2.3.4"),
        ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
        ("001.002.003.004", "1.2.3.4"),
    ],
)
def test_one_value(value: str, expected: str) -> None:
    engine = RealIP(["127.0.0.1"], "X-Forwarded-For", recursive=True)
    assert engine.resolve("127.0.0.1", xff(value)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4,10.0.0.1", "1.2.3.4"),
        ("1.2.3.4 10.0.0.1", "1.2.3.4"),
        ("1.2.3.4,,  ,10.0.0.1", "1.2.3.4"),
        ("1.2.3.4, [10.0.0.1]:80, 10.0.0.2:443", "1.2.3.4"),
        # A mapped element is trusted as IPv4 and printed as nginx prints it.
        ("1.2.3.4, ::ffff:10.0.0.1", "1.2.3.4"),
        ("::ffff:10.0.0.1, 10.0.0.2", "::ffff:10.0.0.1"),
        ("2001:db9::1, 2001:db8::1", "2001:db9::1"),
        ("2001:DB8::1, 10.0.0.1", "2001:db8::1"),
        # ",10.0.0.3" is one unreadable element: the scan stops after 10.0.0.1.
        (",10.0.0.3, 10.0.0.1", "10.0.0.1"),
        (", 10.0.0.3, 10.0.0.1", "10.0.0.3"),
        # "\t10.0.0.1" is unreadable: nothing was found, the peer stays.
        ("1.2.3.4,\t10.0.0.1", "127.0.0.1"),
    ],
)
def test_recursive_chains(value: str, expected: str) -> None:
    engine = RealIP(CHAIN, "X-Forwarded-For", recursive=True)
    assert engine.resolve("127.0.0.1", xff(value)) == expected


def test_memos_stay_bounded_and_correct() -> None:
    engine = RealIP(CHAIN, "X-Forwarded-For", recursive=True, cache_size=3)
    for i in range(50):
        peer = f"10.0.{i}.1" if i % 2 else f"192.0.2.{i}"
        got = engine.resolve(peer, xff(f"203.0.113.{i}, 10.9.9.{i}"))
        assert got == (f"203.0.113.{i}" if i % 2 else peer)
        assert len(engine._peers) <= 3 and len(engine._tokens) <= 3
    long = "0" * 200 + "1.2.3.4"
    assert engine.resolve("10.0.0.1", xff(long)) == "1.2.3.4"
    assert long.encode() not in engine._tokens
    with pytest.raises(ValueError):
        RealIP(CHAIN, cache_size=0)


# --- property: the scan is nginx's C, transcribed literally -------------------------------

_NETS = [ipaddress.ip_network(n) for n in CHAIN]


def _trusted(addr: tuple[int, int]) -> bool:
    version, value = addr
    if version == 6 and value >> 32 == 0xFFFF:
        version, value = 4, value & 0xFFFFFFFF
    obj = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
    return any(obj in net for net in _NETS if net.version == version)


def _internal(addr: tuple[int, int], xff: bytes, recursive: bool) -> tuple[str, tuple[int, int]]:
    """ngx_http_get_forwarded_addr_internal with indices for pointers."""
    found = False
    xfflen = len(xff)
    while True:
        if not _trusted(addr):
            return ("DONE" if found else "DECLINED"), addr
        p = xfflen - 1
        while p > 0:
            if xff[p] not in b" ,":
                break
            p -= 1
            xfflen -= 1
        while p > 0:
            if xff[p] in b" ,":
                p += 1
                break
            p -= 1
        # An empty value: nginx reads the byte before it, a space after "Name: ".
        token = xff[p:xfflen] if p >= 0 else b" "
        paddr = parse_addr_port(token)
        if paddr is None:
            return ("DONE" if found else "DECLINED"), addr
        addr, found = paddr, True
        xfflen = p - 1
        if not (recursive and p > 0):
            return "OK", addr


def _reference(peer: str, lines: list[bytes], recursive: bool) -> str:
    """ngx_http_get_forwarded_addr over X-Forwarded-For lines, then $remote_addr."""
    start = parse_addr(peer.encode())
    assert start is not None
    addr, rc, found = start, "DECLINED", False
    for line in reversed(lines):
        rc, addr = _internal(addr, line.strip(b" "), recursive)
        if not recursive:
            break
        if rc == "DECLINED" and found:
            rc = "DONE"
            break
        if rc != "OK":
            break
        found = True
    return peer if rc == "DECLINED" else format_addr(*addr)


_ELEMENTS = [
    "10.0.0.1", "10.1.1.1:80", "2001:db8::1", "[2001:db8::2]:443", "::ffff:10.0.0.5",
    "::1", "127.0.0.1", "1.2.3.4", "5.6.7.8", "2001:db9::1", "::ffff:1.2.3.4",
    "[1.2.3.4]:8", "garbage", "1.2.3", "[::1]", "255.255.255.255", "\t10.0.0.1", "",
]  # fmt: skip
_line = st.lists(
    st.tuples(st.sampled_from(_ELEMENTS), st.sampled_from([" ", ",", ", ", ",,", " , ", ""])),
    max_size=5,
).map(lambda parts: "".join(e + s for e, s in parts))
_lines = st.lists(
    st.tuples(st.sampled_from(["", ",", " ", ", "]), _line).map(lambda t: t[0] + t[1]),
    min_size=1,
    max_size=3,
)


@settings(max_examples=400)
@given(
    lines=_lines,
    recursive=st.booleans(),
    peer=st.sampled_from(["127.0.0.1", "::1", "::ffff:127.0.0.1", "192.0.2.1"]),
)
def test_scan_matches_a_literal_transcription_of_nginx(
    lines: list[str], recursive: bool, peer: str
) -> None:
    engine = RealIP(CHAIN, "X-Forwarded-For", recursive)
    raw = [line.encode() for line in lines]
    assert engine.resolve(peer, xff(*lines)) == _reference(peer, raw, recursive)
    # The first field of another header is the last line of a one-line list.
    other = RealIP(CHAIN, "X-Real-IP", recursive)
    headers = [(b"X-Real-IP", v) for v in raw]
    assert other.resolve(peer, headers) == _reference(peer, raw[:1], recursive)
