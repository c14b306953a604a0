"""Failures a test asks for: the next N API requests answer 5xx or a secondary rate limit."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    status: int
    secondary: bool
    retry_after: str | None


class FaultQueue:
    def __init__(self) -> None:
        self._pending: deque[Fault] = deque()

    def push(self, count: int, fault: Fault) -> None:
        self._pending.extend([fault] * count)

    def pop(self) -> Fault | None:
        return self._pending.popleft() if self._pending else None

    def clear(self) -> None:
        self._pending.clear()
