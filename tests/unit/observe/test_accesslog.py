"""The access log: one valid JSON object per request, buffered, flushed, reopened."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ramparts.http.headers import Headers
from ramparts.http.request import parse_head
from ramparts.observe.accesslog import AccessLog, format_record
from ramparts.pipeline.context import Context

WALL = 1_700_000_000.5  # 2023-11-14T22:13:20.500Z


def ctx(
    headers: Headers | None = None,
    target: bytes = b"/a/./b?x=1",
    method: bytes = b"GET",
    version: str = "1.1",
) -> Context:
    req = parse_head(
        method, target, version, [(b"Host", b"example.com")] if headers is None else headers
    )
    c = Context(req, "192.0.2.10", 50000, "http", 0.0)
    c.status = 200
    c.bytes_sent = 1234
    return c


def record(c: Context, wall: float = WALL, request_time: float = 0.0125) -> dict[str, Any]:
    line = format_record(c, wall, request_time)
    assert line.endswith("\n")
    assert line.count("\n") == 1
    data = json.loads(line)
    assert isinstance(data, dict)
    return data


# -- format_record -----------------------------------------------------------------------


def test_fields_of_a_proxied_request() -> None:
    c = ctx(
        [(b"Host", b"example.com"), (b"User-Agent", b"curl/8.0"), (b"X-Forwarded-For", b"1.2.3.4")]
    )
    c.client_ip = "203.0.113.5"
    c.upstream_addr = "127.0.0.1:3000"
    c.upstream_status = 201
    c.upstream_time = 0.004
    c.decided_by = "location /"
    c.status = 201
    data = record(c)
    assert data == {
        "time": "2023-11-14T22:13:20.500Z",
        "client": "203.0.113.5",
        "peer": "192.0.2.10:50000",
        "method": "GET",
        "uri": "/a/./b?x=1",
        "path": "/a/b",
        "host": "example.com",
        "status": 201,
        "bytes_sent": 1234,
        "request_time": pytest.approx(0.0125),
        "upstream_addr": "127.0.0.1:3000",
        "upstream_status": 201,
        "upstream_time": pytest.approx(0.004),
        "x_forwarded_for": "1.2.3.4",
        "user_agent": "curl/8.0",
        "decided_by": "location /",
    }


def test_absent_values_are_null() -> None:
    data = record(ctx([], version="1.0"))
    assert data["host"] is None
    assert data["upstream_addr"] is None
    assert data["upstream_status"] is None
    assert data["upstream_time"] is None
    assert data["x_forwarded_for"] is None
    assert data["user_agent"] is None
    assert data["decided_by"] is None
    assert data["client"] == "192.0.2.10"


def test_zero_upstream_time_is_kept() -> None:
    c = ctx()
    c.upstream_time = 0.0
    assert record(c)["upstream_time"] == 0.0


def test_several_x_forwarded_for_fields_are_joined() -> None:
    c = ctx([(b"Host", b"h"), (b"X-Forwarded-For", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2")])
    assert record(c)["x_forwarded_for"] == "1.1.1.1, 2.2.2.2"


@pytest.mark.parametrize(
    "value",
    [
        b'say "hi"',
        b"back\\slash",
        b'"\\"',
        b"tab\there",
        b"ctl\x01\x1f\x7f",
        b"caf\xc3\xa9",
        b"\xff\xfe raw",
        b'}, "status": 999, "x": {',
    ],
)
def test_header_values_are_escaped(value: bytes) -> None:
    c = ctx([(b"Host", b"h"), (b"User-Agent", value), (b"X-Forwarded-For", value)])
    data = record(c)
    # header bytes survive losslessly (latin-1), and cannot forge other fields
    assert data["user_agent"].encode("latin-1") == value
    assert data["x_forwarded_for"].encode("latin-1") == value
    assert data["status"] == 200
    assert set(data) == {
        "time", "client", "peer", "method", "uri", "path", "host", "status", "bytes_sent",
        "request_time", "upstream_addr", "upstream_status", "upstream_time",
        "x_forwarded_for", "user_agent", "decided_by",
    }  # fmt: skip


def test_quotes_in_strings_from_the_context_are_escaped() -> None:
    c = ctx()
    c.decided_by = 'waf:rule "942100" \\ x'
    c.upstream_addr = "[::1]:80"
    data = record(c)
    assert data["decided_by"] == 'waf:rule "942100" \\ x'
    assert data["upstream_addr"] == "[::1]:80"


def test_query_with_escapes_and_quotes_in_the_uri() -> None:
    c = ctx(target=b'/p?q="x"&r=%22\\')
    data = record(c)
    assert data["uri"] == '/p?q="x"&r=%22\\'
    assert data["path"] == "/p"


@pytest.mark.parametrize(
    ("wall", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (0.25, "1970-01-01T00:00:00.250Z"),
        (86400.75, "1970-01-02T00:00:00.750Z"),
        (1_700_000_000.0, "2023-11-14T22:13:20.000Z"),
        (1_700_000_001.5, "2023-11-14T22:13:21.500Z"),
    ],
)
def test_time_is_iso8601_utc_with_milliseconds(wall: float, text: str) -> None:
    assert record(ctx(), wall=wall)["time"] == text


def test_time_changes_between_seconds_and_back() -> None:
    assert record(ctx(), wall=10.0)["time"].endswith("00:00:10.000Z")
    assert record(ctx(), wall=11.0)["time"].endswith("00:00:11.000Z")
    assert record(ctx(), wall=10.5)["time"].endswith("00:00:10.500Z")


# -- AccessLog ---------------------------------------------------------------------------


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []


def test_buffers_until_the_buffer_size(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), buffer_size=100, flush_interval=5.0)
    assert path.exists()  # opened at once, so a bad path fails early
    log.write("a" * 39 + "\n")
    log.write("b" * 39 + "\n")
    assert path.read_text() == ""
    log.write("c" * 19 + "\n")  # 100 characters: flushed
    assert lines(path) == ["a" * 39 + "\n", "b" * 39 + "\n", "c" * 19 + "\n"]
    log.write("d\n")
    assert len(lines(path)) == 3
    assert log.lines == 4
    log.close()
    assert lines(path)[-1] == "d\n"


def test_zero_buffer_writes_each_line(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), buffer_size=0)
    log.write("one\n")
    assert path.read_text() == "one\n"
    log.write("two\n")
    assert path.read_text() == "one\ntwo\n"
    log.close()


def test_flush(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), buffer_size=1 << 20)
    log.write("x\n")
    log.write("y\n")
    assert path.read_text() == ""
    log.flush()
    assert path.read_text() == "x\ny\n"
    log.flush()  # nothing buffered: nothing written twice
    assert path.read_text() == "x\ny\n"
    log.close()


def test_due_after_the_flush_interval(tmp_path: Path) -> None:
    log = AccessLog(str(tmp_path / "access.log"), buffer_size=1 << 20, flush_interval=5.0)
    now = time.monotonic()
    assert not log.due(now + 100)  # nothing buffered
    log.write("x\n")
    assert not log.due(now)
    assert log.due(time.monotonic() + 5.0)
    log.flush()
    assert not log.due(time.monotonic() + 100)
    log.close()


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text("old\n")
    log = AccessLog(str(path), buffer_size=0)
    log.write("new\n")
    log.close()
    assert path.read_text() == "old\nnew\n"


def test_reopen_after_rotation_writes_to_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    log = AccessLog(str(path), buffer_size=1 << 20)
    log.write("before-1\n")
    log.flush()
    log.write("before-2\n")  # still buffered when the file is moved away
    os.rename(path, rotated)
    log.reopen()
    log.write("after\n")
    log.close()
    assert rotated.read_text() == "before-1\nbefore-2\n"
    assert path.read_text() == "after\n"


def test_close_flushes_and_is_final(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), buffer_size=1 << 20)
    log.write("last\n")
    log.close()
    assert path.read_text() == "last\n"
    log.close()  # twice is harmless
    log.flush()
    assert path.read_text() == "last\n"


def test_non_ascii_is_written_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), buffer_size=0)
    c = ctx([(b"Host", b"h"), (b"User-Agent", b"caf\xc3\xa9 \xff")])
    log.write(format_record(c, WALL, 0.0))
    log.close()
    raw = path.read_bytes()
    data = json.loads(raw.decode("utf-8"))
    assert data["user_agent"].encode("latin-1") == b"caf\xc3\xa9 \xff"


def test_many_records_make_valid_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), buffer_size=512)
    for i in range(50):
        c = ctx([(b"Host", b"h"), (b"User-Agent", b'ua "%d"' % i)])
        c.status = 200 + i
        log.write(format_record(c, WALL + i, 0.001))
    log.close()
    got = [json.loads(line) for line in lines(path)]
    assert [d["status"] for d in got] == [200 + i for i in range(50)]
    assert got[7]["user_agent"] == 'ua "7"'


def test_unwritable_path_fails_at_open(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        AccessLog(str(tmp_path / "missing-dir" / "access.log"))


class _FakeStdout:
    """Standard output replaced (as a daemon or a test harness does) by a stream on a
    descriptor the log did not open."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


def test_dash_writes_to_standard_output_and_never_closes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r, w = os.pipe()
    monkeypatch.setattr(sys, "stdout", _FakeStdout(w))
    try:
        log = AccessLog("-", buffer_size=1 << 20)
        log.write('{"a":1}\n')
        log.flush()
        log.reopen()
        log.write('{"b":2}\n')
        log.close()
        assert os.read(r, 1000) == b'{"a":1}\n{"b":2}\n'
        # the log did not open standard output, so it must not close it
        os.fstat(w)
    finally:
        os.close(r)
        with contextlib.suppress(OSError):
            os.close(w)
