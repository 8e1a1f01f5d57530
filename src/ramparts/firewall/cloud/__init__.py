"""Cloud firewalls with AWS semantics: security groups and network ACLs (model.py), the
topology that places them on subnets and instances (topology.py), the trace of one
connection through them (trace.py) and the checks of a whole topology (lint.py)."""

from .model import (
    AclEntry,
    Direction,
    NetworkAcl,
    Origin,
    Policies,
    SecurityGroup,
    SgRule,
    Traffic,
    acl_ruleset,
    security_group_ruleset,
)
from .topology import Instance, Subnet, Topology, load_topology, parse_topology
from .trace import Endpoint, Hop, TraceResult, trace

__all__ = [
    "AclEntry",
    "Direction",
    "Endpoint",
    "Hop",
    "Instance",
    "NetworkAcl",
    "Origin",
    "Policies",
    "SecurityGroup",
    "SgRule",
    "Subnet",
    "Topology",
    "TraceResult",
    "Traffic",
    "acl_ruleset",
    "load_topology",
    "parse_topology",
    "security_group_ruleset",
    "trace",
]
