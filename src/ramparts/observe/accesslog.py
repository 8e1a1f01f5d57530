"""The access log: one JSON object per request, written through a buffer that is flushed
when it fills, every ``flush`` seconds, and at shutdown (nginx ``buffer=32k flush=5s``),
and reopened on SIGUSR1 for rotation. Formatting is hand-rolled: it runs per request."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..pipeline.context import Context

__all__ = ["AccessLog", "format_record", "format_refusal"]


def _s(value: str) -> str:
    """A JSON string literal; the common all-safe case skips json.dumps."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return '"' + value + '"'
    return json.dumps(value, ensure_ascii=False)


def _b(value: bytes | None) -> str:
    if value is None:
        return "null"
    return _s(value.decode("latin-1"))


class _TimeCache:
    """ISO 8601 UTC time, the second part formatted once per second."""

    __slots__ = ("_prefix", "_sec")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def format(self, ts: float) -> str:
        sec = int(ts)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return "%s.%03dZ" % (self._prefix, int((ts - sec) * 1000))


_clock = _TimeCache()


def format_record(ctx: Context, wall: float, request_time: float) -> str:
    """One access-log line (with its newline) for a finished request."""
    req = ctx.request
    xff = None
    ua = None
    for name, value in req.headers:
        lname = name.lower()
        if lname == b"x-forwarded-for":
            xff = value if xff is None else xff + b", " + value
        elif lname == b"user-agent":
            ua = value
    return (
        '{"time":"%s","client":%s,"peer":%s,"method":%s,"uri":%s,"path":%s,'
        '"host":%s,"status":%d,"bytes_sent":%d,"request_time":%.6f,'
        '"upstream_addr":%s,"upstream_status":%s,"upstream_time":%s,'
        '"x_forwarded_for":%s,"user_agent":%s,"decided_by":%s%s}\n'
        % (
            _clock.format(wall),
            _s(ctx.client_ip),
            _s("%s:%d" % (ctx.peer_ip, ctx.peer_port)),
            _b(req.method),
            _b(req.target),
            _b(req.path),
            _b(req.host),
            ctx.status,
            ctx.bytes_sent,
            request_time,
            _s(ctx.upstream_addr) if ctx.upstream_addr else "null",
            str(ctx.upstream_status) if ctx.upstream_status else "null",
            "%.6f" % ctx.upstream_time if ctx.upstream_time >= 0 else "null",
            _b(xff),
            _b(ua),
            _s(ctx.decided_by) if ctx.decided_by else "null",
            _extra(ctx.vars) if ctx.vars else "",
        )
    )


def _extra(fields: dict[str, object]) -> str:
    """What the policies noted (``user``, ``limit_req`` ...) as more top-level fields."""
    return "".join(',"%s":%s' % (k, json.dumps(v)) for k, v in fields.items())


def format_refusal(peer_ip: str, peer_port: int, status: int, reason: str, wall: float) -> str:
    """The log line for a request refused before its head could be read."""
    return (
        '{"time":"%s","client":%s,"peer":%s,"status":%d,"error":%s,'
        '"decided_by":"http:protocol"}\n'
        % (
            _clock.format(wall),
            _s(peer_ip),
            _s("%s:%d" % (peer_ip, peer_port)),
            status,
            _s(reason),
        )
    )


class AccessLog:
    """A buffered append-only log file (``-`` writes to standard output)."""

    def __init__(self, path: str, buffer_size: int = 32768, flush_interval: float = 5.0) -> None:
        self.path = path
        self.buffer_size = buffer_size
        self.flush_interval = flush_interval
        self._parts: list[str] = []
        self._size = 0
        self._fd = -1
        self._oldest = 0.0
        self.lines = 0
        self.reopen()

    def reopen(self) -> None:
        """Flush, then open the path again (after a rotation moved the old file away)."""
        self.flush()
        old = self._fd
        if self.path == "-":
            self._fd = sys.stdout.fileno()
            return
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if old > 2 and old != sys.stdout.fileno():
            os.close(old)

    def write(self, line: str) -> None:
        if not self._parts:
            self._oldest = time.monotonic()
        self._parts.append(line)
        self._size += len(line)
        self.lines += 1
        if self._size >= self.buffer_size:
            self.flush()

    def due(self, now: float) -> bool:
        """True when buffered lines are older than the flush interval."""
        return bool(self._parts) and now - self._oldest >= self.flush_interval

    def flush(self) -> None:
        if not self._parts or self._fd < 0:
            return
        data = "".join(self._parts).encode("utf-8", "backslashreplace")
        self._parts = []
        self._size = 0
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def close(self) -> None:
        self.flush()
        if self._fd > 2 and self.path != "-":
            os.close(self._fd)
        self._fd = -1
