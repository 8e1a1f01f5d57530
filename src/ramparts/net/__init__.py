"""Network value types: IP ranges and sets (v4 and v6), port ranges, protocols, packets.
Pure values, no sockets, and their set algebra (intersection, complement, merging)."""

from .addr import IPRange, IPSet, parse_ip, parse_ipset, parse_prefix
from .intervals import complement_intervals, merge_intervals
from .packet import Packet, meet_tcp_flags
from .ports import PortRange, complement_ports, intersect_ports, merge_ports, parse_ports
from .proto import PROTOCOLS, parse_protocol, protocol_name

__all__ = [
    "PROTOCOLS",
    "IPRange",
    "IPSet",
    "Packet",
    "PortRange",
    "complement_intervals",
    "complement_ports",
    "intersect_ports",
    "meet_tcp_flags",
    "merge_intervals",
    "merge_ports",
    "parse_ip",
    "parse_ipset",
    "parse_ports",
    "parse_prefix",
    "parse_protocol",
    "protocol_name",
]
