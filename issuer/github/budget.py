"""The rate-limit budget of every credential, shared by all replicas through the store.

Per credential (by its non-secret name), two records:

- ``gh:budget:{name}``: what GitHub last said, ``{"limit", "remaining", "reset"}``
  (``x-ratelimit-*``); written by the replicas as they hear it, each at most once a second
  (:data:`NOTE_EVERY`) except at a new window and near the reserve, where every answer is.
- ``gh:rest:{name}``: ``{"until", "strikes"}``, written only when a credential is set aside
  (rate limited, refused). ``strikes`` counts secondary limits in a row, for the
  exponential backoff; a later success clears it.

Every replica reads the same records and applies the same rule (:func:`choose`), so they all
pick the same credential: the one with most requests left, among those not resting. A
credential whose remaining budget is at or under its reserve rests until its window resets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from issuer.github.metrics import GITHUB_BUDGET_LIMIT, GITHUB_BUDGET_REMAINING
from issuer.store import Store

BUDGET_PREFIX = "gh:budget:"
REST_PREFIX = "gh:rest:"
# How long the store keeps a record past the moment it stops mattering.
_KEEP = 3600.0


@dataclass(frozen=True)
class Budget:
    """GitHub's last word on a credential's primary rate limit (None: never heard)."""

    limit: int | None = None
    remaining: int | None = None
    reset: float = 0.0

    @classmethod
    def from_headers(cls, headers: httpx.Headers) -> Budget | None:
        limit = headers.get("x-ratelimit-limit", "")
        remaining = headers.get("x-ratelimit-remaining", "")
        reset = headers.get("x-ratelimit-reset", "")
        if not (limit.isdigit() and remaining.isdigit() and reset.isdigit()):
            return None
        return cls(int(limit), int(remaining), float(reset))

    def current(self, now: float) -> bool:
        """Does this record describe the rate-limit window we are in?"""
        return self.remaining is not None and self.reset > now


@dataclass(frozen=True)
class Rest:
    until: float = 0.0
    strikes: int = 0


@dataclass(frozen=True)
class Standing:
    """One credential as every replica sees it."""

    name: str
    budget: Budget
    rest: Rest


def reserve_for(limit: int, reserve: int) -> int:
    """The configured reserve, but never more than a tenth of the limit: the 60 requests of
    an unauthenticated caller keep 6, not 100."""
    return min(reserve, limit // 10)


def remaining_of(standing: Standing, default_limit: int, now: float) -> int:
    budget = standing.budget
    if budget.current(now):
        assert budget.remaining is not None
        return budget.remaining
    return budget.limit if budget.limit is not None else default_limit


def free_at(standing: Standing, default_limit: int, reserve: int, now: float) -> float:
    """When the credential may be used (<= now: at once)."""
    when = standing.rest.until
    budget = standing.budget
    if budget.current(now):
        limit = budget.limit if budget.limit is not None else default_limit
        assert budget.remaining is not None
        if budget.remaining <= reserve_for(limit, reserve):
            when = max(when, budget.reset)
    return when


@dataclass(frozen=True)
class Choice:
    index: int | None  # None: every credential rests
    wait: float  # when index is None: seconds until the first one is free


@dataclass(frozen=True)
class Ranking:
    indices: list[int]  # the free credentials, most requests left first; empty: all rest
    wait: float  # when none is free: seconds until the first one is


def rank(
    standings: Sequence[Standing], default_limits: Sequence[int], reserve: int, now: float
) -> Ranking:
    """The free credentials, most requests left first (ties: the first configured)."""
    free: list[tuple[int, int]] = []
    soonest = math.inf
    for index, (standing, default) in enumerate(zip(standings, default_limits, strict=True)):
        when = free_at(standing, default, reserve, now)
        if when > now:
            soonest = min(soonest, when)
            continue
        free.append((-remaining_of(standing, default, now), index))
    if free:
        return Ranking([index for _, index in sorted(free)], 0.0)
    return Ranking([], soonest - now if soonest != math.inf else 60.0)


def choose(
    standings: Sequence[Standing], default_limits: Sequence[int], reserve: int, now: float
) -> Choice:
    """The free credential with most requests left (ties: the first configured)."""
    ranking = rank(standings, default_limits, reserve, now)
    if ranking.indices:
        return Choice(ranking.indices[0], 0.0)
    return Choice(None, ranking.wait)


# A replica writes what GitHub says of a budget at most this often, except near the reserve
# and at a new window: the others pick on counts at most this old.
NOTE_EVERY = 1.0
NEAR_RESERVE = 10  # requests above twice the reserve, within which every answer is written


class BudgetBoard:
    """Reads and writes the shared records."""

    def __init__(self, store: Store, reserve: int = 0) -> None:
        self._store = store
        self._reserve = reserve
        self._written: dict[str, tuple[Budget, float]] = {}  # by this process: what, when

    async def standings(self, names: Sequence[str]) -> list[Standing]:
        return (await self.read(names))[0]

    async def read(
        self, names: Sequence[str], also: Sequence[str] = ()
    ) -> tuple[list[Standing], list[bytes | None]]:
        """The credentials' standings, and the values of the keys ``also``, in one round trip
        to the store (a request's ETag record travels with its credential's budget)."""
        keys = [p + n for n in names for p in (BUDGET_PREFIX, REST_PREFIX)]
        values = await self._store.get_many([*keys, *also])
        result = []
        for i, name in enumerate(names):
            result.append(Standing(name, _budget(values[2 * i]), _rest(values[2 * i + 1])))
        return result, values[len(keys) :]

    async def note(self, before: Standing, seen: Budget | None, now: float) -> None:
        """Record GitHub's rate-limit headers when they changed what we knew."""
        if seen is None:
            return
        GITHUB_BUDGET_REMAINING.labels(before.name).set(seen.remaining or 0)
        GITHUB_BUDGET_LIMIT.labels(before.name).set(seen.limit or 0)
        if seen == before.budget or not self._worth_writing(before.name, seen, now):
            return
        ttl = max(seen.reset - now, 0.0) + _KEEP
        await self._store.set(BUDGET_PREFIX + before.name, _dump(seen), ttl=ttl)
        self._written[before.name] = (seen, now)

    def _worth_writing(self, name: str, seen: Budget, now: float) -> bool:
        """Whether the other replicas should hear of ``seen`` now: a busy replica learns a
        new count at every answer, and writing each one would cost a store write each."""
        written = self._written.get(name)
        if written is None:
            return True
        last, at = written
        if (seen.limit, seen.reset) != (last.limit, last.reset) or now - at >= NOTE_EVERY:
            return True
        limit = seen.limit or 0
        return (seen.remaining or 0) <= 2 * reserve_for(limit, self._reserve) + NEAR_RESERVE

    async def rest(self, name: str, until: float, now: float, *, strikes: int = 0) -> None:
        record = Rest(until, strikes)
        ttl = max(until - now, 1.0) + (_KEEP if strikes else 0.0)
        await self._store.set(REST_PREFIX + name, _dump(record), ttl=ttl)

    async def forgive(self, standing: Standing, now: float) -> None:
        """A success after secondary limits: the next one starts the backoff afresh."""
        if standing.rest.strikes and standing.rest.until <= now:
            await self._store.delete(REST_PREFIX + standing.name)


def _dump(record: Budget | Rest) -> bytes:
    return json.dumps(record.__dict__, separators=(",", ":")).encode()


def _load(raw: bytes | None) -> Mapping[str, object]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0


def _budget(raw: bytes | None) -> Budget:
    data = _load(raw)
    return Budget(_int(data.get("limit")), _int(data.get("remaining")), _float(data.get("reset")))


def _rest(raw: bytes | None) -> Rest:
    data = _load(raw)
    return Rest(_float(data.get("until")), _int(data.get("strikes")) or 0)
