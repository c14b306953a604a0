"""What a watched run costs at GitHub: nothing while nobody waits or once refused, pointed
looks where deliveries arrive, logs GitHub does not serve yet read on their own backoff, and
every look at the priority it deserves (issue 16)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from issuer.github.errors import GitHubUnavailable
from issuer.github.facts import JobFacts, RunFacts
from issuer.github.pacing import Priority, current_priority
from issuer.oidc.charges import AddressCharges
from issuer.oidc.runs import Memo, RunKey, hooked_key
from issuer.oidc.watch import Pacing, RunWatches, _Loop
from issuer.oidc.watcher import Look, RunReader, RunRejected
from issuer.store import MemoryStore
from tests.oidc.test_watch_pull_requests import KEY, RUN

FAST = Pacing(
    first_look=0.0,
    fastest=0.01,
    slowest_waiting=0.02,
    min_gap=0.0,
    tick=0.01,
    idle_check=0.05,
    safety_poll=60.0,
    hooked_check=0.0,
    log_retry_first=0.05,
    log_retry_longest=0.2,
    charges_check=0.0,
)
FUTURE = 2_000_000_000


class CountingReader:
    """Counts looks of each kind and the priority each was made at; refuses the run if told."""

    def __init__(
        self,
        *,
        refuse: bool = False,
        not_ready: list[JobFacts] | None = None,
        pointed_failures: int = 0,
    ) -> None:
        self.refuse = refuse
        self.pointed_failures = pointed_failures
        self.polls: list[Priority] = []
        self.pointed: list[tuple[Priority, list[int], list[int]]] = []
        self.not_ready = not_ready or []

    async def look(self, key: RunKey, memo: Memo, **_: Any) -> Look:
        self.polls.append(current_priority())
        if self.refuse:
            raise RunRejected("GitHub knows no such run")
        return Look(RUN, [], {}, list(self.not_ready))

    async def look_at(
        self, key: RunKey, memo: Memo, *, run: RunFacts | None, job_ids: Any, jobs: Any, **_: Any
    ) -> Look:
        self.pointed.append((current_priority(), list(job_ids), [job.id for job in jobs]))
        if self.pointed_failures:
            self.pointed_failures -= 1
            raise GitHubUnavailable("GitHub answered 502", retry_after=1)  # rests 0.5 s
        return Look(RUN, [], {}, list(self.not_ready))


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    store = MemoryStore()
    yield store
    await store.close()


@contextlib.asynccontextmanager
async def watching(
    store: MemoryStore,
    reader: CountingReader,
    *,
    charges: AddressCharges | None = None,
    deliveries: bool = False,
) -> AsyncIterator[RunWatches]:
    """A replica's watches for the length of the block."""
    replica = RunWatches(
        store,
        cast(RunReader, reader),
        issuer="https://issuer.test",
        ttl=600,
        pacing=FAST,
        charges=charges,
        deliveries=deliveries,
    )
    try:
        yield replica
    finally:
        await replica.close()


async def exchange_waits(replica: RunWatches, store: MemoryStore, key: RunKey = KEY) -> None:
    await store.write_many([replica.state(key).want_write()])
    await replica.asked(key)


async def test_a_run_nobody_waits_for_is_looked_at_once_and_then_costs_nothing(
    store: MemoryStore,
) -> None:
    reader = CountingReader()
    async with watching(store, reader) as replica:
        await replica.claimed(KEY, "code-a", FUTURE)
        await asyncio.sleep(0.5)
        assert len(reader.polls) == 1  # is it a run we vouch for? then nothing


async def test_a_run_an_exchange_waits_on_is_polled(store: MemoryStore) -> None:
    reader = CountingReader()
    async with watching(store, reader) as replica:
        await replica.claimed(KEY, "code-a", FUTURE)
        await exchange_waits(replica, store)
        await asyncio.sleep(0.5)
        assert len(reader.polls) > 3


async def test_a_refused_run_is_not_looked_at_again_while_the_same_exchange_waits(
    store: MemoryStore,
) -> None:
    reader = CountingReader(refuse=True)
    async with watching(store, reader) as replica:
        await replica.claimed(KEY, "code-a", FUTURE)
        await exchange_waits(replica, store)
        await asyncio.sleep(0.5)
        assert len(reader.polls) == 1


async def test_a_refused_run_is_looked_at_again_when_an_exchange_asks_after_the_refusal(
    store: MemoryStore,
) -> None:
    reader = CountingReader(refuse=True)
    async with watching(store, reader) as replica:
        await replica.claimed(KEY, "code-a", FUTURE)
        await asyncio.sleep(0.2)
        await exchange_waits(replica, store)
        await asyncio.sleep(0.2)
        assert len(reader.polls) == 2


async def test_a_run_nobody_waits_for_is_looked_at_at_the_lowest_priority(
    store: MemoryStore,
) -> None:
    reader = CountingReader()
    async with watching(store, reader) as replica:
        await replica.claimed(KEY, "code-a", FUTURE)
        await asyncio.sleep(0.2)
        assert reader.polls == [Priority.IDLE]


async def test_a_run_an_exchange_waits_on_is_looked_at_first(store: MemoryStore) -> None:
    reader = CountingReader()
    async with watching(store, reader) as replica:
        await replica.claimed(KEY, "code-a", FUTURE)
        await exchange_waits(replica, store)
        await asyncio.sleep(0.2)
        assert set(reader.polls) == {Priority.WAITING}


async def test_a_hooked_repositorys_run_is_not_polled_while_an_exchange_waits(
    store: MemoryStore,
) -> None:
    await store.set(hooked_key(KEY.repository), b"1", ttl=600)
    reader = CountingReader()
    async with watching(store, reader, deliveries=True) as replica:
        await replica.claimed(KEY, "code-a", FUTURE)
        await exchange_waits(replica, store)
        await asyncio.sleep(0.5)
        assert len(reader.polls) == 1  # the first look; then deliveries say when


async def test_a_delivery_points_the_watcher_at_its_job_alone(store: MemoryStore) -> None:
    await store.set(hooked_key(KEY.repository), b"1", ttl=600)
    reader = CountingReader()
    async with watching(store, reader, deliveries=True) as replica:
        await replica.claimed(KEY, "code-a", FUTURE)
        await asyncio.sleep(0.1)
        state = replica.state(KEY)
        await store.write_many(state.hint_writes("4242"))
        await asyncio.sleep(0.2)
        assert reader.pointed == [(Priority.FINISHED, [4242], [])]
        assert len(reader.polls) == 1


async def test_a_log_not_served_yet_is_read_again_on_a_doubling_delay() -> None:
    job = JobFacts(7, "relay", "completed", 1, None)
    loop = _Loop(next_poll=0.0)
    delays = []
    now = 100.0
    for _ in range(6):
        loop.retry((job,), now, FAST)
        retry = loop.retries[job.id]
        delays.append(round(retry.at - now, 3))
        now = retry.at
    assert delays == [0.05, 0.1, 0.2, 0.2, 0.2, 0.2]


async def test_a_log_not_served_for_long_is_left_to_the_polls() -> None:
    job = JobFacts(7, "relay", "completed", 1, None)
    loop = _Loop(next_poll=0.0)
    loop.retry((job,), 100.0, FAST)
    loop.retry((job,), 100.0 + FAST.log_retry_for, FAST)
    assert loop.retries == {}


async def test_a_log_not_served_yet_is_read_alone_not_with_the_whole_run(
    store: MemoryStore,
) -> None:
    job = JobFacts(7, "relay", "completed", 1, None)
    reader = CountingReader(not_ready=[job])
    async with watching(store, reader) as replica:
        await replica.claimed(KEY, "code-a", FUTURE)
        await asyncio.sleep(0.3)
        assert len(reader.polls) == 1  # nobody waits: no poll, but the log is retried
        assert len(reader.pointed) >= 2
        assert all(logs == [7] and not ids for _, ids, logs in reader.pointed)


async def test_a_run_whose_claimants_spent_their_share_waits_behind_the_others(
    store: MemoryStore,
) -> None:
    charges = AddressCharges(store, allowance=10)
    await charges.charge(["192.0.2.1"], 10)
    reader = CountingReader()
    async with watching(store, reader, charges=charges) as replica:
        await replica.claimed(KEY, "code-a", FUTURE, claimant="192.0.2.1")
        await exchange_waits(replica, store)
        await asyncio.sleep(0.2)
        assert reader.polls and set(reader.polls) == {Priority.IDLE}


async def test_a_run_with_one_claimant_within_its_share_is_not_held_back(
    store: MemoryStore,
) -> None:
    charges = AddressCharges(store, allowance=10)
    await charges.charge(["192.0.2.1"], 10)
    reader = CountingReader()
    async with watching(store, reader, charges=charges) as replica:
        await replica.claimed(KEY, "code-a", FUTURE, claimant="192.0.2.1")
        await replica.claimed(KEY, "code-b", FUTURE, claimant="198.51.100.7")
        await exchange_waits(replica, store)
        await asyncio.sleep(0.2)
        assert set(reader.polls) == {Priority.WAITING}


async def test_a_deliverys_hint_outlives_a_look_github_could_not_answer(
    store: MemoryStore,
) -> None:
    await store.set(hooked_key(KEY.repository), b"1", ttl=600)
    reader = CountingReader(pointed_failures=1)
    async with watching(store, reader, deliveries=True) as replica:
        await replica.claimed(KEY, "code-a", FUTURE)
        await asyncio.sleep(0.1)
        await store.write_many(replica.state(KEY).hint_writes("4242"))
        await asyncio.sleep(1.0)
        assert [ids for _, ids, _ in reader.pointed] == [[4242], [4242]]
