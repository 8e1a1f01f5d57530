"""The WAF's look at an upstream's response head: a phase-3 rule that refuses a response
replaces the upstream's answer (its body never reaches the client), and the refusal is
logged with the rule; other responses pass untouched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support import free_port, get, running, start_gateway, start_origin

LEAK_RULE = (
    'SecRule RESPONSE_HEADERS:X-Powered-By "@rx Express" '
    '"id:10010,phase:3,deny,status:502,log,msg:stack disclosed"'
)


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    origin, oport = start_origin(tmp_path, name="resp-origin")
    port = free_port()
    log = tmp_path / "access.log"
    cfg = f"""
access_log: {{ path: "{log}", buffer: 0 }}
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    waf:
      mode: "on"
      rules: ['{LEAK_RULE}']
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""
    with running(origin), running(start_gateway(tmp_path, cfg, [port])):
        yield port, log


def test_a_refused_response_is_replaced(gw: tuple[int, Path]) -> None:
    port, log = gw
    r = get(port, "/headers")  # the origin answers with X-Powered-By: Express and "ok"
    assert r.status == 502
    assert r.body != b"ok" and r.header("X-Powered-By") is None
    assert get(port, "/").status == 200  # other answers pass
    assert get(port, "/headers").status == 502  # and the next refusal too
    records = [json.loads(line) for line in log.read_text().splitlines()]
    refused = [r for r in records if r["path"] == "/headers"]
    assert refused[0]["status"] == 502
    assert 10010 in refused[0]["waf_rules"]
    assert refused[0]["decided_by"] == "waf:10010"
