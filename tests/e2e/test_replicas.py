"""Two issuer processes sharing one Redis behave as one issuer."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator

import httpx
import pytest

from issuer.web.serving import BackgroundServer
from tests.e2e.harness import GITHUB_TOKEN, ForkRun, IssuerProcess, bearer


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
    response = httpx.post(
        f"{replicas[1].url}/exchange", params={"wait": "10"}, headers=bearer(claim), timeout=20
    )
    assert response.status_code == 200, response.text


def test_fifty_concurrent_exchanges_over_two_replicas_give_exactly_one_token(
    replicas: list[IssuerProcess], pr: ForkRun
) -> None:
    """Only the holder can exchange: each of its fifty racing exchanges gets the one token."""
    claim = httpx.post(f"{replicas[0].url}/claim", json=pr.claim_body()).json()
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, headers=bearer(claim)) as http:
            return await asyncio.gather(
                *(
                    http.post(f"{replicas[i % 2].url}/exchange", params={"wait": "10"})
                    for i in range(50)
                )
            )

    responses = asyncio.run(race())
    assert [response.status_code for response in responses] == [200] * 50
    assert len({response.json()["token"] for response in responses}) == 1


def test_replica_logs_hold_no_claim_id_token_or_credential(
    replicas: list[IssuerProcess], pr: ForkRun
) -> None:
    claim = httpx.post(f"{replicas[0].url}/claim", json=pr.claim_body()).json()
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    httpx.post(f"{replicas[1].url}/exchange", headers={"Authorization": f"Bearer {'Z' * 43}"})
    httpx.post(f"{replicas[1].url}/exchange/{'Y' * 43}")  # an old client's path: redacted
    token = httpx.post(
        claim["exchange_url"],
        params={"wait": "10"},
        headers=bearer(claim),
        timeout=20,
    ).json()["token"]
    output = "".join(process.stop() for process in replicas)
    assert "/exchange/{claim_id}" in output  # requests are logged, with the capability redacted
    secrets = (claim["claim_id"], token, token.split(".")[2], GITHUB_TOKEN, "Z" * 43, "Y" * 43)
    for secret in secrets:
        assert secret not in output
    assert "/actions-results/" not in output  # signed log download URLs are credentials too


def test_the_run_is_taken_over_when_the_replica_watching_it_dies(
    replicas: list[IssuerProcess], pr: ForkRun
) -> None:
    watcher, survivor = replicas
    claim = httpx.post(f"{watcher.url}/claim", json=pr.claim_body()).json()
    job = pr.job("claim")
    # the claim's replica took the run's lease; it looks while the exchange waits
    pending = httpx.post(
        f"{watcher.url}/exchange", params={"wait": "2"}, headers=bearer(claim), timeout=10
    )
    assert pending.status_code == 202
    watcher.process.kill()
    watcher.process.wait(timeout=10)
    pr.print_and_finish(job, claim["challenge_line"])
    response = httpx.post(
        f"{survivor.url}/exchange", params={"wait": "20"}, headers=bearer(claim), timeout=30
    )
    assert response.status_code == 200, response.text
