"""GitHub's secondary rate limit: points per rolling minute and requests in flight, per bucket.

A GET or HEAD costs 1 point (a 304 too: GitHub's docs exempt it from the primary limit only),
a POST, PATCH, PUT or DELETE 5 (GITHUB.md, "Rate limits"). A refused request costs nothing.
The limiter also keeps what a test or a benchmark asks afterwards: the points each bucket
spent, its busiest minute, and the refusals it drew.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 60.0
READ_POINTS = 1
WRITE_POINTS = 5


def points_of(method: str) -> int:
    return READ_POINTS if method.upper() in ("GET", "HEAD", "OPTIONS") else WRITE_POINTS


@dataclass(frozen=True)
class Usage:
    """One bucket's record: points spent in all, the most in any 60 s, refusals drawn."""

    points: int
    peak_points_per_minute: int
    refusals: int

    def as_dict(self) -> dict[str, int]:
        return {
            "points": self.points,
            "peak_points_per_minute": self.peak_points_per_minute,
            "refusals": self.refusals,
        }


class _Bucket:
    def __init__(self) -> None:
        self.window: deque[tuple[float, int]] = deque()  # (when, points), oldest first
        self.in_window = 0
        self.points = 0
        self.peak = 0
        self.refusals = 0
        self.in_flight = 0

    def expire(self, now: float) -> None:
        while self.window and self.window[0][0] <= now - WINDOW_SECONDS:
            self.in_window -= self.window.popleft()[1]

    def wait_for(self, now: float, points: int, limit: int) -> float:
        """Seconds until `points` more fit under `limit` as older points leave the window."""
        excess = self.in_window + points - limit
        for when, spent in self.window:
            excess -= spent
            if excess <= 0:
                return when + WINDOW_SECONDS - now
        return WINDOW_SECONDS  # more than the whole limit at once: it never fits; say a minute


class SecondaryLimiter:
    """Not thread-safe by itself: the simulator calls it under its lock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self.injected = 0  # refusals a test asked for (fail_next), counted apart

    def _bucket(self, name: str) -> _Bucket:
        return self._buckets.setdefault(name, _Bucket())

    def charge(self, bucket: str, points: int, limit: int) -> int | None:
        """Charge `points` and answer None, or refuse and answer the whole seconds until they
        would fit. `limit` 0 turns the points limit off (points are still counted)."""
        now = self._clock()
        record = self._bucket(bucket)
        record.expire(now)
        if limit and record.in_window + points > limit:
            record.refusals += 1
            return max(1, math.ceil(record.wait_for(now, points, limit)))
        record.window.append((now, points))
        record.in_window += points
        record.points += points
        record.peak = max(record.peak, record.in_window)
        return None

    def enter(self, bucket: str, cap: int) -> bool:
        """One more request in flight, or False (a refusal) if `cap` are already; 0: no cap."""
        record = self._bucket(bucket)
        if cap and record.in_flight >= cap:
            record.refusals += 1
            return False
        record.in_flight += 1
        return True

    def leave(self, bucket: str) -> None:
        self._bucket(bucket).in_flight -= 1

    def in_flight(self, bucket: str) -> int:
        return self._bucket(bucket).in_flight

    def usage(self, bucket: str) -> Usage:
        record = self._buckets.get(bucket) or _Bucket()
        return Usage(record.points, record.peak, record.refusals)

    def report(self) -> dict[str, Usage]:
        """Every bucket that made a request, by name."""
        return {name: self.usage(name) for name in self._buckets}

    def refusals(self) -> int:
        """Refusals the limit itself gave, over all buckets (not the injected ones)."""
        return sum(record.refusals for record in self._buckets.values())
