"""Routing: the virtual server by Host (nginx server_name rules) and the location by the
canonical path (nginx precedence: exact, then the longest prefix, which wins outright if
marked ``^~``, then regexes in file order, then that longest prefix)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Generic, TypeVar
from urllib.parse import unquote_to_bytes

__all__ = ["HostRouter", "LocationMatcher", "parse_location"]

T = TypeVar("T")

EXACT, PREFIX, PRIORITY_PREFIX, REGEX = "exact", "prefix", "priority_prefix", "regex"


def parse_location(spec: str) -> tuple[str, str, bool]:
    """Split an nginx-style location ``spec`` into (kind, pattern, case_insensitive)."""
    spec = spec.strip()
    kind, pattern, nocase = PREFIX, spec, False
    for prefix, k, n in (
        ("= ", EXACT, False),
        ("^~ ", PRIORITY_PREFIX, False),
        ("~* ", REGEX, True),
        ("~ ", REGEX, False),
    ):
        if spec.startswith(prefix):
            kind, pattern, nocase = k, spec[len(prefix) :].strip(), n
            break
    if not pattern:
        raise ValueError("empty location pattern")
    if kind != REGEX and not pattern.startswith("/"):
        raise ValueError(f"a location path must start with '/': {pattern!r}")
    if kind == REGEX:
        re.compile(pattern)
    return kind, pattern, nocase


class LocationMatcher(Generic[T]):
    """Finds the location for a canonical path. Built once per plan."""

    __slots__ = ("_cache", "_exact", "_prefixes", "_regexes")

    def __init__(self, entries: Sequence[tuple[str, str, bool, T]]) -> None:
        self._exact: dict[bytes, T] = {}
        prefixes: list[tuple[bytes, bool, T]] = []
        self._regexes: list[tuple[re.Pattern[bytes], T]] = []
        for kind, pattern, nocase, value in entries:
            raw = _canonical(pattern)
            if kind == EXACT:
                self._exact.setdefault(raw, value)
            elif kind in (PREFIX, PRIORITY_PREFIX):
                if any(p == raw for p, _, _ in prefixes):
                    raise ValueError(f"duplicate location {pattern!r}")
                prefixes.append((raw, kind == PRIORITY_PREFIX, value))
            else:
                flags = re.IGNORECASE if nocase else 0
                self._regexes.append((re.compile(pattern.encode(), flags), value))
        prefixes.sort(key=lambda p: len(p[0]), reverse=True)
        self._prefixes = tuple(prefixes)
        self._cache: dict[bytes, T | None] = {}

    def match(self, path: bytes) -> T | None:
        cached = self._cache.get(path, _MISS)
        if cached is not _MISS:
            return cached  # type: ignore[return-value]
        found = self._match(path)
        if len(self._cache) < 4096:
            self._cache[path] = found
        return found

    def _match(self, path: bytes) -> T | None:
        exact = self._exact.get(path)
        if exact is not None:
            return exact
        best: T | None = None
        for prefix, priority, value in self._prefixes:
            if path.startswith(prefix):
                if priority:
                    return value
                best = value
                break
        if self._regexes:
            # Regexes are written decoded (nginx matches them on the decoded URI).
            subject = unquote_to_bytes(path) if path.find(b"%") >= 0 else path
            for regex, value in self._regexes:
                if regex.search(subject):
                    return value
        return best


_MISS = object()


def _canonical(pattern: str) -> bytes:
    """Config paths are written decoded; compare them in the canonical (escaped) form."""
    out = bytearray()
    for ch in pattern.encode("utf-8"):
        if ch >= 0x80 or ch <= 0x20:
            out += b"%%%02X" % ch
        else:
            out.append(ch)
    return bytes(out)


class HostRouter(Generic[T]):
    """Chooses the virtual server for a Host: exact name, longest leading wildcard
    (``*.example.com`` / ``.example.com``), longest trailing wildcard (``www.*``), the
    first matching regex (``~``), then the default."""

    __slots__ = ("_cache", "_default", "_exact", "_prefix", "_regex", "_suffix")

    def __init__(self, entries: Sequence[tuple[Sequence[str], T]], default: T) -> None:
        self._exact: dict[bytes, T] = {}
        suffix: list[tuple[bytes, T]] = []
        prefix: list[tuple[bytes, T]] = []
        self._regex: list[tuple[re.Pattern[bytes], T]] = []
        for names, value in entries:
            for name in names:
                n = name.strip().lower()
                if n.startswith("~"):
                    self._regex.append((re.compile(n[1:].encode(), re.IGNORECASE), value))
                elif n.startswith("*."):
                    suffix.append((n[1:].encode(), value))
                elif n.startswith("."):
                    self._exact.setdefault(n[1:].encode(), value)
                    suffix.append((n.encode(), value))
                elif n.endswith(".*"):
                    prefix.append((n[:-1].encode(), value))
                else:
                    self._exact.setdefault(n.rstrip(".").encode(), value)
        suffix.sort(key=lambda s: len(s[0]), reverse=True)
        prefix.sort(key=lambda s: len(s[0]), reverse=True)
        self._suffix = tuple(suffix)
        self._prefix = tuple(prefix)
        self._default = default
        self._cache: dict[bytes, T] = {}

    def select(self, host: bytes | None) -> T:
        if host is None:
            return self._default
        found = self._exact.get(host)
        if found is not None:
            return found
        found = self._cache.get(host)
        if found is not None:
            return found
        found = self._slow(host)
        if len(self._cache) < 4096:
            self._cache[host] = found
        return found

    def _slow(self, host: bytes) -> T:
        for suffix, value in self._suffix:
            if host.endswith(suffix):
                return value
        for prefix, value in self._prefix:
            if host.startswith(prefix):
                return value
        for regex, value in self._regex:
            if regex.search(host):
                return value
        return self._default
