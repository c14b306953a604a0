"""What runs cost at GitHub, end to end: looks are charged to the claiming address (issue 16;
the rules of when a run is looked at are specified in tests/oidc/test_watch_costs.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from issuer.store import RedisStore
from issuer.web.serving import BackgroundServer
from tests.e2e.harness import ForkRun, bearer, issuer_in_thread


@pytest.fixture
def shared_issuer(github: BackgroundServer, redis_url: str) -> Iterator[str]:
    redis.Redis.from_url(redis_url).flushall()
    with issuer_in_thread(
        github.url_of(0), store=RedisStore.from_url(redis_url, prefix="issuer:")
    ) as (url, _config):
        yield url


def test_the_looks_at_a_run_are_charged_to_the_address_that_claimed_it(
    http: httpx.Client, shared_issuer: str, pr: ForkRun, redis_url: str
) -> None:
    made = http.post(f"{shared_issuer}/claim", json=pr.claim_body()).json()
    pr.print_and_finish(pr.job("relay"), made["challenge_line"])
    pr.job("build")
    response = http.post(made["exchange_url"], headers=bearer(made), params={"wait": 10})
    assert response.status_code == 200, response.text
    spent = redis.Redis.from_url(redis_url).get("issuer:gh:charged:127.0.0.1")
    assert spent is not None and int(spent) >= 2  # at least the run and the log
