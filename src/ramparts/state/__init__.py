"""Shared state behind one protocol: ``MemoryStore`` (one process, the default) and
``RedisStore`` (a fleet), both deciding with ``ramparts.policies.ratelimit``'s rules."""

from .memory import MemoryStore
from .redis import RedisStore
from .store import Ban, Store, StoreError, StoreUnavailable

__all__ = ["Ban", "MemoryStore", "RedisStore", "Store", "StoreError", "StoreUnavailable"]
