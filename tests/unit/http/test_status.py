"""Reason phrases and status lines."""

from __future__ import annotations

import pytest

from ramparts.http.status import reason, status_line


@pytest.mark.parametrize(
    ("status", "phrase"),
    [
        (200, b"OK"),
        (301, b"Moved Permanently"),
        (400, b"Bad Request"),
        (404, b"Not Found"),
        (413, b"Content Too Large"),
        (414, b"URI Too Long"),
        (416, b"Range Not Satisfiable"),
        (417, b"Expectation Failed"),
        (422, b"Unprocessable Content"),
        (431, b"Request Header Fields Too Large"),
        (502, b"Bad Gateway"),
        (503, b"Service Unavailable"),
        (504, b"Gateway Timeout"),
        (505, b"HTTP Version Not Supported"),
    ],
)
def test_reason_and_status_line(status: int, phrase: bytes) -> None:
    assert reason(status) == phrase
    assert status_line(status) == b"HTTP/1.1 %d %s\r\n" % (status, phrase)


def test_unknown_status() -> None:
    assert reason(599) == b""
    assert status_line(599) == b"HTTP/1.1 599 Unknown\r\n"
