"""Rate and connection limits through the running gateway: rejection with the configured
status and Retry-After, delays, connection slots given back, the limit shared by two
gateways on one Redis, and Redis going away (fail open or closed, as configured) and
coming back (the limit holds again, without a restart)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..peers import start_redis
from ..support import Proc, free_port, read_response, running, start_gateway, start_origin


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    proc, port = start_origin(tmp_path_factory.mktemp("limits-origin"))
    with running(proc):
        yield port


def get(port: int, path: str, key: str = "") -> tuple[int, dict[str, str], float]:
    """Status, headers (lower-case names) and seconds taken, for one request."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        extra = f"X-Key: {key}\r\n" if key else ""
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n".encode())
        r = read_response(s, bytearray())
    return r.status, {n.lower(): v for n, v in r.headers}, time.monotonic() - t0


def config(port: int, oport: int, *, store: str = "", limits: str, log: Path | None = None) -> str:
    return f"""
{store}
{f'access_log: {{ path: "{log}", buffer: 0 }}' if log else ""}
limit_req_zones:
  per_key: {{ key: $http_x_key, rate: 1r/m }}
  fast: {{ key: $http_x_key, rate: 5r/s }}
limit_conn_zones:
  conns: {{ key: $http_x_key }}
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
{limits}
"""


def test_rejection_status_retry_after_and_log(tmp_path: Path, origin: int) -> None:
    port = free_port()
    log = tmp_path / "access.log"
    limits = """
      - location: /api/
        limit_req: [{ zone: per_key, burst: 1, nodelay: true }]
        limit_req_status: 429
        proxy: { upstream: app }
"""
    with running(start_gateway(tmp_path, config(port, origin, limits=limits, log=log), [port])):
        got = [get(port, "/api/x", "k1") for _ in range(4)]
        assert [g[0] for g in got] == [200, 200, 429, 429]  # 1 + burst 1, then refused
        # 1r/m is 16 milli-requests a second (nginx's integer rate): one request drains in
        # 62.5 s, so a client may try again in 63 s
        assert got[2][1]["retry-after"] == "63"
        assert get(port, "/api/x", "k2")[0] == 200  # another key has its own budget
        assert get(port, "/api/x")[0] == 200  # no key: not limited (as nginx)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    refused = [r for r in records if r["status"] == 429]
    assert len(refused) == 2
    assert {r["decided_by"] for r in refused} == {"ratelimit:per_key"}
    assert {r["limit_req"] for r in refused} == {"REJECTED"}


def test_delay_spaces_requests_at_the_rate(tmp_path: Path, origin: int) -> None:
    port = free_port()
    limits = """
      - location: /api/
        limit_req: [{ zone: fast, burst: 5 }]
        proxy: { upstream: app }
"""
    with running(start_gateway(tmp_path, config(port, origin, limits=limits), [port])):
        results: list[tuple[int, float]] = []
        lock = threading.Lock()

        def one() -> None:
            status, _, took = get(port, "/api/d", "k")
            with lock:
                results.append((status, took))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.01)
        for t in threads:
            t.join(10)
        assert [s for s, _ in results] == [200] * 4
        # 5r/s: each request after the first waits 200 ms more than the one before
        took = sorted(t for _, t in results)
        assert took[1] >= 0.15 and took[2] >= 0.35 and took[3] >= 0.55, took


def test_connection_limit_and_its_slot_given_back(tmp_path: Path, origin: int) -> None:
    port = free_port()
    limits = """
      - location: /slow/
        limit_conn: [{ zone: conns, max: 1 }]
        proxy: { upstream: app }
"""
    with running(start_gateway(tmp_path, config(port, origin, limits=limits), [port])):
        slow: list[int] = []
        t = threading.Thread(target=lambda: slow.append(get(port, "/slow/600", "c")[0]))
        t.start()
        time.sleep(0.2)  # the slow one holds the slot for 600 ms
        assert get(port, "/slow/1", "c")[0] == 503
        assert get(port, "/slow/1", "other")[0] == 200
        t.join(10)
        assert slow == [200]
        assert get(port, "/slow/1", "c")[0] == 200  # the slot came back


def _two_gateways(tmp: Path, origin: int, rport: int, limits: str) -> tuple[Proc, Proc, int, int]:
    store = f'store: {{ backend: redis, url: "redis://127.0.0.1:{rport}/0", retry: 200ms }}'
    p1, p2 = free_port(), free_port()
    g1 = start_gateway(tmp, config(p1, origin, store=store, limits=limits), [p1], name="g1")
    g2 = start_gateway(tmp, config(p2, origin, store=store, limits=limits), [p2], name="g2")
    return g1, g2, p1, p2


def test_one_limit_holds_across_two_gateways_on_one_redis(tmp_path: Path, origin: int) -> None:
    proc, rport = start_redis(tmp_path / "redis")
    limits = """
      - location: /api/
        limit_req: [{ zone: per_key, burst: 2, nodelay: true }]
        proxy: { upstream: app }
"""
    with running(proc):
        g1, g2, p1, p2 = _two_gateways(tmp_path, origin, rport, limits)
        with running(g1), running(g2):
            # 1 + burst 2 for the whole fleet, whichever gateway the requests reach
            statuses = [get(p, "/api/r", "shared")[0] for p in (p1, p2, p1, p2, p1)]
            assert statuses == [200, 200, 200, 503, 503]


def test_redis_down_fails_open_or_closed_and_recovers(tmp_path: Path, origin: int) -> None:
    proc, rport = start_redis(tmp_path / "redis")
    limits = """
      - location: /open/
        limit_req: [{ zone: per_key, nodelay: true }]
        proxy: { upstream: app }
      - location: /closed/
        limit_req: [{ zone: strict, nodelay: true }]
        proxy: { upstream: app }
"""
    store = f'store: {{ backend: redis, url: "redis://127.0.0.1:{rport}/0", retry: 200ms }}'
    port = free_port()
    cfg = config(port, origin, store=store, limits=limits).replace(
        "limit_conn_zones:",
        "  strict: { key: $http_x_key, rate: 1r/m, on_store_error: closed }\nlimit_conn_zones:",
    )
    with running(start_gateway(tmp_path, cfg, [port])) as gw:
        assert [get(port, "/open/a", "k")[0] for _ in range(2)] == [200, 503]
        proc.stop()
        assert get(port, "/open/a", "k")[0] == 200  # open: let through while Redis is down
        assert get(port, "/closed/a", "k")[0] == 503  # closed: refused
        proc2, _ = start_redis(tmp_path / "redis2", port=rport)
        with running(proc2):
            # by itself (after the 200 ms retry window), the limit holds again: a key's
            # second request within the minute is refused
            refused = False
            for _ in range(100):  # bounded: 10 s
                if get(port, "/open/a", "k2")[0] == 503:
                    refused = True
                    break
                time.sleep(0.1)
            assert refused
        out = gw.output()
    assert "unavailable" in out.lower() and "recovered" in out.lower()
