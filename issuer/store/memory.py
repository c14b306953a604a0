"""In-process store: one process only (the default when no Redis is configured)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from issuer.store.base import Bump, Draw, Get, HashGet, HashPut, Put, Write, check_draw


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._hashes: dict[str, tuple[dict[str, bytes], float | None]] = {}
        self._lock = asyncio.Lock()
        self._writes = 0

    def _live(self, key: str) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= self._clock():
            del self._values[key]
            return None
        return value

    def _sweep(self) -> None:
        """Drop expired keys now and then so that memory does not grow with dead claims."""
        self._writes += 1
        if self._writes % 1024:
            return
        for key in list(self._values):
            self._live(key)

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self._live(key) for key in keys]

    async def read_many(
        self, reads: Sequence[Get | HashGet], *, writes: Sequence[Write] = ()
    ) -> list[bytes | None]:
        values: list[bytes | None] = []
        for read in reads:
            if isinstance(read, HashGet):
                values.append(await self.hash_get(read.key, read.field))
            else:
                values.append(self._live(read.key))
        await self.write_many(writes)
        return values

    async def write_many(self, writes: Sequence[Write]) -> None:
        for write in writes:
            if isinstance(write, Put):
                await self.set(write.key, write.value, ttl=write.ttl)
            elif isinstance(write, HashPut):
                for field, value in write.fields.items():
                    await self.hash_set(write.key, field, value, ttl=write.ttl)
            elif isinstance(write, Bump):
                await self.incr(write.key, ttl=write.ttl, by=write.by)
            else:
                await self.delete(write.key)
                async with self._lock:
                    self._hashes.pop(write.key, None)

    async def set(
        self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        async with self._lock:
            if only_if_absent and self._live(key) is not None:
                return False
            expires = None if ttl is None else self._clock() + ttl
            self._values[key] = (bytes(value), expires)
            self._sweep()
            return True

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, *, ttl: float | None = None
    ) -> bool:
        async with self._lock:
            if self._live(key) != expected:
                return False
            expires = None if ttl is None else self._clock() + ttl
            self._values[key] = (bytes(new), expires)
            return True

    async def delete(self, key: str) -> bool:
        async with self._lock:
            existed = self._live(key) is not None
            self._values.pop(key, None)
            return existed

    async def incr(self, key: str, *, ttl: float, by: int = 1) -> int:
        async with self._lock:
            current = self._live(key)
            count = int(current or 0) + by
            expires = self._clock() + ttl if current is None else self._values[key][1]
            self._values[key] = (str(count).encode(), expires)
            self._sweep()
            return count

    def _hash(self, key: str) -> dict[str, bytes] | None:
        entry = self._hashes.get(key)
        if entry is None:
            return None
        fields, expires = entry
        if expires is not None and expires <= self._clock():
            del self._hashes[key]
            return None
        return fields

    async def hash_set(
        self, key: str, field: str, value: bytes, *, ttl: float | None = None
    ) -> bool:
        async with self._lock:
            fields = self._hash(key)
            expires = None if fields is None else self._hashes[key][1]
            if fields is None:
                fields = {}
            if ttl is not None:
                wanted = self._clock() + ttl
                expires = wanted if expires is None else max(expires, wanted)
            new = field not in fields
            fields[field] = bytes(value)
            self._hashes[key] = (fields, expires)
            return new

    async def hash_get(self, key: str, field: str) -> bytes | None:
        return (self._hash(key) or {}).get(field)

    async def hash_get_all(self, key: str) -> dict[str, bytes]:
        return dict(self._hash(key) or {})

    async def hash_delete(self, key: str, *fields: str) -> int:
        async with self._lock:
            current = self._hash(key)
            if current is None:
                return 0
            removed = sum(current.pop(field, None) is not None for field in fields)
            if not current:
                del self._hashes[key]
            return removed

    async def draw(
        self, keys: Sequence[str], cost: float, *, rate: float, capacity: float, floor: float = 0
    ) -> Draw:
        """As RedisStore's script does it, by this store's clock."""
        check_draw(keys, cost, rate, capacity, floor)
        async with self._lock:
            now = self._clock()
            best, best_level = 0, -1.0
            for index, key in enumerate(keys):
                level = _bucket_level(self._live(key), now, rate, capacity)
                if level > best_level:
                    best, best_level = index, level
            if best_level + DRAW_SLACK < floor + cost:
                return Draw(None, (floor + cost - best_level) / rate, best_level)
            left = best_level - cost
            expires = now + capacity / rate
            self._values[keys[best]] = (f"{left:.6f} {now:.6f}".encode(), expires)
            self._sweep()
            return Draw(best, 0.0, left)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._values.clear()
        self._hashes.clear()


# Points a bucket may lack and still pay: levels are kept to the microsecond's refill.
DRAW_SLACK = 1e-6


def _bucket_level(state: bytes | None, now: float, rate: float, capacity: float) -> float:
    """A bucket's points now, from its stored ``"level at"`` (absent or unreadable: full)."""
    try:
        was, at = (float(part) for part in (state or b"").split())
    except ValueError:
        return capacity
    return min(capacity, was + max(0.0, now - at) * rate)
