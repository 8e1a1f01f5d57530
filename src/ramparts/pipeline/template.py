"""Small string templates with nginx-style variables ($scheme, $host, $request_uri, $uri,
$args, $remote_addr, $binary_remote_addr, $realip_remote_addr, $request_method, and
$http_NAME for any request header), compiled once and rendered per request. Also the
keys of rate and connection limits."""

from __future__ import annotations

import re
from collections.abc import Callable

from .context import Context

__all__ = ["VARIABLES", "Template", "variable"]


def _host(ctx: Context) -> bytes:
    req = ctx.request
    if req.host is not None:
        return req.host
    name = getattr(ctx.server, "primary_name", b"")
    return name if isinstance(name, bytes) else b""


VARIABLES: dict[str, Callable[[Context], bytes]] = {
    "scheme": lambda ctx: ctx.scheme.encode(),
    "host": _host,
    "request_uri": lambda ctx: (
        ctx.request.target if ctx.request.target.startswith(b"/") else ctx.request.uri
    ),
    "uri": lambda ctx: ctx.request.path,
    "args": lambda ctx: ctx.request.query or b"",
    "remote_addr": lambda ctx: ctx.client_ip.encode(),
    # nginx's is 4 or 16 raw bytes; as a key, the text is as good and loggable
    "binary_remote_addr": lambda ctx: ctx.client_ip.encode(),
    "realip_remote_addr": lambda ctx: ctx.peer_ip.encode(),
    "request_method": lambda ctx: ctx.request.method,
}


def _header_getter(var: str) -> Callable[[Context], bytes]:
    """``$http_x_api_key``: the first X-Api-Key field (nginx: dashes become underscores,
    any case), empty when absent."""
    want = var[5:].replace("_", "-").encode()

    def get(ctx: Context) -> bytes:
        for name, value in ctx.request.headers:
            if len(name) == len(want) and name.lower() == want:
                return value
        return b""

    return get


def variable(name: str) -> Callable[[Context], bytes]:
    """The getter of ``$name``; ValueError for an unknown variable."""
    getter = VARIABLES.get(name)
    if getter is not None:
        return getter
    if name.startswith("http_") and len(name) > 5:
        return _header_getter(name.lower())
    raise ValueError(f"unknown variable ${name} (known: {', '.join(VARIABLES)}, $http_NAME)")


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


class Template:
    """A compiled template: literal bytes and variable getters."""

    __slots__ = ("_only", "_parts", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        parts: list[bytes | Callable[[Context], bytes]] = []
        pos = 0
        for m in _VAR.finditer(source):
            if m.start() > pos:
                parts.append(source[pos : m.start()].encode())
            name = m.group(1) or m.group(2)
            parts.append(variable(name))
            pos = m.end()
        if pos < len(source):
            parts.append(source[pos:].encode())
        self._parts = tuple(parts)
        only = parts[0] if len(parts) == 1 else None
        self._only: Callable[[Context], bytes] | None = None if isinstance(only, bytes) else only

    def render(self, ctx: Context) -> bytes:
        if self._only is not None:
            return self._only(ctx)  # a bare variable, e.g. a rate limit's key
        return b"".join(p if isinstance(p, bytes) else p(ctx) for p in self._parts)
