"""The process lifecycle over real sockets and signals: graceful shutdown (SIGTERM finishes
in-flight requests, refuses new connections, exits 0), reload (SIGHUP applies a valid
config, keeps the old one with a logged file:line reason on a bad one), and N workers
sharing the port (SO_REUSEPORT) under a master that supervises and stops them."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ..support import (
    Proc,
    free_port,
    get,
    read_response,
    running,
    start_gateway,
    start_origin,
    wait_port,
)


def wait_for(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def return_config(port: int, body: str, extra: str = "", listen_extra: str = "") -> str:
    return f"""
{extra}
servers:
  - listen: ["127.0.0.1:{port}"{listen_extra}]
    locations:
      - location: /
        return: {{ status: 200, body: "{body}" }}
"""


def body_is(port: int, body: bytes) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return get(port, "/").body == body
        except OSError:
            return False

    return check


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return sorted(out)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def tcp_table() -> list[tuple[int, int, str, int]]:
    """(local port, remote port, state, inode) of every IPv4 TCP socket."""
    rows = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        rows.append((int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16), f[3], int(f[9])))
    return rows


# -- graceful shutdown -------------------------------------------------------------------


def test_sigterm_finishes_in_flight_requests_then_exits_0(
    tmp_path: Path, origin: tuple[Proc, int]
) -> None:
    _, oport = origin
    port = free_port()
    cfg = f"""
shutdown_timeout: 10s
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""
    gw = start_gateway(tmp_path, cfg, [port])
    try:
        idle = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(idle, bytearray()).status == 200  # now an idle keep-alive
        slow = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        slow.sendall(b"GET /slow/1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)  # the request is with the origin
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        assert wait_for(lambda: refused(port), 1.0), "still accepting after SIGTERM"
        # The idle keep-alive connection is closed at once...
        idle.settimeout(1.0)
        assert idle.recv(100) == b""
        idle.close()
        # ... the in-flight request completes, and tells the client the connection ends.
        r = read_response(slow, bytearray())
        assert r.status == 200
        assert b'"target": "/slow/1500"' in r.body
        assert (r.header("connection") or "").lower() == "close"
        slow.settimeout(2.0)
        assert slow.recv(100) == b""
        slow.close()
        assert gw.popen.wait(5.0) == 0
        assert time.monotonic() - t0 < 4.0
    finally:
        gw.stop()
    assert "Traceback" not in gw.output()


def test_shutdown_timeout_bounds_the_wait(tmp_path: Path, origin: tuple[Proc, int]) -> None:
    _, oport = origin
    port = free_port()
    cfg = f"""
shutdown_timeout: 500ms
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""
    gw = start_gateway(tmp_path, cfg, [port])
    try:
        slow = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        slow.sendall(b"GET /slow/5000 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        assert gw.popen.wait(5.0) == 0
        assert time.monotonic() - t0 < 2.5
        slow.settimeout(2.0)
        try:
            data = slow.recv(100)
        except ConnectionResetError:
            data = b""
        assert data == b""  # cut off, not answered late
        slow.close()
    finally:
        gw.stop()


# -- reload ----------------------------------------------------------------------------------


def test_sighup_applies_a_valid_config(tmp_path: Path) -> None:
    port = free_port()
    with running(start_gateway(tmp_path, return_config(port, "v1"), [port])) as gw:
        cfg = gw.extra["config"]
        assert isinstance(cfg, Path)
        # A keep-alive connection opened before the reload.
        s = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        buf = bytearray()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s, buf).body == b"v1"
        cfg.write_text(return_config(port, "v2"))
        gw.signal(signal.SIGHUP)
        assert wait_for(body_is(port, b"v2"), 3.0), gw.output()
        # The old connection survives the reload and is served by the new plan.
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(s, buf)
        assert r.status == 200 and r.body == b"v2"
        s.close()
        assert "reloaded" in gw.output()


def test_reload_switches_upstreams_and_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    pa, a = start_origin(tmp_path, name="a")
    pb, b = start_origin(tmp_path, name="b")
    port = free_port()

    def cfg(oport: int) -> str:
        return f"""
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""

    try:
        with running(start_gateway(tmp_path, cfg(a), [port])) as gw:
            config = gw.extra["config"]
            assert isinstance(config, Path)
            assert b'"origin": "a"' in get(port, "/echo").body
            slow = socket.create_connection(("127.0.0.1", port), timeout=5.0)
            slow.sendall(b"GET /slow/800 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            config.write_text(cfg(b))
            gw.signal(signal.SIGHUP)
            assert wait_for(lambda: b'"origin": "b"' in get(port, "/echo").body, 3.0)
            r = read_response(slow, bytearray())
            slow.close()
            assert r.status == 200 and b'"origin": "a"' in r.body
            for _ in range(3):
                assert b'"origin": "b"' in get(port, "/echo").body
    finally:
        pa.stop()
        pb.stop()


@pytest.mark.parametrize(
    ("broken", "line", "what"),
    [
        ("servers:\n  - listen: [\n", 3, ""),  # YAML syntax error at the end
        (
            "servers:\n  - listen: '127.0.0.1:{port}'\n    locations:\n"
            "      - location: /\n        retrun: {{ status: 200 }}\n",
            5,
            "retrun",
        ),  # unknown field
        (
            "upstreams:\n  app: {{ servers: ['127.0.0.1:1'], balance: random }}\n"
            "servers:\n  - listen: '127.0.0.1:{port}'\n    locations:\n"
            "      - location: /\n        proxy: {{ upstream: app }}\n",
            2,
            "balance",
        ),  # bad value
        (
            "servers:\n  - listen: '127.0.0.1:{port}'\n    locations:\n"
            "      - location: /\n        proxy: {{ upstream: nowhere }}\n",
            5,
            "nowhere",
        ),  # a reference to nothing (caught when compiling the plan)
    ],
    ids=["yaml-error", "unknown-field", "bad-value", "unknown-upstream"],
)
def test_sighup_with_broken_config_keeps_the_old_one(
    tmp_path: Path, broken: str, line: int, what: str
) -> None:
    port = free_port()
    with running(start_gateway(tmp_path, return_config(port, "good"), [port])) as gw:
        cfg = gw.extra["config"]
        assert isinstance(cfg, Path)
        cfg.write_text(broken.format(port=port))
        gw.signal(signal.SIGHUP)
        assert wait_for(lambda: "reload refused" in gw.output(), 3.0), gw.output()
        refusal = next(x for x in gw.output().splitlines() if "reload refused" in x)
        assert f"{cfg}:{line}" in refusal, refusal
        assert what in refusal
        for _ in range(3):
            r = get(port, "/")
            assert r.status == 200 and r.body == b"good"
        # A fixed file is taken on the next SIGHUP.
        cfg.write_text(return_config(port, "fixed"))
        gw.signal(signal.SIGHUP)
        assert wait_for(body_is(port, b"fixed"), 3.0), gw.output()
        assert gw.popen.poll() is None


def test_sighup_that_cannot_listen_keeps_the_old_config(tmp_path: Path) -> None:
    port = free_port()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)  # without SO_REUSEPORT: nobody else may bind this port
    busy_port = int(busy.getsockname()[1])
    try:
        with running(start_gateway(tmp_path, return_config(port, "old"), [port])) as gw:
            cfg = gw.extra["config"]
            assert isinstance(cfg, Path)
            cfg.write_text(return_config(port, "new", listen_extra=f', "127.0.0.1:{busy_port}"'))
            gw.signal(signal.SIGHUP)
            assert wait_for(lambda: "reload refused" in gw.output(), 3.0), gw.output()
            assert get(port, "/").body == b"old"
            # Listeners added later in a good reload work, removed ones stop.
            other = free_port()
            cfg.write_text(return_config(other, "moved"))
            gw.signal(signal.SIGHUP)
            wait_port(other, timeout=3.0)
            assert get(other, "/").body == b"moved"
            assert wait_for(lambda: refused(port), 2.0)
    finally:
        busy.close()


# -- workers -----------------------------------------------------------------------------


def test_two_workers_share_the_port_and_stop_together(
    tmp_path: Path, origin: tuple[Proc, int]
) -> None:
    _, oport = origin
    port = free_port()
    cfg = f"""
workers: 2
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""
    gw = start_gateway(tmp_path, cfg, [port])
    try:

        def listeners() -> set[int]:
            return {inode for lport, _, st, inode in tcp_table() if lport == port and st == "0A"}

        # The master starts the workers one after the other: wait for both to listen.
        assert wait_for(lambda: len(listeners()) == 2, 5.0), gw.output()
        listening = listeners()  # one SO_REUSEPORT listener per worker
        workers = children(gw.pid)
        assert len(workers) == 2, workers
        for pid in workers:
            assert socket_inodes(pid) & listening, f"worker {pid} does not listen"
        assert not socket_inodes(gw.pid) & listening  # the master only supervises
        # Many connections: the kernel spreads them, so each worker serves some; each one
        # then keeps a pooled connection to the origin.
        for _ in range(40):
            assert get(port, "/").status == 200
        table = tcp_table()
        to_origin = {inode for _, rport, st, inode in table if rport == oport and st == "01"}
        for pid in workers:
            assert socket_inodes(pid) & to_origin, f"worker {pid} served nothing"

        # A worker that dies is replaced.
        os.kill(workers[0], signal.SIGKILL)
        assert wait_for(
            lambda: len(children(gw.pid)) == 2 and workers[0] not in children(gw.pid), 5.0
        ), gw.output()
        for _ in range(10):
            assert get(port, "/").status == 200

        # A reload reaches every worker.
        config = gw.extra["config"]
        assert isinstance(config, Path)
        config.write_text(
            cfg.replace("proxy: { upstream: app }", 'return: { status: 200, body: "r" }')
        )
        gw.signal(signal.SIGHUP)
        assert wait_for(lambda: all(get(port, "/").body == b"r" for _ in range(10)), 5.0)
        # A broken one is refused by the master; the workers keep serving the last good one.
        config.write_text("servers: [\n")
        gw.signal(signal.SIGHUP)
        assert wait_for(lambda: "reload refused" in gw.output(), 3.0), gw.output()
        assert all(get(port, "/").body == b"r" for _ in range(10))
        assert len(children(gw.pid)) == 2

        now = children(gw.pid)
        gw.signal(signal.SIGTERM)
        assert gw.popen.wait(10.0) == 0
        assert wait_for(lambda: not any(alive(p) for p in now), 3.0)
        assert refused(port)
    finally:
        gw.stop()
