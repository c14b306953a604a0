"""GitHub's primary rate limit: an hourly window per caller that starts with its first request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 3600


@dataclass(frozen=True)
class Quota:
    limit: int
    used: int
    reset: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-resource": "core",
        }


@dataclass
class _Window:
    start: float
    used: int = 0


class RateLimiter:
    """Counts requests per bucket (a token, an installation, or the unauthenticated caller)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._counted: dict[str, int] = {}

    def _window(self, bucket: str) -> _Window:
        now = self._clock()
        window = self._windows.get(bucket)
        if window is None or now >= window.start + WINDOW_SECONDS:
            window = self._windows[bucket] = _Window(start=now)
        return window

    def quota(self, bucket: str, limit: int) -> Quota:
        window = self._window(bucket)
        return Quota(limit, min(window.used, limit), int(window.start + WINDOW_SECONDS))

    def count(self, bucket: str, limit: int) -> Quota:
        window = self._window(bucket)
        if window.used < limit:
            window.used += 1
            self._counted[bucket] = self._counted.get(bucket, 0) + 1
        return self.quota(bucket, limit)

    def counted(self, bucket: str) -> int:
        """Requests that ever counted against this bucket, across windows and resets."""
        return self._counted.get(bucket, 0)

    def reset(self, bucket: str) -> None:
        self._windows.pop(bucket, None)
