"""Network value types: IP ranges and sets (v4 and v6), port ranges, protocols, packets.
Pure values, no sockets."""

from .addr import IPRange, IPSet, parse_ip, parse_ipset, parse_prefix
from .packet import Packet
from .ports import PortRange, parse_ports
from .proto import PROTOCOLS, parse_protocol, protocol_name

__all__ = [
    "PROTOCOLS",
    "IPRange",
    "IPSet",
    "Packet",
    "PortRange",
    "parse_ip",
    "parse_ipset",
    "parse_ports",
    "parse_prefix",
    "parse_protocol",
    "protocol_name",
]
