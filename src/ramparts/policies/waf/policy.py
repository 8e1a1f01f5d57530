"""The WAF policy as plain, validated values: mode, paranoia, thresholds, exclusions, extra
rules, the Core Rule Set directory and the body inspection limits. Engine-neutral; the
ModSecurity engine renders it to SecLang (``seclang``). Invalid values raise ValueError
naming the setting, as the other policies' constructors do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .engine import WafMode

__all__ = [
    "DEFAULT_CRS",
    "Exclusion",
    "OverLimit",
    "RequestBodyInspection",
    "ResponseBodyInspection",
    "RuleIds",
    "WafPolicy",
    "parse_rule_ids",
]

#: Where Debian's ``modsecurity-crs`` package puts the Core Rule Set.
DEFAULT_CRS = Path("/usr/share/modsecurity-crs")

#: Defaults: the schema's request body limit, ModSecurity's recommended response limit,
#: JSON depth and argument count limits, and the CRS 3.3 anomaly thresholds.
DEFAULT_REQUEST_BODY_LIMIT = 1024 * 1024
DEFAULT_RESPONSE_BODY_LIMIT = 512 * 1024
DEFAULT_JSON_DEPTH_LIMIT = 512
DEFAULT_ARGUMENTS_LIMIT = 1000
DEFAULT_RESPONSE_MIME_TYPES = ("text/plain", "text/html", "text/xml")

#: One rule id, or an inclusive range of ids.
RuleIds = int | tuple[int, int]

_ID_TEXT = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")
_TAG = re.compile(r"[A-Za-z0-9_./:-]+")
# A SecLang variable with an optional key: ARGS, ARGS:password, REQUEST_COOKIES:/^sess/.
_TARGET = re.compile(r"[A-Za-z_]+(?::[^\s\"'\\,;|]+)?")
_MIME = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


class OverLimit(StrEnum):
    """What happens to a request body longer than the inspection limit: refuse it (413),
    or inspect its first ``limit`` bytes and let the rest through unseen."""

    REJECT = "reject"
    INSPECT_PARTIAL = "inspect_partial"


def parse_rule_ids(value: int | str) -> RuleIds:
    """A rule id (``942100``, ``"942100"``) or an inclusive range (``"942100-942199"``)."""
    if isinstance(value, int):
        lo = hi = value
    else:
        m = _ID_TEXT.fullmatch(value)
        if m is None:
            raise ValueError(f"not a rule id or id range: {value!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
    if lo < 1 or hi < lo:
        raise ValueError(f"not a rule id or id range: {value!r}")
    return lo if lo == hi else (lo, hi)


def _check_ids(ids: RuleIds) -> None:
    lo, hi = (ids, ids) if isinstance(ids, int) else ids
    if isinstance(lo, bool) or isinstance(hi, bool) or lo < 1 or hi < lo:
        raise ValueError(f"rule_id: not a rule id or id range: {ids!r}")


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Leave rules out, selected by id (or id range) or by tag; with ``target``, leave
    out only that target of them (``ARGS:password``: the rules still run on everything
    else). With ``path_prefix`` only for requests whose path (percent-decoded, dot
    segments resolved) starts with it, as nginx's prefix locations match: ``/api``
    also covers ``/apiary``, ``/api/`` does not. A tag is matched exactly (ModSecurity 3;
    version 2 took a regex)."""

    rule_id: RuleIds | None = None
    tag: str | None = None
    target: str | None = None
    path_prefix: str | None = None

    def __post_init__(self) -> None:
        if (self.rule_id is None) == (self.tag is None):
            raise ValueError("an exclusion names exactly one of rule_id or tag")
        if self.rule_id is not None:
            _check_ids(self.rule_id)
        if self.tag is not None and not _TAG.fullmatch(self.tag):
            raise ValueError(f"tag: not a rule tag: {self.tag!r}")
        if self.target is not None and not _TARGET.fullmatch(self.target.removeprefix("!")):
            raise ValueError(f"target: not a variable like ARGS:name: {self.target!r}")
        p = self.path_prefix
        if p is not None and (
            not p.startswith("/")
            or "%{" in p
            or any(c in p for c in '"\\')
            or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in p)
        ):
            raise ValueError(f"path_prefix: not a request path prefix: {p!r}")


@dataclass(frozen=True, slots=True)
class RequestBodyInspection:
    """How much of a request body is inspected and what a longer one meets; the JSON
    nesting depth and the number of arguments the parsers accept (more is refused, 400)."""

    limit: int = DEFAULT_REQUEST_BODY_LIMIT
    over_limit: OverLimit = OverLimit.REJECT
    json_depth_limit: int = DEFAULT_JSON_DEPTH_LIMIT
    arguments_limit: int = DEFAULT_ARGUMENTS_LIMIT

    def __post_init__(self) -> None:
        for name in ("limit", "json_depth_limit", "arguments_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"request_body.{name}: must be a positive integer")
        object.__setattr__(self, "over_limit", OverLimit(self.over_limit))


@dataclass(frozen=True, slots=True)
class ResponseBodyInspection:
    """Whether response bodies are inspected (the head always is), the bytes inspected (a
    longer body is inspected in part) and the media types inspected."""

    enabled: bool = False
    limit: int = DEFAULT_RESPONSE_BODY_LIMIT
    mime_types: tuple[str, ...] = DEFAULT_RESPONSE_MIME_TYPES

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError("response_body.limit: must be a positive integer")
        types = tuple(t.strip().lower() for t in self.mime_types)
        for t in types:
            if not _MIME.fullmatch(t):
                raise ValueError(f"response_body.mime_types: not a media type: {t!r}")
        object.__setattr__(self, "mime_types", types)


#: An extra rule source: SecLang text (``str``) or a rule file (``Path``).
RuleSource = str | Path


@dataclass(frozen=True, slots=True)
class WafPolicy:
    """One WAF configuration; equal policies build equal engines (a plan may share one).

    - ``mode``: on, detection_only, off.
    - ``paranoia_level`` (1-4): the CRS rules whose score counts toward blocking;
      ``detection_paranoia_level`` (default: the same, at least it): the rules that run
      and are recorded (CRS 3's ``executing_paranoia_level``).
    - ``inbound_threshold`` / ``outbound_threshold``: the anomaly scores that block.
    - ``block_status``: the status of a refusal that has no status of its own (a deny's
      default, 403), such as the CRS's anomaly-score blocks. A rule's explicit other
      status (400 for a body that does not parse) stands.
    - ``crs``: the Core Rule Set directory (3.x or 4.x), or None for only the extra rules.
    - ``exclusions``: rules left out, globally or under a path prefix.
    - ``rules_before_crs`` / ``rules``: extra SecLang, inline (``str``) or files
      (``Path``), loaded before the CRS (where setup variables and exclusions that need
      to run first go, like the CRS's REQUEST-900 file) or after it (custom rules and
      config-time exclusions, like RESPONSE-999). Rule ids 99000-99999 are the engine's.
    """

    mode: WafMode = WafMode.ON
    paranoia_level: int = 1
    detection_paranoia_level: int | None = None
    inbound_threshold: int = 5
    outbound_threshold: int = 4
    block_status: int = 403
    crs: Path | None = DEFAULT_CRS
    exclusions: tuple[Exclusion, ...] = ()
    rules_before_crs: tuple[RuleSource, ...] = ()
    rules: tuple[RuleSource, ...] = ()
    request_body: RequestBodyInspection = field(default_factory=RequestBodyInspection)
    response_body: ResponseBodyInspection = field(default_factory=ResponseBodyInspection)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", WafMode(self.mode))
        if self.paranoia_level not in (1, 2, 3, 4):
            raise ValueError(f"paranoia_level: must be 1 to 4, not {self.paranoia_level!r}")
        dpl = self.detection_paranoia_level
        if dpl is not None and (dpl not in (1, 2, 3, 4) or dpl < self.paranoia_level):
            raise ValueError("detection_paranoia_level: must be 1 to 4 and at least paranoia_level")
        for name in ("inbound_threshold", "outbound_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer")
        if not 400 <= self.block_status <= 599:
            raise ValueError("block_status: must be a 4xx or 5xx status")
        for name in ("exclusions", "rules_before_crs", "rules"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for source in (*self.rules_before_crs, *self.rules):
            if not isinstance(source, str | Path):
                raise ValueError(f"rules: a rule source is text or a Path, not {source!r}")

    @property
    def effective_detection_level(self) -> int:
        return self.detection_paranoia_level or self.paranoia_level
