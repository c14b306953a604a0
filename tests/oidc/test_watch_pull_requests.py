"""The pull request of a run: looked up once per run through the finder, whatever the run lists."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, cast

import pytest

from issuer.github.channels import LOG, Sighting
from issuer.github.errors import GitHubUnavailable
from issuer.github.facts import JobFacts, PullRequestFacts, RepoFacts, RunFacts
from issuer.oidc.runs import Memo, RunKey
from issuer.oidc.watch import Pacing, RunWatches
from issuer.oidc.watcher import Look, RunReader
from issuer.store import MemoryStore, tagged

KEY = RunKey("octo-org/octo-repo", 30433642, 1)
UPSTREAM = RepoFacts(1, "octo-org/octo-repo", False, "public", "octo-org", 10)
FORK = RepoFacts(2, "contributor/octo-repo", False, "public", "contributor", 20)
RUN = RunFacts(
    id=KEY.run_id,
    name="CI",
    path=".github/workflows/ci.yml",
    run_number=7,
    run_attempt=1,
    status="in_progress",
    conclusion=None,
    event="pull_request",
    head_sha="a" * 40,
    head_branch="patch-1",
    actor_login="contributor",
    actor_id=20,
    triggering_actor_login="contributor",
    repository=UPSTREAM,
    head_repository=FORK,
    pull_requests=(),  # a fork's run: GitHub lists none
)
PULL = PullRequestFacts(number=5, base_ref="main", head_ref="patch-1")


class ScriptedReader:
    """Each look finds the codes printed so far, each in its own job."""

    def __init__(self, run: RunFacts = RUN) -> None:
        self.printed: list[str] = []
        self.run = run

    async def look(self, key: RunKey, memo: Memo, **_: Any) -> Look:
        found = {
            code: Sighting(job, f"job {job}", LOG, "GitHub Actions")
            for job, code in enumerate(self.printed, start=1)
        }
        jobs = [JobFacts(s.job_id, s.job_name, "in_progress", 1, None) for s in found.values()]
        return Look(self.run, jobs, found)


class PullLookups:
    """find_pull_request, failing as often as told first."""

    def __init__(self, failures: int) -> None:
        self.calls = 0
        self.failures = failures

    async def __call__(self, run: RunFacts) -> PullRequestFacts | None:
        self.calls += 1
        if self.calls <= self.failures:
            raise GitHubUnavailable("GitHub answered 502", retry_after=1)
        return PULL


async def sighting(store: MemoryStore, code: str) -> dict[str, Any]:
    """The identity recorded for ``code``, once the watch loop recorded it."""
    for _ in range(200):
        raw = await store.hash_get(tagged(KEY.tag, "sightings"), code)
        if raw is not None:
            return dict(json.loads(raw))
        await asyncio.sleep(0.01)
    raise AssertionError(f"{code} was never recorded")


async def claimed_and_waited_on(replica: RunWatches, store: MemoryStore, code: str) -> None:
    """A claim, and an exchange waiting on it: a run nobody waits for is not looked at."""
    await replica.claimed(KEY, code, 2_000_000_000)
    await store.write_many([replica.state(KEY).want_write()])
    await replica.asked(KEY)


@pytest.fixture
def reader() -> ScriptedReader:
    return ScriptedReader()


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    store = MemoryStore()
    yield store
    await store.close()


def watches(store: MemoryStore, reader: ScriptedReader, lookups: PullLookups) -> RunWatches:
    return RunWatches(
        store,
        cast(RunReader, reader),
        issuer="https://issuer.test",
        ttl=600,
        find_pull_request=lookups,
        pacing=Pacing(first_look=0.0, fastest=0.01, min_gap=0.0, tick=0.01),
    )


async def test_the_pull_request_is_looked_up_once_for_all_the_runs_sightings(
    store: MemoryStore, reader: ScriptedReader
) -> None:
    lookups = PullLookups(failures=0)
    replica = watches(store, reader, lookups)
    try:
        for code in ("code-a", "code-b", "code-c"):
            await claimed_and_waited_on(replica, store, code)
            reader.printed.append(code)
            assert (await sighting(store, code))["pull_request_number"] == str(PULL.number)
        assert lookups.calls == 1
    finally:
        await replica.close()


async def test_a_failed_pull_request_lookup_is_tried_again_at_the_next_sighting(
    store: MemoryStore, reader: ScriptedReader
) -> None:
    lookups = PullLookups(failures=1)
    replica = watches(store, reader, lookups)
    try:
        await claimed_and_waited_on(replica, store, "code-a")
        await claimed_and_waited_on(replica, store, "code-b")
        reader.printed.append("code-a")
        assert "pull_request_number" not in await sighting(store, "code-a")
        reader.printed.append("code-b")
        assert (await sighting(store, "code-b"))["pull_request_number"] == str(PULL.number)
        assert lookups.calls == 2
    finally:
        await replica.close()


async def test_a_run_listing_another_pull_request_gets_the_finders_one(
    store: MemoryStore,
) -> None:
    """GitHub lists pull requests matched by head branch or SHA: the listed one (#99) is not
    taken; the token names the pull request the finder vouched for."""
    listed = PullRequestFacts(number=99, base_ref="release", head_ref="patch-1")
    reader = ScriptedReader(replace(RUN, pull_requests=(listed,)))
    lookups = PullLookups(failures=0)
    replica = watches(store, reader, lookups)
    try:
        await claimed_and_waited_on(replica, store, "code-a")
        reader.printed.append("code-a")
        identity = await sighting(store, "code-a")
        assert (identity["pull_request_number"], identity["base_ref"]) == ("5", "main")
    finally:
        await replica.close()
