"""The bans file: where the memory backend keeps bans, shared by the workers of one
gateway and the ``ramparts ban`` command. JSON lines, appended (one ``write`` each, so
concurrent writers never interleave), read whole and folded in order: a ban line adds or
extends, an ``unban`` line lifts. ``compact`` rewrites it with the bans still in force.

With Redis the bans live in Redis instead (``RedisStore.ban``) and this file is unused.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..errors import ConfigError
from ..policies.bans import Ban

__all__ = ["append_ban", "append_unban", "compact", "read_bans"]


def _append(path: Path, record: dict[str, object]) -> None:
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def append_ban(path: Path, ban: Ban) -> None:
    _append(path, {"address": ban.address, "until": round(ban.until, 3), "reason": ban.reason})


def append_unban(path: Path, address: str) -> None:
    _append(path, {"address": address, "unban": True})


def read_bans(path: Path, now: float | None = None) -> list[Ban]:
    """The bans in force in ``path`` (none if it does not exist). A malformed line is an
    error naming the file and line: a bans file is never half-read."""
    now = time.time() if now is None else now
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read the bans file: {exc}", file=str(path)) from None
    current: dict[str, Ban] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            address = str(rec["address"])
            if rec.get("unban"):
                current.pop(address, None)
                continue
            ban = Ban(address, float(rec["until"]), str(rec.get("reason", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"not a ban record: {exc}", file=str(path), line=n) from None
        old = current.get(address)
        if old is None or ban.until > old.until:
            current[address] = ban
    return sorted((b for b in current.values() if b.until > now), key=lambda b: b.address)


def compact(path: Path, now: float | None = None) -> int:
    """Rewrite ``path`` with only the bans in force (atomically); returns how many."""
    bans = read_bans(path, now)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        "".join(
            json.dumps({"address": b.address, "until": b.until, "reason": b.reason}) + "\n"
            for b in bans
        )
    )
    os.replace(tmp, path)
    return len(bans)
