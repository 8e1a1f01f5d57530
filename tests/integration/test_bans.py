"""Bans through the running gateway: set and lifted from the command line, automatic
after N refusals within a window (fail2ban-style), enforced before a byte is read, shared
by the workers through the bans file and by a fleet through Redis, and enforced on the
real client address behind a trusted proxy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..peers import start_redis
from ..support import ROOT, free_port, read_response, running, start_gateway, start_origin


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ramparts.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=False,
    )


def status_from(source: str, port: int, path: str = "/", headers: str = "") -> int | None:
    """The status answered to a request from ``source``; None when the connection was
    dropped without an answer."""
    with socket.socket() as s:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: a\r\n{headers}Connection: close\r\n\r\n".encode()
            )
            return read_response(s, bytearray()).status
        except (ConnectionError, OSError):
            return None


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    for _ in range(int(seconds / 0.05)):  # bounded
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    proc, port = start_origin(tmp_path_factory.mktemp("bans-origin"))
    with running(proc):
        yield port


def config(port: int, oport: int, store: str) -> str:
    return f"""
store: {store}
bans:
  - {{ refused_by: [auth], count: 3, window: 1m, ban: 10m }}
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    real_ip: {{ from: [127.0.0.9], header: X-Forwarded-For }}
    locations:
      - location: /
        proxy: {{ upstream: app }}
      - location: /private/
        auth: {{ header: {{ name: X-Api-Key, values: [good] }} }}
        proxy: {{ upstream: app }}
"""


def test_manual_ban_through_the_bans_file(tmp_path: Path, origin: int) -> None:
    port = free_port()
    cfg_text = config(port, origin, "{ bans_file: bans.jsonl }")
    with running(start_gateway(tmp_path, cfg_text, [port])):
        cfg = str(tmp_path / "gw.yaml")
        assert status_from("127.0.0.2", port) == 200
        out = cli("ban", "127.0.0.2", "--for", "10m", "--reason", "abuse", "-c", cfg)
        assert out.returncode == 0, out.stderr
        assert eventually(lambda: status_from("127.0.0.2", port) is None)
        assert status_from("127.0.0.1", port) == 200  # others are not affected
        listed = json.loads(cli("bans", "--json", "-c", cfg).stdout)
        assert [(b["address"], b["reason"]) for b in listed] == [("127.0.0.2", "abuse")]
        assert 590 < listed[0]["seconds_left"] <= 600
        assert cli("unban", "127.0.0.2", "-c", cfg).returncode == 0
        assert eventually(lambda: status_from("127.0.0.2", port) == 200)
        assert cli("unban", "127.0.0.2", "-c", cfg).returncode == 3  # not banned any more


def test_ban_without_a_shared_place_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config(free_port(), free_port(), "{ backend: memory }"))
    out = cli("ban", "192.0.2.1", "--for", "1m", "-c", str(cfg))
    assert out.returncode == 1 and "store.bans_file" in out.stderr
    out = cli("ban", "not-an-ip", "--for", "1m", "-c", str(cfg))
    assert out.returncode == 1 and "not an IP address" in out.stderr


def test_automatic_ban_after_refusals(tmp_path: Path, origin: int) -> None:
    port = free_port()
    with running(start_gateway(tmp_path, config(port, origin, "{ bans_file: b.jsonl }"), [port])):
        assert [status_from("127.0.0.3", port, "/private/") for _ in range(3)] == [401] * 3
        assert eventually(lambda: status_from("127.0.0.3", port) is None)
        assert status_from("127.0.0.1", port) == 200
        listed = json.loads(cli("bans", "--json", "-c", str(tmp_path / "gw.yaml")).stdout)
        assert [(b["address"], b["reason"]) for b in listed] == [("127.0.0.3", "auto:auth")]


def test_ban_on_the_real_client_behind_a_trusted_proxy(tmp_path: Path, origin: int) -> None:
    port = free_port()
    with running(start_gateway(tmp_path, config(port, origin, "{ bans_file: p.jsonl }"), [port])):
        cfg = str(tmp_path / "gw.yaml")
        assert cli("ban", "198.51.100.7", "--for", "1m", "-c", cfg).returncode == 0
        fwd = "X-Forwarded-For: 198.51.100.7\r\n"
        # the proxy (127.0.0.9) itself is not banned; the client it speaks for is
        assert eventually(lambda: status_from("127.0.0.9", port, "/", fwd) == 403)
        assert status_from("127.0.0.9", port, "/", "X-Forwarded-For: 198.51.100.8\r\n") == 200
        # an untrusted peer cannot get a client banned by naming it
        assert status_from("127.0.0.4", port, "/", fwd) == 200


def test_fleet_shares_bans_and_counts_through_redis(tmp_path: Path, origin: int) -> None:
    proc, rport = start_redis(tmp_path / "redis")
    store = f'{{ backend: redis, url: "redis://127.0.0.1:{rport}/0" }}'
    p1, p2 = free_port(), free_port()
    with running(proc):
        g1 = start_gateway(tmp_path, config(p1, origin, store), [p1], name="g1")
        g2 = start_gateway(tmp_path, config(p2, origin, store), [p2], name="g2")
        with running(g1), running(g2):
            assert (
                cli("ban", "127.0.0.5", "--for", "5m", "-c", str(tmp_path / "g1.yaml")).returncode
                == 0
            )
            assert eventually(lambda: status_from("127.0.0.5", p1) is None)
            assert eventually(lambda: status_from("127.0.0.5", p2) is None)
            # refusals counted across the fleet: 2 on one gateway and 1 on the other
            assert status_from("127.0.0.6", p1, "/private/") == 401
            assert status_from("127.0.0.6", p2, "/private/") == 401
            assert status_from("127.0.0.6", p1, "/private/") == 401
            assert eventually(lambda: status_from("127.0.0.6", p2) is None)
            assert eventually(lambda: status_from("127.0.0.6", p1) is None)
            assert status_from("127.0.0.1", p1) == 200
