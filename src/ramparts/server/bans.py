"""This worker's copy of the bans, kept in step with where bans live (Redis for a fleet,
the bans file for the memory backend) about once a second, and the automatic bans: each
refusal that a ban rule counts is counted (in Redis across the fleet, else in this
process) and a rule that fires bans the client everywhere the store reaches.

The connection phase reads ``table`` (a dict lookup) before a byte is read; a ban found
on the client address behind a trusted proxy is enforced by the request phase that
follows the real-IP phase.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ..config.plan import Plan
from ..policies.bans import AutoBan, Ban, BanRule, BanTable
from ..state.bansfile import append_ban, read_bans
from ..state.memory import MemoryStore
from ..state.store import Store, StoreUnavailable

__all__ = ["BanKeeper"]

log = logging.getLogger("ramparts")


class BanKeeper:
    def __init__(self, plan: Plan, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.table = BanTable()
        self.refused_connections = 0
        self._tasks: set[asyncio.Future[None]] = set()
        self._mtime = -1.0
        self._syncing = False
        self.configure(plan, store)

    def configure(self, plan: Plan, store: Store) -> None:
        cfg = plan.config
        self.store = store
        self.shared = not isinstance(store, MemoryStore)
        base = (
            Path(plan.source).parent if plan.source and not plan.source.startswith("<") else Path()
        )
        f = cfg.store.bans_file
        self.file: Path | None = None if f is None else (f if f.is_absolute() else base / f)
        rules = [
            BanRule(tuple(r.refused_by), r.count, r.window, r.ban, name=",".join(r.refused_by))
            for r in cfg.bans
        ]
        self.auto = AutoBan(rules) if rules else None
        self._mtime = -1.0
        self.sync()

    # -- keeping the copy in step ------------------------------------------------------
    def sync(self) -> None:
        """Refresh the copy (called every second)."""
        if self.shared:
            if not self._syncing:
                self._syncing = True
                self._spawn(self._pull())
        elif self.file is not None:
            try:
                mtime = self.file.stat().st_mtime
            except FileNotFoundError:
                mtime = 0.0
            if mtime != self._mtime:
                self._mtime = mtime
                try:
                    self.table.replace(read_bans(self.file), time.time())
                except Exception as exc:  # a broken file keeps the bans we had
                    log.error("bans file not read, the previous bans stay: %s", exc)

    async def _pull(self) -> None:
        try:
            bans = await self.store.bans()
        except StoreUnavailable:
            return  # keep the copy we have; the store logs the outage
        finally:
            self._syncing = False
        now = time.time()
        self.table.replace((Ban(b.address, now + b.seconds_left, b.reason) for b in bans), now)

    # -- automatic bans ------------------------------------------------------------------
    def refused(self, client: str, decided_by: str, status: int) -> None:
        """A request from ``client`` was refused: count it for the rules it concerns."""
        auto = self.auto
        if auto is None:
            return
        if self.shared:
            for i in auto.relevant(decided_by, status):
                self._spawn(self._count(auto.rules[i], client))
            return
        for rule in auto.refused(client, decided_by, status, time.monotonic()):
            self._ban(rule, client)

    async def _count(self, rule: BanRule, client: str) -> None:
        try:
            n = await self.store.count_event("ban:" + rule.label, client, rule.window)
            if n < rule.count:
                return
            await self.store.ban(client, rule.ban_seconds, "auto:" + rule.label)
        except StoreUnavailable:
            return
        self._ban(rule, client, persist=False)

    def _ban(self, rule: BanRule, client: str, persist: bool = True) -> None:
        ban = Ban(client, time.time() + rule.ban_seconds, "auto:" + rule.label)
        if self.table.banned(client, time.time()) is None:
            log.warning(
                "banned %s for %gs: %d refusals (%s) within %gs",
                client,
                rule.ban_seconds,
                rule.count,
                rule.label,
                rule.window,
            )
        self.table.add(ban)
        if persist and self.file is not None:
            try:
                append_ban(self.file, ban)
            except OSError as exc:
                log.error("cannot write the bans file %s: %s", self.file, exc)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
