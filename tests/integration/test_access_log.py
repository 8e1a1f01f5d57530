"""The access log over real sockets: one JSON line per request with its fields, written
through a buffer (not at once, but within the flush interval and at shutdown, none lost),
and reopened on SIGUSR1 after a rotation."""

from __future__ import annotations

import json
import signal
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..support import Proc, exchange, free_port, get, running, start_gateway


def wait_for(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def config(port: int, oport: int, log: Path, buffer: str, flush: str) -> str:
    return f"""
access_log: {{ path: "{log}", buffer: {buffer}, flush: {flush} }}
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
  down: {{ servers: ["127.0.0.1:1"] }}  # nothing listens on port 1
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
      - location: = /moved
        return: {{ status: 301, location: "https://$host$request_uri" }}
      - location: /down/
        proxy: {{ upstream: down }}
"""


def raw_exchange(port: int, raw: bytes) -> bytes:
    """Every byte the gateway sends back on a connection it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_fields_of_each_line(tmp_path: Path, origin: tuple[Proc, int]) -> None:
    _, oport = origin
    port = free_port()
    log = tmp_path / "access.log"
    gw = start_gateway(tmp_path, config(port, oport, log, "0", "1s"), [port])
    with running(gw):
        t0 = time.time()
        sent = raw_exchange(
            port,
            b"GET /echo?a=1 HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 203.0.113.7\r\n"
            b"User-Agent: tester/1\r\nConnection: close\r\n\r\n",
        )
        assert sent.startswith(b"HTTP/1.1 200")
        assert get(port, "/moved?x=2", host="example.com").status == 301
        assert get(port, "/down/x").status == 502
        assert exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status == 400
        assert wait_for(lambda: len(read_log(log)) >= 4, 3.0), log.read_text()
    lines = read_log(log)
    assert len(lines) == 4
    proxied, moved, down, bad = lines

    for key in (
        "time", "client", "method", "uri", "status", "bytes_sent", "request_time",
        "upstream_addr", "upstream_time", "x_forwarded_for", "decided_by",
    ):  # fmt: skip
        assert key in proxied, key
    assert proxied["client"] == "127.0.0.1"
    assert proxied["peer"].startswith("127.0.0.1:")
    assert proxied["method"] == "GET"
    assert proxied["uri"] == "/echo?a=1"
    assert proxied["status"] == 200
    assert proxied["bytes_sent"] == len(sent)  # head and body, as the client received them
    assert 0 <= proxied["request_time"] < 5
    assert proxied["upstream_addr"] == f"127.0.0.1:{oport}"
    assert proxied["upstream_status"] == 200
    assert 0 <= proxied["upstream_time"] <= proxied["request_time"]
    assert proxied["x_forwarded_for"] == "203.0.113.7"
    assert proxied["user_agent"] == "tester/1"
    assert proxied["decided_by"] == "location /"
    stamp = time.mktime(time.strptime(proxied["time"][:19], "%Y-%m-%dT%H:%M:%S"))
    stamp -= time.timezone  # the log is in UTC
    assert proxied["time"].endswith("Z") and abs(stamp - t0) < 5

    assert moved["status"] == 301 and moved["uri"] == "/moved?x=2"
    assert moved["upstream_addr"] is None and moved["upstream_time"] is None
    assert moved["x_forwarded_for"] is None
    assert moved["decided_by"] == "location = /moved"

    assert down["status"] == 502
    assert down["decided_by"] == "upstream:down"

    assert bad["status"] == 400
    assert bad["decided_by"] == "http:protocol"


def test_buffered_lines_wait_for_the_flush_interval(
    tmp_path: Path, origin: tuple[Proc, int]
) -> None:
    _, oport = origin
    port = free_port()
    log = tmp_path / "access.log"
    with running(start_gateway(tmp_path, config(port, oport, log, "32k", "1s"), [port])):
        for _ in range(3):
            assert get(port, "/").status == 200
        t0 = time.monotonic()
        time.sleep(0.2)
        assert read_log(log) == []  # buffered, not written at once
        assert wait_for(lambda: len(read_log(log)) == 3, 3.0)
        assert time.monotonic() - t0 < 2.5  # within the interval (plus the 1 s tick)


def test_full_buffer_is_written_at_once(tmp_path: Path, origin: tuple[Proc, int]) -> None:
    _, oport = origin
    port = free_port()
    log = tmp_path / "access.log"
    with running(start_gateway(tmp_path, config(port, oport, log, "1k", "5s"), [port])):
        long = "/" + "x" * 600
        for _ in range(3):  # > 1 KiB of lines
            assert get(port, long).status == 200
        assert wait_for(lambda: len(read_log(log)) >= 2, 1.0)


def test_sigterm_flushes_every_line(tmp_path: Path, origin: tuple[Proc, int]) -> None:
    _, oport = origin
    port = free_port()
    log = tmp_path / "access.log"
    gw = start_gateway(tmp_path, config(port, oport, log, "32k", "5s"), [port])
    try:
        for i in range(25):
            assert get(port, f"/n/{i}").status == 200
        time.sleep(0.1)
        assert read_log(log) == []
        gw.signal(signal.SIGTERM)
        assert gw.popen.wait(5.0) == 0
    finally:
        gw.stop()
    uris = [x["uri"] for x in read_log(log)]
    assert uris == [f"/n/{i}" for i in range(25)]


def test_sigusr1_reopens_after_rotation(tmp_path: Path, origin: tuple[Proc, int]) -> None:
    _, oport = origin
    port = free_port()
    log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    gw = start_gateway(tmp_path, config(port, oport, log, "32k", "5s"), [port])
    try:
        for i in range(3):
            assert get(port, f"/before/{i}").status == 200
        log.rename(rotated)
        gw.signal(signal.SIGUSR1)
        assert wait_for(log.exists, 3.0), gw.output()
        # Lines buffered before the signal belong to the old file.
        assert [x["uri"] for x in read_log(rotated)] == [f"/before/{i}" for i in range(3)]
        for i in range(2):
            assert get(port, f"/after/{i}").status == 200
        gw.signal(signal.SIGTERM)
        assert gw.popen.wait(5.0) == 0
    finally:
        gw.stop()
    assert [x["uri"] for x in read_log(rotated)] == [f"/before/{i}" for i in range(3)]
    assert [x["uri"] for x in read_log(log)] == [f"/after/{i}" for i in range(2)]


def test_client_gone_before_the_answer_is_logged(tmp_path: Path, origin: tuple[Proc, int]) -> None:
    _, oport = origin
    port = free_port()
    log = tmp_path / "access.log"
    gw = start_gateway(tmp_path, config(port, oport, log, "0", "1s"), [port])
    with running(gw):
        with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
            s.sendall(b"GET /slow/1000 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            # Close with a reset: unlike a FIN (which may be a half-close), it says the
            # client is gone for good.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert wait_for(lambda: len(read_log(log)) == 1, 0.7)  # before the origin answers
        assert get(port, "/").status == 200
        assert wait_for(lambda: len(read_log(log)) == 2, 3.0)
    first = read_log(log)[0]
    assert first["uri"] == "/slow/1000"
    assert first["status"] == 499  # nginx's "client closed request"


def test_two_workers_rotate_and_flush_every_line(tmp_path: Path, origin: tuple[Proc, int]) -> None:
    _, oport = origin
    port = free_port()
    log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    cfg = "workers: 2\n" + config(port, oport, log, "32k", "5s")
    gw = start_gateway(tmp_path, cfg, [port])
    try:
        # Both workers listen once the master has started the second one.
        assert wait_for(lambda: "running 2 workers" in gw.output(), 5.0), gw.output()
        for i in range(20):
            assert get(port, f"/before/{i}").status == 200
        log.rename(rotated)
        gw.signal(signal.SIGUSR1)  # relayed by the master to each worker
        assert wait_for(log.exists, 3.0), gw.output()
        assert wait_for(lambda: len(read_log(rotated)) == 20, 2.0)
        for i in range(20):
            assert get(port, f"/after/{i}").status == 200
        gw.signal(signal.SIGTERM)
        assert gw.popen.wait(10.0) == 0
    finally:
        gw.stop()
    assert sorted(x["uri"] for x in read_log(rotated)) == sorted(f"/before/{i}" for i in range(20))
    assert sorted(x["uri"] for x in read_log(log)) == sorted(f"/after/{i}" for i in range(20))
