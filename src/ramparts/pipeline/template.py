"""Small string templates with nginx-style variables ($scheme, $host, $request_uri, $uri,
$args, $remote_addr, $request_method), compiled once and rendered per request."""

from __future__ import annotations

import re
from collections.abc import Callable

from .context import Context

__all__ = ["VARIABLES", "Template"]


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
    "request_method": lambda ctx: ctx.request.method,
}

_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


class Template:
    """A compiled template: literal bytes and variable getters."""

    __slots__ = ("_parts", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        parts: list[bytes | Callable[[Context], bytes]] = []
        pos = 0
        for m in _VAR.finditer(source):
            if m.start() > pos:
                parts.append(source[pos : m.start()].encode())
            name = m.group(1) or m.group(2)
            getter = VARIABLES.get(name)
            if getter is None:
                raise ValueError(f"unknown variable ${name} (known: {', '.join(VARIABLES)})")
            parts.append(getter)
            pos = m.end()
        if pos < len(source):
            parts.append(source[pos:].encode())
        self._parts = tuple(parts)

    def render(self, ctx: Context) -> bytes:
        return b"".join(p if isinstance(p, bytes) else p(ctx) for p in self._parts)
