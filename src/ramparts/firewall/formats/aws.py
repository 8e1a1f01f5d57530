"""AWS JSON in: the output of ``aws ec2 describe-security-groups`` (``{"SecurityGroups":
[...]}``) and ``aws ec2 describe-network-acls`` (``{"NetworkAcls": [...]}``), or one file
holding both keys, read into the cloud model (firewall/cloud/model.py).

Every field AWS documents for these objects is known; a field that changes what a rule
matches and that the model cannot express, an unknown field, or a paginated (partial)
output is refused with the file and line. The JSON is parsed here with the line of every
value kept, so errors and traces point into the file. ``load_aws`` gives one group's or
one ACL's direction as a RuleSet for lint and diff; the syntax of ``select`` is in
docs/cloud.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ...config.loader import LineMap, read_file
from ...errors import ConfigError
from ...net.addr import IPRange, parse_prefix
from ...net.proto import parse_protocol
from ..cloud.model import (
    AclEntry,
    Direction,
    NetworkAcl,
    Origin,
    Policies,
    SecurityGroup,
    SgRule,
    Traffic,
    acl_traffic,
    is_implicit_deny,
    sg_traffic,
)
from ..model import Action, RuleSet

__all__ = ["load_aws", "parse_aws", "read_aws"]

T = TypeVar("T")
Loc = tuple[str | int, ...]

TOP_KEYS = ("SecurityGroups", "NetworkAcls", "ResponseMetadata")
GROUP_KEYS = (
    "Description",
    "GroupName",
    "IpPermissions",
    "OwnerId",
    "GroupId",
    "IpPermissionsEgress",
    "Tags",
    "VpcId",
    "SecurityGroupArn",
)
PERMISSION_KEYS = (
    "FromPort",
    "IpProtocol",
    "IpRanges",
    "Ipv6Ranges",
    "PrefixListIds",
    "ToPort",
    "UserIdGroupPairs",
)
PAIR_KEYS = (
    "Description",
    "GroupId",
    "GroupName",
    "PeeringStatus",
    "UserId",
    "VpcId",
    "VpcPeeringConnectionId",
)
ACL_KEYS = ("Associations", "Entries", "IsDefault", "NetworkAclId", "Tags", "VpcId", "OwnerId")
ENTRY_KEYS = (
    "CidrBlock",
    "Egress",
    "IcmpTypeCode",
    "Ipv6CidrBlock",
    "PortRange",
    "Protocol",
    "RuleAction",
    "RuleNumber",
)
ASSOCIATION_KEYS = ("NetworkAclAssociationId", "NetworkAclId", "SubnetId")


def load_aws(path: Path, select: str | None) -> RuleSet:
    """The rule set ``select`` (``GROUP-OR-ACL:ingress|egress``) of an AWS JSON file."""
    return read_aws(path).ruleset(select)


def read_aws(path: str | Path) -> Policies:
    """Every security group and network ACL of an AWS JSON file."""
    return read_file(path, parse_aws)


def parse_aws(text: str, file: str) -> Policies:
    """Security groups and network ACLs from the text of an AWS JSON file."""
    data, lines = parse_json(text, file)
    if not isinstance(data, dict):
        raise lines.error((), 'expected the AWS CLI\'s JSON object ({"SecurityGroups": [...]})')
    if "NextToken" in data:
        raise lines.error(
            ("NextToken",),
            "this is one page of a paginated output: rerun the command without "
            "--max-items/--no-paginate so the file holds every item",
        )
    reader = _Reader(lines)
    reader.keys(data, (), TOP_KEYS)
    if "SecurityGroups" not in data and "NetworkAcls" not in data:
        raise lines.error((), "no SecurityGroups and no NetworkAcls in this file")
    groups = [
        reader.group(g, ("SecurityGroups", i))
        for i, g in enumerate(reader.array(data, (), "SecurityGroups"))
    ]
    acls = [
        reader.acl(a, ("NetworkAcls", i))
        for i, a in enumerate(reader.array(data, (), "NetworkAcls"))
    ]
    for kind, items in (("security group", groups), ("network ACL", acls)):
        seen: dict[str, Origin] = {}
        for p in items:
            if p.key in seen:
                raise p.origin.error(f"{kind} {p.key} appears twice (also at {seen[p.key]})")
            seen[p.key] = p.origin
    return Policies(file, tuple(groups), tuple(acls))


class _Reader:
    """Typed access to the parsed JSON, each failure located by the line map."""

    def __init__(self, lines: LineMap) -> None:
        self.lines = lines

    def origin(self, loc: Loc) -> Origin:
        return Origin(self.lines.file, self.lines.where(loc)[0])

    def keys(self, obj: dict[str, Any], loc: Loc, known: tuple[str, ...]) -> None:
        for key in obj:
            if key not in known:
                raise self.lines.error(
                    (*loc, key), f"unknown field {key!r} (known: {', '.join(known)})"
                )

    def obj(self, value: Any, loc: Loc, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.lines.error(loc, f"{what} must be a JSON object")
        return value

    def array(self, obj: dict[str, Any], loc: Loc, key: str) -> list[Any]:
        value = obj.get(key, [])
        if not isinstance(value, list):
            raise self.lines.error((*loc, key), "must be a list")
        return value

    def get(
        self, obj: dict[str, Any], loc: Loc, key: str, kind: type[T], required: bool = False
    ) -> T | None:
        if key not in obj:
            if required:
                raise self.lines.error(loc, f"{key} is missing")
            return None
        value = obj[key]
        if isinstance(value, bool) and kind is not bool:
            value = None
        if not isinstance(value, kind):
            raise self.lines.error((*loc, key), f"{key} must be a {kind.__name__}")
        return value

    def convert(self, loc: Loc, convert: Callable[[], T]) -> T:
        try:
            return convert()
        except ValueError as exc:
            raise self.lines.error(loc, str(exc)) from None

    # -- security groups -----------------------------------------------------------------

    def group(self, value: Any, loc: Loc) -> SecurityGroup:
        g = self.obj(value, loc, "a security group")
        self.keys(g, loc, GROUP_KEYS)
        gid = self.get(g, loc, "GroupId", str, required=True)
        assert gid is not None
        name = self.get(g, loc, "GroupName", str) or gid
        rules: dict[Direction, list[SgRule]] = {d: [] for d in Direction}
        for d, key in (
            (Direction.INGRESS, "IpPermissions"),
            (Direction.EGRESS, "IpPermissionsEgress"),
        ):
            for i, perm in enumerate(self.array(g, loc, key)):
                rules[d] += self.permission(perm, (*loc, key, i), d)
        tag = _name_tag(self, g, loc)
        return SecurityGroup(
            gid,
            name,
            tuple(rules[Direction.INGRESS]),
            tuple(rules[Direction.EGRESS]),
            self.origin(loc),
            description=self.get(g, loc, "Description", str) or "",
            vpc_id=self.get(g, loc, "VpcId", str),
            aliases=tuple(a for a in (name, tag) if a and a != gid),
        )

    def permission(self, value: Any, loc: Loc, direction: Direction) -> list[SgRule]:
        p = self.obj(value, loc, "a permission")
        self.keys(p, loc, PERMISSION_KEYS)
        proto_text = self.get(p, loc, "IpProtocol", str, required=True)
        assert proto_text is not None
        proto = self.convert((*loc, "IpProtocol"), lambda: _protocol(proto_text))
        lo = self.get(p, loc, "FromPort", int)
        hi = self.get(p, loc, "ToPort", int)
        traffic = self.convert(loc, lambda: sg_traffic(proto, lo, hi))
        made: list[SgRule] = []
        peers = (
            ("IpRanges", "CidrIp", ("CidrIp", "Description")),
            ("Ipv6Ranges", "CidrIpv6", ("CidrIpv6", "Description")),
            ("PrefixListIds", "PrefixListId", ("PrefixListId", "Description")),
            ("UserIdGroupPairs", "GroupId", PAIR_KEYS),
        )
        for key, field, known in peers:
            for i, item in enumerate(self.array(p, loc, key)):
                where = (*loc, key, i)
                made.append(self.peer(item, where, key, field, known, direction, traffic))
        if not made:
            raise self.lines.error(
                loc,
                "the permission names no peer (IpRanges, Ipv6Ranges, PrefixListIds, "
                "UserIdGroupPairs): it allows nothing",
            )
        return made

    def peer(
        self,
        value: Any,
        loc: Loc,
        key: str,
        field: str,
        known: tuple[str, ...],
        direction: Direction,
        traffic: Traffic,
    ) -> SgRule:
        item = self.obj(value, loc, f"an item of {key}")
        self.keys(item, loc, known)
        description = self.get(item, loc, "Description", str) or ""
        origin = self.origin(loc)
        if key == "UserIdGroupPairs":
            ref = self.get(item, loc, "GroupId", str) or self.get(item, loc, "GroupName", str)
            if not ref:
                raise self.lines.error(loc, "a group pair needs GroupId (or GroupName)")
            return SgRule(direction, traffic, origin, group=ref, description=description)
        text = self.get(item, loc, field, str, required=True)
        assert text is not None
        if key == "PrefixListIds":
            return SgRule(direction, traffic, origin, prefix_list=text, description=description)
        version = 4 if key == "IpRanges" else 6
        cidr = self.convert((*loc, field), lambda: _cidr(text, version))
        return SgRule(direction, traffic, origin, cidr=cidr, description=description)

    # -- network ACLs --------------------------------------------------------------------

    def acl(self, value: Any, loc: Loc) -> NetworkAcl:
        a = self.obj(value, loc, "a network ACL")
        self.keys(a, loc, ACL_KEYS)
        acl_id = self.get(a, loc, "NetworkAclId", str, required=True)
        assert acl_id is not None
        entries = [
            e
            for i, item in enumerate(self.array(a, loc, "Entries"))
            if (e := self.entry(item, (*loc, "Entries", i))) is not None
        ]
        subnets: list[str] = []
        for i, item in enumerate(self.array(a, loc, "Associations")):
            where = (*loc, "Associations", i)
            assoc = self.obj(item, where, "an association")
            self.keys(assoc, where, ASSOCIATION_KEYS)
            sid = self.get(assoc, where, "SubnetId", str, required=True)
            assert sid is not None
            subnets.append(sid)
        tag = _name_tag(self, a, loc)
        return NetworkAcl.of(
            acl_id,
            tag or acl_id,
            entries,
            self.origin(loc),
            is_default=bool(self.get(a, loc, "IsDefault", bool)),
            vpc_id=self.get(a, loc, "VpcId", str),
            subnets=subnets,
            aliases=[t for t in (tag,) if t],
        )

    def entry(self, value: Any, loc: Loc) -> AclEntry | None:
        """One entry, or None for the implicit ``*`` deny (the ACL's default)."""
        e = self.obj(value, loc, "an ACL entry")
        self.keys(e, loc, ENTRY_KEYS)
        number = self.get(e, loc, "RuleNumber", int, required=True)
        assert number is not None
        egress = self.get(e, loc, "Egress", bool, required=True)
        action_text = self.get(e, loc, "RuleAction", str, required=True)
        if action_text not in ("allow", "deny"):
            raise self.lines.error((*loc, "RuleAction"), "RuleAction is allow or deny")
        action = Action.ACCEPT if action_text == "allow" else Action.DROP
        proto_text = self.get(e, loc, "Protocol", str, required=True)
        assert proto_text is not None
        proto = self.convert((*loc, "Protocol"), lambda: _protocol(proto_text))
        ports = icmp = None
        if "PortRange" in e:
            pr = self.obj(e["PortRange"], (*loc, "PortRange"), "PortRange")
            self.keys(pr, (*loc, "PortRange"), ("From", "To"))
            where = (*loc, "PortRange")
            ports = (self.get(pr, where, "From", int), self.get(pr, where, "To", int))
        if "IcmpTypeCode" in e:
            ic = self.obj(e["IcmpTypeCode"], (*loc, "IcmpTypeCode"), "IcmpTypeCode")
            self.keys(ic, (*loc, "IcmpTypeCode"), ("Code", "Type"))
            where = (*loc, "IcmpTypeCode")
            icmp = (self.get(ic, where, "Type", int), self.get(ic, where, "Code", int))
        v4 = self.get(e, loc, "CidrBlock", str)
        v6 = self.get(e, loc, "Ipv6CidrBlock", str)
        if (v4 is None) == (v6 is None):
            raise self.lines.error(loc, "an entry has exactly one of CidrBlock and Ipv6CidrBlock")
        field = "CidrBlock" if v4 is not None else "Ipv6CidrBlock"
        text = v4 if v4 is not None else v6
        assert text is not None
        cidr = self.convert((*loc, field), lambda: _cidr(text, 4 if v4 is not None else 6))
        traffic = self.convert(loc, lambda: acl_traffic(proto, ports, icmp))
        if is_implicit_deny(number, action, traffic, cidr):
            return None
        direction = Direction.EGRESS if egress else Direction.INGRESS
        return self.convert(
            (*loc, "RuleNumber"),
            lambda: AclEntry(number, direction, action, traffic, cidr, self.origin(loc)),
        )


def _name_tag(reader: _Reader, obj: dict[str, Any], loc: Loc) -> str | None:
    for i, tag in enumerate(reader.array(obj, loc, "Tags")):
        t = reader.obj(tag, (*loc, "Tags", i), "a tag")
        if t.get("Key") == "Name" and isinstance(t.get("Value"), str) and t["Value"]:
            value: str = t["Value"]
            return value
    return None


def _protocol(text: str) -> int | None:
    if text.strip() == "-1":
        return None
    number = parse_protocol(text)
    if number is None:
        raise ValueError(f"unknown protocol {text!r}")
    return number


def _cidr(text: str, version: int) -> IPRange:
    r = parse_prefix(text)
    if r.version != version or "/" not in text:
        want = "an IPv4" if version == 4 else "an IPv6"
        raise ValueError(f"{text!r} is not {want} CIDR block")
    return r


# -- JSON with the line of every value ---------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\.)*"')
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?")
_SPACE = re.compile(r"[ \t\n\r]*")
_LITERALS = {"true": True, "false": False, "null": None}


def parse_json(text: str, file: str) -> tuple[Any, LineMap]:
    """Parse JSON text into plain data and a line map (path -> line, column) as the YAML
    loader gives; a syntax error, a duplicate key or trailing text is a ConfigError."""
    return _Json(text, file).document()


class _Json:
    def __init__(self, text: str, file: str) -> None:
        self.text = text.removeprefix("\ufeff")
        self.lines = LineMap(file)
        self.starts = [0] + [m.end() for m in re.finditer("\n", self.text)]

    def where(self, i: int) -> tuple[int, int]:
        lo, hi = 0, len(self.starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.starts[mid] <= i:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, i - self.starts[lo] + 1

    def fail(self, i: int, reason: str) -> ConfigError:
        line, col = self.where(i)
        return ConfigError(reason, file=self.lines.file, line=line, column=col)

    def skip(self, i: int) -> int:
        m = _SPACE.match(self.text, i)
        return m.end() if m else i

    def document(self) -> tuple[Any, LineMap]:
        i = self.skip(0)
        if i >= len(self.text):
            raise self.fail(i, "the file is empty")
        value, i = self.value(i, ())
        i = self.skip(i)
        if i < len(self.text):
            raise self.fail(i, "text after the end of the JSON value")
        return value, self.lines

    def value(self, i: int, loc: Loc) -> tuple[Any, int]:
        self.lines.positions.setdefault(loc, self.where(i))
        c = self.text[i : i + 1]
        if c == "{":
            return self.object(i + 1, loc)
        if c == "[":
            return self.array(i + 1, loc)
        if c == '"':
            return self.string(i)
        for word, val in _LITERALS.items():
            if self.text.startswith(word, i):
                return val, i + len(word)
        m = _NUMBER.match(self.text, i)
        if m is None or m.end() == i:
            raise self.fail(i, "expected a JSON value")
        number = m.group()
        return (float(number) if m.group(1) or m.group(2) else int(number)), m.end()

    def string(self, i: int) -> tuple[str, int]:
        m = _STRING.match(self.text, i)
        if m is None:
            raise self.fail(i, "an unterminated string (or a control character in it)")
        try:
            value: str = json.loads(m.group())
        except json.JSONDecodeError as exc:
            raise self.fail(i + exc.pos, f"a bad string: {exc.msg}") from None
        return value, m.end()

    def object(self, i: int, loc: Loc) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        i = self.skip(i)
        if self.text.startswith("}", i):
            return out, i + 1
        while True:
            if not self.text.startswith('"', i):
                raise self.fail(i, "expected a quoted key")
            start = i
            key, i = self.string(i)
            if key in out:
                raise self.fail(start, f"duplicate key {key!r}")
            self.lines.positions[(*loc, key)] = self.where(start)
            i = self.skip(i)
            if not self.text.startswith(":", i):
                raise self.fail(i, "expected ':' after a key")
            i = self.skip(i + 1)
            out[key], i = self.value(i, (*loc, key))
            i = self.skip(i)
            if self.text.startswith("}", i):
                return out, i + 1
            if not self.text.startswith(",", i):
                raise self.fail(i, "expected ',' or '}'")
            i = self.skip(i + 1)

    def array(self, i: int, loc: Loc) -> tuple[list[Any], int]:
        out: list[Any] = []
        i = self.skip(i)
        if self.text.startswith("]", i):
            return out, i + 1
        while True:
            item, i = self.value(i, (*loc, len(out)))
            out.append(item)
            i = self.skip(i)
            if self.text.startswith("]", i):
                return out, i + 1
            if not self.text.startswith(",", i):
                raise self.fail(i, "expected ',' or ']'")
            i = self.skip(i + 1)
