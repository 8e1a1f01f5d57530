"""The real client address behind trusted proxies: nginx's realip module
(``set_real_ip_from``, ``real_ip_header``, ``real_ip_recursive``), exactly as nginx 1.22
does it, together with nginx's own address reader (``ngx_parse_addr_port``) and printer
(``ngx_sock_ntop``), so the address ramparts judges and logs is the one nginx would.

What nginx does, and so what this does (proved against nginx by
``tests/integration/test_realip_nginx.py``):

* Nothing happens unless the peer is a trusted source. An IPv4-mapped IPv6 address
  (peer or header element) is matched as IPv4; IPv6 prefixes inside ``::ffff:0:0/96``
  therefore never match, and are refused here.
* ``real_ip_header X-Forwarded-For`` (spelt exactly so: nginx compares the name
  case-sensitively) reads every X-Forwarded-For line, the last line first. Any other name,
  ``X-Real-IP`` and ``x-forwarded-for`` included, reads only the first field of that name.
* A value is a list of elements separated by spaces and commas, scanned from the right.
  Without ``real_ip_recursive`` the rightmost element wins. With it, the scan moves left
  while the address found is trusted: the rightmost untrusted address wins, or the
  leftmost one when all are trusted.
* An element nginx cannot read stops the scan: the last address read is kept (the peer,
  if none). Elements may carry a port (``192.0.2.1:80``, ``[2001:db8::1]:443``, even
  ``[192.0.2.1]:80``); ``[2001:db8::1]`` without a port is not read. nginx's reader also
  takes ``01.2.3.4``, ``1..2.3`` and ``:1::2``, and refuses ``255.255.255.255`` and
  ``1:2:3:4:5:6:7::``; so does this one.
* The first character of a value always belongs to its leftmost element, even a comma:
  ``,192.0.2.1`` is one unreadable element.

Values are taken as given except for surrounding spaces, which nginx's header parser
drops; a tab is neither trimmed nor a separator (nginx 1.22). Host names and ``unix:``
sources are not accepted in the trusted list.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from ..http.headers import Headers

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "RealIP",
    "format_addr",
    "parse_addr",
    "parse_addr_port",
    "parse_cidr",
    "parse_socket_addr",
]

#: Distinct peers and header elements remembered; the memo is emptied when full.
DEFAULT_CACHE_SIZE = 4096

_V4_ALL = 0xFFFFFFFF
_V6_ALL = (1 << 128) - 1
_MAPPED = 0xFFFF << 32  # ::ffff:0:0/96, as the upper 96 bits of an address
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field name


# --- nginx's address reader -------------------------------------------------------------


def _inet4(text: bytes) -> int | None:
    """``ngx_inet_addr``: exactly three dots, decimal octets of at most 255, leading zeros
    and empty octets allowed (``1..2.3`` is 1.0.2.3); 255.255.255.255 is its error value."""
    parts = text.split(b".")
    if len(parts) != 4:
        return None
    addr = 0
    for part in parts:
        if part:
            if not part.isdigit():  # bytes: ASCII digits only
                return None
            octet = int(part)
            if octet > 255:
                return None
        else:
            octet = 0
        addr = (addr << 8) | octet
    return None if addr == _V4_ALL else addr


def _inet6(text: bytes) -> int | None:
    """``ngx_inet6_addr``, step by step: one leading ':' is skipped, ``::`` may stand for
    one group only when it does not end the address, an IPv4 tail needs two free groups."""
    end = len(text)
    if end == 0:
        return None
    out = bytearray(16)
    pos = 0  # next byte of ``out``
    zero = -1  # where ``::`` stood in ``out``
    digit = -1  # where the group after the last ':' starts in ``text``
    nibbles = word = 0
    groups = 8  # groups still free
    i = 1 if text[0] == 0x3A else 0
    while i < end:
        c = text[i]
        i += 1
        if c == 0x3A:  # ':'
            if nibbles:
                digit = i
                out[pos] = word >> 8
                out[pos + 1] = word & 0xFF
                pos += 2
                groups -= 1
                if groups:
                    nibbles = word = 0
                    continue
            elif zero < 0:
                digit = i
                zero = pos
                continue
            return None
        if c == 0x2E and nibbles:  # '.': the rest is an IPv4 address
            if groups < 2 or digit < 0:
                return None
            v4 = _inet4(text[digit:])
            if v4 is None:
                return None
            out[pos] = v4 >> 24
            out[pos + 1] = (v4 >> 16) & 0xFF
            pos += 2
            groups -= 1
            word = v4 & 0xFFFF
            break
        nibbles += 1
        if nibbles > 4:
            return None
        if 0x30 <= c <= 0x39:
            word = word * 16 + c - 0x30
            continue
        c |= 0x20
        if 0x61 <= c <= 0x66:
            word = word * 16 + c - 0x57
            continue
        return None
    if nibbles == 0 and zero < 0:
        return None
    out[pos] = word >> 8
    out[pos + 1] = word & 0xFF
    pos += 2
    groups -= 1
    if groups:
        if zero < 0:
            return None
        gap = groups * 2
        out[zero + gap : pos + gap] = out[zero:pos]
        out[zero : zero + gap] = bytes(gap)
    elif zero >= 0:
        return None
    return int.from_bytes(out, "big")


def parse_addr(text: bytes) -> tuple[int, int] | None:
    """``ngx_parse_addr``: (4 or 6, address as an int), or None. An IPv4-mapped IPv6
    address stays version 6 here (nginx prints it so); matching treats it as IPv4."""
    v4 = _inet4(text)
    if v4 is not None:
        return 4, v4
    v6 = _inet6(text)
    if v6 is not None:
        return 6, v6
    return None


def parse_socket_addr(text: str) -> tuple[int, int] | None:
    """An address as a socket reports it (``192.0.2.1``, ``::ffff:192.0.2.1``,
    ``fe80::1%eth0``; the scope is dropped): (4 or 6, int), or None. Unlike nginx's text
    reader, it takes 255.255.255.255: a socket address is never nginx's error value."""
    text = text.partition("%")[0]
    found = parse_addr(text.encode("ascii", "replace"))
    if found is None and text[-15:] == "255.255.255.255":
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return None
        found = addr.version, int(addr)
    return found


def parse_addr_port(text: bytes) -> tuple[int, int] | None:
    """``ngx_parse_addr_port``: an address, or one followed by ``:port`` (1-65535), the
    address in brackets when it has colons; the port is read, checked and dropped."""
    found = parse_addr(text)
    if found is not None:
        return found
    if text[:1] == b"[":
        close = text.find(b"]")
        if close < 0 or close == len(text) - 1 or text[close + 1] != 0x3A:
            return None
        host, port = text[1:close], text[close + 2 :]
    else:
        colon = text.find(b":")
        if colon < 0:
            return None
        host, port = text[:colon], text[colon + 1 :]
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return parse_addr(host)


# --- nginx's address printer ------------------------------------------------------------


def format_addr(version: int, value: int) -> str:
    """``ngx_sock_ntop`` without a port: dotted IPv4; IPv6 in lower-case hex with the first
    longest run of two or more zero groups as ``::``, and, when that run starts the
    address, an IPv4 tail for ``::ffff:a.b.c.d``, ``::a.b.c.d`` and (nginx's own rule)
    ``::0.0.c.d`` with c != 0 and d != 1."""
    if version == 4:
        return "%d.%d.%d.%d" % (
            value >> 24,
            (value >> 16) & 0xFF,
            (value >> 8) & 0xFF,
            value & 0xFF,
        )
    words = [(value >> (112 - 16 * k)) & 0xFFFF for k in range(8)]
    zero, best, run, start = -1, 1, 0, -1
    for k, w in enumerate(words):
        if w:
            if run > best:
                zero, best = start, run
            run = 0
        else:
            if run == 0:
                start = k
            run += 1
    if run > best:
        zero, best = start, run
    stop = 8
    out: list[str] = []
    if zero == 0:
        if (
            (best == 5 and words[5] == 0xFFFF)
            or best == 6
            or (best == 7 and (value >> 8) & 0xFF != 0 and value & 0xFF != 1)
        ):
            stop = 6
        out.append(":")
    k = 0
    while k < stop:
        if k == zero:
            out.append(":")
            k += best
            continue
        out.append("%x" % words[k])
        if k < 7:
            out.append(":")
        k += 1
    if stop == 6:
        out.append(format_addr(4, value & _V4_ALL))
    return "".join(out)


# --- configuration ----------------------------------------------------------------------


def parse_cidr(text: str) -> tuple[int, int, int, bool]:
    """A configured address or CIDR: (version, network, mask, host bits were set). Host
    bits are cleared, as nginx does (it warns "low address bits are meaningless")."""
    spec = text.strip()
    if not spec:
        raise ValueError("empty address")
    if spec == "unix:":
        raise ValueError("unix: sources are not supported (ramparts listens on TCP only)")
    addr_text, slash, plen_text = spec.partition("/")
    if slash and not (plen_text.isascii() and plen_text.isdigit()):
        raise ValueError(f"{text!r}: the prefix length must be a number")
    try:
        addr = ipaddress.ip_address(addr_text)
        if getattr(addr, "scope_id", None):
            raise ValueError
        bits = addr.max_prefixlen
        plen = int(plen_text) if slash else bits
        if plen > bits:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IP address or CIDR (host names are not resolved)"
        ) from None
    full = (1 << bits) - 1
    mask = full ^ (full >> plen)
    value = int(addr)
    return addr.version, value & mask, mask, value & ~mask != 0


class _Trusted:
    """``ngx_cidr_match`` over the trusted sources: IPv4-mapped addresses as IPv4."""

    __slots__ = ("v4", "v6")

    def __init__(self, cidrs: Iterable[tuple[int, int, int]]) -> None:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for version, net, mask in cidrs:
            (v4 if version == 4 else v6).append((mask, net))
        self.v4 = tuple(v4)
        self.v6 = tuple(v6)

    def match(self, version: int, value: int) -> bool:
        if version == 6:
            if value >> 32 != 0xFFFF:
                return any(value & m == n for m, n in self.v6)
            value &= _V4_ALL
        return any(value & m == n for m, n in self.v4)


# --- the engine -------------------------------------------------------------------------

_BAD: tuple[str, bool] = ("", False)  # memo entry of an element nginx cannot read
_MEMO_TOKEN = 64  # longer elements (nginx reads any number of leading zeros) are not kept


class RealIP:
    """One ``set_real_ip_from`` / ``real_ip_header`` / ``real_ip_recursive`` scope, built
    once per plan. ``resolve`` is pure and cheap; ``warnings`` lists configuration that
    nginx accepts with a warning (host bits in a CIDR)."""

    __slots__ = (
        "_all_lines",
        "_cache_size",
        "_name",
        "_peers",
        "_tokens",
        "_trusted",
        "header",
        "recursive",
        "trusted",
        "warnings",
    )

    def __init__(
        self,
        trusted: Iterable[str],
        header: str = "X-Real-IP",
        recursive: bool = False,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        entries = [trusted] if isinstance(trusted, str) else list(trusted)
        cidrs: list[tuple[int, int, int]] = []
        warnings: list[str] = []
        for entry in entries:
            try:
                version, net, mask, host_bits = parse_cidr(entry)
            except ValueError as exc:
                raise ValueError(f"set_real_ip_from: {exc}") from None
            if version == 6 and mask >> 32 == _V6_ALL >> 32 and net >> 32 == 0xFFFF:
                v4 = ipaddress.IPv4Network((net & _V4_ALL, 32 - (~mask & _V6_ALL).bit_length()))
                raise ValueError(
                    f"set_real_ip_from: {entry!r} is an IPv4-mapped prefix, which nginx never "
                    f"matches (mapped addresses are judged as IPv4): write {v4}"
                )
            if host_bits:
                warnings.append(f"set_real_ip_from: low address bits of {entry!r} are meaningless")
            cidrs.append((version, net, mask))
        if not cidrs:
            raise ValueError("set_real_ip_from: at least one trusted address or CIDR is needed")
        if not isinstance(header, str) or not header:
            raise ValueError("real_ip_header: empty header name")
        if header == "proxy_protocol":
            raise ValueError("real_ip_header: proxy_protocol is not supported by ramparts")
        if not _TOKEN.fullmatch(header):
            raise ValueError(f"real_ip_header: {header!r} is not a header field name")
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.trusted: tuple[str, ...] = tuple(e.strip() for e in entries)
        self.header = header
        self.recursive = bool(recursive)
        self.warnings: tuple[str, ...] = tuple(warnings)
        self._trusted = _Trusted(cidrs)
        self._name = header.lower().encode("ascii")
        # nginx's X-Forwarded-For handling (every line) needs the name spelt exactly so.
        self._all_lines = header == "X-Forwarded-For"
        self._cache_size = cache_size
        self._peers: dict[str, bool] = {}
        self._tokens: dict[bytes, tuple[str, bool]] = {}

    def is_trusted(self, addr: str) -> bool:
        """Whether ``addr`` (as a socket reports it) is a trusted source."""
        known = self._peers.get(addr)
        if known is None:
            found = parse_socket_addr(addr)
            known = found is not None and self._trusted.match(*found)
            if len(self._peers) >= self._cache_size:
                self._peers.clear()
            self._peers[addr] = known
        return known

    def _element(self, token: bytes) -> tuple[str, bool]:
        """(nginx's text of the address, trusted) for one element; ``_BAD`` if unreadable."""
        known = self._tokens.get(token)
        if known is None:
            found = parse_addr_port(token)
            known = _BAD if found is None else (format_addr(*found), self._trusted.match(*found))
            if len(token) <= _MEMO_TOKEN:
                if len(self._tokens) >= self._cache_size:
                    self._tokens.clear()
                self._tokens[token] = known
        return known

    def resolve(self, peer_ip: str, headers: Headers) -> str:
        """The client address to use for a request from ``peer_ip``: nginx's
        ``$remote_addr`` after the realip module, ``peer_ip`` itself when nothing applies."""
        if not self.is_trusted(peer_ip):
            return peer_ip
        name = self._name
        size = len(name)
        if self._all_lines:
            values = [v for n, v in headers if len(n) == size and n.lower() == name]
            if not values:
                return peer_ip
        else:
            for n, v in headers:
                if len(n) == size and n.lower() == name:
                    values = [v]
                    break
            else:
                return peer_ip
        result = peer_ip
        # Lines from the last; in each, elements from the right (ngx_http_get_forwarded_addr).
        for line in reversed(values):
            value = line.strip(b" ")
            stop = len(value)  # nginx's xfflen: what is left of the value to scan
            while True:
                if stop == 0:
                    # nginx reads the byte before an empty value (' ' or ':'): no address.
                    return result
                # Separators at the end are skipped, but never the first character.
                end = max(1, len(value[:stop].rstrip(b" ,")))
                sep = max(value.rfind(b" ", 1, end), value.rfind(b",", 1, end))
                text, trusted = self._element(value[sep + 1 : end])
                if not text:
                    return result  # unreadable: keep what was found so far
                result = text
                if not self.recursive:
                    return result
                if not trusted:
                    return result
                if sep < 0:
                    break  # the line is used up: go on with the line before it
                stop = sep
        return result
