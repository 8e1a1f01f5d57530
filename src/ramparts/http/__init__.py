"""Sans-IO HTTP/1.1: the request head as judged, path normalisation, header rules,
status lines. No sockets, no event loop."""

from .headers import HOP_BY_HOP, Headers, connection_tokens, strip_hop_by_hop
from .path import normalize_path, split_target
from .request import Request, parse_head, parse_host
from .status import reason, status_line

__all__ = [
    "HOP_BY_HOP",
    "Headers",
    "Request",
    "connection_tokens",
    "normalize_path",
    "parse_head",
    "parse_host",
    "reason",
    "split_target",
    "status_line",
    "strip_hop_by_hop",
]
