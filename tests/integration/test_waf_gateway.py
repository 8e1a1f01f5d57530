"""The WAF (ModSecurity 3 + OWASP CRS 3.3.4) through the running gateway: attacks in each
part of a request refused with ``waf:949110`` and never forwarded, the rule ids in the
access log, detection-only, the block status, request body limits (reject and partial
inspection), exclusions (by id, tag, target and path), inline rules, ``waf: false``, the
audit log, paranoia levels, bad rules at ``ramparts check`` and at reload, Expect:
100-continue, and keep-alive and pipelining around a refusal."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from ..support import ROOT, Response, free_port, read_response, running, start_gateway
from .conftest import (
    RecordingOrigin,
    assert_not_forwarded,
    connect,
    echo_json,
    gateway,
    marker_request,
)

pytestmark = [pytest.mark.timeout(60)]

# libinjection's verdict on this one: 942100 at paranoia level 1 (score 5), nothing else.
SQLI = "1' or 1=1--"
XSS = "<script>alert(document.cookie)</script>"
# Only paranoia level 2 objects to this: 931130, a remote file inclusion off-domain link.
PL2_ONLY = "u=http://evil.example/shell.txt"
HEADER_RULE_ID = 10001
HEADER_RULE = (
    'SecRule REQUEST_HEADERS:X-Debug-Override "@streq yes" '
    f"\"id:{HEADER_RULE_ID},phase:1,deny,log,msg:'debug override header'\""
)
LIMIT = 1024


@dataclass
class Setup:
    port: int  # the main server: WAF on at server level, locations varying it
    pl2: int  # a server at paranoia level 2
    rec: RecordingOrigin
    log: Path
    audit: Path
    tmp: Path


def _waf(**settings: object) -> dict[str, object]:
    return {"mode": "on", **settings}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, recorder: RecordingOrigin) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("waf-gw")
    port, pl2 = free_port(), free_port()
    log = tmp / "access.log"
    audit = tmp / "waf-audit.log"
    proxy = {"upstream": "rec"}

    def loc(match: str, waf: object = None) -> dict[str, object]:
        out: dict[str, object] = {"location": match, "proxy": proxy}
        if waf is not None:
            out["waf"] = waf
        return out

    config = {
        "access_log": {"path": str(log), "buffer": 0},
        "upstreams": {"rec": {"servers": [f"127.0.0.1:{recorder.port}"]}},
        "servers": [
            {
                "listen": f"127.0.0.1:{port}",
                # Inherited by every location without a waf: of its own.
                "waf": _waf(
                    audit_log=str(audit),
                    exclude=[{"id": 942100, "path": "/search/"}],
                ),
                "locations": [
                    loc("/"),
                    loc("/detect/", {"mode": "detection_only"}),
                    loc("/status406/", _waf(status=406)),
                    loc("/reject/", _waf(body_limit=LIMIT, over_limit="reject")),
                    loc("/partial/", _waf(body_limit=LIMIT, over_limit="inspect_partial")),
                    loc("/ex-id/", _waf(exclude=[{"id": 942100}])),
                    loc("/ex-tag/", _waf(exclude=[{"tag": "attack-sqli"}])),
                    loc("/ex-target/", _waf(exclude=[{"id": 942100, "target": "ARGS:q"}])),
                    loc("/rules/", _waf(rules=[HEADER_RULE])),
                    loc("/nowaf/", False),
                ],
            },
            {
                "listen": f"127.0.0.1:{pl2}",
                "waf": _waf(paranoia=2),
                "locations": [loc("/")],
            },
        ],
    }
    # JSON is YAML: no quoting trouble with the rule text.
    with gateway(tmp, json.dumps(config, indent=2), [port, pl2]):
        yield Setup(port, pl2, recorder, log, audit, tmp)


# -- helpers -----------------------------------------------------------------------------


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def tag() -> str:
    return uuid.uuid4().hex[:12]


def request_bytes(
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    close: bool = True,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost"]
    lines += [
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Accept: text/html,application/xhtml+xml,*/*;q=0.8",
        "Accept-Language: en-US,en;q=0.5",
    ]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def send(port: int, raw: bytes, timeout: float = 5.0) -> Response:
    with connect(port, timeout) as s:
        s.sendall(raw)
        return read_response(s, bytearray())


def complete_lines(path: Path) -> list[str]:
    """The lines of a log being appended to, without a last one still being written."""
    data = path.read_bytes() if path.exists() else b""
    return [line.decode("utf-8") for line in data.split(b"\n")[:-1]]


def records(log: Path, needle: str) -> list[dict[str, object]]:
    lines = complete_lines(log)
    return [r for r in map(json.loads, lines) if needle in str(r.get("uri", ""))]


def record(log: Path, needle: str) -> dict[str, object]:
    """The one access-log record whose request target contains ``needle`` (waited for)."""
    assert wait_for(lambda: len(records(log, needle)) >= 1), f"no log record for {needle}"
    [rec] = records(log, needle)
    return rec


def rule_ids(rec: dict[str, object]) -> list[int]:
    ids = rec.get("waf_rules", [])
    assert isinstance(ids, list)
    return [int(i) for i in ids]


def families(rec: dict[str, object]) -> set[str]:
    return {str(i)[:3] for i in rule_ids(rec)}


def forwarded(gw: Setup, needle: str) -> list[str]:
    return [t for t in gw.rec.targets() if needle in t]


def blocked_and_not_forwarded(gw: Setup, raw: bytes, needle: str) -> dict[str, object]:
    """Send ``raw`` (whose target contains ``needle``): refused 403 by 949110, never at the
    origin. Returns its access-log record."""
    mark = gw.rec.snapshot()
    resp = send(gw.port, raw)
    assert resp.status == 403, resp
    assert_not_forwarded(gw.port, gw.rec, mark)
    rec = record(gw.log, needle)
    assert rec["status"] == 403
    assert rec["decided_by"] == "waf:949110"
    assert rec["upstream_addr"] is None
    assert 949110 in rule_ids(rec)
    assert isinstance(rec["waf_score"], int) and rec["waf_score"] >= 5
    return rec


FORM = "application/x-www-form-urlencoded"


# -- attacks, part by part ---------------------------------------------------------------


def test_sqli_in_the_query_string(gw: Setup) -> None:
    t = tag()
    raw = request_bytes("GET", f"/products/{t}?id={quote(SQLI)}&sort=name")
    rec = blocked_and_not_forwarded(gw, raw, t)
    assert 942100 in rule_ids(rec)
    assert any("SQL Injection" in str(m) for m in rec["waf_messages"])  # type: ignore[attr-defined]


def test_xss_in_a_urlencoded_form(gw: Setup) -> None:
    t = tag()
    body = f"name=bob&comment={quote(XSS)}".encode()
    rec = blocked_and_not_forwarded(
        gw, request_bytes("POST", f"/comments/{t}", body=body, content_type=FORM), t
    )
    assert {941100, 941110} & set(rule_ids(rec)), rule_ids(rec)


def test_attack_in_a_json_body(gw: Setup) -> None:
    t = tag()
    body = json.dumps({"user": {"name": "x' UNION SELECT password FROM users--", "age": 3}})
    raw = request_bytes(
        "POST", f"/api/users/{t}", body=body.encode(), content_type="application/json"
    )
    rec = blocked_and_not_forwarded(gw, raw, t)
    assert "942" in families(rec), rule_ids(rec)


def test_attack_in_an_xml_body(gw: Setup) -> None:
    t = tag()
    body = b"<order><note>&lt;script&gt;alert(1)&lt;/script&gt;</note><qty>2</qty></order>"
    raw = request_bytes("POST", f"/orders/{t}", body=body, content_type="application/xml")
    rec = blocked_and_not_forwarded(gw, raw, t)
    assert "941" in families(rec), rule_ids(rec)


def multipart(
    fields: list[tuple[str, str | None, bytes]], boundary: str = "----b0undary7MA4YWxk"
) -> tuple[bytes, str]:
    parts = []
    for name, filename, value in fields:
        disp = f'form-data; name="{name}"'
        head = f"--{boundary}\r\nContent-Disposition: {disp}"
        if filename is not None:
            head += f'; filename="{filename}"\r\nContent-Type: text/plain'
        parts.append(head.encode() + b"\r\n\r\n" + value + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_attack_in_a_multipart_field(gw: Setup) -> None:
    t = tag()
    fields = [("title", None, XSS.encode()), ("file", "notes.txt", b"just some notes\n")]
    body, ctype = multipart(fields)
    rec = blocked_and_not_forwarded(
        gw, request_bytes("POST", f"/upload/{t}", body=body, content_type=ctype), t
    )
    assert "941" in families(rec), rule_ids(rec)
    # The same upload with an ordinary title goes through, whole.
    benign, ctype = multipart([("title", None, b"Holiday notes"), fields[1]])
    resp = send(gw.port, request_bytes("POST", f"/upload/ok-{t}", body=benign, content_type=ctype))
    assert resp.status == 200
    assert echo_json(resp)["body_sha256"] == hashlib.sha256(benign).hexdigest()


# -- modes and status --------------------------------------------------------------------


def test_detection_only_passes_but_logs_the_rules(gw: Setup) -> None:
    t = tag()
    resp = send(gw.port, request_bytes("GET", f"/detect/{t}?id={quote(SQLI)}"))
    assert resp.status == 200
    assert forwarded(gw, t) == [f"/detect/{t}?id={quote(SQLI)}"]
    rec = record(gw.log, t)
    assert rec["status"] == 200 and rec["decided_by"] == "location /detect/"
    assert rec["upstream_status"] == 200
    assert 942100 in rule_ids(rec) and 949110 in rule_ids(rec)
    assert rec["waf_score"] == 5


def test_the_configured_status_is_used_for_a_block(gw: Setup) -> None:
    t = tag()
    mark = gw.rec.snapshot()
    resp = send(gw.port, request_bytes("GET", f"/status406/{t}?id={quote(SQLI)}"))
    assert resp.status == 406
    assert_not_forwarded(gw.port, gw.rec, mark)
    rec = record(gw.log, t)
    assert (rec["status"], rec["decided_by"]) == (406, "waf:949110")


def test_waf_false_turns_the_inherited_waf_off(gw: Setup) -> None:
    t = tag()
    resp = send(gw.port, request_bytes("GET", f"/nowaf/{t}?id={quote(SQLI)}&c={quote(XSS)}"))
    assert resp.status == 200
    assert len(forwarded(gw, t)) == 1
    rec = record(gw.log, t)
    assert "waf_rules" not in rec and rec["decided_by"] == "location /nowaf/"


# -- request body limits -----------------------------------------------------------------


def test_body_over_the_limit_is_refused_413_when_rejecting(gw: Setup) -> None:
    t = tag()
    mark = gw.rec.snapshot()
    body = b"note=" + b"a" * LIMIT
    raw = request_bytes("POST", f"/reject/{t}", body=body, content_type=FORM, close=False)
    with connect(gw.port) as s:
        s.sendall(raw)
        resp = read_response(s, bytearray())
        assert resp.status == 413
        s.settimeout(5.0)
        assert s.recv(100) == b""  # the body may not have been read: the connection ends
    # chunked: the length is not declared, found while reading
    chunked = (
        f"POST /reject/c-{t} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {FORM}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    assert send(gw.port, chunked).status == 413
    assert_not_forwarded(gw.port, gw.rec, mark)
    assert record(gw.log, f"/reject/{t}")["decided_by"] == "waf:request-body-limit"
    assert record(gw.log, f"/reject/c-{t}")["decided_by"] == "waf:request-body-limit"
    # At the limit: inspected and passed.
    at_limit = b"note=" + b"a" * (LIMIT - 5)
    resp = send(gw.port, request_bytes("POST", f"/reject/ok-{t}", body=at_limit, content_type=FORM))
    assert resp.status == 200 and echo_json(resp)["body_length"] == LIMIT


def test_inspect_partial_blocks_an_early_attack_and_passes_a_long_benign_body(gw: Setup) -> None:
    t = tag()
    early = f"comment={quote(XSS)}&pad=".encode() + b"x" * (3 * LIMIT)
    rec = blocked_and_not_forwarded(
        gw, request_bytes("POST", f"/partial/{t}", body=early, content_type=FORM), t
    )
    assert "941" in families(rec)
    # An attack past the inspected part is not seen (that is what partial means).
    late = b"pad=" + b"x" * (2 * LIMIT) + f"&comment={quote(XSS)}".encode()
    resp = send(gw.port, request_bytes("POST", f"/partial/late-{t}", body=late, content_type=FORM))
    assert resp.status == 200
    # A benign body of many times the limit reaches the origin whole, byte for byte.
    # (Not application/octet-stream: CRS 3.3's default policy refuses that content type,
    # 920420; an upload is multipart.)
    upload, mp = multipart([("note", None, b"scan"), ("file", "scan.bin", bytes(range(256)) * 40)])
    for n, ctype in enumerate((FORM, "application/json", mp)):
        if ctype == FORM:
            benign = "&".join(f"field{i}=value+number+{i}" for i in range(400)).encode()
        elif ctype == "application/json":
            benign = json.dumps(
                {"items": [{"id": i, "name": f"item {i}"} for i in range(300)]}
            ).encode()
        else:
            benign = upload
        assert len(benign) > 3 * LIMIT
        resp = send(
            gw.port, request_bytes("POST", f"/partial/big-{n}-{t}", body=benign, content_type=ctype)
        )
        assert resp.status == 200, (ctype, resp)
        echo = echo_json(resp)
        assert echo["body_length"] == len(benign)
        assert echo["body_sha256"] == hashlib.sha256(benign).hexdigest()


# -- exclusions and extra rules ----------------------------------------------------------


def test_exclusion_by_id_on_one_location_only(gw: Setup) -> None:
    t = tag()
    assert send(gw.port, request_bytes("GET", f"/ex-id/{t}?id={quote(SQLI)}")).status == 200
    assert len(forwarded(gw, f"/ex-id/{t}")) == 1
    # the other locations still refuse it
    raw = request_bytes("GET", f"/products/{t}?id={quote(SQLI)}")
    blocked_and_not_forwarded(gw, raw, f"/products/{t}")
    # and the excluded location still refuses other attacks
    raw = request_bytes("GET", f"/ex-id/xss-{t}?c={quote(XSS)}")
    blocked_and_not_forwarded(gw, raw, f"xss-{t}")


def test_exclusion_by_tag(gw: Setup) -> None:
    t = tag()
    q = quote("x' UNION SELECT password FROM users--")
    assert send(gw.port, request_bytes("GET", f"/ex-tag/{t}?q={q}")).status == 200
    assert record(gw.log, t).get("waf_rules") is None
    blocked_and_not_forwarded(
        gw, request_bytes("GET", f"/ex-tag/xss-{t}?q={quote(XSS)}"), f"xss-{t}"
    )


def test_target_exclusion_spares_only_that_argument(gw: Setup) -> None:
    t = tag()
    assert send(gw.port, request_bytes("GET", f"/ex-target/{t}?q={quote(SQLI)}")).status == 200
    assert len(forwarded(gw, f"/ex-target/{t}")) == 1
    rec = blocked_and_not_forwarded(
        gw, request_bytes("GET", f"/ex-target/id-{t}?id={quote(SQLI)}"), f"id-{t}"
    )
    assert 942100 in rule_ids(rec)


def test_path_scoped_exclusion(gw: Setup) -> None:
    t = tag()
    resp = send(gw.port, request_bytes("GET", f"/search/{t}?id={quote(SQLI)}"))
    assert resp.status == 200
    assert len(forwarded(gw, f"/search/{t}")) == 1
    blocked_and_not_forwarded(
        gw, request_bytes("GET", f"/other/{t}?id={quote(SQLI)}"), f"/other/{t}"
    )
    # dot segments do not smuggle a request into the excluded path
    raw = request_bytes("GET", f"/search/../other/dots-{t}?id={quote(SQLI)}")
    mark = gw.rec.snapshot()
    assert send(gw.port, raw).status == 403
    assert_not_forwarded(gw.port, gw.rec, mark)
    assert record(gw.log, f"dots-{t}")["decided_by"] == "waf:949110"


def test_an_inline_rule_blocks_a_header_value(gw: Setup) -> None:
    t = tag()
    mark = gw.rec.snapshot()
    resp = send(gw.port, request_bytes("GET", f"/rules/{t}", {"X-Debug-Override": "yes"}))
    assert resp.status == 403
    assert_not_forwarded(gw.port, gw.rec, mark)
    rec = record(gw.log, t)
    assert rec["decided_by"] == f"waf:{HEADER_RULE_ID}"
    assert HEADER_RULE_ID in rule_ids(rec)
    assert (
        send(gw.port, request_bytes("GET", f"/rules/no-{t}", {"X-Debug-Override": "no"})).status
        == 200
    )
    # the rule is this location's alone
    assert (
        send(gw.port, request_bytes("GET", f"/elsewhere/{t}", {"X-Debug-Override": "yes"})).status
        == 200
    )


# -- audit log ---------------------------------------------------------------------------


def audit_lines(gw: Setup) -> list[dict[str, object]]:
    if not gw.audit.exists():
        return []
    return [json.loads(line) for line in complete_lines(gw.audit)]


def test_a_blocked_request_appends_one_audit_record(gw: Setup) -> None:
    t = tag()
    before = len(audit_lines(gw))
    raw = request_bytes("GET", f"/audited/{t}?id={quote(SQLI)}", {"X-Trace": t})
    blocked_and_not_forwarded(gw, raw, t)
    assert wait_for(lambda: len(audit_lines(gw)) > before)
    new = audit_lines(gw)[before:]
    assert len(new) == 1, new
    [entry] = new
    assert entry["target"] == f"/audited/{t}?id={quote(SQLI)}"
    assert entry["method"] == "GET"
    assert entry["status"] == 403 and entry["decided_by"] == "waf:949110"
    assert ["X-Trace", t] in entry["headers"]  # type: ignore[operator]
    matches = entry["matches"]
    assert isinstance(matches, list)
    ids = [m["id"] for m in matches]
    assert 942100 in ids and 949110 in ids
    sqli = next(m for m in matches if m["id"] == 942100)
    assert "ARGS:id" in sqli["data"] and sqli["message"]
    assert entry["inbound_score"] == 5
    # A request that passes, or is only detected, appends nothing.
    send(gw.port, request_bytes("GET", f"/fine/{t}?page=2"))
    send(gw.port, request_bytes("GET", f"/detect/{t}?id={quote(SQLI)}"))
    record(gw.log, f"/detect/{t}")
    assert len(audit_lines(gw)) == before + 1


# -- paranoia ----------------------------------------------------------------------------


def test_paranoia_level_2_catches_what_level_1_lets_through(gw: Setup) -> None:
    t = tag()
    resp = send(gw.port, request_bytes("GET", f"/pl1/{t}?{PL2_ONLY}"))
    assert resp.status == 200
    assert record(gw.log, f"/pl1/{t}").get("waf_rules") is None
    mark = gw.rec.snapshot()
    resp = send(gw.pl2, request_bytes("GET", f"/pl2/{t}?{PL2_ONLY}"))
    assert resp.status == 403
    assert_not_forwarded(gw.port, gw.rec, mark)
    rec = record(gw.log, f"/pl2/{t}")
    assert rec["decided_by"] == "waf:949110"
    assert 931130 in rule_ids(rec)


# -- Expect: 100-continue ----------------------------------------------------------------


def continued(port: int, target: str, body: bytes) -> tuple[Response, Response]:
    head = (
        f"POST {target} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n"
        f"Content-Type: {FORM}\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    with connect(port) as s:
        s.sendall(head)
        buf = bytearray()
        interim = read_response(s, buf)
        s.sendall(body)
        return interim, read_response(s, buf)


def test_expect_100_continue(gw: Setup) -> None:
    t = tag()
    interim, final = continued(gw.port, f"/expect/{t}", b"name=Alice&city=Paris")
    assert interim.status == 100
    assert final.status == 200 and echo_json(final)["body_length"] == 21
    mark = gw.rec.snapshot()
    interim, final = continued(gw.port, f"/expect/x-{t}", f"comment={quote(XSS)}".encode())
    assert (interim.status, final.status) == (100, 403)
    assert_not_forwarded(gw.port, gw.rec, mark)
    # A body over the rejecting limit is refused from its declared length: no 100.
    head = (
        f"POST /reject/expect-{t} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {FORM}\r\n"
        f"Content-Length: {LIMIT * 4}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with connect(gw.port) as s:
        s.sendall(head)
        assert read_response(s, bytearray()).status == 413
    # A rule of the request-headers phase refuses before the body: no 100, no body read.
    # (The CRS 3 judges its anomaly score in the body phase, so its refusals come after.)
    mark = gw.rec.snapshot()
    head = (
        f"POST /rules/h-{t} HTTP/1.1\r\nHost: localhost\r\nX-Debug-Override: yes\r\n"
        f"Content-Type: {FORM}\r\nContent-Length: 21\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with connect(gw.port) as s:
        s.sendall(head)
        first = read_response(s, bytearray())
    assert first.status == 403
    assert_not_forwarded(gw.port, gw.rec, mark)


# -- keep-alive and pipelining -----------------------------------------------------------


def test_keep_alive_after_a_refusal(gw: Setup) -> None:
    t = tag()
    with connect(gw.port) as s:
        buf = bytearray()
        s.sendall(request_bytes("GET", f"/ka/{t}/1", close=False))
        assert read_response(s, buf).status == 200
        s.sendall(request_bytes("GET", f"/ka/{t}/2?id={quote(SQLI)}", close=False))
        refused = read_response(s, buf)
        assert refused.status == 403
        assert (refused.header("connection") or "").lower() != "close"
        s.sendall(
            request_bytes(
                "POST",
                f"/ka/{t}/3",
                body=f"c={quote(XSS)}".encode(),
                content_type=FORM,
                close=False,
            )
        )
        assert read_response(s, buf).status == 403
        s.sendall(request_bytes("GET", f"/ka/{t}/4", close=False))
        last = read_response(s, buf)
        assert last.status == 200 and echo_json(last)["target"] == f"/ka/{t}/4"
    assert forwarded(gw, f"/ka/{t}/") == [f"/ka/{t}/1", f"/ka/{t}/4"]


@pytest.mark.parametrize("pad", [0, 40_000], ids=["small-bodies", "large-bodies"])
def test_pipelined_requests_around_a_refusal_stay_in_order(gw: Setup, pad: int) -> None:
    """Three requests sent at once, the middle one refused: answers in order, the other
    two forwarded in order. Large bodies (tens of KB) take the WAF's longer path."""
    t = tag()
    filler = b"&pad=" + b"z" * pad if pad else b""
    benign = b"name=Alice" + filler
    attack = filler[1:] + f"&c={quote(XSS)}".encode() if pad else f"c={quote(XSS)}".encode()
    raw = (
        request_bytes("POST", f"/pipe/{t}/1", body=benign, content_type=FORM, close=False)
        + request_bytes("POST", f"/pipe/{t}/2", body=attack, content_type=FORM, close=False)
        + request_bytes("POST", f"/pipe/{t}/3?page=2", body=benign, content_type=FORM, close=False)
    )
    mark = gw.rec.snapshot()
    with connect(gw.port, timeout=10.0) as s:
        s.sendall(raw)
        buf = bytearray()
        first, second, third = (read_response(s, buf) for _ in range(3))
    assert [first.status, second.status, third.status] == [200, 403, 200]
    assert echo_json(first)["target"] == f"/pipe/{t}/1"
    assert echo_json(third)["target"] == f"/pipe/{t}/3?page=2"
    assert echo_json(third)["body_sha256"] == hashlib.sha256(benign).hexdigest()
    assert [r.target for r in gw.rec.requests_since(mark)] == [
        f"/pipe/{t}/1",
        f"/pipe/{t}/3?page=2",
    ]
    assert record(gw.log, f"/pipe/{t}/2")["decided_by"] == "waf:949110"


def test_a_refused_body_longer_than_inspected_does_not_leak_into_the_next_request(
    gw: Setup,
) -> None:
    """inspect_partial: the refusal comes after the first ``LIMIT`` bytes; the rest of the
    body (here holding what looks like a request) must be read and dropped, and the next
    request on the connection answered as itself."""
    t = tag()
    smuggled = f"\r\n\r\nGET /smuggled/{t} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    body = f"comment={quote(XSS)}&pad=".encode() + b"x" * (2 * LIMIT) + smuggled
    chunked_body = f"comment={quote(XSS)}&pad=".encode() + b"y" * (3 * LIMIT)
    mark = gw.rec.snapshot()
    with connect(gw.port) as s:
        buf = bytearray()
        s.sendall(
            request_bytes("POST", f"/partial/{t}/1", body=body, content_type=FORM, close=False)
        )
        assert read_response(s, buf).status == 403
        s.sendall(
            (
                f"POST /partial/{t}/2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: {FORM}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
            + b"%x\r\n%b\r\n0\r\n\r\n" % (len(chunked_body), chunked_body)
        )
        assert read_response(s, buf).status == 403
        s.sendall(request_bytes("GET", f"/partial/{t}/3", close=False))
        last = read_response(s, buf)
        assert last.status == 200 and echo_json(last)["target"] == f"/partial/{t}/3"
    marker_request(gw.port, gw.rec)
    got = [r.target for r in gw.rec.requests_since(mark)]
    assert got[0] == f"/partial/{t}/3" and len(got) == 2, got
    assert not forwarded(gw, f"/smuggled/{t}")


# -- bad rules: check and reload ----------------------------------------------------------


BAD_RULE = 'SecRule ARGS "@contains x" "id:10002,phase:2,deny,frobnicate:1"'


def waf_config(port: int, rules: list[str]) -> str:
    lines = [
        "servers:",
        f'  - listen: "127.0.0.1:{port}"',
        "    locations:",
        "      - location: /",
        "        waf:",
        '          mode: "on"',
        "          rules:",
    ]
    lines += [
        "            - '" + r.replace("'", "''") + "'" for r in rules
    ]  # the first rule on line 8
    lines += ['        return: { status: 200, body: "served" }', ""]
    return "\n".join(lines)


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ramparts.cli", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def test_check_refuses_a_bad_inline_rule_with_the_engines_reason(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(waf_config(free_port(), [HEADER_RULE]))
    out = check(good)
    assert out.returncode == 0, out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(waf_config(free_port(), [BAD_RULE]))
    out = check(bad)
    assert out.returncode == 1, out
    assert "ModSecurity: Expecting an action, got: frobnicate" in out.stderr
    assert "rules" in out.stderr
    assert "Traceback" not in out.stderr


def test_check_names_the_config_file_and_line_of_a_bad_inline_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(waf_config(free_port(), [BAD_RULE]))
    out = check(bad)
    assert out.returncode == 1
    assert f"{bad}:8" in out.stderr, out.stderr


def test_check_locates_a_bad_rule_file(tmp_path: Path) -> None:
    rules = tmp_path / "custom.conf"
    rules.write_text("# custom rules\n\n" + BAD_RULE + "\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        waf_config(free_port(), [HEADER_RULE]).replace(
            "          rules:\n", f'          rules_files: ["{rules}"]\n          rules:\n'
        )
    )
    out = check(cfg)
    assert out.returncode == 1, out
    assert f"{rules}:3" in out.stderr, out.stderr
    assert "Expecting an action" in out.stderr


def test_reload_with_a_bad_waf_rule_keeps_the_old_configuration(tmp_path: Path) -> None:
    port = free_port()
    attack = request_bytes("GET", "/?x=1", {"X-Debug-Override": "yes"})
    with running(start_gateway(tmp_path, waf_config(port, [HEADER_RULE]), [port])) as proc:
        cfg = proc.extra["config"]
        assert isinstance(cfg, Path)
        assert send(port, attack).status == 403
        assert send(port, request_bytes("GET", "/")).body == b"served"
        cfg.write_text(waf_config(port, [HEADER_RULE, BAD_RULE]).replace("served", "new"))
        proc.signal(signal.SIGHUP)
        assert wait_for(lambda: "reload refused" in proc.output(), 10.0), proc.output()
        refusal = next(x for x in proc.output().splitlines() if "reload refused" in x)
        assert "Expecting an action" in refusal, refusal
        for _ in range(3):
            assert send(port, attack).status == 403  # the old WAF still guards
            assert send(port, request_bytes("GET", "/")).body == b"served"
        # A good file is taken on the next SIGHUP, with its WAF.
        cfg.write_text(
            waf_config(port, [HEADER_RULE.replace("@streq yes", "@streq sure")]).replace(
                "served", "v2"
            )
        )
        proc.signal(signal.SIGHUP)
        assert wait_for(lambda: send(port, request_bytes("GET", "/")).body == b"v2", 10.0), (
            proc.output()
        )
        assert send(port, attack).status == 200
        assert send(port, request_bytes("GET", "/", {"X-Debug-Override": "sure"})).status == 403
        assert proc.popen.poll() is None
    assert "Traceback" not in proc.output()


def test_no_tracebacks_in_the_gateway_log(gw: Setup) -> None:
    out = (gw.tmp / "gw.log").read_text(errors="replace")
    assert "Traceback" not in out, out[-3000:]
    # ModSecurity's own prints (rule matches, XML errors) stay out of the log
    assert "ModSecurity:" not in out and '[id "' not in out, out[-3000:]
