"""The project's error hierarchy: one root, config errors with a location, protocol errors
with the HTTP status to answer with."""

from __future__ import annotations

__all__ = ["ConfigError", "ProtocolError", "RampartsError"]


class RampartsError(Exception):
    """Root of every error ramparts raises on purpose."""


class ConfigError(RampartsError):
    """A configuration (or rule) file that cannot be used, located by file, line and column.

    ``field`` is the dotted path of the offending setting (``servers.0.listen``) when known.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        super().__init__(self.describe())

    def describe(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.reason}"


class ProtocolError(RampartsError):
    """A peer broke HTTP in a way that ends the exchange; ``status`` is the answer to send
    (400, 413, 414, 431 ...) and ``close`` says whether the connection must be closed."""

    def __init__(self, status: int, reason: str, *, close: bool = True) -> None:
        self.status = status
        self.reason = reason
        self.close = close
        super().__init__(f"{status}: {reason}")
