"""A lazily re-armed deadline: moving it later costs nothing (the armed timer checks and
re-arms itself when it fires), so per-request timeouts stay off the hot path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Deadline"]


class Deadline:
    """Calls ``callback`` once the loop time passes the deadline, unless cleared first."""

    __slots__ = ("_armed", "_at", "_callback", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None
        self._armed = 0.0

    def set(self, at: float) -> None:
        self._at = at
        handle = self._handle
        if handle is None or at < self._armed:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(at, self._fire)
            self._armed = at

    def clear(self) -> None:
        self._at = None

    def cancel(self) -> None:
        self._at = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def pending(self) -> bool:
        return self._at is not None

    def _fire(self) -> None:
        self._handle = None
        at = self._at
        if at is None:
            return
        if self._loop.time() < at - 0.001:
            self._handle = self._loop.call_at(at, self._fire)
            self._armed = at
            return
        self._at = None
        self._callback()
