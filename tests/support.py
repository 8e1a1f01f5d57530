"""Shared test helpers: free ports, processes started and stopped by the test itself
(the gateway, the demo origin), raw-socket HTTP exchanges, and small response parsing."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port}")


@dataclass
class Proc:
    """A process started by a test; ``stop`` ends it (SIGTERM, then SIGKILL)."""

    popen: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return int(self.popen.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_origin(tmp: Path, port: int | None = None, name: str = "origin") -> tuple[Proc, int]:
    """The demo origin (``ramparts origin``) on 127.0.0.1."""
    port = port or free_port()
    log = tmp / f"origin-{name}-{port}.log"
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ramparts.cli",
            "origin",
            "--listen",
            f"127.0.0.1:{port}",
            "--name",
            name,
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_port(port)
    return Proc(popen, log), port


def start_gateway(
    tmp: Path, config: str, ports: list[int] | None = None, name: str = "gw", wait: bool = True
) -> Proc:
    """``ramparts serve`` on a config written to ``tmp``; waits for ``ports`` to listen."""
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(config)
    log = tmp / f"{name}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    popen = subprocess.Popen(
        [sys.executable, "-m", "ramparts.cli", "serve", str(cfg)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    proc = Proc(popen, log, {"config": cfg})
    if wait:
        try:
            for p in ports or []:
                wait_port(p)
        except TimeoutError:
            proc.stop()
            raise AssertionError(f"gateway did not start:\n{proc.output()}") from None
    return proc


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    try:
        yield proc
    finally:
        proc.stop()


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


def read_response(sock: socket.socket, buf: bytearray, head_request: bool = False) -> Response:
    """Read one HTTP/1.1 response from ``sock`` (leftover bytes stay in ``buf``)."""

    def fill() -> None:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed")
        buf.extend(data)

    while b"\r\n\r\n" not in buf:
        fill()
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end])
    del buf[: end + 4]
    lines = head.split(b"\r\n")
    _version, status, *rest = lines[0].split(b" ", 2)
    headers = []
    for line in lines[1:]:
        n, _, v = line.partition(b":")
        headers.append((n.decode("latin-1"), v.strip().decode("latin-1")))
    resp = Response(int(status), rest[0].decode("latin-1") if rest else "", headers, b"", head)
    code = resp.status
    if head_request or code in (204, 304) or 100 <= code < 200:
        return resp
    te = resp.header("transfer-encoding")
    cl = resp.header("content-length")
    if te is not None and "chunked" in te.lower():
        body = bytearray()
        while True:
            while b"\r\n" not in buf:
                fill()
            i = buf.index(b"\r\n")
            size = int(bytes(buf[:i]).split(b";")[0], 16)
            del buf[: i + 2]
            while len(buf) < size + 2:
                fill()
            body += buf[:size]
            del buf[: size + 2]
            if size == 0:
                break
        resp.body = bytes(body)
    elif cl is not None:
        n = int(cl)
        while len(buf) < n:
            fill()
        resp.body = bytes(buf[:n])
        del buf[:n]
    else:
        while True:
            try:
                fill()
            except ConnectionError:
                break
        resp.body = bytes(buf)
        buf.clear()
    return resp


def exchange(port: int, raw: bytes, timeout: float = 5.0, head: bool = False) -> Response:
    """Send raw bytes on a new connection and read one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        return read_response(s, bytearray(), head_request=head)


def get(port: int, path: str = "/", host: str = "localhost", headers: str = "") -> Response:
    return exchange(
        port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n".encode()
    )


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closes (EOF or reset) within ``timeout``, after any data."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
