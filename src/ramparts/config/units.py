"""Value syntaxes shared by every config file: durations (``250ms``, ``5s``, ``1m``,
``30d``), sizes (``32k``, ``1m``, ``1g``) and listen/peer addresses (``host:port``)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import BeforeValidator

__all__ = ["Duration", "Size", "parse_address", "parse_duration", "parse_size"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG])?[bB]?\s*$")
_SIZE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, None: 1}


def parse_duration(value: object) -> float:
    """Seconds from ``5``, ``5s``, ``250ms``, ``1m``, ``2h`` or ``30d``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number with a unit, e.g. 5s or 250ms")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    raise ValueError(f"not a duration: {value!r} (use e.g. 5s, 250ms, 1m, 30d)")


def parse_size(value: object) -> int:
    """Bytes from ``1024``, ``32k``, ``1m`` or ``1g``."""
    if isinstance(value, bool):
        raise ValueError("a size is a number with an optional unit, e.g. 32k or 1m")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            unit = m.group(2).lower() if m.group(2) else None
            return int(m.group(1)) * _SIZE_UNITS[unit]
    raise ValueError(f"not a size: {value!r} (use e.g. 512, 32k, 1m)")


def parse_address(value: str, *, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """``(host, port)`` from ``host:port``, ``[v6]:port`` or a bare port."""
    value = value.strip()
    if value.isdigit():
        host, port_s = default_host, value
    elif value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1 : end + 2] != ":":
            raise ValueError(f"not an address: {value!r} (use [::1]:8080)")
        host, port_s = value[1:end], value[end + 2 :]
        ipaddress.IPv6Address(host)
    else:
        host, sep, port_s = value.rpartition(":")
        if not sep or not host or ":" in host:
            raise ValueError(f"not an address: {value!r} (use host:port)")
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"invalid port in {value!r}")
    return host, int(port_s)


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
