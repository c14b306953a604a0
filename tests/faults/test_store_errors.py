"""Redis answering an error at the worst moment, made deterministic: the real server is
given a key of the wrong type, so that reading it fails (``WRONGTYPE``) exactly where the
test wants the store to fail, then the key is removed and Redis is healthy again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from prometheus_client import REGISTRY

from issuer.sim import GitHubSim
from issuer.store import RedisStore, tagged
from issuer.web.serving import BackgroundServer
from tests.e2e.harness import ForkRun, fork_run, issuer_in_thread
from tests.faults.support import exchange_until_done, wait_until


@pytest.fixture
def issuer_url(github: BackgroundServer, redis_url: str) -> Iterator[str]:
    with issuer_in_thread(github.url_of(0), store=RedisStore.from_url(redis_url)) as (url, _c):
        yield url


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _run_key(pr: ForkRun, name: str) -> str:
    return tagged(f"run:{pr.upstream.full_name.lower()}:{pr.run.id}:0", name)


def test_a_store_error_as_a_watch_starts_does_not_leave_the_run_unwatched(
    sim: GitHubSim, issuer_url: str, raw_redis: redis.Redis
) -> None:
    pr = fork_run(sim)
    # The memo is a field of the sightings hash: a plain value there fails the watch's first read.
    raw_redis.set(_run_key(pr, "sightings"), "broken")
    claim = httpx.post(f"{issuer_url}/claim", json=pr.claim_body())
    assert claim.status_code == 201, claim.text
    wait_until(lambda: raw_redis.exists(_run_key(pr, "lease")) == 0, "the failed watch to end")
    raw_redis.delete(_run_key(pr, "sightings"))
    pr.print_and_finish(pr.job("claim"), claim.json()["challenge_line"])
    answer = exchange_until_done(claim.json()["exchange_url"], claim.json()["claim_id"], timeout=20)
    assert answer.status_code == 200, answer.text


def _exchange_503s() -> float:
    labels = {"route": "/exchange", "method": "POST", "status": "503"}
    return REGISTRY.get_sample_value("issuer_http_requests_total", labels) or 0.0


def test_a_store_error_as_an_exchange_starts_waiting_does_not_cost_the_token(
    sim: GitHubSim, issuer_url: str, raw_redis: redis.Redis
) -> None:
    pr = fork_run(sim)
    claim = httpx.post(f"{issuer_url}/claim", json=pr.claim_body()).json()
    job = pr.job("claim")
    raw_redis.hset(_run_key(pr, "version"), "broken", "1")  # reading the run's version fails
    unavailable_before = _exchange_503s()
    answers: list[httpx.Response] = []
    client = threading.Thread(  # the client's loop: 503 means ask again
        target=lambda: answers.append(
            exchange_until_done(claim["exchange_url"], claim["claim_id"], timeout=30)
        )
    )
    client.start()
    wait_until(
        lambda: (
            raw_redis.exists(_run_key(pr, "wanted")) == 1 or _exchange_503s() > unavailable_before
        ),
        "the exchange to meet the broken key",
    )
    time.sleep(0.5)  # let the waiting exchange's first reads happen
    raw_redis.delete(_run_key(pr, "version"))
    pr.print_and_finish(job, claim["challenge_line"])
    client.join(40)
    assert answers and answers[0].status_code == 200, answers and answers[0].text
