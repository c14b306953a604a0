"""The exchange (API.md section 1): the claim id as bearer, never in a URL; one token per
claim, handed again to its holder's retry until it expires; pending while GitHub asks for a
short rest."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from prometheus_client import REGISTRY

from issuer.oidc.sealed import unseal
from issuer.sim import GitHubSim
from issuer.store import RedisStore
from issuer.web.serving import BackgroundServer
from tests.e2e.harness import ForkRun, bearer, fork_run, issuer_in_thread


def _claim(http: httpx.Client, issuer_url: str, pr: ForkRun) -> dict[str, Any]:
    response = http.post(f"{issuer_url}/claim", json=pr.claim_body())
    assert response.status_code == 201, response.text
    return dict(response.json())


def _exchange(http: httpx.Client, claim: dict[str, Any], wait: float = 0) -> httpx.Response:
    return http.post(claim["exchange_url"], params={"wait": str(wait)}, headers=bearer(claim))


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_exchange_url_is_the_issuers_own_and_holds_no_claim_id(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = _claim(http, issuer_url, pr)
    assert claim["exchange_url"] == f"{issuer_url}/exchange"
    assert claim["claim_id"] not in claim["exchange_url"]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic QUFBOkJCQg==",
        "Bearer not-a-claim",
        f"Bearer {'A' * 44}",
    ],
)
def test_an_exchange_without_a_claim_id_as_bearer_is_a_401(
    http: httpx.Client, issuer_url: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = http.post(f"{issuer_url}/exchange", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_claim"
    assert "Bearer CLAIM_ID" in response.json()["error_description"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_unknown_claim_id_is_not_found(http: httpx.Client, issuer_url: str) -> None:
    response = http.post(f"{issuer_url}/exchange", headers={"Authorization": f"Bearer {'A' * 43}"})
    assert response.status_code == 404
    assert response.json()["error"] == "claim_not_found"
    assert "A" * 43 not in response.text


def test_the_old_exchange_path_with_the_claim_id_is_gone(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = _claim(http, issuer_url, pr)
    response = http.post(f"{issuer_url}/exchange/{claim['claim_id']}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert claim["claim_id"] not in response.text


def test_the_holders_retry_gets_the_same_token_again(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = _claim(http, issuer_url, pr)
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    first = _exchange(http, claim, wait=10)
    assert first.status_code == 200, first.text
    again = _exchange(http, claim)
    assert again.status_code == 200, again.text
    assert again.json()["token"] == first.json()["token"]
    assert 0 < again.json()["expires_in"] <= first.json()["expires_in"]


def test_a_retry_after_the_token_expired_is_refused(
    github: BackgroundServer, http: httpx.Client, sim: GitHubSim
) -> None:
    pr = fork_run(sim)
    with issuer_in_thread(github.url_of(0), token_ttl=1) as (issuer_url, _config):
        claim = _claim(http, issuer_url, pr)
        pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
        assert _exchange(http, claim, wait=10).status_code == 200
        time.sleep(1.1)  # the token's lifetime: a second
        again = _exchange(http, claim)
    assert again.status_code == 410
    assert again.json()["error"] == "claim_used"


def _send_and_hang_up(url: str, claim_id: str, wait: int) -> None:
    """An exchange whose client drops the connection once the issuer has started on it: the
    issuer's answer, sent later, is lost."""
    parts = urlsplit(url)
    request = (
        f"POST {parts.path}?wait={wait} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {claim_id}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    route = {"route": "/exchange", "method": "POST"}
    before = _sample("issuer_http_requests_in_progress", **route)
    with socket.create_connection((parts.hostname, parts.port)) as conn:
        conn.sendall(request)
        _wait_for(
            lambda: _sample("issuer_http_requests_in_progress", **route) > before,
            "the issuer to start on the exchange",
        )
    # closed: whatever the issuer answers now goes nowhere


def test_the_token_of_an_exchange_whose_answer_was_lost_is_handed_to_the_retry(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = _claim(http, issuer_url, pr)
    job = pr.job("claim")
    issued_before = _sample("issuer_tokens_issued_total", channel="log")
    _send_and_hang_up(claim["exchange_url"], claim["claim_id"], wait=20)
    pr.print_and_finish(job, claim["challenge_line"])  # the line shows once the client is gone
    _wait_for(
        lambda: _sample("issuer_tokens_issued_total", channel="log") > issued_before,
        "the dropped exchange to be answered with the token",
    )
    retry = _exchange(http, claim)
    assert retry.status_code == 200, retry.text
    assert _exchange(http, claim).json()["token"] == retry.json()["token"]
    assert _sample("issuer_tokens_issued_total", channel="log") == issued_before + 1


@pytest.fixture
def redis_issuer(github: BackgroundServer, redis_url: str) -> Iterator[str]:
    with issuer_in_thread(github.url_of(0), store=RedisStore.from_url(redis_url)) as (url, _c):
        yield url


def test_redis_holds_the_token_only_sealed_under_the_claim_id(
    http: httpx.Client, redis_issuer: str, redis_url: str, pr: ForkRun
) -> None:
    claim = _claim(http, redis_issuer, pr)
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    token = _exchange(http, claim, wait=10).json()["token"]
    raw = redis.Redis.from_url(redis_url)
    stored: list[tuple[str, bytes]] = []
    for key in raw.scan_iter():
        kind = raw.type(key)
        if kind == b"string":
            stored.append((key.decode(), raw.get(key) or b""))
        elif kind == b"hash":
            stored += [(key.decode(), v) for v in raw.hgetall(key).values()]
    signature = token.split(".")[2].encode()
    assert not [key for key, value in stored if signature in value]
    assert not [key for key, value in stored if claim["claim_id"].encode() in value]
    digest = hashlib.sha256(claim["claim_id"].encode()).hexdigest()
    used = raw.get(f"{{claim:{digest}}}:used")
    assert used is not None
    opened = unseal(claim["claim_id"], used, bound_to=digest)
    assert opened is not None and json.loads(opened)["token"] == token
    assert unseal("B" * 43, used, bound_to=digest) is None  # another claim id opens nothing


def test_a_short_rest_github_asks_for_is_pending_not_an_outage(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = _claim(http, issuer_url, pr)
    pr.job("build")
    sim.fail_next(1, secondary=True, retry_after="1")
    response = _exchange(http, claim, wait=1)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    assert int(response.headers["Retry-After"]) >= 1


def test_a_rest_longer_than_the_wait_is_a_503_with_retry_after(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = _claim(http, issuer_url, pr)
    pr.job("build")
    sim.fail_next(1, secondary=True, retry_after="20")
    response = _exchange(http, claim, wait=1)
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "github_unavailable"
    assert 10 < int(response.headers["Retry-After"]) <= 20
