"""Who watches a run: a replica that found it watched elsewhere does not ask again at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest

from issuer.oidc.runs import RunKey
from issuer.oidc.watch import Pacing, RunWatches
from issuer.oidc.watcher import RunReader
from issuer.store import MemoryStore

KEY = RunKey("octo-org/octo-repo", 30433642, 1)


class LeaseCountingStore(MemoryStore):
    """A memory store that counts attempts to take a lease."""

    def __init__(self) -> None:
        super().__init__()
        self.lease_attempts = 0

    async def set(
        self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        if only_if_absent and key.endswith(":lease"):
            self.lease_attempts += 1
        return await super().set(key, value, ttl=ttl, only_if_absent=only_if_absent)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _replica(store: MemoryStore, clock: Clock) -> RunWatches:
    # The first look is far away: the watch loop never reads GitHub in these tests.
    reader = cast(RunReader, object())
    return RunWatches(
        store,
        reader,
        issuer="https://issuer.test",
        ttl=600,
        pacing=Pacing(first_look=600),
        clock=clock,
    )


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[LeaseCountingStore, Clock, RunWatches, RunWatches]]:
    """A store, a clock, and two replicas on them: the first holds the run's lease."""
    store, clock = LeaseCountingStore(), Clock()
    holder, other = _replica(store, clock), _replica(store, clock)
    await holder.claimed(KEY, "code-a", int(clock.now) + 600)
    yield store, clock, holder, other
    await holder.close()
    await other.close()


async def test_a_replica_that_found_a_run_watched_elsewhere_does_not_ask_again_at_once(
    replicas: tuple[LeaseCountingStore, Clock, RunWatches, RunWatches],
) -> None:
    store, clock, _, other = replicas
    attempts = store.lease_attempts
    for code in ("code-b", "code-c", "code-d"):
        await other.claimed(KEY, code, int(clock.now) + 600)
    assert store.lease_attempts == attempts + 1


async def test_a_replica_asks_for_the_lease_again_after_a_renewal_period(
    replicas: tuple[LeaseCountingStore, Clock, RunWatches, RunWatches],
) -> None:
    store, clock, _, other = replicas
    await other.claimed(KEY, "code-b", int(clock.now) + 600)
    attempts = store.lease_attempts
    clock.now += other.pacing.lease_renewal
    await other.claimed(KEY, "code-c", int(clock.now) + 600)
    assert store.lease_attempts == attempts + 1
