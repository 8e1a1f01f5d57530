"""Large request bodies are inspected by the WAF in processes forked from the worker (so a
long inspection does not stall the event loop): their verdicts, their rule ids in the log,
the body passed whole when benign, and new processes after a reload with new rules."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support import free_port, read_response, running, start_gateway
from .conftest import RecordingOrigin

BIG = 20_000  # bytes: over the 8 KB inspected on the loop


def config(port: int, origin: int, log: Path, extra_rule: str = "") -> str:
    rules = f"\n      rules: ['{extra_rule}']" if extra_rule else ""
    return f"""
access_log: {{ path: "{log}", buffer: 0 }}
upstreams:
  rec: {{ servers: ["127.0.0.1:{origin}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    waf:
      mode: "on"{rules}
    locations:
      - location: /
        proxy: {{ upstream: rec }}
"""


def post(port: int, body: bytes, headers: str = "") -> int:
    head = (
        f"POST /api/items HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\n"
        f"{headers}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode() + body)
        return read_response(s, bytearray()).status


def items(text: str, n: int) -> bytes:
    return json.dumps({"items": [{"id": i, "note": text} for i in range(n)]}).encode()


@pytest.fixture
def gw(tmp_path: Path, recorder: RecordingOrigin) -> Iterator[tuple[int, Path]]:
    port = free_port()
    log = tmp_path / "access.log"
    with running(start_gateway(tmp_path, config(port, recorder.port, log), [port])) as proc:
        yield port, log
        assert "WAF inspection in" in proc.output()


def test_large_attack_body_is_blocked(gw: tuple[int, Path], recorder: RecordingOrigin) -> None:
    port, log = gw
    body = items("1' UNION SELECT password FROM users--", 400)
    assert len(body) > BIG
    mark = recorder.snapshot()
    assert post(port, body) == 403
    assert post(port, items("a plain note about the delivery", 400)) == 200
    got = recorder.requests_since(mark)
    assert len(got) == 1 and got[0].body_length > BIG  # the benign one, whole
    records = [json.loads(line) for line in log.read_text().splitlines()]
    blocked = [r for r in records if r["status"] == 403]
    assert blocked and blocked[0]["decided_by"] == "waf:949110"
    assert 942100 in blocked[0]["waf_rules"]


def test_reload_brings_new_rules_to_the_inspection_processes(
    tmp_path: Path, recorder: RecordingOrigin
) -> None:
    port = free_port()
    log = tmp_path / "access.log"
    with running(start_gateway(tmp_path, config(port, recorder.port, log), [port])) as proc:
        body = items("a plain note about the delivery", 400)
        assert post(port, body, "X-Tenant: evil\r\n") == 200
        rule = (
            'SecRule REQUEST_HEADERS:X-Tenant "@streq evil" '
            '"id:10001,phase:1,deny,status:403,log,msg:tenant"'
        )
        cfg = proc.extra["config"]
        assert isinstance(cfg, Path)
        cfg.write_text(config(port, recorder.port, log, rule))
        proc.signal(signal.SIGHUP)
        for _ in range(100):  # bounded: 10 s
            if "reloaded" in proc.output():
                break
            time.sleep(0.1)
        assert post(port, body, "X-Tenant: evil\r\n") == 403  # a big body: in a process
        assert post(port, b"{}", "X-Tenant: evil\r\n") == 403  # a small one: on the loop
        assert post(port, body, "X-Tenant: good\r\n") == 200
