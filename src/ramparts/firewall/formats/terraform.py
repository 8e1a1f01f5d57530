"""Terraform in: the AWS security group and network ACL resources of a ``.tf`` file or of
a directory of them (one module), read with python-hcl2 into the cloud model.

Read: ``aws_security_group`` and ``aws_default_security_group`` (inline ``ingress`` /
``egress`` blocks), ``aws_security_group_rule``, ``aws_vpc_security_group_ingress_rule``
and ``_egress_rule``, ``aws_network_acl`` and ``aws_default_network_acl`` (inline
blocks), ``aws_network_acl_rule`` and ``aws_network_acl_association``. Other resources
are not firewall rules and are passed over.

Values are literals, ``var.NAME`` of a ``variable`` block with a literal ``default``
(ramparts reads no .tfvars), templates made of those, and references to resources of
these files (``aws_security_group.web.id``). Anything else (locals, data sources,
functions, ``count``/``for_each``, ``dynamic`` blocks, modules) is refused with the
file, line and expression, as is a field the model cannot express and a group that
mixes inline rules with rule resources (Terraform then rewrites its rules on every
apply). As Terraform does, a group has only the egress rules written (it removes AWS's
default allow-all egress rule).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    sg_traffic,
)
from ..model import Action, RuleSet

if TYPE_CHECKING:
    from hcl2.rules.base import BlockRule

__all__ = ["load_terraform", "parse_terraform", "read_terraform"]

SG_TYPES = ("aws_security_group", "aws_default_security_group")
ACL_TYPES = ("aws_network_acl", "aws_default_network_acl")
READ_TYPES = (
    *SG_TYPES,
    *ACL_TYPES,
    "aws_security_group_rule",
    "aws_vpc_security_group_ingress_rule",
    "aws_vpc_security_group_egress_rule",
    "aws_network_acl_rule",
    "aws_network_acl_association",
)
# Meta-arguments and fields with no effect on what passes.
_INERT = ("provider", "depends_on", "lifecycle", "timeouts", "tags", "tags_all")
_REFUSED_META = ("count", "for_each")

SG_FIELDS = (
    "name",
    "name_prefix",
    "description",
    "vpc_id",
    "revoke_rules_on_delete",
    "ingress",
    "egress",
)
INLINE_SG_RULE = (
    "from_port",
    "to_port",
    "protocol",
    "cidr_blocks",
    "ipv6_cidr_blocks",
    "prefix_list_ids",
    "security_groups",
    "self",
    "description",
)
SG_RULE_FIELDS = (
    "type",
    "security_group_id",
    "from_port",
    "to_port",
    "protocol",
    "cidr_blocks",
    "ipv6_cidr_blocks",
    "prefix_list_ids",
    "source_security_group_id",
    "self",
    "description",
)
VPC_SG_RULE_FIELDS = (
    "security_group_id",
    "ip_protocol",
    "from_port",
    "to_port",
    "cidr_ipv4",
    "cidr_ipv6",
    "prefix_list_id",
    "referenced_security_group_id",
    "description",
)
ACL_FIELDS = ("vpc_id", "subnet_ids", "default_network_acl_id", "ingress", "egress")
INLINE_ACL_RULE = (
    "protocol",
    "rule_no",
    "action",
    "cidr_block",
    "ipv6_cidr_block",
    "from_port",
    "to_port",
    "icmp_type",
    "icmp_code",
)
ACL_RULE_FIELDS = (
    "network_acl_id",
    "rule_number",
    "egress",
    "protocol",
    "rule_action",
    "cidr_block",
    "ipv6_cidr_block",
    "from_port",
    "to_port",
    "icmp_type",
    "icmp_code",
)
ACL_ASSOCIATION_FIELDS = ("network_acl_id", "subnet_id")

_REF = re.compile(r"([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)")
_VAR = re.compile(r"var\.([A-Za-z_][\w-]*)")
_INTERPOLATION = re.compile(r"\$\{([^{}]*)\}")


def load_terraform(path: Path, select: str | None) -> RuleSet:
    """The rule set ``select`` (``GROUP-OR-ACL:ingress|egress``; a group or ACL is named
    by its address ``aws_security_group.web``, its label ``web`` or its ``name``)."""
    return read_terraform(path).ruleset(select)


def read_terraform(path: str | Path) -> Policies:
    """Every security group and network ACL of a .tf file, or of the .tf files of a
    directory (not its subdirectories: those are other modules)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.tf"))
        if not files:
            raise ConfigError("the directory holds no .tf file", file=str(p))
    else:
        files = [p]
    sources: list[tuple[str, str]] = []
    for f in files:
        try:
            sources.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read: {exc}", file=str(f)) from None
    return parse_terraform(sources, name=str(p))


def parse_terraform(sources: Sequence[tuple[str, str]], name: str = "") -> Policies:
    """Security groups and network ACLs from (file name, text) pairs of one module."""
    blocks = [b for file, text in sources for b in _parse_file(text, file)]
    return _Module(blocks).policies(name or (sources[0][0] if sources else "<terraform>"))


# -- HCL, as plain blocks with lines -----------------------------------------------------


@dataclass(slots=True)
class _Block:
    """A block: its type and labels, attributes (raw hcl2 values with their line) and
    nested blocks."""

    kind: str
    labels: tuple[str, ...]
    file: str
    line: int
    attrs: dict[str, tuple[Any, int]] = field(default_factory=dict)
    blocks: list[_Block] = field(default_factory=list)

    @property
    def origin(self) -> Origin:
        return Origin(self.file, self.line)

    @property
    def address(self) -> str:
        return ".".join(self.labels)


def _parse_file(text: str, file: str) -> list[_Block]:
    import hcl2
    from lark.exceptions import LarkError, UnexpectedInput

    try:
        tree = hcl2.parses(text)
    except UnexpectedInput as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ConfigError(
            f"not valid HCL: {reason}", file=file, line=exc.line, column=exc.column
        ) from None
    except (LarkError, RuntimeError, ValueError) as exc:  # hcl2's own checks
        raise ConfigError(f"not valid HCL: {exc}", file=file) from None
    return [_block(child, file) for child in tree.body.children if _is_block(child)]


def _is_block(node: object) -> bool:
    from hcl2.rules.base import BlockRule

    return isinstance(node, BlockRule)


def _block(node: BlockRule, file: str) -> _Block:
    from hcl2.rules.base import AttributeRule, BlockRule

    labels = [_unquote(str(label.serialize())) for label in node.labels]
    out = _Block(labels[0], tuple(labels[1:]), file, _line(node))
    for child in node.body.children:
        if isinstance(child, AttributeRule):
            key = str(child.identifier.serialize())
            line = _line(child)
            if key in out.attrs:
                raise ConfigError(
                    f"{key} is set twice (also at line {out.attrs[key][1]})", file=file, line=line
                )
            out.attrs[key] = (child.expression.serialize(), line)
        elif isinstance(child, BlockRule):
            out.blocks.append(_block(child, file))
    return out


def _line(node: Any) -> int:
    meta = node.to_lark().meta
    return int(getattr(meta, "line", 0) or 0)


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


# -- values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ref:
    """A reference to an attribute of a resource of these files."""

    kind: str
    name: str
    attr: str

    @property
    def address(self) -> str:
        return f"{self.kind}.{self.name}"


class _Module:
    """The blocks of one module, and the reading of its firewall resources."""

    def __init__(self, blocks: list[_Block]) -> None:
        self.blocks = blocks
        self.resolving: set[str] = set()
        self.variables: dict[str, _Block] = {}
        self.resources: dict[str, _Block] = {}
        for b in blocks:
            if b.kind == "variable" and len(b.labels) == 1:
                self._add(self.variables, b.labels[0], b, "variable")
            elif b.kind == "resource" and len(b.labels) == 2:
                self._add(self.resources, b.address, b, "resource")

    @staticmethod
    def _add(table: dict[str, _Block], key: str, b: _Block, what: str) -> None:
        if key in table:
            first = table[key]
            raise b.origin.error(f"{what} {key} is declared twice (also at {first.origin})")
        table[key] = b

    # -- resolving expressions -----------------------------------------------------------

    def value(self, raw: Any, file: str, line: int, what: str) -> Any:
        """A raw hcl2 value made plain: str, int, float, bool, None, list, or _Ref."""
        if raw is None or isinstance(raw, bool | int | float):
            return raw
        if isinstance(raw, list):
            return [self.value(v, file, line, what) for v in raw]
        if isinstance(raw, dict):
            return {
                k: self.value(v, file, line, what) for k, v in raw.items() if not k.startswith("__")
            }
        text = str(raw)
        if len(text) >= 2 and text[0] == text[-1] == '"':
            return self._template(text[1:-1], file, line, what)
        if text.startswith("${") and text.endswith("}"):
            return self._expression(text[2:-1].strip(), file, line, what)
        raise ConfigError(f"{what}: cannot read the expression `{text}`", file=file, line=line)

    def _template(self, inner: str, file: str, line: int, what: str) -> Any:
        from hcl2.utils import process_escape_sequences

        if inner.startswith("<<") or "%{" in inner:
            raise ConfigError(
                f"{what}: heredocs and template directives are not read: {inner[:40]!r}",
                file=file,
                line=line,
            )
        whole = _INTERPOLATION.fullmatch(inner)
        if whole:  # "${x}" is x itself, whatever its type
            return self._expression(whole.group(1).strip(), file, line, what)
        if "${" not in inner:
            return process_escape_sequences(inner)
        out: list[str] = []
        at = 0
        for m in _INTERPOLATION.finditer(inner):
            out.append(process_escape_sequences(inner[at : m.start()]))
            v = self._expression(m.group(1).strip(), file, line, what)
            if not isinstance(v, str | int) or isinstance(v, bool):
                raise ConfigError(
                    f"{what}: `{m.group(1).strip()}` in a string is not text", file=file, line=line
                )
            out.append(str(v))
            at = m.end()
        rest = inner[at:]
        if "${" in rest:
            raise ConfigError(f"{what}: cannot read the template {inner!r}", file=file, line=line)
        out.append(process_escape_sequences(rest))
        return "".join(out)

    def _expression(self, expr: str, file: str, line: int, what: str) -> Any:
        var = _VAR.fullmatch(expr)
        if var:
            name = var.group(1)
            decl = self.variables.get(name)
            if decl is None:
                raise ConfigError(
                    f"{what}: `{expr}`: no variable {name!r} is declared in these files (give "
                    "the module's directory to read all its .tf files)",
                    file=file,
                    line=line,
                )
            if "default" not in decl.attrs:
                raise ConfigError(
                    f"{what}: `{expr}` has no default (ramparts reads no .tfvars): give "
                    f"variable {name!r} ({decl.origin}) a default or write the value",
                    file=file,
                    line=line,
                )
            raw, dline = decl.attrs["default"]
            return self.value(raw, decl.file, dline, f"variable {name!r} default")
        ref = _REF.fullmatch(expr)
        if ref and ref.group(1).startswith("aws_"):
            target = _Ref(ref.group(1), ref.group(2), ref.group(3))
            if target.attr == "id":
                return target
            return self._argument(target, expr, file, line, what)
        raise ConfigError(
            f"{what}: cannot resolve `{expr}` (ramparts reads literals, var.NAME with a "
            "default, and references to resources of these files)",
            file=file,
            line=line,
        )

    def _argument(self, ref: _Ref, expr: str, file: str, line: int, what: str) -> Any:
        """``aws_vpc.main.cidr_block``: the argument written in that resource, when it is
        one (an attribute AWS computes, such as an ARN, cannot be known here)."""
        block = self.resources.get(ref.address)
        if block is None or ref.attr not in block.attrs:
            raise ConfigError(
                f"{what}: cannot resolve `{expr}`: it is not an argument written in a "
                "resource of these files",
                file=file,
                line=line,
            )
        if ref.address in self.resolving:
            raise ConfigError(f"{what}: `{expr}` refers to itself", file=file, line=line)
        self.resolving.add(ref.address)
        try:
            raw, aline = block.attrs[ref.attr]
            return self.value(raw, block.file, aline, f"{ref.address}.{ref.attr}")
        finally:
            self.resolving.discard(ref.address)

    def get(self, b: _Block, key: str, what: str | None = None) -> Any:
        if key not in b.attrs:
            return None
        raw, line = b.attrs[key]
        return self.value(raw, b.file, line, what or key)

    def line(self, b: _Block, key: str) -> int:
        return b.attrs[key][1] if key in b.attrs else b.line

    def fail(self, b: _Block, key: str | None, reason: str) -> ConfigError:
        return ConfigError(reason, file=b.file, line=self.line(b, key) if key else b.line)

    def check(self, b: _Block, fields: Sequence[str], blocks: Sequence[str] = ()) -> None:
        """Refuse meta-arguments that multiply a resource, dynamic blocks and unknown
        fields: each would change the rules in a way this reader does not follow."""
        for key in b.attrs:
            if key in _REFUSED_META:
                raise self.fail(
                    b,
                    key,
                    f"{b.address}: `{key}` makes several resources; ramparts reads "
                    "one resource per block (write them out)",
                )
            if key not in fields and key not in _INERT:
                raise self.fail(b, key, f"{b.address or b.kind}: unknown field {key!r}")
        for nested in b.blocks:
            if nested.kind == "dynamic":
                raise ConfigError(
                    f"{b.address}: dynamic blocks are not read (write the rules out)",
                    file=nested.file,
                    line=nested.line,
                )
            if nested.kind not in blocks and nested.kind not in _INERT:
                raise ConfigError(
                    f"{b.address or b.kind}: unknown block {nested.kind!r}",
                    file=nested.file,
                    line=nested.line,
                )

    def text(self, b: _Block, key: str, required: bool = False) -> str | None:
        v = self.get(b, key)
        if v is None:
            if required:
                raise self.fail(b, None, f"{b.address or b.kind}: `{key}` is missing")
            return None
        if not isinstance(v, str):
            raise self.fail(b, key, f"{key} must be text")
        return v

    def number(self, b: _Block, key: str, required: bool = False) -> int | None:
        v = self.get(b, key)
        if v is None:
            if required:
                raise self.fail(b, None, f"{b.address or b.kind}: `{key}` is missing")
            return None
        if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(b, key, f"{key} must be a number")
        return v

    def flag(self, b: _Block, key: str) -> bool:
        v = self.get(b, key)
        if v is None:
            return False
        if isinstance(v, str) and v in ("true", "false"):
            return v == "true"
        if not isinstance(v, bool):
            raise self.fail(b, key, f"{key} is true or false")
        return v

    def strings(self, b: _Block, key: str) -> list[str]:
        v = self.get(b, key)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, str | _Ref) for x in v):
            raise self.fail(b, key, f"{key} must be a list")
        return v

    def protocol(self, b: _Block, key: str) -> int | None:
        v = self.get(b, key)
        if v is None:
            raise self.fail(b, None, f"{b.address or b.kind}: `{key}` is missing")
        text = str(v).strip().lower() if not isinstance(v, bool) else "?"
        if text in ("-1", "all"):
            return None
        try:
            number = parse_protocol(text)
        except ValueError as exc:
            raise self.fail(b, key, str(exc)) from None
        if number is None:
            raise self.fail(b, key, f"unknown protocol {v!r}")
        return number

    def cidr(self, b: _Block, key: str, value: Any, version: int) -> IPRange:
        if isinstance(value, _Ref):
            raise self.fail(b, key, f"{key}: {value.address}.id is not a CIDR block")
        if not isinstance(value, str):
            raise self.fail(b, key, f"{key}: a CIDR block is text")
        try:
            r = parse_prefix(value)
        except ValueError as exc:
            raise self.fail(b, key, str(exc)) from None
        if r.version != version or "/" not in value:
            raise self.fail(b, key, f"{key}: {value!r} is not an IPv{version} CIDR block")
        return r

    # -- security groups -----------------------------------------------------------------

    def group_ref(self, b: _Block, key: str, value: Any) -> str:
        """A security group reference: a group of these files or a literal sg- id."""
        if isinstance(value, _Ref):
            if value.kind not in SG_TYPES or value.attr != "id":
                raise self.fail(
                    b, key, f"{key}: {value.address}.{value.attr} is not a security group id"
                )
            if value.address not in self.resources:
                raise self.fail(b, key, f"{key}: no resource {value.address} in these files")
            return value.address
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise self.fail(b, key, f"{key} must name a security group")

    def all_ports_zero(self, b: _Block, proto: int | None) -> None:
        """Protocol ``-1`` takes from_port = to_port = 0: Terraform refuses other ports in
        a group's blocks, and AWS would ignore them and allow every protocol and port."""
        if proto is not None:
            return
        for key in ("from_port", "to_port"):
            if self.number(b, key) not in (None, 0):
                raise self.fail(
                    b,
                    key,
                    f"{b.address or b.kind}: protocol -1 (all) means every protocol and "
                    "port: from_port and to_port must be 0 (write the protocol, such as "
                    '"tcp", to allow only these ports)',
                )

    def traffic(self, b: _Block, proto_key: str) -> Traffic:
        proto = self.protocol(b, proto_key)
        self.all_ports_zero(b, proto)
        lo = self.number(b, "from_port")
        hi = self.number(b, "to_port")
        try:
            return sg_traffic(proto, lo, hi)
        except ValueError as exc:
            raise self.fail(b, None, f"{b.address or b.kind}: {exc}") from None

    def peers(
        self,
        b: _Block,
        direction: Direction,
        traffic: Traffic,
        own: str | None,
        group_keys: Sequence[str],
    ) -> list[SgRule]:
        """SgRules for each peer named in ``b``: CIDR lists, group references, self."""
        description = self.text(b, "description") or ""
        made: list[SgRule] = []

        def add(key: str, **peer: Any) -> None:
            made.append(
                SgRule(
                    direction,
                    traffic,
                    Origin(b.file, self.line(b, key)),
                    description=description,
                    **peer,
                )
            )

        for key, version in (("cidr_blocks", 4), ("ipv6_cidr_blocks", 6)):
            for v in self.strings(b, key):
                add(key, cidr=self.cidr(b, key, v, version))
        for key, version in (("cidr_ipv4", 4), ("cidr_ipv6", 6)):
            v = self.get(b, key)
            if v is not None:
                add(key, cidr=self.cidr(b, key, v, version))
        for key in ("prefix_list_ids",):
            for v in self.strings(b, key):
                if not isinstance(v, str):
                    raise self.fail(b, key, f"{key}: a prefix list id is text (pl-...)")
                add(key, prefix_list=v)
        if self.get(b, "prefix_list_id") is not None:
            add("prefix_list_id", prefix_list=self.text(b, "prefix_list_id"))
        for key in group_keys:
            values = self.get(b, key)
            for v in values if isinstance(values, list) else [values] if values is not None else []:
                add(key, group=self.group_ref(b, key, v))
        if self.flag(b, "self"):
            if own is None:
                raise self.fail(b, "self", "self = true needs the rule's security group")
            add("self", group=own)
        if not made:
            raise self.fail(
                b,
                None,
                f"{b.address or b.kind}: the rule names no peer (CIDR, group, prefix list or self)",
            )
        return made

    def policies(self, name: str) -> Policies:
        groups: dict[str, SecurityGroup] = {}
        inline_dirs: dict[str, set[Direction]] = {}
        extra: dict[str, list[SgRule]] = {}
        acls: dict[str, list[AclEntry]] = {}
        acl_blocks: dict[str, _Block] = {}
        acl_inline: dict[str, set[Direction]] = {}
        associations: dict[str, list[str]] = {}
        for address, b in self.resources.items():
            kind = b.labels[0]
            if kind in SG_TYPES:
                groups[address], inline_dirs[address] = self.security_group(b)
            elif kind in ACL_TYPES:
                acl_blocks[address] = b
                acls[address], acl_inline[address] = self.acl_inline(b)
                associations[address] = [
                    self.subnet_ref(b, "subnet_ids", v) for v in self.strings(b, "subnet_ids")
                ]
        for address, b in self.resources.items():
            kind = b.labels[0]
            if kind == "aws_security_group_rule" or kind.startswith("aws_vpc_security_group_"):
                target, rules = self.security_group_rule(b)
                if target not in groups:
                    raise self.fail(
                        b,
                        "security_group_id",
                        f"{address}: the security group is not in these files",
                    )
                if inline_dirs[target]:
                    raise self.fail(
                        b,
                        "security_group_id",
                        f"{address} adds a rule to {target}, which has inline rules "
                        f"({groups[target].origin}): Terraform then overwrites one with the "
                        "other on every apply (use one style per group)",
                    )
                extra.setdefault(target, []).extend(rules)
            elif kind == "aws_network_acl_rule":
                target, entry = self.acl_rule(b)
                if target not in acls:
                    raise self.fail(
                        b, "network_acl_id", f"{address}: the network ACL is not in these files"
                    )
                if acl_inline[target]:
                    raise self.fail(
                        b,
                        "network_acl_id",
                        f"{address} adds an entry to {target}, which has inline rules "
                        f"({acl_blocks[target].origin}): Terraform then overwrites one with "
                        "the other on every apply (use one style per ACL)",
                    )
                acls[target].append(entry)
            elif kind == "aws_network_acl_association":
                self.check(b, ACL_ASSOCIATION_FIELDS)
                target = self.acl_ref(b, "network_acl_id", self.get(b, "network_acl_id"))
                if target not in acls:
                    raise self.fail(
                        b, "network_acl_id", f"{address}: the network ACL is not in these files"
                    )
                associations[target].append(
                    self.subnet_ref(b, "subnet_id", self.get(b, "subnet_id"))
                )
        out_groups = []
        for address, g in groups.items():
            more = extra.get(address, [])
            out_groups.append(
                SecurityGroup(
                    g.key,
                    g.name,
                    g.ingress + tuple(r for r in more if r.direction is Direction.INGRESS),
                    g.egress + tuple(r for r in more if r.direction is Direction.EGRESS),
                    g.origin,
                    description=g.description,
                    vpc_id=g.vpc_id,
                    aliases=g.aliases,
                )
            )
        out_acls = []
        for address, entries in acls.items():
            b = acl_blocks[address]
            tag = self.name_tag(b)
            out_acls.append(
                NetworkAcl.of(
                    address,
                    tag or b.labels[1],
                    entries,
                    b.origin,
                    is_default=b.labels[0] == "aws_default_network_acl",
                    vpc_id=self.vpc(b),
                    subnets=associations[address],
                    aliases=[a for a in (b.labels[1], tag) if a],
                )
            )
        return Policies(name, tuple(out_groups), tuple(out_acls))

    def vpc(self, b: _Block) -> str | None:
        v = self.get(b, "vpc_id")
        if isinstance(v, _Ref):
            return v.address
        return v if isinstance(v, str) else None

    def name_tag(self, b: _Block) -> str | None:
        """The Name tag, when it is readable (other tags are not looked at)."""
        raw, line = b.attrs.get("tags", (None, b.line))
        if not isinstance(raw, dict):
            return None
        for key in ("Name", '"Name"'):
            if key in raw:
                v = self.value(raw[key], b.file, line, "tags.Name")
                return v if isinstance(v, str) else None
        return None

    def security_group(self, b: _Block) -> tuple[SecurityGroup, set[Direction]]:
        self.check(b, SG_FIELDS, ("ingress", "egress"))
        address = b.address
        rules: dict[Direction, list[SgRule]] = {d: [] for d in Direction}
        inline: set[Direction] = set()
        for d in Direction:
            nested = [n for n in b.blocks if n.kind == d.value]
            if d.value in b.attrs:  # attributes-as-blocks: ingress = [ {...}, ... ] or []
                inline.add(d)
                items = self.get(b, d.value)
                if not isinstance(items, list) or items:
                    raise self.fail(
                        b,
                        d.value,
                        f"{d.value} as an attribute is read only as [] (no rules); "
                        "write rules as blocks",
                    )
            for n in nested:
                inline.add(d)
                n.labels = (address, d.value)
                self.check(n, INLINE_SG_RULE)
                rules[d] += self.peers(
                    n, d, self.traffic(n, "protocol"), address, ("security_groups",)
                )
        # name_prefix gets a generated suffix: such a group is known by its label.
        name = self.text(b, "name") or (
            "default" if b.labels[0] == "aws_default_security_group" else b.labels[1]
        )
        tag = self.name_tag(b)
        group = SecurityGroup(
            address,
            name,
            tuple(rules[Direction.INGRESS]),
            tuple(rules[Direction.EGRESS]),
            b.origin,
            description=self.text(b, "description") or "Managed by Terraform",
            vpc_id=self.vpc(b),
            aliases=tuple(a for a in dict.fromkeys((b.labels[1], name, tag)) if a),
        )
        return group, inline

    def security_group_rule(self, b: _Block) -> tuple[str, list[SgRule]]:
        kind = b.labels[0]
        if kind == "aws_security_group_rule":
            self.check(b, SG_RULE_FIELDS)
            way = self.text(b, "type", required=True)
            if way not in ("ingress", "egress"):
                raise self.fail(b, "type", "type is ingress or egress")
            direction = Direction(way)
            traffic = self.traffic(b, "protocol")
            groups = ("source_security_group_id",)
        else:
            self.check(b, VPC_SG_RULE_FIELDS)
            direction = Direction.INGRESS if kind.endswith("ingress_rule") else Direction.EGRESS
            proto = self.protocol(b, "ip_protocol")
            if proto is None and ("from_port" in b.attrs or "to_port" in b.attrs):
                raise self.fail(b, "from_port", "ip_protocol -1 takes no from_port/to_port")
            traffic = self.traffic(b, "ip_protocol")
            groups = ("referenced_security_group_id",)
        target = self.group_ref(b, "security_group_id", self.get(b, "security_group_id"))
        peers = self.peers(b, direction, traffic, target, groups)
        if kind != "aws_security_group_rule" and len(peers) > 1:
            raise self.fail(
                b,
                None,
                f"{b.address}: one rule takes one of cidr_ipv4, cidr_ipv6, prefix_list_id "
                "and referenced_security_group_id",
            )
        return target, peers

    # -- network ACLs --------------------------------------------------------------------

    def acl_ref(self, b: _Block, key: str, value: Any) -> str:
        if isinstance(value, _Ref) and value.kind in ACL_TYPES and value.attr == "id":
            return value.address
        raise self.fail(
            b,
            key,
            f"{key} must be a reference to a network ACL of these files (aws_network_acl.NAME.id)",
        )

    def subnet_ref(self, b: _Block, key: str, value: Any) -> str:
        if isinstance(value, _Ref):
            if value.attr != "id":
                raise self.fail(b, key, f"{key}: {value.address}.{value.attr} is not a subnet id")
            return value.address
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise self.fail(b, key, f"{key} must name a subnet")

    def entry_traffic(self, b: _Block, inline: bool) -> Traffic:
        proto = self.protocol(b, "protocol")
        if inline:  # the provider's documented rule for aws_network_acl blocks
            self.all_ports_zero(b, proto)
        ports = (self.number(b, "from_port"), self.number(b, "to_port"))
        icmp = None
        if proto in (1, 58):
            kind, code = self.number(b, "icmp_type"), self.number(b, "icmp_code")
            if inline:  # the provider's defaults for inline blocks
                kind, code = kind if kind is not None else 0, code if code is not None else 0
            elif kind is None:
                raise self.fail(b, None, f"{b.address}: an ICMP rule needs icmp_type (-1: all)")
            icmp = (kind, code)
        try:
            return acl_traffic(proto, ports, icmp)
        except ValueError as exc:
            raise self.fail(b, None, f"{b.address or b.kind}: {exc}") from None

    def entry(
        self, b: _Block, direction: Direction, number_key: str, action_key: str, inline: bool
    ) -> AclEntry:
        number = self.number(b, number_key, required=True)
        action_text = (self.text(b, action_key, required=True) or "").lower()
        if action_text not in ("allow", "deny"):
            raise self.fail(b, action_key, f"{action_key} is allow or deny")
        v4, v6 = self.get(b, "cidr_block"), self.get(b, "ipv6_cidr_block")
        if (v4 is None) == (v6 is None):
            raise self.fail(
                b,
                None,
                f"{b.address or b.kind}: give exactly one of cidr_block and ipv6_cidr_block",
            )
        cidr = (
            self.cidr(b, "cidr_block", v4, 4)
            if v4 is not None
            else self.cidr(b, "ipv6_cidr_block", v6, 6)
        )
        assert number is not None
        try:
            return AclEntry(
                number,
                direction,
                Action.ACCEPT if action_text == "allow" else Action.DROP,
                self.entry_traffic(b, inline),
                cidr,
                Origin(b.file, b.line),
            )
        except ValueError as exc:
            raise self.fail(b, number_key, str(exc)) from None

    def acl_inline(self, b: _Block) -> tuple[list[AclEntry], set[Direction]]:
        self.check(b, ACL_FIELDS, ("ingress", "egress"))
        entries: list[AclEntry] = []
        inline: set[Direction] = set()
        for n in b.blocks:
            if n.kind not in ("ingress", "egress"):
                continue
            d = Direction(n.kind)
            inline.add(d)
            n.labels = (b.address, n.kind)
            self.check(n, INLINE_ACL_RULE)
            entries.append(self.entry(n, d, "rule_no", "action", inline=True))
        return entries, inline

    def acl_rule(self, b: _Block) -> tuple[str, AclEntry]:
        self.check(b, ACL_RULE_FIELDS)
        target = self.acl_ref(b, "network_acl_id", self.get(b, "network_acl_id"))
        direction = Direction.EGRESS if self.flag(b, "egress") else Direction.INGRESS
        return target, self.entry(b, direction, "rule_number", "rule_action", inline=False)
