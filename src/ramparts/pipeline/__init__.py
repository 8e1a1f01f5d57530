"""The phase chain: per-request context, Continue/Respond results, routing and templates."""

from .context import Context
from .phases import Chain, RequestPhase, Respond, ResponsePhase
from .router import HostRouter, LocationMatcher, parse_location
from .template import Template

__all__ = [
    "Chain",
    "Context",
    "HostRouter",
    "LocationMatcher",
    "RequestPhase",
    "Respond",
    "ResponsePhase",
    "Template",
    "parse_location",
]
