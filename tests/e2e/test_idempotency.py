"""``Idempotency-Key`` on ``POST /claim`` (API.md section 1): a retry answers the claim the
first request made, so a lost 201 never contests a relay slot or wastes a claim."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from issuer.store import RedisStore
from issuer.web.serving import BackgroundServer
from tests.e2e.harness import ForkRun, bearer, issuer_in_thread


def _claim(http: httpx.Client, url: str, body: dict[str, Any], key: str) -> httpx.Response:
    return http.post(f"{url}/claim", json=body, headers={"Idempotency-Key": key})


def _relay_url(issuer_url: str, pr: ForkRun, slot: str) -> str:
    owner, repo = pr.upstream.full_name.split("/")
    attempt = pr.run.run_attempt
    return f"{issuer_url}/relay/{owner}/{repo}/runs/{pr.run.id}/attempts/{attempt}/{slot}"


def test_a_retry_with_the_same_key_answers_the_same_claim(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    key = secrets.token_urlsafe(24)
    first = _claim(http, issuer_url, pr.claim_body(), key)
    retry = _claim(http, issuer_url, pr.claim_body(), key)
    assert first.status_code == retry.status_code == 201, retry.text
    assert retry.json() == first.json()


def test_each_key_makes_its_own_claim(http: httpx.Client, issuer_url: str, pr: ForkRun) -> None:
    one = _claim(http, issuer_url, pr.claim_body(), secrets.token_urlsafe(24))
    other = _claim(http, issuer_url, pr.claim_body(), secrets.token_urlsafe(24))
    assert one.json()["claim_id"] != other.json()["claim_id"]


def test_twins_sent_at_once_with_one_key_get_one_claim(issuer_url: str, pr: ForkRun) -> None:
    key = secrets.token_urlsafe(24)

    async def twins() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=20) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        f"{issuer_url}/claim",
                        json=pr.claim_body(),
                        headers={"Idempotency-Key": key},
                    )
                    for _ in range(5)
                )
            )

    answers = asyncio.run(twins())
    assert [answer.status_code for answer in answers] == [201] * 5
    assert len({answer.json()["claim_id"] for answer in answers}) == 1


def test_the_same_key_with_another_request_is_refused(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    key = secrets.token_urlsafe(24)
    assert _claim(http, issuer_url, pr.claim_body(), key).status_code == 201
    other = _claim(http, issuer_url, pr.claim_body(audience="https://elsewhere.example"), key)
    assert other.status_code == 422
    assert other.json()["error"] == "invalid_request"
    assert "Idempotency-Key" in other.json()["error_description"]
    assert key not in other.text


@pytest.mark.parametrize("key", ["", "a" * 65, "not/url-safe", "with space"])
def test_a_malformed_key_is_a_400_that_does_not_echo_it(
    http: httpx.Client, issuer_url: str, pr: ForkRun, key: str
) -> None:
    response = _claim(http, issuer_url, pr.claim_body(), key)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "Idempotency-Key" in response.json()["error_description"]
    assert not key or key not in response.json()["error_description"]


def test_a_retried_relay_claim_does_not_contest_its_own_slot(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    body = pr.claim_body(run_attempt=pr.run.run_attempt, relay="build")
    key = secrets.token_urlsafe(24)
    claim = _claim(http, issuer_url, body, key).json()
    assert _claim(http, issuer_url, body, key).json() == claim  # its 201 was lost: retried
    relayed = http.get(_relay_url(issuer_url, pr, "build"))
    assert relayed.status_code == 200, relayed.text
    pr.print_and_finish(pr.job("relay"), relayed.json()["challenge_line"])
    answer = http.post(claim["exchange_url"], params={"wait": "10"}, headers=bearer(claim))
    assert answer.status_code == 200, answer.text


@pytest.fixture
def redis_issuer(github: BackgroundServer, redis_url: str) -> Iterator[str]:
    with issuer_in_thread(github.url_of(0), store=RedisStore.from_url(redis_url)) as (url, _c):
        yield url


def test_redis_holds_neither_the_key_nor_the_claim_id_it_answers(
    http: httpx.Client, redis_issuer: str, redis_url: str, pr: ForkRun
) -> None:
    key = secrets.token_urlsafe(24)
    claim = _claim(http, redis_issuer, pr.claim_body(), key).json()
    raw = redis.Redis.from_url(redis_url)
    dumped = b""
    for name in raw.scan_iter():
        kind = raw.type(name)
        value = raw.get(name) if kind == b"string" else b"".join(raw.hgetall(name).values())
        dumped += name + (value or b"")
    assert b"idem:" in dumped  # the kept answer is there, sealed
    assert key.encode() not in dumped
    assert claim["claim_id"].encode() not in dumped
