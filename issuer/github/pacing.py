"""Pacing under GitHub's secondary rate limit, one budget per credential shared by every replica.

GitHub allows each credential 900 points a minute across its whole REST API (a GET costs 1
point, a 304 too; a POST, PATCH, PUT or DELETE 5) and answers a "secondary rate limit" past
that. Every request therefore draws its cost first from its credential's token bucket in the
store (``{gh:pace}:NAME``, under the store's prefix): the bucket refills at
``points_per_minute / 60`` points a second up to a capacity of ``points_per_minute / 6``.

**The bound.** A token bucket pays at most its capacity plus what refills meanwhile, so in
any window of 60 s a credential spends at most ``capacity + points_per_minute`` =
``7/6 x points_per_minute``: 840 with the default 720, under GitHub's 900. Figures above 771
give up that margin (GitHub Enterprise Server's limits are its operator's).

**Priorities.** A request is paced as the caller says with :func:`paced_as` (read at each
attempt; outside any, :attr:`Priority.WAITING`). The rule, the same on every replica with no
coordination: a draw at a priority succeeds only if it leaves the bucket at that priority's
floor or above: WAITING down to 0, FINISHED down to a third of the capacity, IDLE down to two
thirds. So while points are plentiful everyone draws at once; when they are short, waiting
runs go first, then finished ones, then the rest, and a run nobody waits for may wait minutes.
A refused draw answers how long until the bucket holds that priority's floor plus the cost;
the client sleeps that long but at most :data:`NAP`, then reads the priority again and draws
again. A request is never sent unpaid.

**Several credentials.** The client reads the primary standings (``budget.py``: not resting,
above the reserve) as it did, together with the request's ETag record, and hands the credentials
they allow to the draw, best first; the draw takes from the one whose bucket holds most points
(ties: the first), so load spreads by points left. That is two store round trips a request, the
standings read and the draw, rather than one script doing both: the primary records are plain
keys on any Cluster slot, and the primary rule (resets, reserves, this process's own rests)
stays in one place, in Python. Buckets of all credentials share one hash tag, so a draw over
several is one script on one node.

**Time** is the store's: Redis's ``TIME`` inside the script, so replicas whose clocks differ
still refill a bucket alike (the in-process store uses its own clock).
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

from issuer.github.metrics import GITHUB_PACING_WAIT, GITHUB_POINTS
from issuer.store import Store, tagged

DEFAULT_POINTS_PER_MINUTE = 720
GITHUB_POINTS_PER_MINUTE = 900  # GitHub's own figure (GITHUB.md, "Rate limits")
GET_COST = 1
WRITE_COST = 5  # POST, PATCH, PUT, DELETE: an installation token's mint
NAP = 1.0  # the longest sleep before the priority is read again and the draw retried
PACE_TAG = "gh:pace"

Sleep = Callable[[float], Awaitable[None]]


class Priority(enum.IntEnum):
    WAITING = 0  # a run with an exchange waiting (and any request outside paced_as)
    FINISHED = 1  # a run whose job just finished
    IDLE = 2  # the rest


# The part of the capacity each priority leaves in the bucket.
FLOORS = {Priority.WAITING: 0.0, Priority.FINISHED: 1 / 3, Priority.IDLE: 2 / 3}

PriorityOf = Priority | Callable[[], Priority]
_PRIORITY: contextvars.ContextVar[PriorityOf] = contextvars.ContextVar(
    "github_priority", default=Priority.WAITING
)


@contextlib.contextmanager
def paced_as(priority: PriorityOf) -> Iterator[None]:
    """GitHub requests made inside (and in tasks started inside) are paced as ``priority``; a
    callable is asked again at every attempt, so a look waiting as IDLE is served at once when
    an exchange starts waiting on its run."""
    token = _PRIORITY.set(priority)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


def current_priority() -> Priority:
    value = _PRIORITY.get()
    return Priority(value()) if callable(value) else value


def bucket_key(name: str) -> str:
    """A credential's bucket: every credential's under one hash tag (one Cluster slot)."""
    return tagged(PACE_TAG, name)


@dataclass(frozen=True)
class Drawn:
    """A draw's outcome: the index of the paying credential, or how long to wait."""

    index: int | None
    wait: float
    priority: Priority


class Pacer:
    """Draws points for requests; ``points_per_minute`` None paces nothing (no store call)."""

    def __init__(self, store: Store, points_per_minute: int | None, sleep: Sleep) -> None:
        if points_per_minute is not None and points_per_minute < 6 * WRITE_COST:
            raise ValueError(f"points_per_minute must be at least {6 * WRITE_COST}")
        self._store = store
        self._sleep = sleep
        self.points_per_minute = points_per_minute
        self.capacity = (points_per_minute or 0) / 6
        self.rate = (points_per_minute or 0) / 60

    def floor(self, priority: Priority, cost: int) -> float:
        """The points a draw at ``priority`` must leave (never so high it could not be paid)."""
        return min(FLOORS[priority] * self.capacity, self.capacity - cost)

    async def draw(self, names: Sequence[str], cost: int) -> Drawn:
        """One attempt: the index of the credential in ``names`` (best first) that paid, or the
        seconds until one could, at the priority of the moment."""
        priority = current_priority()
        if self.points_per_minute is None:
            return Drawn(0, 0.0, priority)
        draw = await self._store.draw(
            [bucket_key(name) for name in names],
            cost,
            rate=self.rate,
            capacity=self.capacity,
            floor=self.floor(priority, cost),
        )
        if draw.index is not None:
            GITHUB_POINTS.labels(names[draw.index], priority.name.lower()).inc(cost)
        return Drawn(draw.index, draw.wait, priority)

    async def nap(self, drawn: Drawn) -> float:
        """Sleep after a refused draw (at most :data:`NAP`); the seconds slept."""
        seconds = min(max(drawn.wait, 0.0), NAP)
        GITHUB_PACING_WAIT.labels(drawn.priority.name.lower()).inc(seconds)
        await self._sleep(seconds)
        return seconds

    async def take(self, name: str, cost: int) -> None:
        """Draw ``cost`` from one credential, waiting as long as that takes."""
        while True:
            drawn = await self.draw([name], cost)
            if drawn.index is not None:
                return
            await self.nap(drawn)
