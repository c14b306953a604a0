"""GitHub answers 5xx bursts or secondary rate limits for a while: pending claims wait it
out and complete once it recovers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from issuer.sim import GitHubSim
from issuer.store import RedisStore
from issuer.web.serving import BackgroundServer
from tests.e2e.harness import ForkRun, fork_run, issuer_in_thread
from tests.faults.support import exchange_until_done


@pytest.fixture
def issuer_url(github: BackgroundServer, redis_url: str) -> Iterator[str]:
    with issuer_in_thread(github.url_of(0), store=RedisStore.from_url(redis_url)) as (url, _c):
        yield url


def _claims(issuer_url: str, runs: list[ForkRun], count: int) -> list[dict[str, str]]:
    claims = []
    for index in range(count):
        pr = runs[index % len(runs)]
        response = httpx.post(f"{issuer_url}/claim", json=pr.claim_body())
        assert response.status_code == 201, response.text
        claim = response.json()
        pr.print_and_finish(pr.job(f"claim {index}"), claim["challenge_line"])
        claims.append(claim)
    return claims


def _served(sim: GitHubSim, status: int) -> int:
    with sim.lock:
        return sum(1 for entry in sim.request_log if entry[2] == status)


def test_claims_complete_once_github_recovers_from_a_5xx_burst(
    sim: GitHubSim, issuer_url: str
) -> None:
    claims = _claims(issuer_url, [fork_run(sim), fork_run(sim)], 4)
    sim.fail_next(8, status=502)
    answers = [exchange_until_done(claim["exchange_url"], claim["claim_id"]) for claim in claims]
    assert [answer.status_code for answer in answers] == [200] * 4
    assert _served(sim, 502) == 8  # the whole burst met the issuer


def test_claims_complete_once_a_secondary_rate_limit_is_over(
    sim: GitHubSim, issuer_url: str
) -> None:
    claims = _claims(issuer_url, [fork_run(sim), fork_run(sim)], 4)
    sim.fail_next(3, secondary=True, retry_after="2")
    answers = [exchange_until_done(claim["exchange_url"], claim["claim_id"]) for claim in claims]
    assert [answer.status_code for answer in answers] == [200] * 4
    assert _served(sim, 403) == 3
