"""The phase chain's vocabulary: a request phase returns ``None`` to continue or a
``Respond`` to stop with an answer; a response phase edits the response head in place.

Stopping is a normal result, not an exception; ``decided_by`` names the layer and rule
(``access:rule-3``) so every refusal in a log or a trace can be explained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..http.headers import Headers
from .context import Context

__all__ = ["Chain", "RequestPhase", "Respond", "ResponsePhase"]


@dataclass(frozen=True, slots=True)
class Respond:
    """Stop the chain and answer with this."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    decided_by: str = ""
    close: bool = False


RequestPhase = Callable[[Context], "Respond | None"]
ResponsePhase = Callable[[Context, int, Headers], None]


@dataclass(frozen=True, slots=True)
class Chain:
    """The phases of one location, in order; compiled once per plan."""

    request: tuple[RequestPhase, ...] = ()
    response: tuple[ResponsePhase, ...] = field(default=())

    def run_request(self, ctx: Context) -> Respond | None:
        for phase in self.request:
            result = phase(ctx)
            if result is not None:
                if not ctx.decided_by:
                    ctx.decided_by = result.decided_by
                return result
        return None

    def run_response(self, ctx: Context, status: int, headers: Headers) -> None:
        for phase in self.response:
            phase(ctx, status, headers)
