"""Two issuer processes sharing one Redis behave as one issuer."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator

import httpx
import pytest

from issuer.web.serving import BackgroundServer
from tests.e2e.harness import GITHUB_TOKEN, ForkRun, IssuerProcess


@pytest.fixture
def replicas(github: BackgroundServer, redis_url: str) -> Iterator[list[IssuerProcess]]:
    env = {
        "ISSUER_REDIS_URL": redis_url,
        "ISSUER_KEY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "ISSUER_GITHUB_API_URL": github.url_of(0),
        "ISSUER_GITHUB_TOKEN": GITHUB_TOKEN,
        "ISSUER_POLL_INTERVAL": "1",
    }
    processes = [IssuerProcess(env), IssuerProcess(env)]
    yield processes
    for process in processes:
        process.stop()


def test_replicas_publish_the_same_keys(replicas: list[IssuerProcess]) -> None:
    first, second = (httpx.get(f"{p.url}/.well-known/jwks").json() for p in replicas)
    assert first == second


def test_a_claim_made_on_one_replica_is_exchanged_on_the_other(
    replicas: list[IssuerProcess], pr: ForkRun
) -> None:
    claim = httpx.post(f"{replicas[0].url}/claim", json=pr.claim_body()).json()
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    exchange_path = claim["exchange_url"].removeprefix(replicas[0].url)
    response = httpx.post(f"{replicas[1].url}{exchange_path}?wait=10", timeout=20)
    assert response.status_code == 200, response.text


def test_fifty_concurrent_exchanges_over_two_replicas_give_exactly_one_token(
    replicas: list[IssuerProcess], pr: ForkRun
) -> None:
    claim = httpx.post(f"{replicas[0].url}/claim", json=pr.claim_body()).json()
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    path = claim["exchange_url"].removeprefix(replicas[0].url)

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as http:
            return await asyncio.gather(
                *(http.post(f"{replicas[i % 2].url}{path}?wait=10") for i in range(50))
            )

    responses = asyncio.run(race())
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) == 1
    assert statuses.count(410) == 49
    assert {r.json()["error"] for r in responses if r.status_code == 410} == {"claim_used"}


def test_replica_logs_hold_no_claim_id_token_or_credential(
    replicas: list[IssuerProcess], pr: ForkRun
) -> None:
    claim = httpx.post(f"{replicas[0].url}/claim", json=pr.claim_body()).json()
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    httpx.post(f"{replicas[1].url}/exchange/{'Z' * 43}")
    token = httpx.post(f"{claim['exchange_url']}?wait=10", timeout=20).json()["token"]
    output = "".join(process.stop() for process in replicas)
    assert "/exchange/{claim_id}" in output  # requests are logged, with the capability redacted
    for secret in (claim["claim_id"], token, token.split(".")[2], GITHUB_TOKEN, "Z" * 43):
        assert secret not in output
    assert "/actions-results/" not in output  # signed log download URLs are credentials too


def test_the_run_is_taken_over_when_the_replica_watching_it_dies(
    replicas: list[IssuerProcess], pr: ForkRun
) -> None:
    watcher, survivor = replicas
    claim = httpx.post(f"{watcher.url}/claim", json=pr.claim_body()).json()
    path = claim["exchange_url"].removeprefix(watcher.url)
    job = pr.job("claim")
    # the claim's replica took the run's lease; it looks while the exchange waits
    assert httpx.post(f"{watcher.url}{path}?wait=2", timeout=10).status_code == 202
    watcher.process.kill()
    watcher.process.wait(timeout=10)
    pr.print_and_finish(job, claim["challenge_line"])
    response = httpx.post(f"{survivor.url}{path}?wait=20", timeout=30)
    assert response.status_code == 200, response.text
