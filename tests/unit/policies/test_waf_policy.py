"""The engine-neutral parts of the WAF: policy validation, its SecLang rendering, finding
a Core Rule Set (3.x on disk, 4.x as a small stand-in tree), score parsing, and the
one-call helpers over any transaction. No ModSecurity runs here."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from ramparts.pipeline.phases import Respond
from ramparts.policies.waf import (
    CONTINUE,
    Connection,
    Exclusion,
    Outcome,
    OverLimit,
    RequestBodyInspection,
    ResponseBodyInspection,
    RuleMatch,
    Verdict,
    WafMode,
    WafPolicy,
    find_crs,
    inspect_request,
    inspect_response,
    parse_rule_ids,
)
from ramparts.policies.waf.seclang import (
    SCORE_REPORT_ID,
    base_config,
    crs_setup,
    global_exclusions,
    parse_score_report,
    path_exclusions,
    score_report,
    score_snapshot,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "waf"
CRS3 = Path("/usr/share/modsecurity-crs")


# -- policy values -----------------------------------------------------------------------


def test_defaults_follow_the_crs_and_the_schema() -> None:
    p = WafPolicy()
    assert p.mode is WafMode.ON
    assert (p.paranoia_level, p.effective_detection_level) == (1, 1)
    assert (p.inbound_threshold, p.outbound_threshold, p.block_status) == (5, 4, 403)
    assert p.crs == CRS3
    assert p.request_body.limit == 1024 * 1024
    assert p.request_body.over_limit is OverLimit.REJECT
    assert p.response_body.enabled is False


def test_equal_policies_are_equal_and_hashable() -> None:
    # A plan may build one engine per distinct policy and share it between locations.
    a = WafPolicy(exclusions=[Exclusion(rule_id=942100)], rules=["SecRuleEngine On"])  # type: ignore[arg-type]
    b = WafPolicy(exclusions=(Exclusion(rule_id=942100),), rules=("SecRuleEngine On",))
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1


def test_mode_and_over_limit_accept_their_config_spellings() -> None:
    assert WafPolicy(mode="detection_only").mode is WafMode.DETECTION_ONLY  # type: ignore[arg-type]
    body = RequestBodyInspection(over_limit="inspect_partial")  # type: ignore[arg-type]
    assert body.over_limit is OverLimit.INSPECT_PARTIAL
    with pytest.raises(ValueError):
        WafPolicy(mode="block")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"paranoia_level": 0}, "paranoia_level"),
        ({"paranoia_level": 5}, "paranoia_level"),
        ({"paranoia_level": 2, "detection_paranoia_level": 1}, "detection_paranoia_level"),
        ({"inbound_threshold": 0}, "inbound_threshold"),
        ({"outbound_threshold": True}, "outbound_threshold"),
        ({"block_status": 200}, "block_status"),
        ({"rules": (42,)}, "rules"),
    ],
)
def test_bad_policy_values_name_the_setting(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        WafPolicy(**kwargs)  # type: ignore[arg-type]


def test_body_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"request_body\.limit"):
        RequestBodyInspection(limit=0)
    with pytest.raises(ValueError, match=r"response_body\.limit"):
        ResponseBodyInspection(limit=-1)
    with pytest.raises(ValueError, match="mime_types"):
        ResponseBodyInspection(mime_types=("text html",))
    assert ResponseBodyInspection(mime_types=(" Text/HTML",)).mime_types == ("text/html",)


def test_rule_ids_parse_as_the_schema_writes_them() -> None:
    assert parse_rule_ids(942100) == 942100
    assert parse_rule_ids("942100") == 942100
    assert parse_rule_ids(" 942100 - 942199 ") == (942100, 942199)
    assert parse_rule_ids("942100-942100") == 942100
    for bad in ("942199-942100", "abc", "0", "1-2-3", ""):
        with pytest.raises(ValueError):
            parse_rule_ids(bad)


def test_an_exclusion_names_one_selector_and_safe_values() -> None:
    Exclusion(rule_id=942100)
    Exclusion(tag="attack-sqli", target="!ARGS:password", path_prefix="/login")
    Exclusion(rule_id=(942100, 942199), target="REQUEST_COOKIES:/^sess/")
    with pytest.raises(ValueError, match="exactly one"):
        Exclusion()
    with pytest.raises(ValueError, match="exactly one"):
        Exclusion(rule_id=1, tag="x")
    with pytest.raises(ValueError, match="rule_id"):
        Exclusion(rule_id=(5, 4))
    # Nothing that could break out of the generated SecLang.
    for kwargs in (
        {"tag": 'a" "deny'},
        {"rule_id": 1, "target": 'ARGS:x"'},
        {"rule_id": 1, "target": "ARGS:x,deny"},
        {"rule_id": 1, "path_prefix": "api"},
        {"rule_id": 1, "path_prefix": '/a" "id:1'},
        {"rule_id": 1, "path_prefix": "/a b"},
        {"rule_id": 1, "path_prefix": "/%{tx.x}"},
    ):
        with pytest.raises(ValueError):
            Exclusion(**kwargs)


# -- SecLang rendering -------------------------------------------------------------------


def test_base_config_keeps_body_phases_running_and_limits_from_the_policy() -> None:
    text = base_config(
        WafPolicy(
            mode=WafMode.DETECTION_ONLY,
            request_body=RequestBodyInspection(limit=1000, arguments_limit=50),
            response_body=ResponseBodyInspection(enabled=False, limit=2000),
        )
    )
    lines = text.splitlines()
    assert "SecRuleEngine DetectionOnly" in lines
    # Both On whatever the policy says: Off would skip the phases the CRS blocks in.
    assert "SecRequestBodyAccess On" in lines
    assert "SecResponseBodyAccess On" in lines
    assert not any(line.startswith("SecResponseBodyMimeType") for line in lines)
    assert "SecRequestBodyLimit 1000" in lines
    assert "SecRequestBodyNoFilesLimit 1000" in lines
    assert "SecRequestBodyLimitAction ProcessPartial" in lines
    assert "SecResponseBodyLimit 2000" in lines
    assert "SecArgumentsLimit 50" in lines
    assert any("ctl:requestBodyProcessor=JSON" in line for line in lines)
    assert any("ctl:requestBodyProcessor=XML" in line for line in lines)
    assert text.endswith("\n")


def test_crs_setup_uses_each_major_versions_names() -> None:
    policy = WafPolicy(paranoia_level=2, detection_paranoia_level=3, inbound_threshold=7)
    v3 = crs_setup(policy, find_crs(CRS3))
    assert "setvar:tx.paranoia_level=2" in v3
    assert "setvar:tx.executing_paranoia_level=3" in v3
    assert "setvar:tx.inbound_anomaly_score_threshold=7" in v3
    assert "setvar:tx.crs_setup_version=334" in v3
    v4 = crs_setup(policy, find_crs(DATA / "crs4"))
    assert "setvar:tx.blocking_paranoia_level=2" in v4
    assert "setvar:tx.detection_paranoia_level=3" in v4
    assert "setvar:tx.crs_setup_version=400" in v4


def test_exclusions_render_as_directives_or_path_scoped_ctl_rules() -> None:
    policy = WafPolicy(
        exclusions=(
            Exclusion(rule_id=942100),
            Exclusion(rule_id=(942100, 942199)),
            Exclusion(tag="attack-xss"),
            Exclusion(rule_id=942100, target="!ARGS:password"),
            Exclusion(tag="attack-sqli", target="ARGS:q"),
            Exclusion(rule_id=941100, path_prefix="/cms/"),
            Exclusion(tag="attack-rce", target="ARGS:cmd", path_prefix="/admin/"),
        )
    )
    assert global_exclusions(policy).splitlines() == [
        "SecRuleRemoveById 942100",
        "SecRuleRemoveById 942100-942199",
        'SecRuleRemoveByTag "attack-xss"',
        'SecRuleUpdateTargetById 942100 "!ARGS:password"',
        'SecRuleUpdateTargetByTag "attack-sqli" "!ARGS:q"',
    ]
    scoped = path_exclusions(policy).splitlines()
    assert scoped == [
        'SecRule REQUEST_FILENAME "@beginsWith /cms/" '
        '"id:99000,phase:1,pass,nolog,t:none,t:normalizePath,ctl:ruleRemoveById=941100"',
        'SecRule REQUEST_FILENAME "@beginsWith /admin/" '
        '"id:99001,phase:1,pass,nolog,t:none,t:normalizePath,'
        'ctl:ruleRemoveTargetByTag=attack-rce;ARGS:cmd"',
    ]


def test_score_rules_use_the_versions_variables() -> None:
    crs3, crs4 = find_crs(CRS3), find_crs(DATA / "crs4")
    assert "%{tx.anomaly_score_pl4}" in score_report(crs3)
    assert "%{tx.inbound_anomaly_score_pl4}" in score_report(crs4)
    assert f"id:{SCORE_REPORT_ID},phase:5" in score_report(crs3)
    snap = score_snapshot(WafPolicy(paranoia_level=2), crs3)
    assert "=+%{tx.anomaly_score_pl2}" in snap
    assert "pl3" not in snap


def test_score_report_parsing() -> None:
    # snapshot | live inbound per level | outbound per level
    assert parse_score_report("5|10 3 0 0|4 0 2 0", 1) == (5, 4)
    assert parse_score_report("5|10 3 0 0|4 0 2 0", 3) == (5, 6)
    assert parse_score_report("|10 3 0 0|4 0 2 0", 2) == (13, 4)  # no snapshot: live sum
    assert parse_score_report("||", 1) == (None, None)
    assert parse_score_report("garbage", 1) == (None, None)


# -- finding a Core Rule Set -------------------------------------------------------------


def test_finds_debians_crs_3() -> None:
    crs = find_crs(CRS3)
    assert crs.version == (3, 3, 4)
    assert crs.setup_version == 334
    assert crs.root == CRS3
    names = [p.name for p in crs.rule_files]
    assert names[0] == "REQUEST-901-INITIALIZATION.conf"
    assert names == sorted(names)
    assert "RESPONSE-980-CORRELATION.conf" in names
    assert crs.plugin_configs == crs.plugins_before == crs.plugins_after == ()
    # The rules directory itself is accepted too.
    assert find_crs(CRS3 / "rules").rule_files == crs.rule_files


def test_finds_a_crs_4_tree_with_plugins() -> None:
    crs = find_crs(DATA / "crs4")
    assert crs.version == (4, 0, 0)
    assert [p.name for p in crs.rule_files] == [
        "REQUEST-901-INITIALIZATION.conf",
        "REQUEST-942-TEST-ATTACKS.conf",
        "REQUEST-949-BLOCKING-EVALUATION.conf",
    ]  # not the .conf.example
    assert [p.name for p in crs.plugin_configs] == ["demo-config.conf"]
    assert [p.name for p in crs.plugins_before] == ["demo-before.conf"]
    assert [p.name for p in crs.plugins_after] == ["demo-after.conf"]
    assert crs.inbound_score_var == "inbound_anomaly_score_pl"


def test_no_crs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no Core Rule Set"):
        find_crs(tmp_path)
    (tmp_path / "REQUEST-901-INITIALIZATION.conf").write_text("# no version here\n")
    with pytest.raises(ValueError, match="cannot tell"):
        find_crs(tmp_path)
    (tmp_path / "REQUEST-901-INITIALIZATION.conf").write_text("ver:'OWASP_CRS/2.2.9'\n")
    with pytest.raises(ValueError, match="not supported"):
        find_crs(tmp_path)


# -- the seam, with a scripted engine ----------------------------------------------------


class Scripted:
    """A WafTransaction that refuses at a chosen step and records the calls."""

    def __init__(self, refuse_at: str = "") -> None:
        self.refuse_at = refuse_at
        self.calls: list[str] = []

    def _step(self, name: str) -> Verdict:
        self.calls.append(name)
        if name == self.refuse_at:
            return Verdict(status=403, decided_by="waf:1", rule_id=1)
        return CONTINUE

    def process_connection(self, conn: Connection) -> Verdict:
        return self._step("connection")

    def process_uri(self, method: bytes, target: bytes, version: str) -> Verdict:
        return self._step("uri")

    def process_request_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Verdict:
        return self._step("request_headers")

    def declare_request_body(self, length: int) -> Verdict:
        return self._step("declare")

    def append_request_body(self, chunk: bytes) -> Verdict:
        return self._step("append_request_body")

    def process_request_body(self) -> Verdict:
        return self._step("request_body")

    def process_response_headers(
        self, status: int, version: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> Verdict:
        return self._step("response_headers")

    @property
    def response_body_wanted(self) -> bool:
        return False

    @property
    def response_body_limit(self) -> int:
        return 0

    def append_response_body(self, chunk: bytes) -> Verdict:
        return self._step("append_response_body")

    def process_response_body(self) -> Verdict:
        return self._step("response_body")

    def finish(self) -> Outcome:
        return Outcome(mode=WafMode.ON)


CONN = Connection("192.0.2.1", 40000, "192.0.2.2", 80)


def test_inspect_request_runs_every_step_and_stops_at_a_refusal() -> None:
    txn = Scripted()
    assert inspect_request(txn, CONN, b"POST", b"/", "1.1", [], b"x") is CONTINUE
    assert txn.calls == [
        "connection",
        "uri",
        "request_headers",
        "append_request_body",
        "request_body",
    ]
    txn = Scripted()
    inspect_request(txn, CONN, b"GET", b"/", "1.1", [])  # no body: no append, still processed
    assert txn.calls == ["connection", "uri", "request_headers", "request_body"]
    txn = Scripted(refuse_at="uri")
    assert inspect_request(txn, CONN, b"GET", b"/", "1.1", []).status == 403
    assert txn.calls == ["connection", "uri"]


def test_inspect_response_runs_the_body_phase_even_without_a_body() -> None:
    txn = Scripted()
    inspect_response(txn, 200, "1.1", [])
    assert txn.calls == ["response_headers", "response_body"]
    txn = Scripted(refuse_at="response_headers")
    assert inspect_response(txn, 200, "1.1", [], b"body").decided_by == "waf:1"
    assert txn.calls == ["response_headers"]


def test_a_verdict_becomes_the_chains_answer() -> None:
    assert Verdict(status=403, decided_by="waf:949110").respond() == Respond(
        status=403, decided_by="waf:949110"
    )
    moved = Verdict(status=302, decided_by="waf:1", location="https://example.com/denied")
    assert moved.respond().headers == ((b"location", b"https://example.com/denied"),)
    assert CONTINUE.blocked is False
    with pytest.raises(ValueError):
        CONTINUE.respond()


def test_outcome_lists_rule_ids_once_in_firing_order() -> None:
    def match(rule_id: int) -> RuleMatch:
        return RuleMatch(rule_id, f"rule {rule_id}", "", 2, 2)

    outcome = Outcome(mode=WafMode.ON, matches=(match(942100), match(941100), match(942100)))
    assert outcome.rule_ids == (942100, 941100)
    assert outcome.messages == ("rule 942100", "rule 941100", "rule 942100")
    assert outcome.blocked is False
