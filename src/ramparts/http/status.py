"""Status codes: reason phrases, pre-built status lines, and the small bodies ramparts sends
when it answers a request itself."""

from __future__ import annotations

from http import HTTPStatus

__all__ = ["reason", "status_line"]

_REASONS: dict[int, bytes] = {int(s): s.phrase.encode("ascii") for s in HTTPStatus}
# RFC 9110 names where they differ from older ones.
_REASONS[413] = b"Content Too Large"
_REASONS[414] = b"URI Too Long"
_REASONS[416] = b"Range Not Satisfiable"
_REASONS[422] = b"Unprocessable Content"

_LINES11: dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in _REASONS.items()
}


def reason(status: int) -> bytes:
    """The standard reason phrase for ``status`` (empty for unknown codes)."""
    return _REASONS.get(status, b"")


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n``."""
    line = _LINES11.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))
    return line
