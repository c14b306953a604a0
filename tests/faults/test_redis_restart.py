"""Redis dies and comes back (with its append-only file) while claims are pending: nothing
is lost, and the replicas recover by themselves."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from issuer.sim import GitHubSim
from issuer.web.serving import BackgroundServer
from tests.e2e.harness import bearer, fork_run
from tests.faults.support import (
    PersistentRedis,
    exchange_until_done,
    in_progress,
    replica_env,
    replicas,
    wait_until,
)

ROUTE = "/exchange"


@pytest.fixture
def persistent_redis() -> Iterator[PersistentRedis]:
    server = PersistentRedis()
    yield server
    server.stop()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_pending_claims_survive_a_redis_restart_and_complete(
    sim: GitHubSim, github: BackgroundServer, persistent_redis: PersistentRedis
) -> None:
    env = replica_env(persistent_redis.url, github.url_of(0))
    with replicas(env) as (first, second):
        runs = [fork_run(sim), fork_run(sim)]
        claims = []
        for index in range(4):
            pr = runs[index % 2]
            made_at = (first, second)[index % 2]
            response = httpx.post(f"{made_at.url}/claim", json=pr.claim_body())
            assert response.status_code == 201, response.text
            claims.append((pr, response.json()))
        jobs = [pr.job(f"claim {n}") for n, (pr, _claim) in enumerate(claims)]
        # Each run is being watched, and a look found nothing yet.
        for _pr, claim in claims[:2]:
            pending = httpx.post(
                claim["exchange_url"], params={"wait": "1"}, headers=bearer(claim), timeout=10
            )
            assert pending.status_code == 202

        # One exchange is long-polling when Redis dies; the client's loop carries it through.
        last = claims[-1][1]
        in_flight: list[httpx.Response] = []
        poller = threading.Thread(
            target=lambda: in_flight.append(
                exchange_until_done(last["exchange_url"], last["claim_id"])
            )
        )
        poller.start()
        wait_until(
            lambda: (
                in_progress(first.metrics_url, ROUTE) + in_progress(second.metrics_url, ROUTE) > 0
            ),
            "the long poll",
        )
        persistent_redis.kill()
        during = httpx.post(f"{first.url}/claim", json=runs[0].claim_body(), timeout=10)
        assert during.status_code == 503, during.text  # refused, retryable: nothing half-made
        persistent_redis.start()

        for job, (pr, claim) in zip(jobs, claims, strict=True):
            pr.print_and_finish(job, claim["challenge_line"])
        for index, (_pr, claim) in enumerate(claims[:-1]):
            # exchanged at the replica that did not take the claim
            at = (second, first)[index % 2]
            response = exchange_until_done(f"{at.url}/exchange", claim["claim_id"])
            assert response.status_code == 200, response.text
        poller.join(60)
        assert in_flight and in_flight[0].status_code == 200, in_flight and in_flight[0].text
        wait_until(lambda: all(_ready(p.url) for p in (first, second)), "both replicas ready")
        assert first.process.poll() is None and second.process.poll() is None
