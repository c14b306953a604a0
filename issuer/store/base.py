"""The one interface to shared state: every replica is stateless, what is shared lives here.

Values are bytes; keys are strings. Keys that must live together in a Redis Cluster share a
hash tag (``{...}``): callers build them with :func:`tagged`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


def tagged(tag: str, *parts: str) -> str:
    """A key whose Redis Cluster slot is decided by ``tag`` alone."""
    return ":".join(["{" + tag + "}", *parts])


@dataclass(frozen=True)
class Get:
    """A read of a plain value, for :meth:`Store.read_many`."""

    key: str


@dataclass(frozen=True)
class HashGet:
    """A read of one field of a hash, for :meth:`Store.read_many`."""

    key: str
    field: str


@dataclass(frozen=True)
class Put:
    """A write of a plain value, for :meth:`Store.write_many`."""

    key: str
    value: bytes
    ttl: float | None = None


@dataclass(frozen=True)
class HashPut:
    """A write of fields of a hash; ``ttl`` lengthens the hash's expiry, never shortens it."""

    key: str
    fields: Mapping[str, bytes]
    ttl: float | None = None


@dataclass(frozen=True)
class Bump:
    """``by`` (one unless said) added to a counter; a new counter expires after ``ttl``."""

    key: str
    ttl: float
    by: int = 1


@dataclass(frozen=True)
class Delete:
    key: str


Write = Put | HashPut | Bump | Delete


@dataclass(frozen=True)
class Draw:
    """The answer of :meth:`Store.draw`."""

    index: int | None  # the bucket that paid, as an index into the keys; None: none could
    wait: float  # when none could: seconds until the fullest holds the floor plus the cost
    level: float  # the points left in the bucket that paid, or in the fullest one


def check_draw(
    keys: Sequence[str], cost: float, rate: float, capacity: float, floor: float
) -> None:
    """Refuse a draw that could never be served, before it reaches a store."""
    if not keys:
        raise ValueError("a draw needs at least one bucket")
    if cost <= 0 or rate <= 0 or floor < 0 or floor + cost > capacity:
        raise ValueError("a draw needs 0 < cost, 0 < rate and 0 <= floor <= capacity - cost")


class Store(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """The values of ``keys`` in one round trip, in order (not atomic across slots)."""

    async def read_many(
        self, reads: Sequence[Get | HashGet], *, writes: Sequence[Write] = ()
    ) -> list[bytes | None]:
        """Values and hash fields in one round trip, in order (not atomic); None for what is
        absent. ``writes`` are made in the same round trip, after the reads."""

    async def write_many(self, writes: Sequence[Write]) -> None:
        """The writes in one round trip, in order; not atomic as a whole (a Cluster may hold
        their keys on several nodes), but each write is."""

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

    async def draw(
        self, keys: Sequence[str], cost: float, *, rate: float, capacity: float, floor: float = 0
    ) -> Draw:
        """Token buckets, one per key (an absent key is a full bucket): refill each at ``rate``
        points a second up to ``capacity``, by the store's own clock, then take ``cost`` from
        the fullest (ties: the first) if that leaves it at ``floor`` or above; else take
        nothing and say how long until it would. Atomic across replicas, in one round trip;
        the keys must share a hash tag. A bucket's key expires once it would be full again."""

    async def ping(self) -> bool:
        """True if the store answers."""

    async def close(self) -> None: ...
