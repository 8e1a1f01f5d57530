"""Shared pieces for the HTTP integration tests: a recording origin that remembers every
request it receives (so a test can prove a refused request never reached the backend),
a gateway started once per module, and raw-socket helpers.

Everything listens on 127.0.0.1 only and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..support import Proc, Response, closed_by_peer, read_response, start_gateway

_MAX_HEAD = 1 << 20


@dataclass
class Recorded:
    """One complete request as the origin received it."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body_length: int
    body_sha256: str

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def header_names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}


@dataclass
class RecordingOrigin:
    """A tiny threaded HTTP/1.1 origin on 127.0.0.1.

    It records every request line it reads (``lines``, even when the rest of the request
    never completes) and every complete request (``requests``), and answers each with
    ``200`` and a JSON echo (method, target, headers, body length and SHA-256), keeping the
    connection alive.
    """

    port: int = 0
    lines: list[str] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    raw_bytes: int = 0
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def targets(self) -> list[str]:
        with self.lock:
            return [r.target for r in self.requests]

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return len(self.lines), len(self.requests)

    def lines_since(self, mark: tuple[int, int]) -> list[str]:
        with self.lock:
            return list(self.lines[mark[0] :])

    def requests_since(self, mark: tuple[int, int]) -> list[Recorded]:
        with self.lock:
            return list(self.requests[mark[1] :])

    def wait_for(self, pred: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.01)
        return pred()


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        rec = self.server.recorder
        sock: socket.socket = self.request
        sock.settimeout(30.0)
        with rec.lock:
            rec.connections += 1
        buf = bytearray()

        def fill() -> bool:
            try:
                data = sock.recv(65536)
            except OSError:
                return False
            if not data:
                return False
            with rec.lock:
                rec.raw_bytes += len(data)
            buf.extend(data)
            return True

        for _ in range(100_000):  # requests per connection, bounded
            while b"\r\n" not in buf:
                if len(buf) > _MAX_HEAD or not fill():
                    return
            line = bytes(buf[: buf.index(b"\r\n")]).decode("latin-1")
            with rec.lock:
                rec.lines.append(line)
            while b"\r\n\r\n" not in buf:
                if len(buf) > _MAX_HEAD or not fill():
                    return
            end = buf.index(b"\r\n\r\n")
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            method, target, version = [*head.split("\r\n", 1)[0].split(" ", 2), "", ""][:3]
            headers: list[tuple[str, str]] = []
            for hl in head.split("\r\n")[1:]:
                n, _, v = hl.partition(":")
                headers.append((n, v.strip()))
            lower = {n.lower(): v for n, v in headers}
            sha = hashlib.sha256()
            length = 0
            if "chunked" in lower.get("transfer-encoding", "").lower():
                while True:
                    while b"\r\n" not in buf:
                        if not fill():
                            return
                    i = buf.index(b"\r\n")
                    size = int(bytes(buf[:i]).split(b";")[0], 16)
                    del buf[: i + 2]
                    while len(buf) < size + 2:
                        if not fill():
                            return
                    sha.update(buf[:size])
                    length += size
                    del buf[: size + 2]
                    if size == 0:
                        break
            else:
                remaining = int(lower.get("content-length", "0") or "0")
                while remaining:
                    if not buf and not fill():
                        return
                    take = min(remaining, len(buf))
                    sha.update(buf[:take])
                    del buf[:take]
                    length += take
                    remaining -= take
            r = Recorded(method, target, version, headers, length, sha.hexdigest())
            with rec.lock:
                rec.requests.append(r)
            body = json.dumps(
                {
                    "method": method,
                    "target": target,
                    "headers": headers,
                    "body_length": length,
                    "body_sha256": r.body_sha256,
                }
            ).encode()
            resp = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            try:
                sock.sendall(resp)
            except OSError:
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    recorder: RecordingOrigin


@contextlib.contextmanager
def recording_origin() -> Iterator[RecordingOrigin]:
    rec = RecordingOrigin()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.recorder = rec
    rec.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def recorder() -> Iterator[RecordingOrigin]:
    """One recording origin per test module."""
    with recording_origin() as rec:
        yield rec


@contextlib.contextmanager
def gateway(tmp: Path, config: str, ports: list[int], name: str = "gw") -> Iterator[Proc]:
    proc = start_gateway(tmp, config, ports, name=name)
    try:
        yield proc
    finally:
        proc.stop()


# -- raw socket helpers --------------------------------------------------------------------


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """``sendall`` that tolerates the peer closing early (it may refuse after the head)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


@dataclass
class Outcome:
    """What came back for one raw request: the response (if any) and whether the
    connection was closed by the gateway afterwards."""

    response: Response | None
    closed: bool
    error: str = ""

    @property
    def status(self) -> int | None:
        return self.response.status if self.response is not None else None


def raw_outcome(port: int, raw: bytes, timeout: float = 5.0) -> Outcome:
    """Send ``raw`` on a fresh connection; read one response and whether it then closes."""
    with connect(port, timeout) as s:
        send_quietly(s, raw)
        buf = bytearray()
        try:
            resp = read_response(s, buf)
        except (ConnectionError, TimeoutError, OSError) as exc:
            return Outcome(None, True, repr(exc))
        return Outcome(resp, closed_by_peer(s, timeout))


def marker_request(port: int, rec: RecordingOrigin, host: str = "localhost") -> str:
    """Send a fresh, valid request through the gateway and wait until the origin has it;
    everything forwarded before it has then arrived too. Returns its target."""
    target = f"/__marker/{uuid.uuid4().hex}"
    with connect(port) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        r = read_response(s, bytearray())
    assert r.status == 200, r
    assert rec.wait_for(lambda: target in rec.targets())
    return target


def assert_not_forwarded(port: int, rec: RecordingOrigin, mark: tuple[int, int]) -> None:
    """Nothing but the marker reached the origin since ``mark``."""
    target = marker_request(port, rec)
    lines = rec.lines_since(mark)
    assert lines == [f"GET {target} HTTP/1.1"], f"the origin received {lines!r}"


def echo_json(resp: Response) -> dict[str, object]:
    doc = json.loads(resp.body)
    assert isinstance(doc, dict)
    return doc


def vm_rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class RssSampler:
    """Samples a process's VmRSS in a thread until stopped; ``peak`` is the maximum."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, AssertionError):
                self.peak = max(self.peak, vm_rss_kb(self.pid))
                self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
