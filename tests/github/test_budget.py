"""Which credential a request goes out on, and the budget every replica shares."""

from __future__ import annotations

import json
import math

import pytest

from issuer.github.budget import (
    BUDGET_PREFIX,
    NEAR_RESERVE,
    NOTE_EVERY,
    Budget,
    BudgetBoard,
    Rest,
    Standing,
    choose,
    reserve_for,
)
from issuer.github.errors import GitHubRateLimited
from issuer.github.metrics import GITHUB_BUDGET_REMAINING
from issuer.sim import GitHubSim, SimRun
from issuer.store import MemoryStore, Store
from tests.github.conftest import MakeClient
from tests.github.support import UPSTREAM
from tests.sim.support import FakeClock


def run_path(run: SimRun) -> str:
    return f"/repos/{UPSTREAM}/actions/runs/{run.id}"


def jobs_path(run: SimRun, n: int) -> str:
    """A distinct URL per n, so that no answer is a 304."""
    return f"/repos/{UPSTREAM}/actions/runs/{run.id}/jobs?per_page={n}"


async def test_unpaced_a_request_goes_out_on_the_credential_with_most_budget_left(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    """Paced, the fullest bucket of points decides among these (test_pacing.py); the
    primary budget's ranking breaks the ties."""
    sim.add_token("ghp_small", limit=200)
    sim.add_token("ghp_large", limit=5000)
    github = make_client(("ghp_small", "ghp_large"), points_per_minute=None)
    await github.get_json(jobs_path(fork_run, 1))  # both unknown: the first configured
    await github.get_json(jobs_path(fork_run, 2))
    await github.get_json(jobs_path(fork_run, 3))
    assert sim.counted_requests("ghp_small") == 1
    assert sim.counted_requests("ghp_large") == 2


async def test_replicas_sharing_a_store_pick_by_what_either_learnt(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun, store: Store
) -> None:
    sim.add_token("ghp_small", limit=200)
    sim.add_token("ghp_large", limit=5000)
    first = make_client(("ghp_small", "ghp_large"), store, points_per_minute=None)
    second = make_client(("ghp_small", "ghp_large"), store, points_per_minute=None)
    await first.get_json(jobs_path(fork_run, 1))  # learns ghp_small has 199 left
    await second.get_json(jobs_path(fork_run, 2))  # has seen no answer itself
    assert sim.counted_requests("ghp_large") == 1


async def test_a_credential_at_its_reserve_rests_until_the_reset(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun, clock: FakeClock
) -> None:
    sim.add_token("ghp_a", limit=30)  # a reserve of 100 is capped at 3 for a limit of 30
    github = make_client(("ghp_a",))
    for n in range(1, 28):
        await github.get_json(jobs_path(fork_run, n))
    with pytest.raises(GitHubRateLimited) as refused:
        await github.get_json(jobs_path(fork_run, 28))
    assert sim.counted_requests("ghp_a") == 27
    assert refused.value.retry_after == 3600


async def test_a_resting_credential_is_used_again_after_the_reset(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun, clock: FakeClock
) -> None:
    sim.add_token("ghp_a", limit=10)
    github = make_client(("ghp_a",), reserve=0)
    for n in range(1, 11):
        await github.get_json(jobs_path(fork_run, n))
    clock.advance(3600)
    await github.get_json(jobs_path(fork_run, 11))
    assert sim.counted_requests("ghp_a") == 11


async def test_unauthenticated_requests_keep_a_tenth_of_their_sixty(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    github = make_client()
    for n in range(1, 55):
        await github.get_json(jobs_path(fork_run, n))
    with pytest.raises(GitHubRateLimited):
        await github.get_json(jobs_path(fork_run, 55))
    assert sim.counted_requests(None) == 54


async def test_the_shared_budget_names_credentials_without_their_secret(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun, store: Store
) -> None:
    sim.add_token("ghp_secret_budget")
    github = make_client(("ghp_secret_budget",), store)
    await github.get_json(run_path(fork_run))
    [name] = github.credential_names
    assert name.startswith("token-") and "secret" not in name
    record = await store.get(f"gh:budget:{name}")
    assert record is not None and b"ghp_secret_budget" not in record
    assert b'"remaining":4999' in record


async def test_the_remaining_budget_is_a_gauge_per_credential(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    sim.add_token("ghp_gauge", limit=777)
    github = make_client(("ghp_gauge",))
    await github.get_json(run_path(fork_run))
    [name] = github.credential_names
    assert GITHUB_BUDGET_REMAINING.labels(name)._value.get() == 776


def test_the_reserve_is_at_most_a_tenth_of_the_limit() -> None:
    assert reserve_for(60, 100) == 6
    assert reserve_for(5000, 100) == 100
    assert reserve_for(5000, 0) == 0


def test_with_every_credential_resting_the_wait_is_until_the_first_is_free() -> None:
    now = 1000.0
    standings = [
        Standing("a", Budget(5000, 0, now + 300), Rest()),
        Standing("b", Budget(), Rest(until=now + 40)),
    ]
    choice = choose(standings, [5000, 5000], 100, now)
    assert choice.index is None and math.isclose(choice.wait, 40)


def _answer(remaining: int, reset: float = 5000.0, limit: int = 5000) -> Budget:
    return Budget(limit, remaining, reset)


async def _written(store: Store) -> Budget | None:
    raw = await store.get(BUDGET_PREFIX + "token-x")
    return None if raw is None else Budget(**json.loads(raw))


async def test_a_replica_writes_a_credentials_budget_at_most_once_a_second() -> None:
    store = MemoryStore()
    board = BudgetBoard(store, reserve=100)
    unknown = Standing("token-x", Budget(), Rest())
    await board.note(unknown, _answer(4000), now=10.0)
    await board.note(unknown, _answer(3999), now=10.5)
    assert await _written(store) == _answer(4000)
    await board.note(unknown, _answer(3998), now=10.0 + NOTE_EVERY)
    assert await _written(store) == _answer(3998)


async def test_every_answer_near_the_reserve_is_written() -> None:
    store = MemoryStore()
    board = BudgetBoard(store, reserve=100)
    unknown = Standing("token-x", Budget(), Rest())
    await board.note(unknown, _answer(300), now=10.0)
    await board.note(unknown, _answer(2 * 100 + NEAR_RESERVE), now=10.1)
    assert await _written(store) == _answer(2 * 100 + NEAR_RESERVE)


async def test_an_answer_from_a_new_window_is_written_at_once() -> None:
    store = MemoryStore()
    board = BudgetBoard(store, reserve=100)
    unknown = Standing("token-x", Budget(), Rest())
    await board.note(unknown, _answer(300, reset=5000.0), now=10.0)
    await board.note(unknown, _answer(4999, reset=8600.0), now=10.1)
    assert await _written(store) == _answer(4999, reset=8600.0)
