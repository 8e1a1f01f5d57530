"""Bans from the command line (``ramparts ban``, ``unban``, ``bans``): written where the
configuration's store keeps them, Redis or the memory backend's bans file, where every
running worker picks them up within a second."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

from ..config.schema import StoreConfig
from ..errors import ConfigError
from ..policies.bans import Ban, canonical_address
from .bansfile import append_ban, append_unban, read_bans
from .redis import RedisStore

__all__ = ["add_ban", "format_left", "list_bans", "remove_ban"]


def _redis(cfg: StoreConfig) -> RedisStore:
    return RedisStore(
        cfg.url, prefix=cfg.prefix, socket_timeout=cfg.timeout, connect_timeout=cfg.timeout
    )


def _file(cfg: StoreConfig, base: Path) -> Path:
    if cfg.bans_file is None:
        raise ConfigError(
            "bans need a place every worker can see: set store.bans_file, or use a redis store"
        )
    return cfg.bans_file if cfg.bans_file.is_absolute() else base / cfg.bans_file


def add_ban(cfg: StoreConfig, base: Path, address: str, seconds: float, reason: str) -> str:
    """Ban ``address`` for ``seconds``; returns its canonical spelling."""
    addr = canonical_address(address)
    if not seconds > 0:
        raise ValueError("a ban lasts a positive time")
    if cfg.backend == "redis":

        async def run() -> None:
            store = _redis(cfg)
            try:
                await store.ban(addr, seconds, reason)
            finally:
                await store.aclose()

        asyncio.run(run())
    else:
        append_ban(_file(cfg, base), Ban(addr, time.time() + seconds, reason))
    return addr


def remove_ban(cfg: StoreConfig, base: Path, address: str) -> bool:
    """Lift the ban on ``address``; False when there was none."""
    addr = canonical_address(address)
    if cfg.backend == "redis":

        async def run() -> bool:
            store = _redis(cfg)
            try:
                return await store.unban(addr)
            finally:
                await store.aclose()

        return asyncio.run(run())
    path = _file(cfg, base)
    was = any(b.address == addr for b in read_bans(path))
    append_unban(path, addr)
    return was


def list_bans(cfg: StoreConfig, base: Path) -> list[tuple[str, float, str]]:
    """(address, seconds left, reason) of every ban in force."""
    if cfg.backend == "redis":

        async def run() -> list[tuple[str, float, str]]:
            store = _redis(cfg)
            try:
                return [(b.address, b.seconds_left, b.reason) for b in await store.bans()]
            finally:
                await store.aclose()

        return asyncio.run(run())
    now = time.time()
    return [(b.address, b.seconds_left(now), b.reason) for b in read_bans(_file(cfg, base), now)]


def format_left(seconds: float) -> str:
    if math.isinf(seconds):
        return "forever"
    s = math.ceil(seconds)
    return (
        f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"
        if s >= 3600
        else f"{s // 60}m{s % 60:02d}s"
    )
