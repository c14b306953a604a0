"""GitHub's rate-limit and error answers: rest, move on, back off, never hammer a 4xx."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from issuer.github.errors import GitHubError, GitHubRateLimited, GitHubUnavailable
from issuer.sim import GitHubSim, SimRun
from tests.github.conftest import MakeClient
from tests.github.support import API, UPSTREAM, RecordingTransport, Sleeper
from tests.sim.support import GITHUB_HEADERS, FakeClock


def run_path(run: SimRun) -> str:
    return f"/repos/{UPSTREAM}/actions/runs/{run.id}"


def api_requests(transport: RecordingTransport) -> int:
    return len(transport.to(API))


async def exhaust(transport: RecordingTransport, token: str, run: SimRun) -> None:
    """Someone else spends the token's whole budget (the client has not seen it)."""
    async with httpx.AsyncClient(transport=transport, base_url=API, headers=GITHUB_HEADERS) as http:
        while True:
            response = await http.get(run_path(run), headers={"Authorization": f"Bearer {token}"})
            if response.headers["x-ratelimit-remaining"] == "0":
                return


@pytest.mark.parametrize("status", [403, 429])
async def test_a_primary_limit_moves_the_request_to_another_credential(
    sim: GitHubSim,
    make_client: MakeClient,
    transport: RecordingTransport,
    fork_run: SimRun,
    status: int,
) -> None:
    sim.settings.rate_limit_status = status  # type: ignore[assignment]
    sim.add_token("ghp_spent", limit=3)
    sim.add_token("ghp_fresh", limit=3)
    await exhaust(transport, "ghp_spent", fork_run)
    github = make_client(("ghp_spent", "ghp_fresh"))
    page = await github.get_json(run_path(fork_run))
    assert page.body["id"] == fork_run.id
    assert sim.counted_requests("ghp_fresh") == 1


async def test_with_every_credential_at_its_primary_limit_the_client_says_when_to_return(
    sim: GitHubSim, make_client: MakeClient, transport: RecordingTransport, fork_run: SimRun
) -> None:
    sim.add_token("ghp_spent", limit=3)
    await exhaust(transport, "ghp_spent", fork_run)
    github = make_client(("ghp_spent",))
    with pytest.raises(GitHubRateLimited) as limited:
        await github.get_json(run_path(fork_run))
    assert 3500 < limited.value.retry_after <= 3601


async def test_a_credential_resting_at_its_primary_limit_is_not_asked_again(
    sim: GitHubSim, make_client: MakeClient, transport: RecordingTransport, fork_run: SimRun
) -> None:
    sim.add_token("ghp_spent", limit=3)
    await exhaust(transport, "ghp_spent", fork_run)
    github = make_client(("ghp_spent",))
    with pytest.raises(GitHubRateLimited):
        await github.get_json(run_path(fork_run))
    sent = api_requests(transport)
    with pytest.raises(GitHubRateLimited):
        await github.get_json(run_path(fork_run))
    assert api_requests(transport) == sent


async def test_a_secondary_limit_rests_the_credential_for_githubs_retry_after(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",))
    sim.fail_next(1, secondary=True, retry_after="7")
    with pytest.raises(GitHubRateLimited) as limited:
        await github.get_json(run_path(fork_run))
    assert limited.value.retry_after == 7


async def test_a_secondary_limit_is_not_retried_on_another_credential(
    sim: GitHubSim, make_client: MakeClient, transport: RecordingTransport, fork_run: SimRun
) -> None:
    sim.add_token("ghp_a")
    sim.add_token("ghp_b")
    github = make_client(("ghp_a", "ghp_b"))
    sim.fail_next(1, secondary=True, retry_after="7")
    with pytest.raises(GitHubRateLimited):
        await github.get_json(run_path(fork_run))
    assert api_requests(transport) == 1


async def test_after_a_secondary_limits_retry_after_the_credential_works_again(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun, clock: FakeClock
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",))
    sim.fail_next(1, secondary=True, retry_after="7")
    with pytest.raises(GitHubRateLimited):
        await github.get_json(run_path(fork_run))
    clock.advance(7)
    assert (await github.get_json(run_path(fork_run))).body["id"] == fork_run.id


@pytest.mark.parametrize("retry_after", ["", None], ids=["blank", "absent"])
async def test_a_secondary_limit_without_a_number_rests_a_minute(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun, retry_after: str | None
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",))
    sim.fail_next(1, secondary=True, retry_after=retry_after)
    with pytest.raises(GitHubRateLimited) as limited:
        await github.get_json(run_path(fork_run))
    assert limited.value.retry_after == 60


async def test_repeated_secondary_limits_back_off_exponentially_with_jitter(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun, clock: FakeClock
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",), rng=random.Random(7))
    waits = []
    for _ in range(3):
        sim.fail_next(1, secondary=True, retry_after="")
        with pytest.raises(GitHubRateLimited) as limited:
            await github.get_json(run_path(fork_run))
        waits.append(limited.value.retry_after)
        clock.advance(limited.value.retry_after)
    assert waits[0] == 60
    assert 120 <= waits[1] <= 150
    assert 240 <= waits[2] <= 300


async def test_a_success_after_a_secondary_limit_starts_the_backoff_afresh(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun, clock: FakeClock
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",))
    sim.fail_next(1, secondary=True, retry_after="")
    with pytest.raises(GitHubRateLimited):
        await github.get_json(run_path(fork_run))
    clock.advance(60)
    await github.get_json(run_path(fork_run))
    sim.fail_next(1, secondary=True, retry_after="")
    with pytest.raises(GitHubRateLimited) as limited:
        await github.get_json(f"{run_path(fork_run)}/jobs")
    assert limited.value.retry_after == 60


async def test_a_server_error_is_retried_with_growing_jittered_backoff(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun, sleeper: Sleeper
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",))
    sim.fail_next(2, status=502)
    assert (await github.get_json(run_path(fork_run))).body["id"] == fork_run.id
    first, second = sleeper.calls
    assert 0.125 <= first <= 0.375
    assert 0.25 <= second <= 0.75


async def test_a_lasting_server_error_gives_up_after_three_attempts(
    sim: GitHubSim, make_client: MakeClient, transport: RecordingTransport, fork_run: SimRun
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",))
    sim.fail_next(5, status=503)
    with pytest.raises(GitHubUnavailable) as unavailable:
        await github.get_json(run_path(fork_run))
    assert not isinstance(unavailable.value, GitHubRateLimited)
    assert api_requests(transport) == 3


async def test_a_plain_forbidden_is_not_retried(
    sim: GitHubSim, make_client: MakeClient, transport: RecordingTransport, fork_run: SimRun
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",))
    sim.fail_next(3, status=403)
    with pytest.raises(GitHubError) as refused:
        await github.get_json(run_path(fork_run))
    assert not isinstance(refused.value, GitHubUnavailable)
    assert api_requests(transport) == 1


async def test_an_unprocessable_request_is_not_retried(
    sim: GitHubSim, make_client: MakeClient, transport: RecordingTransport, fork_run: SimRun
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",))
    with pytest.raises(GitHubError, match="422"):
        await github.get_json(f"{run_path(fork_run)}/jobs?filter=bogus")
    assert api_requests(transport) == 1


async def test_a_refused_token_rests_and_the_request_moves_to_the_next(
    sim: GitHubSim, make_client: MakeClient, transport: RecordingTransport, fork_run: SimRun
) -> None:
    sim.add_token("ghp_good")
    github = make_client(("ghp_revoked", "ghp_good"))
    await github.get_json(run_path(fork_run))
    await github.get_json(f"{run_path(fork_run)}/jobs")
    sent = [r.headers.get("authorization") for r in transport.to(API)]
    assert sent == ["Bearer ghp_revoked", "Bearer ghp_good", "Bearer ghp_good"]


async def test_a_conditional_hit_is_not_a_counted_request(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",))
    await github.get_json(run_path(fork_run))
    await github.get_json(run_path(fork_run))
    assert github.counted_requests == 1 == sim.counted_requests("ghp_a")


async def test_every_answer_but_a_304_is_a_counted_request(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",))
    sim.fail_next(1, status=502)
    await github.get_json(run_path(fork_run))  # 502 then 200
    with pytest.raises(GitHubError):
        await github.get_json(f"/repos/{UPSTREAM}/actions/runs/1")  # 404
    assert github.counted_requests == 3


async def test_no_more_requests_are_in_flight_than_the_cap(
    sim: GitHubSim, make_client: MakeClient, transport: RecordingTransport, fork_run: SimRun
) -> None:
    sim.add_token("ghp_a")
    transport.delay = 0.01
    github = make_client(("ghp_a",), concurrency=3)
    await asyncio.gather(
        *(github.get_json(f"{run_path(fork_run)}/jobs?per_page={n}") for n in range(1, 13))
    )
    assert transport.peak == 3
