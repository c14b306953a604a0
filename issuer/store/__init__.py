"""Shared state behind one interface: Redis for replicas, memory for one process."""

from issuer.store.base import (
    Bump,
    Delete,
    Draw,
    Get,
    HashGet,
    HashPut,
    Put,
    Store,
    Write,
    tagged,
)
from issuer.store.memory import MemoryStore
from issuer.store.redis import RedisStore, StoreUnavailable

__all__ = [
    "Bump",
    "Delete",
    "Draw",
    "Get",
    "HashGet",
    "HashPut",
    "MemoryStore",
    "Put",
    "RedisStore",
    "Store",
    "StoreUnavailable",
    "Write",
    "tagged",
]
