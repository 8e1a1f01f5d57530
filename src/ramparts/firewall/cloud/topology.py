"""The topology file: subnets with their network ACL, instances with their addresses and
security groups, and the groups and ACLs themselves, written inline or read from AWS
JSON (describe-security-groups / describe-network-acls) or Terraform files named under
``sources``. Everything is resolved and checked at load: a reference to a group, ACL or
subnet that does not exist, an address outside its subnet, two ACLs on one subnet, are
errors with the file and line; a topology loads whole or not at all.

The format is documented in docs/cloud.md.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from ...config.loader import LineMap, load_yaml, read_file
from ...errors import ConfigError
from ...net.addr import IPRange, IPSet, parse_ip, parse_prefix
from ...net.ports import PortRange
from ...net.proto import parse_protocol, protocol_name
from ..model import Action
from .model import (
    ACL_RULE_MAX,
    AclEntry,
    Direction,
    NetworkAcl,
    Origin,
    Policies,
    SecurityGroup,
    SgRule,
    acl_traffic,
    default_acl,
    sg_traffic,
)

__all__ = ["Instance", "Subnet", "Topology", "load_topology", "parse_topology"]

T = TypeVar("T")
# YAML 1.1 reads 22:45 as the base-60 integer 1365.
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-9_]+)+")
Loc = tuple[str | int, ...]

TOP_KEYS = (
    "description",
    "sources",
    "prefix_lists",
    "security_groups",
    "network_acls",
    "subnets",
    "instances",
)
SOURCE_KEYS = ("path", "format")
SG_KEYS = ("id", "name", "description", "ingress", "egress")
SG_RULE_KEYS = (
    "proto",
    "ports",
    "icmp_type",
    "icmp_code",
    "cidr",
    "groups",
    "self",
    "prefix_lists",
    "description",
)
ACL_KEYS = ("id", "name", "ingress", "egress")
ACL_ENTRY_KEYS = ("rule", "action", "proto", "ports", "icmp_type", "icmp_code", "cidr", "comment")
SUBNET_KEYS = ("cidr", "nacl", "id")
INSTANCE_KEYS = ("address", "subnet", "security_groups", "listening")


@dataclass(frozen=True, slots=True)
class Subnet:
    """A subnet: its address blocks and the one network ACL that guards its boundary."""

    name: str
    cidrs: tuple[IPRange, ...]
    acl: NetworkAcl
    origin: Origin
    id: str | None = None

    def contains(self, version: int, addr: int) -> bool:
        return any(r.contains(version, addr) for r in self.cidrs)


@dataclass(frozen=True, slots=True)
class Instance:
    """An instance (its network interface): addresses as (version, integer), its subnet,
    its security groups (a union), and, when the topology says, the ports it listens on
    as (protocol, port); None means not said (the trace then assumes it answers)."""

    name: str
    addresses: tuple[tuple[int, int], ...]
    subnet: Subnet
    groups: tuple[SecurityGroup, ...]
    origin: Origin
    listening: frozenset[tuple[int, int]] | None = None

    def address(self, version: int) -> int | None:
        return next((a for v, a in self.addresses if v == version), None)

    def listens(self, proto: int, port: int) -> bool | None:
        return None if self.listening is None else (proto, port) in self.listening


@dataclass(frozen=True, slots=True)
class Topology:
    """A resolved topology; it is the PeerResolver of its security groups' rules."""

    file: str
    subnets: tuple[Subnet, ...]
    instances: tuple[Instance, ...]
    security_groups: tuple[SecurityGroup, ...]
    network_acls: tuple[NetworkAcl, ...]
    prefix_lists: dict[str, IPSet] = field(default_factory=dict, compare=False)
    # Things worth saying that are not errors (a rule referring to a group no instance
    # here belongs to, ...), each with where it was written.
    notes: tuple[tuple[Origin, str], ...] = ()

    def instance(self, name: str) -> Instance | None:
        return next((i for i in self.instances if i.name == name), None)

    def instance_at(self, version: int, addr: int) -> Instance | None:
        return next((i for i in self.instances if (version, addr) in i.addresses), None)

    def subnet_at(self, version: int, addr: int) -> Subnet | None:
        return next((s for s in self.subnets if s.contains(version, addr)), None)

    def find_group(self, ref: str) -> list[SecurityGroup]:
        return _find(self.security_groups, ref)

    def group_members(self, ref: str, origin: Origin) -> IPSet:
        """The addresses of the instances that have the group ``ref`` (none if no
        instance of this topology has it)."""
        found = self.find_group(ref)
        if len(found) > 1:
            raise origin.error(_ambiguous(ref, found))
        if not found:
            return IPSet([])
        key = found[0].key
        return IPSet(
            IPRange(v, a, a)
            for i in self.instances
            if any(g.key == key for g in i.groups)
            for v, a in i.addresses
        )

    def prefix_list(self, ref: str, origin: Origin) -> IPSet:
        if ref not in self.prefix_lists:
            raise origin.error(
                f"prefix list {ref} is not defined in the topology: list its CIDR blocks "
                "under prefix_lists (aws ec2 get-managed-prefix-list-entries)"
            )
        return self.prefix_lists[ref]


P = TypeVar("P", SecurityGroup, NetworkAcl)


def _find(items: Sequence[P], ref: str) -> list[P]:
    """The groups (or ACLs) ``ref`` names: the one with that key, else those with that
    name or alias."""
    exact = [p for p in items if p.key == ref]
    if exact:
        return exact
    return [p for p in items if ref == p.name or ref in p.aliases]


def _ambiguous(ref: str, found: Sequence[SecurityGroup | NetworkAcl]) -> str:
    names = ", ".join(f"{p.key} ({p.origin})" for p in found)
    return f"{ref!r} is ambiguous: it names {names}; refer to it by its id"


def load_topology(path: str | Path) -> Topology:
    """The topology in the YAML file ``path``; sources are read relative to its folder."""
    return read_file(path, parse_topology)


def parse_topology(text: str, file: str) -> Topology:
    """A topology from YAML text (``file`` names it in errors and anchors ``sources``)."""
    data, lines = load_yaml(text, file)
    if data is None:
        raise ConfigError("the file is empty (it needs subnets and instances)", file=file, line=1)
    if not isinstance(data, dict):
        raise lines.error((), "the top level must be a mapping (subnets, instances, ...)")
    if "SecurityGroups" in data or "NetworkAcls" in data:
        raise lines.error(
            (),
            "this is AWS JSON, not a topology: name it under `sources:` of a topology file "
            "that places the subnets and instances (docs/cloud.md)",
        )
    return _Reader(data, lines, Path(file).parent, text.splitlines()).topology()


class _Reader:
    """One pass over a topology document; each method reads one section."""

    def __init__(self, data: dict[str, Any], lines: LineMap, base: Path, source: list[str]) -> None:
        self.data = data
        self.lines = lines
        self.source = source
        self.base = base
        self.file = lines.file
        self.notes: list[tuple[Origin, str]] = []

    def origin(self, loc: Loc) -> Origin:
        return Origin(self.file, self.lines.where(loc)[0])

    def error(self, loc: Loc, reason: str) -> ConfigError:
        return self.lines.error(loc, reason)

    def topology(self) -> Topology:
        _check_keys(self.data, (), TOP_KEYS, self.lines)
        groups: list[SecurityGroup] = []
        acls: list[NetworkAcl] = []
        for source in self._sources():
            groups += source.security_groups
            acls += source.network_acls
        groups += self._inline_groups()
        acls += self._inline_acls()
        self._unique(groups, "security group")
        self._unique(acls, "network ACL")
        prefix_lists = self._prefix_lists()
        self._check_group_refs(groups)
        subnets = self._subnets(acls)
        instances = self._instances(subnets, groups)
        topo = Topology(
            self.file,
            tuple(subnets),
            tuple(instances),
            tuple(groups),
            tuple(acls),
            prefix_lists,
        )
        for g in groups:
            for d in Direction:
                for r in g.rules(d):
                    if r.prefix_list is not None:
                        topo.prefix_list(r.prefix_list, r.origin)  # refuse an unknown one now
                    elif r.group is not None and not topo.group_members(r.group, r.origin):
                        self.notes.append(
                            (
                                r.origin,
                                f"{g.label} {d.value} allows {r.peer_text()}, but no "
                                "instance of this topology is a member: it matches nothing here",
                            )
                        )
        return replace(topo, notes=tuple(self.notes))

    # -- sources -------------------------------------------------------------------------

    def _sources(self) -> list[Policies]:
        items = self.data.get("sources")
        if items is None:
            return []
        if not isinstance(items, list):
            raise self.error(("sources",), "must be a list of files (AWS JSON or Terraform)")
        out: list[Policies] = []
        for i, item in enumerate(items):
            loc: Loc = ("sources", i)
            fmt: str | None = None
            if isinstance(item, dict):
                _check_keys(item, loc, SOURCE_KEYS, self.lines)
                if "path" not in item:
                    raise self.error(loc, "a source needs a `path`")
                raw, fmt = item["path"], item.get("format")
                if fmt is not None and fmt not in ("aws", "terraform"):
                    raise self.error((*loc, "format"), f"format is aws or terraform, not {fmt!r}")
                loc = (*loc, "path")
            else:
                raw = item
            if not isinstance(raw, str) or not raw.strip():
                raise self.error(loc, "a source is a file or directory path")
            path = Path(os.path.normpath(self.base / raw))
            out.append(self._read_source(path, fmt, loc))
        return out

    def _read_source(self, path: Path, fmt: str | None, loc: Loc) -> Policies:
        from ..formats.aws import read_aws
        from ..formats.terraform import read_terraform

        if not path.exists():
            raise self.error(loc, f"{path} does not exist")
        if fmt is None:
            if path.is_dir() or path.suffix.lower() == ".tf":
                fmt = "terraform"
            elif path.suffix.lower() == ".json":
                fmt = "aws"
            else:
                raise self.error(
                    loc, f"cannot tell the format of {path}: add `format: aws` or `terraform`"
                )
        return read_aws(path) if fmt == "aws" else read_terraform(path)

    def _unique(self, items: Sequence[SecurityGroup] | Sequence[NetworkAcl], what: str) -> None:
        seen: dict[str, Origin] = {}
        for p in items:
            if p.key in seen:
                raise p.origin.error(f"{what} {p.key} is defined twice (also at {seen[p.key]})")
            seen[p.key] = p.origin

    # -- prefix lists --------------------------------------------------------------------

    def _prefix_lists(self) -> dict[str, IPSet]:
        data = self._mapping("prefix_lists")
        out: dict[str, IPSet] = {}
        for name, value in data.items():
            loc: Loc = ("prefix_lists", name)
            items = value if isinstance(value, list) else [value]
            ranges = [
                self._convert((*loc, i) if isinstance(value, list) else loc, v, _cidr)
                for i, v in enumerate(items)
            ]
            if not ranges:
                raise self.error(loc, "a prefix list needs at least one CIDR block")
            out[str(name)] = IPSet(ranges)
        return out

    # -- security groups -----------------------------------------------------------------

    def _inline_groups(self) -> list[SecurityGroup]:
        out: list[SecurityGroup] = []
        for key, body in self._mapping("security_groups").items():
            loc: Loc = ("security_groups", key)
            if not isinstance(body, dict):
                raise self.error(loc, "a security group is a mapping (ingress, egress, ...)")
            _check_keys(body, loc, SG_KEYS, self.lines)
            name = self._text(loc, body, "name") or str(key)
            gid = self._text(loc, body, "id")
            rules: dict[Direction, list[SgRule]] = {d: [] for d in Direction}
            for d in Direction:
                items = body.get(d.value, [])
                if not isinstance(items, list):
                    raise self.error((*loc, d.value), "must be a list of rules ([] for none)")
                for i, item in enumerate(items):
                    rules[d] += self._sg_rule(item, (*loc, d.value, i), d, str(key))
            out.append(
                SecurityGroup(
                    str(key),
                    name,
                    tuple(rules[Direction.INGRESS]),
                    tuple(rules[Direction.EGRESS]),
                    self.origin(loc),
                    description=self._text(loc, body, "description") or "",
                    aliases=tuple(a for a in (gid,) if a),
                )
            )
        return out

    def _sg_rule(self, item: Any, loc: Loc, direction: Direction, own: str) -> list[SgRule]:
        if not isinstance(item, dict):
            raise self.error(loc, "a rule is a mapping (proto, ports, cidr, ...)")
        _check_keys(item, loc, SG_RULE_KEYS, self.lines)
        proto = self._proto(loc, item)
        ports = self._ports(loc, item, proto)
        try:
            if proto in (1, 58):
                # FromPort/ToPort of AWS: type and code, -1 (here also: left out) for all
                kind, code = self._icmp_pair(loc, item)
                traffic = sg_traffic(
                    proto, -1 if kind is None else kind, -1 if code is None else code
                )
            elif ports is not None:
                traffic = sg_traffic(proto, ports.lo, ports.hi)
            else:
                traffic = sg_traffic(proto, None, None)
        except ValueError as exc:
            raise self.error(loc, str(exc)) from None
        origin = self.origin(loc)
        description = self._text(loc, item, "description") or ""
        made: list[SgRule] = []
        for i, cidr in enumerate(self._list(loc, item, "cidr")):
            where = (*loc, "cidr", i) if isinstance(item["cidr"], list) else (*loc, "cidr")
            made.append(
                SgRule(
                    direction,
                    traffic,
                    origin,
                    cidr=self._convert(where, cidr, _cidr),
                    description=description,
                )
            )
        for ref in self._list(loc, item, "groups"):
            made.append(
                SgRule(
                    direction, traffic, origin, group=self._name(loc, ref), description=description
                )
            )
        if "self" in item:
            if not isinstance(item["self"], bool):
                raise self.error((*loc, "self"), "self is true or false")
            if item["self"]:
                made.append(SgRule(direction, traffic, origin, group=own, description=description))
        for ref in self._list(loc, item, "prefix_lists"):
            made.append(
                SgRule(
                    direction,
                    traffic,
                    origin,
                    prefix_list=self._name(loc, ref),
                    description=description,
                )
            )
        if not made:
            raise self.error(loc, "the rule names no peer: give cidr, groups, self or prefix_lists")
        return made

    def _check_group_refs(self, groups: Sequence[SecurityGroup]) -> None:
        """References written inline must name a group; those from AWS or Terraform may
        name a group outside the topology (another account, a peered VPC)."""
        for g in groups:
            for d in Direction:
                for r in g.rules(d):
                    if r.group is None:
                        continue
                    found = _find(groups, r.group)
                    if len(found) > 1:
                        raise r.origin.error(_ambiguous(r.group, found))
                    if not found and r.origin.file == self.file:
                        raise r.origin.error(
                            f"no security group {r.group!r}" + _suggest(r.group, groups)
                        )

    # -- network ACLs --------------------------------------------------------------------

    def _inline_acls(self) -> list[NetworkAcl]:
        out: list[NetworkAcl] = []
        for key, body in self._mapping("network_acls").items():
            loc: Loc = ("network_acls", key)
            if not isinstance(body, dict):
                raise self.error(loc, "a network ACL is a mapping (ingress, egress, ...)")
            _check_keys(body, loc, ACL_KEYS, self.lines)
            entries: list[AclEntry] = []
            for d in Direction:
                items = body.get(d.value, [])
                if not isinstance(items, list):
                    raise self.error((*loc, d.value), "must be a list of entries ([] for none)")
                entries += [self._acl_entry(e, (*loc, d.value, i), d) for i, e in enumerate(items)]
            acl_id = self._text(loc, body, "id")
            out.append(
                NetworkAcl.of(
                    str(key),
                    self._text(loc, body, "name") or str(key),
                    entries,
                    self.origin(loc),
                    aliases=[a for a in (acl_id,) if a],
                )
            )
        return out

    def _acl_entry(self, item: Any, loc: Loc, direction: Direction) -> AclEntry:
        if not isinstance(item, dict):
            raise self.error(loc, "an entry is a mapping (rule, action, proto, ports, cidr)")
        _check_keys(item, loc, ACL_ENTRY_KEYS, self.lines)
        for key in ("rule", "action", "proto", "cidr"):
            if key not in item:
                raise self.error(loc, f"the entry has no `{key}`")
        number = self._convert((*loc, "rule"), item["rule"], _rule_number)
        action = self._convert((*loc, "action"), item["action"], _acl_action)
        proto = self._proto(loc, item)
        ports = self._ports(loc, item, proto)
        icmp = None
        if proto in (1, 58):
            icmp = self._icmp_pair(loc, item)
        try:
            traffic = acl_traffic(proto, None if ports is None else (ports.lo, ports.hi), icmp)
            return AclEntry(
                number,
                direction,
                action,
                traffic,
                self._convert((*loc, "cidr"), item["cidr"], _cidr),
                self.origin(loc),
            )
        except ValueError as exc:
            raise self.error(loc, str(exc)) from None

    # -- subnets and instances -----------------------------------------------------------

    def _subnets(self, acls: Sequence[NetworkAcl]) -> list[Subnet]:
        data = self._mapping("subnets")
        if not data:
            raise self.error((), "`subnets` is missing or empty: a topology needs a subnet")
        out: list[Subnet] = []
        claimed: dict[str, str] = {}
        for name, body in data.items():
            loc: Loc = ("subnets", name)
            if not isinstance(body, dict):
                raise self.error(loc, "a subnet is a mapping (cidr, nacl, id)")
            _check_keys(body, loc, SUBNET_KEYS, self.lines)
            if "cidr" not in body:
                raise self.error(loc, "the subnet has no `cidr`")
            cidrs = [
                self._convert(where, v, _cidr)
                for where, v in self._items((*loc, "cidr"), body["cidr"])
            ]
            sid = self._text(loc, body, "id")
            acl = self._subnet_acl(loc, body, sid, acls)
            for other in out:
                for a in cidrs:
                    if any(
                        a.version == b.version and a.lo <= b.hi and b.lo <= a.hi
                        for b in other.cidrs
                    ):
                        raise self.error(
                            (*loc, "cidr"), f"{a} overlaps subnet {other.name} ({other.origin})"
                        )
            if sid and sid in claimed:
                raise self.error((*loc, "id"), f"subnet id {sid} is also subnet {claimed[sid]}")
            if sid:
                claimed[sid] = str(name)
            out.append(Subnet(str(name), tuple(cidrs), acl, self.origin(loc), sid))
        return out

    def _subnet_acl(
        self, loc: Loc, body: dict[str, Any], sid: str | None, acls: Sequence[NetworkAcl]
    ) -> NetworkAcl:
        # AWS: a subnet is associated with exactly one network ACL.
        associated = [a for a in acls if sid and sid in a.subnets]
        if len(associated) > 1:
            both = ", ".join(f"{a.key} ({a.origin})" for a in associated)
            raise self.error((*loc, "id"), f"subnet {sid} is associated with several ACLs: {both}")
        if "nacl" in body:
            ref = self._name((*loc, "nacl"), body["nacl"])
            found = _find(acls, ref)
            if len(found) > 1:
                raise self.error((*loc, "nacl"), _ambiguous(ref, found))
            if not found:
                raise self.error((*loc, "nacl"), f"no network ACL {ref!r}" + _suggest(ref, acls))
            chosen: NetworkAcl = found[0]
            if associated and associated[0].key != chosen.key:
                other = associated[0]
                raise self.error(
                    (*loc, "nacl"),
                    f"subnet {sid} is associated with {other.key} ({other.origin}), not "
                    f"{chosen.key}: a subnet has exactly one network ACL (drop `nacl` or "
                    "fix the association)",
                )
            return chosen
        if associated:
            return associated[0]
        defaults = [a for a in acls if a.is_default]
        if len(defaults) == 1:
            return defaults[0]
        if len(defaults) > 1:
            both = ", ".join(a.key for a in defaults)
            raise self.error(loc, f"several default ACLs ({both}): name this subnet's with `nacl`")
        return default_acl(self.origin(loc))

    def _instances(
        self, subnets: Sequence[Subnet], groups: Sequence[SecurityGroup]
    ) -> list[Instance]:
        data = self._mapping("instances")
        out: list[Instance] = []
        taken: dict[tuple[int, int], str] = {}
        for name, body in data.items():
            loc: Loc = ("instances", name)
            if not isinstance(body, dict):
                raise self.error(loc, "an instance is a mapping (address, subnet, security_groups)")
            _check_keys(body, loc, INSTANCE_KEYS, self.lines)
            for key in ("address", "security_groups"):
                if key not in body:
                    raise self.error(loc, f"the instance has no `{key}`")
            addresses = [
                self._convert(where, v, _address)
                for where, v in self._items((*loc, "address"), body["address"])
            ]
            for a in addresses:
                if a in taken:
                    raise self.error(
                        (*loc, "address"), f"the address is also instance {taken[a]}'s"
                    )
                taken[a] = str(name)
            subnet = self._instance_subnet(loc, body, addresses, subnets)
            refs = [
                self._name(w, v)
                for w, v in self._items((*loc, "security_groups"), body["security_groups"])
            ]
            if not refs:
                raise self.error(
                    (*loc, "security_groups"), "an instance has at least one security group"
                )
            chosen: list[SecurityGroup] = []
            for where, ref in zip(
                (w for w, _ in self._items((*loc, "security_groups"), body["security_groups"])),
                refs,
                strict=True,
            ):
                found = _find(groups, ref)
                if len(found) > 1:
                    raise self.error(where, _ambiguous(ref, found))
                if not found:
                    raise self.error(where, f"no security group {ref!r}" + _suggest(ref, groups))
                chosen.append(found[0])
            listening = None
            if "listening" in body:
                listening = frozenset(
                    self._convert(w, v, _listen)
                    for w, v in self._items((*loc, "listening"), body["listening"])
                )
            out.append(
                Instance(
                    str(name), tuple(addresses), subnet, tuple(chosen), self.origin(loc), listening
                )
            )
        if not out:
            raise self.error((), "`instances` is missing or empty: a topology needs an instance")
        return out

    def _instance_subnet(
        self,
        loc: Loc,
        body: dict[str, Any],
        addresses: Sequence[tuple[int, int]],
        subnets: Sequence[Subnet],
    ) -> Subnet:
        if "subnet" in body:
            ref = self._name((*loc, "subnet"), body["subnet"])
            subnet = next((s for s in subnets if s.name == ref or s.id == ref), None)
            if subnet is None:
                names = [s.name for s in subnets]
                raise self.error(
                    (*loc, "subnet"), f"no subnet {ref!r}" + _suggest_names(ref, names)
                )
        else:
            v, a = addresses[0]
            found = [s for s in subnets if s.contains(v, a)]
            if not found:
                raise self.error((*loc, "address"), "the address is in no subnet: add `subnet`")
            subnet = found[0]
        for v, a in addresses:
            if not subnet.contains(v, a):
                text = _address_text(v, a)
                blocks = ", ".join(map(str, subnet.cidrs))
                raise self.error(
                    (*loc, "address"), f"{text} is outside subnet {subnet.name} ({blocks})"
                )
        return subnet

    # -- small readers -------------------------------------------------------------------

    def _mapping(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error((key,), "must be a mapping of names to definitions")
        return value

    def _items(self, loc: Loc, value: Any) -> list[tuple[Loc, Any]]:
        if isinstance(value, list):
            return [((*loc, i), v) for i, v in enumerate(value)]
        return [(loc, value)]

    def _list(self, loc: Loc, item: dict[str, Any], key: str) -> list[Any]:
        if key not in item:
            return []
        value = item[key]
        return value if isinstance(value, list) else [value]

    def _convert(self, loc: Loc, value: Any, convert: Callable[[Any], T]) -> T:
        if value is None:
            raise self.error(loc, "has no value")
        try:
            return convert(value)
        except ValueError as exc:
            raise self.error(loc, str(exc)) from None

    def _text(self, loc: Loc, body: dict[str, Any], key: str) -> str | None:
        if key not in body:
            return None
        value = body[key]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error((*loc, key), "must be text")
        return str(value)

    def _name(self, loc: Loc, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
            raise self.error(loc, "must be a name")
        return str(value).strip()

    def _proto(self, loc: Loc, item: dict[str, Any]) -> int | None:
        if "proto" not in item:
            raise self.error(
                loc, "the rule has no `proto` (tcp, udp, icmp, icmpv6, all, or a number)"
            )
        return self._convert((*loc, "proto"), item["proto"], _protocol)

    def _ports(self, loc: Loc, item: dict[str, Any], proto: int | None) -> PortRange | None:
        if proto not in (6, 17):
            if "ports" in item:
                raise self.error(
                    (*loc, "ports"), f"{protocol_name(proto)} has no ports (only tcp and udp)"
                )
            return None
        if "ports" not in item:
            raise self.error(
                loc, f"a {protocol_name(proto)} rule needs `ports` (a port, lo-hi, or all)"
            )
        self._refuse_base60((*loc, "ports"), item["ports"])
        return self._convert((*loc, "ports"), item["ports"], _port_range)

    def _refuse_base60(self, loc: Loc, value: Any) -> None:
        """Catch ``ports: 22:45``, which YAML 1.1 reads as the number 1365."""
        if not isinstance(value, int) or isinstance(value, bool) or loc not in self.lines.positions:
            return
        line, col = self.lines.positions[loc]
        raw = self.source[line - 1][col - 1 :] if 0 < line <= len(self.source) else ""
        found = _SEXAGESIMAL.match(raw.partition(":")[2].strip())
        if found:
            token = found.group()
            raise self.error(
                loc,
                f"YAML reads {token} as the number {value}: write a port range as "
                f"{token.replace(':', '-')} (or quote it)",
            )

    def _icmp_pair(self, loc: Loc, item: dict[str, Any]) -> tuple[int | None, int | None]:
        """``icmp_type`` and ``icmp_code``; None (left out) or -1 is all."""
        kind, code = self._icmp(loc, item, "icmp_type"), self._icmp(loc, item, "icmp_code")
        if kind in (None, -1) and code not in (None, -1):
            raise self.error(
                (*loc, "icmp_code"), "icmp_code needs icmp_type (all types means all codes)"
            )
        return kind, code

    def _icmp(self, loc: Loc, item: dict[str, Any], key: str) -> int | None:
        if key not in item:
            return None
        value = item[key]
        if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= 255:
            raise self.error((*loc, key), "must be a number 0-255 (or -1: all)")
        return value


def _address_text(version: int, addr: int) -> str:
    return str(IPRange(version, addr, addr))


def _check_keys(data: dict[Any, Any], loc: Loc, known: tuple[str, ...], lines: LineMap) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(known)
            raise lines.error((*loc, str(key)), f"unknown key {str(key)!r} ({hint})")


def _suggest(ref: str, items: Sequence[SecurityGroup] | Sequence[NetworkAcl]) -> str:
    names = [p.key for p in items] + [p.name for p in items]
    return _suggest_names(ref, names)


def _suggest_names(ref: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(ref, names, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(sorted(set(names))) or 'none'})"


def _cidr(value: Any) -> IPRange:
    if not isinstance(value, str):
        raise ValueError("a CIDR block is text such as 10.0.0.0/16 (quote IPv6 blocks)")
    if "-" in value and "/" not in value:
        raise ValueError(f"{value!r} is a range: AWS rules take CIDR blocks")
    return parse_prefix(value)


def _address(value: Any) -> tuple[int, int]:
    if not isinstance(value, str):
        raise ValueError("an address is text such as 10.0.1.10")
    try:
        return parse_ip(value)
    except ValueError:
        raise ValueError(f"not an IP address: {value!r}") from None


def _protocol(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("a protocol is tcp, udp, icmp, icmpv6, all, -1 or a number")
    if str(value).strip() == "-1":
        return None
    return parse_protocol(value)


def _port_range(value: Any) -> PortRange:
    if isinstance(value, bool):
        raise ValueError("a port is a number")
    if isinstance(value, int):
        return PortRange(value, value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("all", "any"):
            return PortRange(0, 65535)
        lo, dash, hi = text.partition("-")
        if lo.isdigit() and (not dash or hi.isdigit()):
            return PortRange(int(lo), int(hi) if dash else int(lo))
    raise ValueError(f"a port range is a port, lo-hi or all, not {value!r}")


def _rule_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ACL_RULE_MAX:
        raise ValueError(f"a rule number is 1-{ACL_RULE_MAX}")
    return value


def _acl_action(value: Any) -> Action:
    if isinstance(value, str) and value.strip().lower() in ("allow", "deny"):
        return Action.ACCEPT if value.strip().lower() == "allow" else Action.DROP
    raise ValueError("an entry's action is allow or deny")


def _listen(value: Any) -> tuple[int, int]:
    """``443`` (tcp) or ``udp/53``."""
    proto, port = "tcp", value
    if isinstance(value, str) and "/" in value:
        proto, _, port = value.partition("/")
        port = port.strip()
        if port.isdigit():
            port = int(port)
    number = parse_protocol(proto)
    if number not in (6, 17):
        raise ValueError("a listening port is tcp or udp: 443 or udp/53")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"not a port: {value!r}")
    return number, port
