"""IP protocol names and numbers."""

from __future__ import annotations

__all__ = ["PROTOCOLS", "parse_protocol", "protocol_name"]

PROTOCOLS: dict[str, int] = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}
_NAMES = {v: k for k, v in PROTOCOLS.items()}


def parse_protocol(value: str | int | None) -> int | None:
    """Protocol number from a name or number; None (any) for ``any``, ``all`` or None."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 255:
            raise ValueError(f"protocol number out of range: {value}")
        return value
    text = str(value).strip().lower()
    if text in ("any", "all", "ip", "*", ""):
        return None
    if text in PROTOCOLS:
        return PROTOCOLS[text]
    if text.isdigit() and 0 <= int(text) <= 255:
        return int(text)
    raise ValueError(f"unknown protocol {value!r} (tcp, udp, icmp, icmpv6, any or a number)")


def protocol_name(number: int | None) -> str:
    return "any" if number is None else _NAMES.get(number, str(number))
