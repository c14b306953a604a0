"""The one interface to shared state: every replica is stateless, what is shared lives here.

Values are bytes; keys are strings. Keys that must live together in a Redis Cluster share a
hash tag (``{...}``): callers build them with :func:`tagged`.
"""

from __future__ import annotations

from typing import Protocol


def tagged(tag: str, *parts: str) -> str:
    """A key whose Redis Cluster slot is decided by ``tag`` alone."""
    return ":".join(["{" + tag + "}", *parts])


class Store(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """The values of ``keys`` in one round trip, in order (not atomic across slots)."""

    async def set(
        self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        """Store ``value``; with ``only_if_absent`` the write happens only if the key does not
        exist, atomically across replicas. True if written."""

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, *, ttl: float | None = None
    ) -> bool:
        """Write ``new`` only if the value is ``expected`` (None: only if absent), atomically
        across replicas. True if written."""

    async def delete(self, key: str) -> bool:
        """True if the key existed."""

    async def incr(self, key: str, *, ttl: float) -> int:
        """Add one to a counter and return it; a new counter expires after ``ttl``."""

    async def hash_set(
        self, key: str, field: str, value: bytes, *, ttl: float | None = None
    ) -> bool:
        """Set one field of a hash; True if the field is new. ``ttl`` (re)sets the expiry of
        the whole hash, but never shortens it."""

    async def hash_get(self, key: str, field: str) -> bytes | None: ...

    async def hash_get_all(self, key: str) -> dict[str, bytes]: ...

    async def hash_delete(self, key: str, *fields: str) -> int:
        """How many of ``fields`` existed."""

    async def ping(self) -> bool:
        """True if the store answers."""

    async def close(self) -> None: ...
