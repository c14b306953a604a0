"""What a stretch of work cost in GitHub's secondary-limit points (a request 1, a POST 5).

The watcher wraps a look in :func:`metered` and charges what it cost to the client addresses
that claimed the run (:mod:`issuer.oidc.charges`). The meter travels in a context variable,
so requests made in tasks the look starts (``asyncio.gather``) are counted too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

GET_POINTS = 1
WRITE_POINTS = 5  # POST, PATCH, PUT, DELETE


@dataclass
class Meter:
    points: int = 0


_current: ContextVar[Meter | None] = ContextVar("github_meter", default=None)


@contextlib.contextmanager
def metered() -> Iterator[Meter]:
    """Count the points of every GitHub request made inside the block."""
    meter = Meter()
    token = _current.set(meter)
    try:
        yield meter
    finally:
        _current.reset(token)


def spend(points: int) -> None:
    """A request went out: add its points to the meter in force, if any."""
    meter = _current.get()
    if meter is not None:
        meter.points += points
