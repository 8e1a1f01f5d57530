"""Request-target normalisation: one canonical path that locations are matched on and that
is forwarded upstream, so an access rule and the backend never see different paths.

The canonical form: percent-encoded unreserved characters decoded, every other escape kept
with upper-case hex, dot segments removed, runs of slashes merged. Anything that different
components could read two ways is refused with 400: an encoded slash (unless kept escaped),
a backslash, NUL and other control characters, double encoding (``%25`` followed by hex),
invalid or overlong UTF-8, ``..`` above the root, and dot segments hidden behind a
parameter (``..;``).
"""

from __future__ import annotations

from ..errors import ProtocolError

__all__ = ["normalize_path", "split_target"]

_HEX = b"0123456789abcdefABCDEF"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SLASH = 0x2F
_BACKSLASH = 0x5C
_PERCENT = 0x25


def split_target(target: bytes) -> tuple[bytes, bytes | None]:
    """Split an origin-form request-target into path and query (``None`` when absent)."""
    if target.find(b"#") >= 0:
        raise ProtocolError(400, "fragment in request-target")
    q = target.find(b"?")
    if q < 0:
        return target, None
    return target[:q], target[q + 1 :]


_CACHE: dict[tuple[bytes, bool], bytes] = {}
_CACHE_SIZE = 4096


def normalize_path(path: bytes, keep_encoded_slash: bool = False) -> bytes:
    """Return the canonical form of ``path`` (which must start with ``/``).

    Raises ``ProtocolError(400)`` for anything that could be read two ways. Results are
    memoised (paths repeat); refusals are not.
    """
    key = (path, keep_encoded_slash)
    done = _CACHE.get(key)
    if done is not None:
        return done
    result = _normalize(path, keep_encoded_slash)
    if len(_CACHE) < _CACHE_SIZE:
        _CACHE[key] = result
    return result


def _normalize(path: bytes, keep_encoded_slash: bool) -> bytes:
    # (bytes.find, not ``in``: ``b"x" in data`` is several times slower.)
    if not path.startswith(b"/"):
        raise ProtocolError(400, "request path does not start with /")
    if path.find(b"\\") >= 0:
        raise ProtocolError(400, "backslash in path")
    pct = path.find(b"%") >= 0
    if not pct and path.find(b"/.") < 0 and path.find(b"//") < 0:
        return path
    if pct:
        path = _decode_unreserved(path, keep_encoded_slash)
    return _remove_dot_segments(path)


def _decode_unreserved(path: bytes, keep_encoded_slash: bool) -> bytes:
    out = bytearray()
    raw = bytearray()  # everything decoded, to check UTF-8
    i = 0
    n = len(path)
    while i < n:
        c = path[i]
        if c != _PERCENT:
            out.append(c)
            raw.append(c)
            i += 1
            continue
        hx = path[i + 1 : i + 3]
        if len(hx) != 2 or hx[0] not in _HEX or hx[1] not in _HEX:
            raise ProtocolError(400, "invalid percent-encoding in path")
        b = int(hx, 16)
        i += 3
        if b in _UNRESERVED:
            out.append(b)
        elif b < 0x20 or b == 0x7F:
            raise ProtocolError(400, "encoded control character in path")
        elif b == _BACKSLASH:
            raise ProtocolError(400, "encoded backslash in path")
        elif b == _SLASH:
            if not keep_encoded_slash:
                raise ProtocolError(400, "encoded slash in path")
            out += b"%2F"
        elif b == _PERCENT and path[i : i + 2] and _is_hex2(path[i : i + 2]):
            raise ProtocolError(400, "double percent-encoding in path")
        else:
            out += b"%" + hx.upper()
        raw.append(b)
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(400, "invalid UTF-8 in path") from None
    # A '%' that, once decoded, is followed by two hex digits (also when those digits were
    # themselves escaped: %25%36%39) is double encoding: a second decode changes the path.
    j = out.find(b"%25")
    while j >= 0:
        if _is_hex2(bytes(out[j + 3 : j + 5])):
            raise ProtocolError(400, "double percent-encoding in path")
        j = out.find(b"%25", j + 3)
    return bytes(out)


def _is_hex2(two: bytes) -> bool:
    return len(two) == 2 and two[0] in _HEX and two[1] in _HEX


def _remove_dot_segments(path: bytes) -> bytes:
    segments = path.split(b"/")
    out: list[bytes] = []
    last = len(segments) - 1
    trailing = False
    for i, seg in enumerate(segments):
        if i == 0:
            continue  # before the leading slash
        if seg == b"" or seg == b".":
            trailing = i == last
            continue
        if seg == b"..":
            if not out:
                raise ProtocolError(400, "path goes above the root")
            out.pop()
            trailing = i == last
            continue
        if seg.startswith(b".") and seg.split(b";", 1)[0] in (b".", b".."):
            raise ProtocolError(400, "dot segment with parameters in path")
        out.append(seg)
        trailing = False
    result = b"/" + b"/".join(out)
    if trailing and out:
        result += b"/"
    return result
