"""Header hygiene: remove, set and add request and response fields per server and location
(hide Server and X-Powered-By, add security headers). Compiled once into small tables."""

from __future__ import annotations

from collections.abc import Iterable

from ..http.headers import Headers
from ..pipeline.context import Context

__all__ = ["HeaderEdit"]


class HeaderEdit:
    """One direction's edits: drop ``remove`` and ``set`` names, then append ``set`` and
    ``add`` fields. Used as a response phase or applied to the upstream request."""

    __slots__ = ("_append", "_drop", "_table", "empty", "tail")

    def __init__(
        self,
        remove: Iterable[str] = (),
        set: dict[str, str] | None = None,
        add: dict[str, str] | None = None,
    ) -> None:
        set = set or {}
        add = add or {}
        self._drop = frozenset(n.lower().encode() for n in (*remove, *set))
        self._append = tuple(
            (n.encode(), v.encode("latin-1")) for n, v in (*set.items(), *add.items())
        )
        self.empty = not self._drop and not self._append
        self._table: dict[bytes, int] | None = None
        self.tail = b""

    def drops(self, name: bytes) -> bool:
        """Whether the field ``name`` (lower-case) is removed."""
        return name in self._drop

    def table(self, base: dict[bytes, int], drop_kind: int) -> dict[bytes, int]:
        """For the response fast path: ``base`` (lower-case name -> kind) with the names
        this edit removes added as ``drop_kind`` (entries of ``base`` win), built once;
        ``tail`` is then the fields it appends, as head lines."""
        t = self._table
        if t is None:
            t = dict(base)
            for name in self._drop:
                t.setdefault(name, drop_kind)
            self.tail = b"".join(b"%s: %s\r\n" % (n, v) for n, v in self._append)
            self._table = t
        return t

    def merged(self, inner: HeaderEdit) -> HeaderEdit:
        """Edits of an enclosing scope (self) followed by those of an inner one."""
        out = HeaderEdit()
        out._drop = self._drop | inner._drop
        out._append = tuple(x for x in self._append if x[0].lower() not in inner._drop)
        out._append += inner._append
        out.empty = not out._drop and not out._append
        out._table = None
        out.tail = b""
        return out

    def apply(self, headers: Headers) -> None:
        """Edit ``headers`` in place."""
        drop = self._drop
        if drop:
            headers[:] = [h for h in headers if h[0].lower() not in drop]
        if self._append:
            headers.extend(self._append)

    def __call__(self, ctx: Context, status: int, headers: Headers) -> None:
        self.apply(headers)
