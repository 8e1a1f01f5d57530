"""The ModSecurity engine with the real OWASP Core Rule Set 3.3.4 (Debian's modsecurity-crs,
which `make test` installs), driven in-process with no sockets: attacks in each part of a
request, exclusions, paranoia and thresholds, modes, body limits, response inspection,
rule errors, threads, and silence on stderr."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ramparts.errors import ConfigError
from ramparts.http.headers import Headers
from ramparts.policies.waf import (
    CONTINUE,
    Connection,
    Exclusion,
    ModSecurityEngine,
    Outcome,
    OverLimit,
    RequestBodyInspection,
    ResponseBodyInspection,
    Verdict,
    WafMode,
    WafPolicy,
    inspect_request,
    inspect_response,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "waf"
CONN = Connection("203.0.113.7", 51234, "10.0.0.2", 443)
HEAD: Headers = [
    (b"Host", b"shop.example.com"),
    (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
    (b"Accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"Accept-Language", b"en-US,en;q=0.5"),
]
# libinjection's verdict on this one alone: 942100 at paranoia level 1, score 5.
SQLI = b"/products?id=1'%20or%201=1--"
XSS_FORM = b"comment=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E&name=bob"
SQL_ERROR_PAGE = (
    b"<html><body>You have an error in your SQL syntax; check the manual that corresponds "
    b"to your MySQL server version for the right syntax to use near '' at line 1"
    b"</body></html>"
)


def with_body(content_type: bytes, body: bytes) -> Headers:
    return [
        *HEAD,
        (b"Content-Type", content_type),
        (b"Content-Length", str(len(body)).encode()),
    ]


def run(
    engine: ModSecurityEngine,
    target: bytes,
    method: bytes = b"GET",
    headers: Headers | None = None,
    body: bytes = b"",
) -> tuple[Verdict, Outcome]:
    txn = engine.transaction()
    verdict = inspect_request(
        txn, CONN, method, target, "1.1", HEAD if headers is None else headers, body
    )
    return verdict, txn.finish()


def post(engine: ModSecurityEngine, content_type: bytes, body: bytes) -> tuple[Verdict, Outcome]:
    return run(engine, b"/submit", b"POST", with_body(content_type, body), body)


def has(outcome: Outcome, prefix: str) -> bool:
    return any(str(i).startswith(prefix) for i in outcome.rule_ids)


@pytest.fixture(scope="module")
def engine() -> ModSecurityEngine:
    return ModSecurityEngine(WafPolicy())


@pytest.fixture(scope="module")
def detecting() -> ModSecurityEngine:
    return ModSecurityEngine(WafPolicy(mode=WafMode.DETECTION_ONLY))


# -- loading -----------------------------------------------------------------------------


def test_loads_the_core_rule_set_and_leaves_out_ip_reputation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="ramparts"):
        engine = ModSecurityEngine(WafPolicy())
    assert engine.crs is not None and engine.crs.version == (3, 3, 4)
    assert "OWASP CRS 3.3.4" in engine.describe()
    assert "ModSecurity v3.0" in engine.describe()
    [(path, reason)] = engine.left_out
    assert path.name == "REQUEST-910-IP-REPUTATION.conf"
    assert "GeoIP" in reason
    [record] = [r for r in caplog.records if "REQUEST-910" in r.getMessage()]
    assert record.name == "ramparts"
    assert "GeoIP" in record.getMessage()


def test_benign_requests_pass_at_paranoia_1(engine: ModSecurityEngine) -> None:
    verdict, outcome = run(engine, b"/products/list?page=2&sort=price&category=shoes")
    assert verdict is CONTINUE
    assert outcome.matches == ()
    assert (outcome.inbound_score, outcome.outbound_score) == (0, 0)
    assert outcome.blocked is False
    form = b"username=alice&password=S3cret%21pass&remember=on"
    verdict, outcome = post(engine, b"application/x-www-form-urlencoded", form)
    assert verdict is CONTINUE and outcome.rule_ids == ()
    verdict, outcome = post(engine, b"application/json", b'{"name": "Alice", "tags": [1, 2]}')
    assert verdict is CONTINUE and outcome.rule_ids == ()


# -- attacks, part by part ---------------------------------------------------------------


def test_sqli_in_the_query_is_blocked(engine: ModSecurityEngine) -> None:
    verdict, outcome = run(engine, SQLI)
    assert verdict.status == 403
    assert verdict.decided_by == "waf:949110"
    assert "Inbound Anomaly Score Exceeded" in verdict.reason
    assert outcome.rule_ids == (942100, 949110)
    assert outcome.blocked and outcome.verdict == verdict
    assert outcome.inbound_score == 5
    assert "ARGS:id" in outcome.matches[0].data
    assert "attack-sqli" in outcome.matches[0].tags
    assert verdict.respond().status == 403


def test_detection_only_records_but_never_blocks(detecting: ModSecurityEngine) -> None:
    verdict, outcome = run(detecting, SQLI)
    assert verdict is CONTINUE
    assert outcome.rule_ids == (942100, 949110)
    assert outcome.blocked is False
    assert outcome.mode is WafMode.DETECTION_ONLY
    assert outcome.inbound_score == 5  # what would have been compared with 5


def test_xss_in_a_urlencoded_form_is_blocked(engine: ModSecurityEngine) -> None:
    verdict, outcome = post(engine, b"application/x-www-form-urlencoded", XSS_FORM)
    assert verdict.status == 403
    assert has(outcome, "941")
    assert any("ARGS:comment" in m.data for m in outcome.matches if m.rule_id == 941100)


def test_json_body_attack_is_found_by_the_json_processor(engine: ModSecurityEngine) -> None:
    body = b'{"user": {"name": "x\' UNION SELECT password FROM users--"}}'
    verdict, outcome = post(engine, b"application/json", body)
    assert verdict.status == 403
    assert has(outcome, "942")
    assert any("json.user.name" in m.data for m in outcome.matches)


def test_xml_body_attack_is_found(engine: ModSecurityEngine) -> None:
    body = b"<order><note>&lt;script&gt;alert(1)&lt;/script&gt;</note></order>"
    verdict, outcome = post(engine, b"application/xml", body)
    assert verdict.status == 403
    assert has(outcome, "941")


def test_a_body_that_does_not_parse_is_refused_400(engine: ModSecurityEngine) -> None:
    verdict, _ = post(engine, b"application/xml", b"<order><note>")
    assert (verdict.status, verdict.decided_by) == (400, "waf:200002")
    verdict, _ = post(engine, b"application/json", b'{"a": ')
    assert (verdict.status, verdict.decided_by) == (400, "waf:200002")


def test_multipart_attack_in_a_field_is_blocked(engine: ModSecurityEngine) -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="comment"\r\n\r\n'
        b"<script>alert(document.cookie)</script>\r\n"
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n"
    )
    verdict, outcome = post(engine, b"multipart/form-data; boundary=XyZ", body)
    assert verdict.status == 403
    assert has(outcome, "941")
    benign = body.replace(b"<script>alert(document.cookie)</script>", b"Nice shoes!")
    verdict, outcome = post(engine, b"multipart/form-data; boundary=XyZ", benign)
    assert verdict is CONTINUE and outcome.rule_ids == ()


def test_request_bytes_reach_modsecurity_unchanged() -> None:
    rule = 'SecRule REQUEST_HEADERS:X-Raw "@rx \\xff\\xfe" "id:10401,phase:1,deny,log"'
    engine = ModSecurityEngine(WafPolicy(crs=None, rules=(rule,)))
    verdict, _ = run(engine, b"/", headers=[(b"X-Raw", b"a\xff\xfeb")])
    assert verdict.decided_by == "waf:10401"  # not re-encoded as UTF-8 on the way


# -- exclusions --------------------------------------------------------------------------


def test_exclusion_by_id() -> None:
    engine = ModSecurityEngine(WafPolicy(exclusions=(Exclusion(rule_id=942100),)))
    verdict, outcome = run(engine, SQLI)
    assert verdict is CONTINUE and outcome.rule_ids == ()
    ranged = ModSecurityEngine(WafPolicy(exclusions=(Exclusion(rule_id=(942000, 942999)),)))
    assert run(ranged, SQLI)[0] is CONTINUE


def test_exclusion_by_tag() -> None:
    engine = ModSecurityEngine(WafPolicy(exclusions=(Exclusion(tag="attack-sqli"),)))
    assert run(engine, SQLI)[0] is CONTINUE
    # Other attacks still count.
    assert post(engine, b"application/x-www-form-urlencoded", XSS_FORM)[0].status == 403


def test_exclusion_by_target_spares_only_that_argument() -> None:
    engine = ModSecurityEngine(WafPolicy(exclusions=(Exclusion(rule_id=942100, target="ARGS:id"),)))
    assert run(engine, SQLI)[0] is CONTINUE
    assert run(engine, b"/products?q=1'%20or%201=1--")[0].status == 403
    by_tag = ModSecurityEngine(
        WafPolicy(exclusions=(Exclusion(tag="attack-sqli", target="!ARGS:id"),))
    )
    assert run(by_tag, SQLI)[0] is CONTINUE
    assert run(by_tag, b"/products?q=1'%20or%201=1--")[0].status == 403


def test_path_scoped_exclusions() -> None:
    engine = ModSecurityEngine(
        WafPolicy(
            exclusions=(
                Exclusion(rule_id=942100, path_prefix="/search/"),
                Exclusion(tag="attack-xss", path_prefix="/cms/"),
                Exclusion(rule_id=942100, target="ARGS:sql", path_prefix="/admin/"),
            )
        )
    )
    assert run(engine, b"/search/?id=1'%20or%201=1--")[0] is CONTINUE
    assert run(engine, SQLI)[0].status == 403
    # The path is judged with dot segments resolved (and percent-decoded by ModSecurity).
    assert run(engine, b"/search/../products?id=1'%20or%201=1--")[0].status == 403
    assert run(engine, b"/search/%2e%2e/products?id=1'%20or%201=1--")[0].status == 403
    assert (
        run(
            engine,
            b"/cms/save",
            b"POST",
            with_body(b"application/x-www-form-urlencoded", XSS_FORM),
            XSS_FORM,
        )[0]
        is CONTINUE
    )
    assert post(engine, b"application/x-www-form-urlencoded", XSS_FORM)[0].status == 403
    assert run(engine, b"/admin/q?sql=1'%20or%201=1--")[0] is CONTINUE
    assert run(engine, b"/admin/q?id=1'%20or%201=1--")[0].status == 403


# -- extra rules and rule errors ---------------------------------------------------------


def test_extra_rules_inline_and_from_files() -> None:
    engine = ModSecurityEngine(
        WafPolicy(
            rules=(
                'SecRule ARGS:token "@streq letmein" '
                "\"id:10001,phase:2,deny,status:451,log,msg:'magic token'\"",
                DATA / "custom_rules.conf",
            ),
        )
    )
    verdict, outcome = run(engine, b"/?token=letmein")
    assert (verdict.status, verdict.rule_id, verdict.reason) == (451, 10001, "magic token")
    assert outcome.rule_ids == (10001,)
    verdict, _ = run(engine, b"/", headers=[*HEAD, (b"X-Debug-Override", b"yes")])
    assert (verdict.status, verdict.decided_by) == (451, "waf:10201")
    assert run(engine, b"/?token=guess")[0] is CONTINUE


def test_rules_before_the_crs_can_set_its_variables() -> None:
    # As in the CRS's REQUEST-900 file: allow only GET (rule 911100 enforces the list).
    setup = "SecAction \"id:10501,phase:1,pass,nolog,setvar:'tx.allowed_methods=GET'\""
    engine = ModSecurityEngine(WafPolicy(rules_before_crs=(setup,)))
    verdict, outcome = run(engine, b"/x", b"HEAD")
    assert 911100 in outcome.rule_ids
    assert verdict.status == 403


def test_a_bad_inline_rule_is_a_config_error_with_the_engines_message() -> None:
    bad = 'SecRule ARGS "@contains x" "id:10002,phase:2,frobnicate:1"'
    with pytest.raises(ConfigError) as err:
        ModSecurityEngine(WafPolicy(crs=None, rules=("SecRuleEngine On", bad)))
    assert "Expecting an action" in err.value.reason
    assert err.value.reason.startswith("ModSecurity: ")
    assert (err.value.field, err.value.line, err.value.file) == ("rules.1", 1, None)


def test_a_bad_rule_file_is_located_by_file_and_line() -> None:
    path = DATA / "bad_rule.conf"
    with pytest.raises(ConfigError) as err:
        ModSecurityEngine(WafPolicy(rules=(path,)))
    assert (err.value.file, err.value.line) == (str(path), 3)
    assert "frobnicate" in err.value.reason
    assert f"{path}:3:" in str(err.value)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (('SecRule ARGS "@contains x" "phase:2,deny"',), "must have an ID"),
        (
            ('SecRule ARGS "@contains x" "id:7,phase:2,pass"',) * 2,
            "Rule id: 7 is duplicated",
        ),
        (("Include /nonexistent/ramparts-test.conf",), "Not able to open file"),
    ],
)
def test_other_rule_errors(rules: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModSecurityEngine(WafPolicy(crs=None, rules=rules))


def test_a_missing_or_directory_rule_file_is_refused_before_modsecurity_sees_it() -> None:
    # (ModSecurity exits the whole process when told to Include a directory.)
    for path in (DATA / "missing.conf", DATA):
        with pytest.raises(ConfigError, match="not a rule file") as err:
            ModSecurityEngine(WafPolicy(crs=None, rules=(path,)))
        assert (err.value.file, err.value.field) == (str(path), "rules.0")


def test_engines_build_after_errors_and_after_a_file_without_final_newline() -> None:
    with pytest.raises(ConfigError):
        ModSecurityEngine(WafPolicy(crs=None, rules=("SecRul bogus",)))
    # A file ending in a target update with no newline leaves ModSecurity's lexer in a
    # state that fails the next load anywhere in the process, unless reset.
    ModSecurityEngine(WafPolicy(crs=None, rules=(DATA / "update_target_no_newline.conf",)))
    again = ModSecurityEngine(WafPolicy(crs=None, rules=(DATA / "custom_rules.conf",)))
    assert run(again, b"/", headers=[(b"X-Debug-Override", b"yes")])[0].status == 451
    # An update inline without a newline, then more rules in the same and a new engine.
    ModSecurityEngine(
        WafPolicy(
            crs=None,
            rules=('SecRuleUpdateTargetById 1 "!ARGS:a"', DATA / "custom_rules.conf"),
        )
    )


def test_no_crs_means_only_the_extra_rules_and_no_scores() -> None:
    engine = ModSecurityEngine(WafPolicy(crs=None))
    verdict, outcome = run(engine, SQLI)
    assert verdict is CONTINUE
    assert (outcome.rule_ids, outcome.inbound_score, outcome.outbound_score) == ((), None, None)


# -- paranoia, thresholds, modes, statuses -----------------------------------------------


def paranoia_tags(outcome: Outcome) -> set[str]:
    return {t for m in outcome.matches for t in m.tags if t.startswith("paranoia-level/")}


def test_paranoia_level_decides_which_rules_run_and_count() -> None:
    pl1 = run(ModSecurityEngine(WafPolicy(paranoia_level=1)), SQLI)[1]
    pl2 = run(ModSecurityEngine(WafPolicy(paranoia_level=2)), SQLI)[1]
    assert paranoia_tags(pl1) == {"paranoia-level/1"}
    assert "paranoia-level/2" in paranoia_tags(pl2)
    assert pl2.inbound_score is not None and pl2.inbound_score > pl1.inbound_score  # type: ignore[operator]
    # A request only paranoia level 2 objects to (no Accept header: 920300).
    bare = [(b"Host", b"shop.example.com"), (b"User-Agent", b"curl/8.0")]
    assert run(ModSecurityEngine(WafPolicy(paranoia_level=1)), b"/", headers=bare)[1].rule_ids == ()
    assert (
        920300
        in run(ModSecurityEngine(WafPolicy(paranoia_level=2)), b"/", headers=bare)[1].rule_ids
    )


def test_detection_paranoia_records_higher_levels_without_counting_them() -> None:
    engine = ModSecurityEngine(WafPolicy(paranoia_level=1, detection_paranoia_level=4))
    verdict, outcome = run(engine, SQLI)
    assert {"paranoia-level/2", "paranoia-level/4"} <= paranoia_tags(outcome)
    assert outcome.inbound_score == 5  # the paranoia level 1 score alone is compared
    assert verdict.status == 403


def test_inbound_threshold_is_respected() -> None:
    verdict, outcome = run(ModSecurityEngine(WafPolicy(inbound_threshold=6)), SQLI)
    assert verdict is CONTINUE
    assert outcome.rule_ids == (942100,) and outcome.inbound_score == 5
    assert run(ModSecurityEngine(WafPolicy(inbound_threshold=5)), SQLI)[0].status == 403


def test_block_status_replaces_the_default_deny_only() -> None:
    engine = ModSecurityEngine(WafPolicy(block_status=418))
    assert run(engine, SQLI)[0].status == 418
    assert post(engine, b"application/json", b'{"a": ')[0].status == 400  # its own status


def test_mode_off_evaluates_nothing() -> None:
    engine = ModSecurityEngine(WafPolicy(mode=WafMode.OFF))
    assert engine.mode is WafMode.OFF
    verdict, outcome = run(engine, SQLI)
    assert verdict is CONTINUE
    assert (outcome.rule_ids, outcome.inbound_score) == ((), None)


def test_a_redirect_rule_answers_with_its_location() -> None:
    rule = (
        'SecRule ARGS:go "@streq away" "id:10601,phase:1,redirect:https://example.com/denied,log"'
    )
    verdict, _ = run(ModSecurityEngine(WafPolicy(crs=None, rules=(rule,))), b"/?go=away")
    assert (verdict.status, verdict.location) == (302, "https://example.com/denied")
    assert verdict.respond().headers == ((b"location", b"https://example.com/denied"),)


def test_a_refusal_sticks_to_the_transaction(engine: ModSecurityEngine) -> None:
    txn = engine.transaction("req-1")
    assert txn.id == "req-1"
    verdict = inspect_request(txn, CONN, b"GET", SQLI, "1.1", HEAD)
    assert verdict.blocked
    assert txn.process_response_headers(200, "1.1", []) is verdict
    assert txn.append_request_body(b"more") is verdict
    outcome = txn.finish()
    assert txn.finish() is outcome
    assert outcome.verdict is verdict


# -- request body limits -----------------------------------------------------------------


def limited(over_limit: OverLimit, mode: WafMode = WafMode.ON) -> ModSecurityEngine:
    return ModSecurityEngine(
        WafPolicy(mode=mode, request_body=RequestBodyInspection(limit=64, over_limit=over_limit))
    )


PADDED_XSS = b"pad=" + b"x" * 100 + b"&" + XSS_FORM  # the attack lies past byte 64
EARLY_XSS = XSS_FORM + b"&pad=" + b"x" * 100


def test_body_over_the_limit_is_refused_413_when_rejecting() -> None:
    engine = limited(OverLimit.REJECT)
    assert engine.request_body_limit == 64
    verdict, outcome = post(engine, b"application/x-www-form-urlencoded", b"a=" + b"x" * 70)
    assert (verdict.status, verdict.decided_by, verdict.close) == (
        413,
        "waf:request-body-limit",
        True,
    )
    assert outcome.blocked and outcome.rule_ids == ()
    # Before reading it, from its declared length.
    txn = engine.transaction()
    assert txn.declare_request_body(65).status == 413
    assert engine.transaction().declare_request_body(64) is CONTINUE
    # Up to the limit is inspected as usual.
    assert post(engine, b"application/x-www-form-urlencoded", b"a=" + b"x" * 62)[0] is CONTINUE


def test_body_over_the_limit_is_inspected_in_part_when_partial() -> None:
    engine = limited(OverLimit.INSPECT_PARTIAL)
    verdict, outcome = post(engine, b"application/x-www-form-urlencoded", PADDED_XSS)
    assert verdict is CONTINUE  # the attack was past what is inspected
    assert outcome.partial is True
    verdict, outcome = post(engine, b"application/x-www-form-urlencoded", EARLY_XSS)
    assert verdict.status == 403 and outcome.partial is True
    # A JSON body cut at the limit does not parse; that alone is no reason to refuse it.
    cut_json = b'{"note": "' + b"x" * 100 + b'"}'
    verdict, outcome = post(engine, b"application/json", cut_json)
    assert verdict is CONTINUE and outcome.partial
    # Fed in pieces, the same.
    txn = engine.transaction()
    inspect_request(
        txn, CONN, b"POST", b"/", "1.1", with_body(b"application/x-www-form-urlencoded", EARLY_XSS)
    )
    txn = engine.transaction()
    for step in (txn.process_connection(CONN), txn.process_uri(b"POST", b"/", "1.1")):
        assert step is CONTINUE
    txn.process_request_headers(with_body(b"application/x-www-form-urlencoded", EARLY_XSS))
    for i in range(0, len(EARLY_XSS), 16):
        assert txn.append_request_body(EARLY_XSS[i : i + 16]) is CONTINUE
    assert txn.process_request_body().status == 403


def test_detection_only_never_refuses_a_long_body() -> None:
    engine = limited(OverLimit.REJECT, WafMode.DETECTION_ONLY)
    verdict, outcome = post(engine, b"application/x-www-form-urlencoded", EARLY_XSS)
    assert verdict is CONTINUE
    assert outcome.partial and has(outcome, "941")


# -- responses ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inspecting() -> ModSecurityEngine:
    return ModSecurityEngine(WafPolicy(response_body=ResponseBodyInspection(enabled=True)))


def exchange(
    engine: ModSecurityEngine, status: int, headers: Headers, body: bytes
) -> tuple[Verdict, Outcome]:
    txn = engine.transaction()
    assert inspect_request(txn, CONN, b"GET", b"/item?id=5", "1.1", HEAD) is CONTINUE
    buffered = body if engine.wants_response_body(status, headers) else None
    verdict = inspect_response(txn, status, "1.1", headers, buffered)
    return verdict, txn.finish()


HTML = [(b"Content-Type", b"text/html; charset=utf-8")]


def test_a_response_leaking_an_sql_error_is_blocked(inspecting: ModSecurityEngine) -> None:
    verdict, outcome = exchange(inspecting, 500, HTML, SQL_ERROR_PAGE)
    assert (verdict.status, verdict.decided_by) == (403, "waf:959100")
    assert has(outcome, "951")
    assert outcome.outbound_score == 5
    assert outcome.inbound_score == 0  # CRS 3 adds response scores to the inbound variables too
    verdict, outcome = exchange(inspecting, 200, HTML, b"<html>all fine</html>")
    assert verdict is CONTINUE and outcome.rule_ids == ()


def test_response_bodies_are_only_inspected_when_enabled_and_of_a_listed_type(
    engine: ModSecurityEngine, inspecting: ModSecurityEngine
) -> None:
    assert engine.wants_response_body(200, HTML) is False
    assert exchange(engine, 500, HTML, SQL_ERROR_PAGE)[0] is CONTINUE
    # Fed anyway, a body the policy does not inspect is ignored.
    txn = engine.transaction()
    inspect_request(txn, CONN, b"GET", b"/", "1.1", HEAD)
    assert inspect_response(txn, 500, "1.1", HTML, SQL_ERROR_PAGE) is CONTINUE
    json = [(b"Content-Type", b"application/json")]
    assert inspecting.wants_response_body(200, json) is False
    assert inspecting.wants_response_body(200, [(b"content-type", b"TEXT/PLAIN")]) is True
    assert inspecting.wants_response_body(200, []) is False


def test_outbound_threshold_is_respected() -> None:
    engine = ModSecurityEngine(
        WafPolicy(outbound_threshold=100, response_body=ResponseBodyInspection(enabled=True))
    )
    verdict, outcome = exchange(engine, 500, HTML, SQL_ERROR_PAGE)
    assert verdict is CONTINUE
    assert has(outcome, "951") and outcome.outbound_score == 5


def test_response_body_over_the_limit_is_inspected_in_part() -> None:
    engine = ModSecurityEngine(
        WafPolicy(response_body=ResponseBodyInspection(enabled=True, limit=64))
    )
    verdict, outcome = exchange(engine, 500, HTML, b"<p>" + b"x" * 100 + SQL_ERROR_PAGE)
    assert verdict is CONTINUE and outcome.partial


def test_response_headers_are_inspected() -> None:
    rule = (
        'SecRule RESPONSE_HEADERS:X-Debug-Token "@rx ." '
        "\"id:10701,phase:3,deny,status:502,log,msg:'debug token leaked'\""
    )
    engine = ModSecurityEngine(WafPolicy(rules=(rule,)))
    verdict, outcome = exchange(engine, 200, [*HTML, (b"X-Debug-Token", b"abc")], b"")
    assert (verdict.status, verdict.rule_id) == (502, 10701)
    assert outcome.rule_ids == (10701,)


# -- a CRS 4 tree ------------------------------------------------------------------------


def test_a_crs_4_tree_loads_with_its_setup_names_plugins_and_scores() -> None:
    engine = ModSecurityEngine(WafPolicy(crs=DATA / "crs4", paranoia_level=1, inbound_threshold=5))
    verdict, outcome = run(engine, b"/?q=hello")
    assert verdict is CONTINUE
    # Plugin config, plugin before, the rules, plugin after: in load order.
    assert outcome.rule_ids == (9500010, 9500020, 901002, 9500030)
    setup = next(m for m in outcome.matches if m.rule_id == 901002)
    assert setup.data == "1 1 5 400"  # blocking, detection paranoia; threshold; version
    verdict, outcome = run(engine, b"/?q=evil")
    assert (verdict.status, verdict.decided_by, outcome.inbound_score) == (403, "waf:949110", 5)
    # A paranoia-level-2 match is not counted at level 1, and is at level 2.
    verdict, outcome = run(engine, b"/?q=wicked")
    assert verdict is CONTINUE and 942902 in outcome.rule_ids and outcome.inbound_score == 0
    pl2 = ModSecurityEngine(WafPolicy(crs=DATA / "crs4", paranoia_level=2))
    verdict, outcome = run(pl2, b"/?q=wicked")
    assert verdict.status == 403 and outcome.inbound_score == 5


# -- threads and stderr ------------------------------------------------------------------


def test_one_engine_serves_transactions_on_many_threads(engine: ModSecurityEngine) -> None:
    cases = [SQLI, b"/products?page=3", b"/products?q=%3Cscript%3Ealert(1)%3C/script%3E"] * 12

    def one(target: bytes) -> tuple[bytes, int, tuple[int, ...]]:
        verdict, outcome = run(engine, target)
        return target, verdict.status, outcome.rule_ids

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, cases))
    for target, status, ids in results:
        if target == b"/products?page=3":
            assert (status, ids) == (0, ())
        else:
            assert status == 403 and ids[-1] == 949110


def test_nothing_reaches_stdout_or_stderr(
    capfd: pytest.CaptureFixture[str], inspecting: ModSecurityEngine, detecting: ModSecurityEngine
) -> None:
    def noisy() -> Iterator[None]:
        for engine in (inspecting, detecting):
            run(engine, SQLI)
            post(engine, b"application/x-www-form-urlencoded", XSS_FORM)
            post(engine, b"application/xml", b"<order><note>")  # libxml2 would print
            post(engine, b"application/xml", b"not xml at all")
            post(engine, b"application/json", b'{"a": ')
            post(engine, b"multipart/form-data; boundary=XyZ", b"--XyZ\r\ngarbage")
            exchange(engine, 500, HTML, SQL_ERROR_PAGE)
            yield

    capfd.readouterr()
    for _ in noisy():
        pass
    with ThreadPoolExecutor(2) as pool:  # and from fresh threads
        list(pool.map(lambda _: list(noisy()), range(2)))
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
