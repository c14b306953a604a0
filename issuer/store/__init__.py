"""Shared state behind one interface: Redis for replicas, memory for one process."""

from issuer.store.base import Get, HashGet, Store, tagged
from issuer.store.memory import MemoryStore
from issuer.store.redis import RedisStore, StoreUnavailable

__all__ = ["Get", "HashGet", "MemoryStore", "RedisStore", "Store", "StoreUnavailable", "tagged"]
