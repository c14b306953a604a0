"""In-process store: one process only (the default when no Redis is configured)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[bytes, float | None]] = {}
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

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._values.clear()
