"""A ``WafPolicy`` written out as ModSecurity configuration (SecLang), in the pieces the
engine loads in order around the Core Rule Set:

1. ``base_config``: the engine settings of ModSecurity's recommended configuration that
   apply in-process (rule engine mode, body access and limits, the XML and JSON body
   processors, the rules that refuse bodies the parsers cannot read, PCRE limits).
2. ``crs_setup``: what crs-setup.conf would say (default actions, paranoia levels,
   anomaly thresholds, the setup version the CRS checks).
3. ``path_exclusions``: exclusions scoped to a path prefix, as phase-1 rules with ``ctl:``
   actions, placed before the CRS so they run before its rules.
4. ``global_exclusions``: SecRuleRemoveBy* / SecRuleUpdateTargetBy* directives, placed
   after the CRS.
5. ``score_snapshot`` (just before the CRS's REQUEST-949 blocking evaluation) and
   ``score_report`` (a last phase-5 rule): they record the anomaly scores the blocking
   evaluations compare, so the outcome reads them from the transaction instead of parsing
   rule messages.

Deliberate differences from modsecurity.conf-recommended, each for a reason:

- Body access is always On and response bodies are never filtered by media type here:
  ModSecurity 3 skips the whole request-body phase (where the CRS's inbound blocking
  evaluation runs) when SecRequestBodyAccess is Off, and the whole response-body phase
  (the outbound evaluation) when SecResponseBodyAccess is Off or the media type is not
  listed. The engine decides instead which bodies it feeds.
- The body limit action is always ProcessPartial: a refusal is the engine's own 413
  (ModSecurity 3 answers 403 to a body over the limit). SecRequestBodyNoFilesLimit equals
  the limit, so a form or JSON body up to the limit is parsed, not refused.
- The body-parse refusals (200002-200004) do not apply to a body cut at the limit in
  inspect_partial mode: a cut JSON or multipart body never parses.
- PCRE limits of 100000 (the CRS container images' value) rather than 1000; hitting one
  still refuses the request (200005): fail closed.
"""

from __future__ import annotations

from .crs import CrsLayout
from .engine import WafMode
from .policy import Exclusion, RuleIds, WafPolicy

__all__ = [
    "PATH_EXCLUSION_BASE_ID",
    "SCORE_REPORT_ID",
    "SCORE_SNAPSHOT_ID",
    "base_config",
    "crs_setup",
    "global_exclusions",
    "parse_score_report",
    "path_exclusions",
    "score_report",
    "score_snapshot",
]

#: Rule ids the engine writes rules under (99000-99999, in the range SecLang leaves to
#: local use): path-scoped exclusions count up from the base; the score rules are last.
PATH_EXCLUSION_BASE_ID = 99000
SCORE_SNAPSHOT_ID = 99998
SCORE_REPORT_ID = 99999
SNAPSHOT_VAR = "ramparts_inbound_score"
SCORE_REPORT_MSG = "ramparts anomaly scores"

_ENGINE = {WafMode.ON: "On", WafMode.DETECTION_ONLY: "DetectionOnly", WafMode.OFF: "Off"}
PCRE_LIMIT = 100000


def base_config(policy: WafPolicy) -> str:
    req = policy.request_body
    res = policy.response_body
    lines = [
        f"SecRuleEngine {_ENGINE[policy.mode]}",
        "SecAuditEngine Off",
        "SecRequestBodyAccess On",
        'SecRule REQUEST_HEADERS:Content-Type "@rx ^(?:application(?:/soap\\+|/)|text/)xml" '
        '"id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"',
        'SecRule REQUEST_HEADERS:Content-Type "@rx ^application/json" '
        '"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"',
        f"SecRequestBodyLimit {req.limit}",
        f"SecRequestBodyNoFilesLimit {req.limit}",
        "SecRequestBodyLimitAction ProcessPartial",
        f"SecRequestBodyJsonDepthLimit {req.json_depth_limit}",
        f"SecArgumentsLimit {req.arguments_limit}",
        f'SecRule &ARGS "@ge {req.arguments_limit}" '
        '"id:200007,phase:2,t:none,log,deny,status:400,severity:2,'
        "msg:'Failed to fully parse request body due to large argument count'\"",
        'SecRule REQBODY_ERROR "!@eq 0" '
        '"id:200002,phase:2,t:none,log,deny,status:400,severity:2,'
        "msg:'Failed to parse request body.',logdata:'%{reqbody_error_msg}',chain\"",
        '    SecRule INBOUND_DATA_ERROR "@eq 0" "t:none"',
        'SecRule MULTIPART_STRICT_ERROR "!@eq 0" '
        '"id:200003,phase:2,t:none,log,deny,status:400,severity:2,'
        "msg:'Multipart request body failed strict validation',chain\"",
        '    SecRule INBOUND_DATA_ERROR "@eq 0" "t:none"',
        'SecRule MULTIPART_UNMATCHED_BOUNDARY "@eq 1" '
        '"id:200004,phase:2,t:none,log,deny,severity:2,'
        "msg:'Multipart parser detected a possible unmatched boundary.',chain\"",
        '    SecRule INBOUND_DATA_ERROR "@eq 0" "t:none"',
        f"SecPcreMatchLimit {PCRE_LIMIT}",
        f"SecPcreMatchLimitRecursion {PCRE_LIMIT}",
        'SecRule TX:/^MSC_/ "!@streq 0" '
        '"id:200005,phase:2,t:none,log,deny,'
        "msg:'ModSecurity internal error flagged: %{MATCHED_VAR_NAME}'\"",
        "SecResponseBodyAccess On",
        f"SecResponseBodyLimit {res.limit}",
        "SecResponseBodyLimitAction ProcessPartial",
    ]
    return "\n".join(lines) + "\n"


def crs_setup(policy: WafPolicy, crs: CrsLayout) -> str:
    pl = policy.paranoia_level
    dpl = policy.effective_detection_level
    lines = [
        'SecDefaultAction "phase:1,log,auditlog,pass"',
        'SecDefaultAction "phase:2,log,auditlog,pass"',
        "SecCollectionTimeout 600",
        f'SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.{crs.paranoia_var}={pl}"',
        "SecAction "
        f'"id:900001,phase:1,pass,t:none,nolog,setvar:tx.{crs.detection_paranoia_var}={dpl}"',
        'SecAction "id:900110,phase:1,pass,t:none,nolog,'
        f"setvar:tx.inbound_anomaly_score_threshold={policy.inbound_threshold},"
        f'setvar:tx.outbound_anomaly_score_threshold={policy.outbound_threshold}"',
        'SecAction "id:900990,phase:1,pass,t:none,nolog,'
        f'setvar:tx.crs_setup_version={crs.setup_version}"',
    ]
    return "\n".join(lines) + "\n"


def _ids(ids: RuleIds) -> str:
    return str(ids) if isinstance(ids, int) else f"{ids[0]}-{ids[1]}"


def _target(ex: Exclusion) -> str:
    assert ex.target is not None
    return ex.target.removeprefix("!")


def path_exclusions(policy: WafPolicy) -> str:
    lines = []
    scoped = [ex for ex in policy.exclusions if ex.path_prefix is not None]
    if len(scoped) > SCORE_SNAPSHOT_ID - 1 - PATH_EXCLUSION_BASE_ID:
        raise ValueError("exclusions: too many path-scoped exclusions")
    for i, ex in enumerate(scoped):
        if ex.rule_id is not None:
            what = f"ruleRemoveById={_ids(ex.rule_id)}"
            if ex.target is not None:
                what = f"ruleRemoveTargetById={_ids(ex.rule_id)};{_target(ex)}"
        else:
            what = f"ruleRemoveByTag={ex.tag}"
            if ex.target is not None:
                what = f"ruleRemoveTargetByTag={ex.tag};{_target(ex)}"
        lines.append(
            f'SecRule REQUEST_FILENAME "@beginsWith {ex.path_prefix}" '
            f'"id:{PATH_EXCLUSION_BASE_ID + i},phase:1,pass,nolog,t:none,t:normalizePath,'
            f'ctl:{what}"'
        )
    return "".join(line + "\n" for line in lines)


def global_exclusions(policy: WafPolicy) -> str:
    lines = []
    for ex in policy.exclusions:
        if ex.path_prefix is not None:
            continue
        if ex.rule_id is not None:
            if ex.target is None:
                lines.append(f"SecRuleRemoveById {_ids(ex.rule_id)}")
            else:
                lines.append(f'SecRuleUpdateTargetById {_ids(ex.rule_id)} "!{_target(ex)}"')
        elif ex.target is None:
            lines.append(f'SecRuleRemoveByTag "{ex.tag}"')
        else:
            lines.append(f'SecRuleUpdateTargetByTag "{ex.tag}" "!{_target(ex)}"')
    return "".join(line + "\n" for line in lines)


def score_snapshot(policy: WafPolicy, crs: CrsLayout) -> str:
    """A phase-2 rule, loaded just before the CRS's inbound blocking evaluation, that keeps
    the inbound score it is about to compare: the sum over the blocking paranoia levels.
    (The live per-level variables are no good at the end: CRS 3's response rules add to
    them too.)"""
    adds = ",".join(
        f"setvar:tx.{SNAPSHOT_VAR}=+%{{tx.{crs.inbound_score_var}{n}}}"
        for n in range(1, policy.paranoia_level + 1)
    )
    return (
        f'SecAction "id:{SCORE_SNAPSHOT_ID},phase:2,pass,t:none,nolog,'
        f'setvar:tx.{SNAPSHOT_VAR}=0,{adds}"\n'
    )


def score_report(crs: CrsLayout) -> str:
    """A phase-5 rule whose logdata is ``snapshot|i1 i2 i3 i4|o1 o2 o3 o4``: the inbound
    snapshot (empty when phase 2 stopped before it) and the live inbound and outbound
    scores per paranoia level (``nolog,auditlog``: kept with the transaction's rule
    messages, not sent to the server log)."""
    inbound = " ".join(f"%{{tx.{crs.inbound_score_var}{n}}}" for n in range(1, 5))
    outbound = " ".join(f"%{{tx.{crs.outbound_score_var}{n}}}" for n in range(1, 5))
    return (
        f'SecAction "id:{SCORE_REPORT_ID},phase:5,pass,t:none,nolog,auditlog,'
        f"msg:'{SCORE_REPORT_MSG}',logdata:'%{{tx.{SNAPSHOT_VAR}}}|{inbound}|{outbound}'\"\n"
    )


def parse_score_report(data: str, paranoia_level: int) -> tuple[int | None, int | None]:
    """The blocking inbound and outbound scores from the report's logdata. Inbound: the
    snapshot, or when phase 2 stopped before it (a refusal by an earlier rule), the live
    sum, which then holds no response-rule scores yet. Outbound: the live sum over paranoia
    levels 1..``paranoia_level``, as the CRS's outbound evaluation adds it."""
    parts = data.split("|")
    if len(parts) != 3:
        return None, None

    def total(text: str) -> int | None:
        values = text.split()
        if len(values) != 4:
            return None
        try:
            return sum(int(v) for v in values[:paranoia_level])
        except ValueError:
            return None

    snapshot = parts[0].strip()
    inbound = int(snapshot) if snapshot.isdigit() else total(parts[1])
    return inbound, total(parts[2])
