"""Static files: the path judged by the router mapped under a root it can never leave (no
``..``, no encoded traversal, no symlink out), conditional requests (ETag,
If-Modified-Since), single byte ranges, HEAD, Expires / Cache-Control, and streaming with
backpressure. The decisions are pure functions; ``serve_static`` is the thin shell."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat as statmod
import time
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from ..config.plan import StaticRoute
from ..pipeline.phases import Respond

if TYPE_CHECKING:
    from ..http.request import Request
    from .http1 import Exchange

__all__ = ["FilePlan", "plan_static", "resolve_path", "serve_static"]

_CHUNK = 256 * 1024
_SMALL = 64 * 1024


def resolve_path(route: StaticRoute, path: bytes) -> Path | Respond:
    """The file ``path`` names under ``route.root``, or the answer that refuses it."""
    if route.strip_prefix:
        if not path.startswith(route.strip_prefix):
            return Respond(404, body=b"404 Not Found\n")
        path = path[len(route.strip_prefix) :] or b"/"
    raw = unquote_to_bytes(path)
    if b"\0" in raw or b"\\" in raw:
        return Respond(400, body=b"400 Bad Request\n")
    try:
        rel = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Respond(400, body=b"400 Bad Request\n")
    parts = [p for p in rel.split("/") if p]
    if any(p in (".", "..") for p in parts):
        return Respond(400, body=b"400 Bad Request\n")
    root = route.root
    candidate = root.joinpath(*parts) if parts else root
    if not route.follow_symlinks:
        # Refuse any symlink on the way down (nginx disable_symlinks on).
        cur = root
        for part in parts:
            cur = cur / part
            try:
                if statmod.S_ISLNK(os.lstat(cur).st_mode):
                    return Respond(403, body=b"403 Forbidden\n")
            except (FileNotFoundError, NotADirectoryError):  # a/b where a is a file: 404
                return Respond(404, body=b"404 Not Found\n")
            except OSError:
                return Respond(403, body=b"403 Forbidden\n")
    real = Path(os.path.realpath(candidate))
    if real != root and root not in real.parents:
        return Respond(403, body=b"403 Forbidden\n")
    if rel.endswith("/") or not parts:
        if not real.is_dir():
            return Respond(404, body=b"404 Not Found\n")
        for name in route.index:
            index = real / name
            if index.is_file():
                ireal = Path(os.path.realpath(index))
                if ireal == root or root in ireal.parents:
                    if not route.follow_symlinks and index.is_symlink():
                        return Respond(403, body=b"403 Forbidden\n")
                    return ireal
        return Respond(403, body=b"403 Forbidden\n")
    return real


@dataclass(frozen=True, slots=True)
class FilePlan:
    """What to send for a file: status, headers, and the byte span (start, length)."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    start: int
    length: int


def _etag(st: os.stat_result) -> bytes:
    return b'"%x-%x"' % (int(st.st_mtime), st.st_size)


def _http_date(ts: float) -> bytes:
    return formatdate(ts, usegmt=True).encode()


def plan_static(
    route: StaticRoute, req: Request, st: os.stat_result, content_type: bytes, now: float
) -> FilePlan:
    """Conditional and range logic for a regular file (RFC 9110 13, 14)."""
    etag = _etag(st)
    mtime = int(st.st_mtime)
    last_modified = _http_date(mtime)
    base: list[tuple[bytes, bytes]] = [
        (b"Content-Type", content_type),
        (b"Last-Modified", last_modified),
        (b"ETag", etag),
        (b"Accept-Ranges", b"bytes"),
    ]
    if route.expires is not None:
        base.append((b"Expires", _http_date(now + route.expires)))
        if route.cache_control is None:
            base.append((b"Cache-Control", b"max-age=%d" % int(route.expires)))
    if route.cache_control is not None:
        base.append((b"Cache-Control", route.cache_control))

    inm = req.header(b"if-none-match")
    if inm is not None:
        if _etag_matches(inm, etag):
            return FilePlan(304, tuple(h for h in base if h[0] != b"Content-Type"), 0, 0)
    else:
        ims = _parse_date(req.header(b"if-modified-since"))
        if ims is not None and mtime <= ims:
            return FilePlan(304, tuple(h for h in base if h[0] != b"Content-Type"), 0, 0)

    size = st.st_size
    rng = req.header(b"range")
    if rng is not None and req.method in (b"GET", b"HEAD"):
        if_range = req.header(b"if-range")
        if if_range is None or if_range in (etag, last_modified):
            span = _parse_range(rng, size)
            if span == "unsatisfiable":
                return FilePlan(416, ((b"Content-Range", b"bytes */%d" % size),), 0, 0)
            if isinstance(span, tuple):
                start, end = span
                headers = (*base, (b"Content-Range", b"bytes %d-%d/%d" % (start, end, size)))
                return FilePlan(206, headers, start, end - start + 1)
    return FilePlan(200, tuple(base), 0, size)


def _etag_matches(header: bytes, etag: bytes) -> bool:
    if header.strip() == b"*":
        return True
    for tag in header.split(b","):
        tag = tag.strip()
        if tag.startswith(b"W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def _parse_date(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        return int(parsedate_to_datetime(value.decode("latin-1")).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _parse_range(value: bytes, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=`` range as inclusive (start, end); None to ignore the header (several
    ranges, other units, bad syntax); "unsatisfiable" for 416."""
    if not value.startswith(b"bytes="):
        return None
    spec = value[6:].strip()
    if b"," in spec:
        return None
    first, dash, last = spec.partition(b"-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not first:
        if not last.isdigit():
            return None
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return (max(0, size - n), size - 1) if size else "unsatisfiable"
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start = int(first)
    if last and int(last) < start:
        return None  # invalid syntax (RFC 9110 14.1.1): ignored
    if start >= size:
        return "unsatisfiable"  # also "bytes=N-" with N at or past the end
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


def serve_static(ex: Exchange, route: StaticRoute) -> None:
    """Answer ``ex`` from the file system."""
    req = ex.request
    if req.method not in (b"GET", b"HEAD"):
        ex.respond(Respond(405, ((b"Allow", b"GET, HEAD"),), b"405 Method Not Allowed\n"))
        return
    found = resolve_path(route, req.path)
    if isinstance(found, Respond):
        ex.respond(found)
        return
    try:
        fd = os.open(found, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        ex.respond(Respond(404, body=b"404 Not Found\n"))
        return
    except OSError:
        ex.respond(Respond(403, body=b"403 Forbidden\n"))
        return
    try:
        st = os.fstat(fd)
        if statmod.S_ISDIR(st.st_mode):
            os.close(fd)
            location = req.path + b"/" + (b"?" + req.query if req.query is not None else b"")
            ex.respond(Respond(301, ((b"Location", location),), b""))
            return
        if not statmod.S_ISREG(st.st_mode):
            os.close(fd)
            ex.respond(Respond(403, body=b"403 Forbidden\n"))
            return
        ctype = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        fp = plan_static(route, req, st, ctype.encode(), _wall_time())
    except BaseException:
        os.close(fd)
        raise
    if fp.status in (304, 416) or req.method == b"HEAD" or fp.length == 0:
        os.close(fd)
        ex.send_head(fp.status, list(fp.headers), fp.length if fp.status != 304 else None)
        ex.finish_body()
        return
    if fp.length <= _SMALL:
        try:
            data = os.pread(fd, fp.length, fp.start)
        finally:
            os.close(fd)
        ex.send_head(fp.status, list(fp.headers), len(data))
        ex.send_body(data)
        ex.finish_body()
        return
    ex.send_head(fp.status, list(fp.headers), fp.length)
    sender = FileSender(ex, fd, fp.start, fp.length)
    ex.sender = sender
    sender.task = asyncio.get_running_loop().create_task(sender.run())


def _wall_time() -> float:
    return time.time()


class FileSender:
    """Streams a file span to the client, waiting whenever the client's buffer is full."""

    def __init__(self, ex: Exchange, fd: int, start: int, length: int) -> None:
        self.ex = ex
        self.fd = fd
        self.pos = start
        self.left = length
        self._ready = asyncio.Event()
        self._ready.set()
        self.task: asyncio.Task[None] | None = None

    def pause(self) -> None:
        self._ready.clear()

    def resume(self) -> None:
        self._ready.set()

    async def run(self) -> None:
        try:
            while self.left > 0:
                await self._ready.wait()
                if self.ex.conn.closing and self.ex.conn.transport is None:
                    return
                data = os.pread(self.fd, min(_CHUNK, self.left), self.pos)
                if not data:  # the file shrank: the response cannot be completed
                    self.ex.conn.abort()
                    return
                self.pos += len(data)
                self.left -= len(data)
                self.ex.send_body(data)
                if self.ex.conn.closing and (
                    self.ex.conn.transport is None or self.ex.conn.transport.is_closing()
                ):
                    return
            self.ex.sender = None
            self.ex.finish_body()
        finally:
            os.close(self.fd)
