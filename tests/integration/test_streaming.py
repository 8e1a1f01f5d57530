"""Bodies stream through the gateway with backpressure, never buffered whole: 100 MB up and
100 MB down with the gateway's resident memory staying flat, including when the far side
reads slowly."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ..support import Proc, free_port, read_response, start_origin
from .conftest import RssSampler, connect, echo_json, gateway, vm_rss_kb

MB = 1 << 20
SIZE = 100 * MB
MAX_GROWTH_KB = 40 * 1024  # allowed RSS growth of the gateway while 100 MB pass through
BLOCK = bytes(range(256)) * 4096  # 1 MiB, not a run of one byte


@dataclass
class Setup:
    port: int
    slow_port: int
    slow: SlowReader
    gateway: Proc


class SlowReader:
    """An origin that reads a request head, then stops reading for ``pause`` seconds before
    it takes the body (hashing it) and answers with a JSON summary."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30.0)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            buf = bytearray()
            try:
                while b"\r\n\r\n" not in buf and len(buf) < 65536:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                end = buf.index(b"\r\n\r\n")
                head = bytes(buf[:end]).decode("latin-1").lower()
                del buf[: end + 4]
                length = 0
                for line in head.split("\r\n"):
                    if line.startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                self.paused.set()
                self._stop.wait(self.pause)
                sha = hashlib.sha256(buf[:length])
                got = min(len(buf), length)
                while got < length:
                    data = conn.recv(min(1 << 20, length - got))
                    if not data:
                        return
                    sha.update(data)
                    got += len(data)
                body = json.dumps({"body_length": got, "body_sha256": sha.hexdigest()}).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                    % len(body)
                    + body
                )
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("streaming")
    origin, oport = start_origin(tmp)
    slow = SlowReader(pause=2.0)
    port, slow_port = free_port(), free_port()
    cfg = f"""
limits:
  max_body_size: 0
upstreams:
  demo: {{ servers: ["127.0.0.1:{oport}"] }}
  slow: {{ servers: ["127.0.0.1:{slow.port}"], keepalive: 0 }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: demo }}
  - listen: "127.0.0.1:{slow_port}"
    locations:
      - location: /
        proxy: {{ upstream: slow }}
"""
    try:
        with gateway(tmp, cfg, [port, slow_port]) as proc:
            yield Setup(port, slow_port, slow, proc)
    finally:
        slow.close()
        origin.stop()


def _warm_up(gw: Setup) -> int:
    """A few ordinary exchanges first (imports, pools, buffers), then the baseline RSS."""
    with connect(gw.port) as s:
        buf = bytearray()
        for path in ("/", "/bytes/200000", "/chunked/50"):
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            read_response(s, buf)
        body = BLOCK * 2
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        read_response(s, buf)
    time.sleep(0.2)
    return vm_rss_kb(gw.gateway.pid)


def _upload(s: socket.socket, chunked: bool) -> str:
    """Send SIZE bytes of body on ``s`` (head already sent); returns their SHA-256."""
    sha = hashlib.sha256()
    for i in range(SIZE // MB):
        piece = i.to_bytes(4, "big") + BLOCK[4:]
        sha.update(piece)
        if chunked:
            s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        else:
            s.sendall(piece)
    if chunked:
        s.sendall(b"0\r\n\r\n")
    return sha.hexdigest()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_100mb_upload_streams_with_flat_memory(gw: Setup, chunked: bool) -> None:
    base = _warm_up(gw)
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % SIZE
    with RssSampler(gw.gateway.pid) as rss, connect(gw.port, timeout=30.0) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\n" + framing + b"\r\n\r\n")
        digest = _upload(s, chunked)
        r = read_response(s, bytearray())
    assert r.status == 200
    doc = echo_json(r)
    assert doc["body_length"] == SIZE
    assert doc["body_sha256"] == digest
    assert rss.samples > 5
    growth = rss.peak - base
    assert growth < MAX_GROWTH_KB, f"gateway RSS grew by {growth} KiB during the upload"


def test_upload_to_slow_origin_applies_backpressure(gw: Setup) -> None:
    """The origin stops reading for 2 s: the gateway must stop reading from the client
    instead of buffering the body."""
    base = _warm_up(gw)
    result: dict[str, object] = {}

    def client() -> None:
        try:
            with connect(gw.slow_port, timeout=30.0) as s:
                s.sendall(
                    b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % SIZE
                )
                result["sha"] = _upload(s, False)
                result["resp"] = read_response(s, bytearray())
        except OSError as exc:
            result["error"] = exc

    with RssSampler(gw.gateway.pid) as rss:
        t = threading.Thread(target=client, daemon=True)
        t.start()
        assert gw.slow.paused.wait(10)
        time.sleep(1.5)  # the origin is not reading: whatever the client sends piles up
        during_pause = rss.peak
        t.join(30)
    assert not t.is_alive()
    resp = result.get("resp")
    assert resp is not None, result.get("error")
    doc = json.loads(resp.body)  # type: ignore[attr-defined]
    assert doc["body_length"] == SIZE
    assert doc["body_sha256"] == result["sha"]
    assert during_pause - base < MAX_GROWTH_KB, f"grew by {during_pause - base} KiB while paused"
    assert rss.peak - base < MAX_GROWTH_KB, f"grew by {rss.peak - base} KiB"


def test_100mb_download_to_slow_reader_with_flat_memory(gw: Setup) -> None:
    base = _warm_up(gw)
    expected = hashlib.sha256()
    pattern = b"0123456789abcdef" * (MB // 16)
    for _ in range(SIZE // MB):
        expected.update(pattern)
    with RssSampler(gw.gateway.pid) as rss:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.settimeout(30.0)
        with s:
            s.connect(("127.0.0.1", gw.port))
            s.sendall(f"GET /bytes/{SIZE} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            buf = bytearray()
            while b"\r\n\r\n" not in buf:
                data = s.recv(4096)
                assert data
                buf += data
            end = buf.index(b"\r\n\r\n")
            head = bytes(buf[:end]).lower()
            assert head.startswith(b"http/1.1 200")
            assert b"content-length: %d" % SIZE in head
            body = buf[end + 4 :]
            got = len(body)
            sha = hashlib.sha256(body)
            # A slow reader: nothing for 2 s (the origin can send everything meanwhile),
            # then small reads with pauses, then the rest at full speed.
            time.sleep(2.0)
            during_pause = rss.peak
            for _ in range(50):
                data = s.recv(16384)
                assert data
                sha.update(data)
                got += len(data)
                time.sleep(0.01)
            while got < SIZE:
                data = s.recv(min(1 << 20, SIZE - got))
                assert data, f"connection closed after {got} bytes"
                sha.update(data)
                got += len(data)
    assert got == SIZE
    assert sha.hexdigest() == expected.hexdigest()
    assert during_pause - base < MAX_GROWTH_KB, f"grew by {during_pause - base} KiB while paused"
    assert rss.peak - base < MAX_GROWTH_KB, f"grew by {rss.peak - base} KiB"


def test_100mb_chunked_download_intact(gw: Setup) -> None:
    """102400 chunks of 1 KiB re-chunked by the gateway arrive whole and in order."""
    base = _warm_up(gw)
    with RssSampler(gw.gateway.pid) as rss, connect(gw.port, timeout=30.0) as s:
        s.sendall(b"GET /chunked/102400 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        r = read_response(s, bytearray())
    assert r.status == 200
    assert len(r.body) == SIZE
    assert r.body == b"0123456789abcdef" * (SIZE // 16)
    assert rss.peak - base < MAX_GROWTH_KB, f"grew by {rss.peak - base} KiB"
