"""Upstreams over real sockets: failures (down, connect timeout, slow, garbage, reset, no
live peer), balancing (weighted round-robin, least connections, client-IP hash), passive
and active health, retries (safe requests only) and the keep-alive pool."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from ..support import (
    Proc,
    Response,
    free_port,
    read_response,
    running,
    start_gateway,
    start_origin,
    wait_port,
)

# -- small test upstreams ------------------------------------------------------------------


class RawUpstream:
    """A tiny threaded TCP server standing in for a misbehaving (or counting) upstream.

    ``mode``: ``http`` answers every request with ``200 ok`` on a keep-alive connection,
    ``garbage`` answers ``garbage\\r\\n\\r\\n``, ``close`` reads the request head and
    closes without answering, ``oneshot`` answers like ``http`` and then closes anyway
    (without ``Connection: close``). ``accepted`` counts connections, ``requests`` request heads.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.accepted = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10.0)
        buf = bytearray()
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                end = buf.index(b"\r\n\r\n") + 4
                head = bytes(buf[:end]).lower()
                del buf[:end]
                with self._lock:
                    self.requests += 1
                if self.mode == "close":
                    return
                if self.mode == "garbage":
                    conn.sendall(b"garbage\r\n\r\n")
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                del buf[:length]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                if self.mode == "oneshot":
                    time.sleep(0.02)
                    return  # closes a connection it said it would keep
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.close()
        self._thread.join(2.0)


class DeadPort:
    """A port bound but not listening: a connect to it is refused at once, and while this
    object lives no other process (another test run on this machine) can take the port."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


class Unaccepting:
    """A listening socket whose accept queue is full and never drained: a connect to it
    hangs until the client gives up (the SYN is dropped), like an unreachable host."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = int(self.sock.getsockname()[1])
        self.fillers: list[socket.socket] = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(s)
        time.sleep(0.05)

    def hangs(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.3):
                return False
        except TimeoutError:
            return True

    def close(self) -> None:
        for s in self.fillers:
            s.close()
        self.sock.close()


# -- client helpers ------------------------------------------------------------------------


def request(
    port: int,
    host: str,
    path: str = "/",
    method: str = "GET",
    body: bytes = b"",
    timeout: float = 5.0,
) -> Response:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        return read_response(s, bytearray(), head_request=method == "HEAD")


def origin_of(r: Response) -> str:
    assert r.status == 200, (r.status, r.body[:200])
    name = json.loads(r.body)["origin"]
    assert isinstance(name, str)
    return name


def wait_for(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def server_block(port: int, name: str, upstream: str) -> str:
    return f"""
  - listen: "127.0.0.1:{port}"
    server_names: ["{name}"]
    locations:
      - location: /
        proxy: {{ upstream: {upstream} }}
"""


# -- one gateway for the tests that do not stop their peers --------------------------------


class Env:
    def __init__(
        self, port: int, a: int, b: int, gw: Proc, raws: dict[str, RawUpstream], hang: Unaccepting
    ) -> None:
        self.hang = hang
        self.port = port
        self.a = a
        self.b = b
        self.gw = gw
        self.raws = raws


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("upstreams")
    pa, a = start_origin(tmp, name="a")
    pb, b = start_origin(tmp, name="b")
    raws = {m: RawUpstream(m) for m in ("garbage", "close", "http", "oneshot")}
    pool = RawUpstream("http")
    raws["pool"] = pool
    raws["pool5"] = RawUpstream("http")
    raws["nopool"] = RawUpstream("http")
    retry_target = raws["http"]
    hang = Unaccepting()
    dead = [DeadPort(), DeadPort()]
    dead1, dead2 = dead[0].port, dead[1].port
    port = free_port()
    upstreams = f"""
upstreams:
  down: {{ servers: ["127.0.0.1:{dead1}"] }}
  hang: {{ servers: ["127.0.0.1:{hang.port}"], connect_timeout: 300ms }}
  slow: {{ servers: ["127.0.0.1:{a}"], read_timeout: 500ms }}
  garbage: {{ servers: ["127.0.0.1:{raws["garbage"].port}"] }}
  reset: {{ servers: ["127.0.0.1:{a}"] }}
  alldown:
    servers:
      - {{ address: "127.0.0.1:{dead1}", fail_timeout: 60s }}
      - {{ address: "127.0.0.1:{dead2}", fail_timeout: 60s }}
  rr:
    servers:
      - {{ address: "127.0.0.1:{a}", weight: 3 }}
      - {{ address: "127.0.0.1:{b}", weight: 1 }}
  lc:
    balance: least_conn
    servers: ["127.0.0.1:{a}", "127.0.0.1:{b}"]
  iph:
    balance: ip_hash
    servers: ["127.0.0.1:{a}", "127.0.0.1:{b}"]
  retry:
    servers:
      - {{ address: "127.0.0.1:{dead2}", max_fails: 0 }}
      - "127.0.0.1:{a}"
  noretry:
    servers:
      - {{ address: "127.0.0.1:{raws["close"].port}", max_fails: 0 }}
      - {{ address: "127.0.0.1:{retry_target.port}", backup: true }}
  pool: {{ servers: ["127.0.0.1:{pool.port}"], keepalive: 8 }}
  oneshot: {{ servers: ["127.0.0.1:{raws["oneshot"].port}"] }}
  pool5:
    servers: ["127.0.0.1:{raws["pool5"].port}"]
    keepalive_requests: 5
    keepalive_timeout: 300ms
  nopool: {{ servers: ["127.0.0.1:{raws["nopool"].port}"], keepalive: 0 }}
servers:
"""
    blocks = [
        server_block(port, n, n)
        for n in yaml.safe_load(upstreams)["upstreams"]  # one server block per group
    ]
    cfg = upstreams + "".join(blocks)
    gw = start_gateway(tmp, cfg, [port])
    try:
        yield Env(port, a, b, gw, raws, hang)
    finally:
        gw.stop()
        pa.stop()
        pb.stop()
        for r in raws.values():
            r.close()
        hang.close()
        for d in dead:
            d.close()


# -- failures --------------------------------------------------------------------------------


def test_peer_down_is_502_at_once(env: Env) -> None:
    r = request(env.port, "down", "/echo")  # (request() times out: a hang fails)
    assert r.status == 502


def test_connect_timeout_is_504(env: Env) -> None:
    if not env.hang.hangs():
        pytest.skip("this kernel does not drop SYNs to a full accept queue")
    r = request(env.port, "hang", "/echo")
    assert r.status == 504


def test_slow_upstream_is_504_after_read_timeout(env: Env) -> None:
    r = request(env.port, "slow", "/slow/2000")
    # 504, not the origin's 200 after 2 s: the read timeout fired.
    assert r.status == 504


def test_garbage_from_upstream_is_502(env: Env) -> None:
    before = env.raws["garbage"].requests
    r = request(env.port, "garbage", "/x")
    assert r.status == 502
    assert env.raws["garbage"].requests > before
    assert b"garbage" not in r.body


def test_reset_mid_body_truncates_and_gateway_keeps_serving(env: Env) -> None:
    with socket.create_connection(("127.0.0.1", env.port), timeout=5.0) as s:
        s.sendall(b"GET /reset HTTP/1.1\r\nHost: reset\r\n\r\n")
        buf = bytearray()
        # The head (Content-Length: 100000) went out before the reset: the client must see
        # the connection end short of the body, not a hang (a hang is a TimeoutError).
        with pytest.raises(ConnectionError):
            read_response(s, buf)
    r = request(env.port, "reset", "/echo")
    assert origin_of(r) == "a"


def test_a_body_ended_by_the_upstream_close_arrives_whole(env: Env) -> None:
    """A body without Content-Length or chunking ends when the upstream closes (RFC 9112
    6.3): a complete answer, re-framed as chunked for an HTTP/1.1 client, not cut off."""
    r = request(env.port, "reset", "/close")
    assert r.status == 200 and r.body == b"closed by origin"
    assert r.header("Transfer-Encoding") == "chunked"
    with socket.create_connection(("127.0.0.1", env.port), timeout=5.0) as s:
        s.sendall(b"GET /close HTTP/1.0\r\nHost: reset\r\n\r\n")
        old = read_response(s, bytearray())
    assert old.status == 200 and old.body == b"closed by origin"


def test_all_peers_down_is_503(env: Env) -> None:
    first = request(env.port, "alldown", "/")
    assert first.status == 502  # both peers tried and failed
    second = request(env.port, "alldown", "/")
    assert second.status == 503  # both marked down: nothing left to try


# -- balancing --------------------------------------------------------------------------------


def test_round_robin_respects_weights(env: Env) -> None:
    seen = Counter(origin_of(request(env.port, "rr", "/echo")) for _ in range(40))
    assert seen == {"a": 30, "b": 10}


def test_least_conn_avoids_the_busy_peer(env: Env) -> None:
    with socket.create_connection(("127.0.0.1", env.port), timeout=5.0) as slow:
        slow.sendall(b"GET /slow/1000 HTTP/1.1\r\nHost: lc\r\n\r\n")
        time.sleep(0.2)  # the slow request now holds one peer
        fast = [origin_of(request(env.port, "lc", "/echo")) for _ in range(6)]
        busy = origin_of(read_response(slow, bytearray()))
    assert busy not in fast
    assert len(set(fast)) == 1
    # Idle again: both peers share the load.
    after = Counter(origin_of(request(env.port, "lc", "/echo")) for _ in range(6))
    assert set(after) == {"a", "b"}


def test_ip_hash_sticks_to_one_peer(env: Env) -> None:
    seen = {origin_of(request(env.port, "iph", "/echo")) for _ in range(20)}
    assert len(seen) == 1


# -- retries ------------------------------------------------------------------------------


def test_get_is_retried_after_connect_failure(env: Env) -> None:
    # Half of the picks go to the dead peer first (max_fails 0 keeps it in rotation).
    for _ in range(8):
        assert origin_of(request(env.port, "retry", "/echo")) == "a"


def test_post_is_not_retried_after_it_was_sent(env: Env) -> None:
    closer, target = env.raws["close"], env.raws["http"]
    c0, t0 = closer.requests, target.requests
    r = request(env.port, "noretry", "/submit", method="POST", body=b"x=1&y=2")
    assert r.status == 502
    assert closer.requests == c0 + 1
    assert target.requests == t0  # never sent a second time
    # The same failure on a GET is retried on the other peer.
    r = request(env.port, "noretry", "/page")
    assert r.status == 200 and r.body == b"ok"
    assert closer.requests == c0 + 2
    assert target.requests == t0 + 1


def test_post_is_retried_when_the_connect_failed(env: Env) -> None:
    # Nothing was sent to the dead peer, so even a POST may go to the next one, body intact.
    body = b"payload=" + b"z" * 3000
    for _ in range(4):
        r = request(env.port, "retry", "/submit", method="POST", body=body)
        assert r.status == 200, (r.status, r.body)
        doc = json.loads(r.body)
        assert doc["origin"] == "a"
        assert doc["method"] == "POST" and doc["body_length"] == len(body)


def test_stale_pooled_connection_is_not_an_error(env: Env) -> None:
    # The peer closes each connection after answering without saying so: a pooled
    # connection may be dead when reused, which must cost a reconnect, never a 502.
    up = env.raws["oneshot"]
    for _ in range(10):
        r = request(env.port, "oneshot", "/again")
        assert r.status == 200 and r.body == b"ok"
    assert up.requests >= 10


# -- keep-alive pool ---------------------------------------------------------------------------


def test_keepalive_pool_reuses_upstream_connections(env: Env) -> None:
    pool = env.raws["pool"]
    a0, r0 = pool.accepted, pool.requests
    for _ in range(30):  # a new client connection each time, one upstream connection
        r = request(env.port, "pool", "/seq")
        assert r.status == 200
    assert pool.requests == r0 + 30
    assert pool.accepted - a0 <= 2

    errors: list[BaseException] = []

    def client() -> None:
        try:
            with socket.create_connection(("127.0.0.1", env.port), timeout=5.0) as s:
                buf = bytearray()
                for _ in range(25):
                    s.sendall(b"GET /par HTTP/1.1\r\nHost: pool\r\n\r\n")
                    resp = read_response(s, buf)
                    assert resp.status == 200 and resp.body == b"ok"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20.0)
    assert not errors, errors
    assert pool.requests == r0 + 30 + 100
    assert pool.accepted - a0 <= 2 + 4 + 2  # about one per concurrent client


def test_keepalive_pool_limits(env: Env) -> None:
    up = env.raws["pool5"]
    a0 = up.accepted
    for _ in range(20):
        assert request(env.port, "pool5", "/").status == 200
    assert up.accepted - a0 == 4  # keepalive_requests: 5 per upstream connection
    time.sleep(0.6)  # idle past keepalive_timeout: the pooled connection is closed
    a1 = up.accepted
    assert request(env.port, "pool5", "/").status == 200
    assert up.accepted == a1 + 1
    none = env.raws["nopool"]
    for _ in range(5):
        assert request(env.port, "nopool", "/").status == 200
    assert none.accepted == 5  # keepalive: 0 keeps nothing


# -- health (these stop and restart their peers: their own gateway) -----------------------


def test_passive_health_fails_over_and_skips_dead_peer(tmp_path: Path) -> None:
    pa, a = start_origin(tmp_path, name="a")
    pb, b = start_origin(tmp_path, name="b")
    port = free_port()
    cfg = f"""
upstreams:
  app:
    servers:
      - {{ address: "127.0.0.1:{a}", fail_timeout: 3s }}
      - {{ address: "127.0.0.1:{b}", fail_timeout: 3s }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""
    try:
        with running(start_gateway(tmp_path, cfg, [port])):
            both = Counter(origin_of(request(port, "x", "/echo")) for _ in range(4))
            assert both == {"a": 2, "b": 2}
            pb.stop()
            t_down = time.monotonic()
            after = [origin_of(request(port, "x", "/echo")) for _ in range(4)]
            assert after == ["a"] * 4  # GET failed over; b marked down
            pb, _ = start_origin(tmp_path, port=b, name="b")
            assert time.monotonic() - t_down < 2.5, "origin restart took too long"
            during = [origin_of(request(port, "x", "/echo")) for _ in range(4)]
            assert during == ["a"] * 4  # still skipped within fail_timeout
            time.sleep(max(0.0, t_down + 3.2 - time.monotonic()))
            later = Counter(origin_of(request(port, "x", "/echo")) for _ in range(6))
            assert later["b"] >= 2  # back in rotation once fail_timeout passed
    finally:
        pa.stop()
        pb.stop()


def test_active_health_check_marks_down_and_up(tmp_path: Path) -> None:
    pa, a = start_origin(tmp_path, name="a")
    pb, b = start_origin(tmp_path, name="b")
    port = free_port()
    cfg = f"""
upstreams:
  app:
    servers:
      - {{ address: "127.0.0.1:{a}", max_fails: 0 }}
      - {{ address: "127.0.0.1:{b}", max_fails: 0 }}
    health_check: {{ path: /status/200, interval: 200ms, timeout: 500ms, fails: 2, passes: 1 }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""
    try:
        with running(start_gateway(tmp_path, cfg, [port])) as gw:
            assert set(origin_of(request(port, "x", "/echo")) for _ in range(4)) == {"a", "b"}
            pb.stop()
            assert wait_for(lambda: "marked down by health check" in gw.output(), 3.0), gw.output()
            log_size = len(gw.output())
            seen = [origin_of(request(port, "x", "/echo")) for _ in range(6)]
            assert seen == ["a"] * 6
            # Marked down by the check (max_fails 0 disables passive marking): the gateway
            # does not even try the dead peer any more.
            assert f"127.0.0.1:{b}" not in gw.output()[log_size:]
            pb, _ = start_origin(tmp_path, port=b, name="b")
            wait_port(b)
            assert wait_for(lambda: "is up again" in gw.output(), 3.0), gw.output()
            back = Counter(origin_of(request(port, "x", "/echo")) for _ in range(6))
            assert back["b"] >= 2
    finally:
        pa.stop()
        pb.stop()


def test_health_checks_of_replaced_groups_stop_after_reload(tmp_path: Path) -> None:
    peer = RawUpstream("http")
    port = free_port()
    cfg = f"""
upstreams:
  app:
    servers: ["127.0.0.1:{peer.port}"]
    health_check: {{ path: /health, interval: 100ms }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""

    def probes_per_second() -> float:
        n0, t0 = peer.requests, time.monotonic()
        time.sleep(1.0)
        return (peer.requests - n0) / (time.monotonic() - t0)

    try:
        with running(start_gateway(tmp_path, cfg, [port])) as gw:
            before = probes_per_second()
            assert 3 <= before <= 15, before
            for i in range(3):
                gw.signal(signal.SIGHUP)
                assert wait_for(lambda i=i: gw.output().count("reloaded") > i, 3.0)
            assert request(port, "x", "/").status == 200
            after = probes_per_second()
            # One health loop per group in use, not one more per reload.
            assert after <= before * 1.5 + 2, (before, after)
    finally:
        peer.close()


def test_send_timeout_to_an_upstream_that_does_not_read(tmp_path: Path) -> None:
    # The peer accepts and then reads nothing: the request body backs up, and the send
    # timeout (not the much longer read timeout) must end the exchange.
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(8)
    sink_port = int(sink.getsockname()[1])
    port = free_port()
    cfg = f"""
upstreams:
  app:
    servers: ["127.0.0.1:{sink_port}"]
    send_timeout: 500ms
    read_timeout: 20s
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        max_body_size: 64m
        proxy: {{ upstream: app }}
"""
    body_size = 32 * 1024 * 1024
    accepted: list[socket.socket] = []
    try:
        with running(start_gateway(tmp_path, cfg, [port])):
            c = socket.create_connection(("127.0.0.1", port), timeout=4.0)

            def send_body() -> None:
                with contextlib.suppress(OSError):
                    c.sendall(
                        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                        % body_size
                    )
                    chunk = b"z" * 65536
                    for _ in range(body_size // len(chunk)):
                        c.sendall(chunk)

            sender = threading.Thread(target=send_body, daemon=True)
            sender.start()
            sink.settimeout(5.0)
            accepted.append(sink.accept()[0])  # and never read from it
            try:
                r = read_response(c, bytearray())
                status = r.status
            except (TimeoutError, ConnectionError):
                status = 0
            c.close()
            sender.join(5.0)
            assert status == 504, status
    finally:
        for a in accepted:
            a.close()
        sink.close()
