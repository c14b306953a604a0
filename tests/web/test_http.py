"""The issuer's HTTP plumbing over real sockets: abuse controls at ``/claim``, request ids,
request limits on every route, metrics by route template, readiness."""

from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import pytest

from issuer.oidc.abuse import AbuseConfig
from issuer.oidc.app import begin_shutdown, create_app
from issuer.oidc.config import IssuerConfig
from issuer.oidc.service import IssuerService
from issuer.sim import GitHubSim
from issuer.store import MemoryStore, RedisStore
from issuer.web.logs import JsonFormatter, RequestIdFilter
from issuer.web.serving import BackgroundServer, bound_socket
from tests.e2e.harness import GITHUB_TOKEN, ForkRun, base_config, bearer, fork_run, metrics_text
from tests.redis_server import RedisServer
from tests.web.conftest import NO_LIMITS, IssuerServer, serve_issuer


@pytest.fixture
def issuer_url(github: BackgroundServer) -> Iterator[str]:
    with serve_issuer(github.url_of(0)) as (url, _config):
        yield url


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["error_description"], str) and body["error_description"]


# --- abuse controls at /claim ----------------------------------------------------------------


def test_claims_over_the_address_limit_are_a_429_with_retry_after(
    github: BackgroundServer, http: httpx.Client, pr: ForkRun
) -> None:
    abuse = AbuseConfig(claims_per_address=2, claims_per_repository=0, claims_per_run=0)
    with serve_issuer(github.url_of(0), abuse) as (url, _config):
        for _ in range(2):
            assert http.post(f"{url}/claim", json=pr.claim_body()).status_code == 201
        response = http.post(f"{url}/claim", json=pr.claim_body())
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_claims_over_the_run_cap_are_a_429(
    github: BackgroundServer, http: httpx.Client, pr: ForkRun
) -> None:
    abuse = AbuseConfig(claims_per_address=0, claims_per_repository=0, claims_per_run=1)
    with serve_issuer(github.url_of(0), abuse) as (url, _config):
        assert http.post(f"{url}/claim", json=pr.claim_body()).status_code == 201
        response = http.post(f"{url}/claim", json=pr.claim_body(run_attempt=7))
    assert_error(response, 429, "rate_limited")
    assert "Retry-After" in response.headers


def test_a_denied_repository_is_a_403_repository_not_allowed(
    github: BackgroundServer, http: httpx.Client, pr: ForkRun
) -> None:
    deny = AbuseConfig.from_env({"ISSUER_REPOSITORY_DENY": pr.upstream.full_name.upper()})
    with serve_issuer(github.url_of(0), deny) as (url, _config):
        response = http.post(f"{url}/claim", json=pr.claim_body())
    assert_error(response, 403, "repository_not_allowed")


def test_forwarded_addresses_from_a_trusted_proxy_each_get_their_own_budget(
    github: BackgroundServer, http: httpx.Client, pr: ForkRun
) -> None:
    abuse = AbuseConfig.from_env(
        {
            "ISSUER_TRUSTED_PROXIES": "127.0.0.1",
            "ISSUER_CLAIMS_PER_ADDRESS": "1",
            "ISSUER_CLAIMS_PER_RUN": "0",
        }
    )
    with serve_issuer(github.url_of(0), abuse) as (url, _config):
        for client in ("203.0.113.1", "203.0.113.2"):
            headers = {"X-Forwarded-For": client}
            response = http.post(f"{url}/claim", json=pr.claim_body(), headers=headers)
            assert response.status_code == 201, response.text


def test_forwarded_addresses_from_an_untrusted_peer_share_the_peers_budget(
    github: BackgroundServer, http: httpx.Client, pr: ForkRun
) -> None:
    abuse = AbuseConfig.from_env({"ISSUER_CLAIMS_PER_ADDRESS": "1", "ISSUER_CLAIMS_PER_RUN": "0"})
    with serve_issuer(github.url_of(0), abuse) as (url, _config):
        first = http.post(f"{url}/claim", json=pr.claim_body(), headers={"X-Forwarded-For": "a"})
        second = http.post(
            f"{url}/claim", json=pr.claim_body(), headers={"X-Forwarded-For": "203.0.113.2"}
        )
    assert first.status_code == 201
    assert_error(second, 429, "rate_limited")


# --- request ids and logs --------------------------------------------------------------------


def test_every_answer_carries_a_request_id(http: httpx.Client, issuer_url: str) -> None:
    first = http.get(f"{issuer_url}/healthz").headers["X-Request-Id"]
    second = http.post(f"{issuer_url}/claim", content=b"{").headers["X-Request-Id"]
    assert first and second and first != second


def test_a_plain_incoming_request_id_is_kept(http: httpx.Client, issuer_url: str) -> None:
    response = http.get(f"{issuer_url}/healthz", headers={"X-Request-Id": "lb-1234.abc"})
    assert response.headers["X-Request-Id"] == "lb-1234.abc"


@pytest.mark.parametrize("given", ["x" * 65, "has space", "semi;colon", ""])
def test_an_unsafe_incoming_request_id_is_replaced(
    http: httpx.Client, issuer_url: str, given: str
) -> None:
    response = http.get(f"{issuer_url}/healthz", headers={"X-Request-Id": given})
    assert response.headers["X-Request-Id"] not in (given, "")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    access = logging.getLogger("issuer.access")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    yield stream
    access.removeHandler(handler)
    access.setLevel(level)


def test_the_request_log_line_is_json_with_the_request_id_and_no_claim_id(
    http: httpx.Client, issuer_url: str, pr: ForkRun, json_log: io.StringIO
) -> None:
    claim = http.post(f"{issuer_url}/claim", json=pr.claim_body()).json()
    http.post(claim["exchange_url"], headers={**bearer(claim), "X-Request-Id": "trace-42"})
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    (exchange,) = [line for line in lines if line.get("request_id") == "trace-42"]
    assert exchange["path"] == "/exchange"
    assert exchange["status"] == 202
    assert {"time", "level", "logger", "message"} <= exchange.keys()
    assert claim["claim_id"] not in json_log.getvalue()


# --- limits on every route -------------------------------------------------------------------


def test_a_query_string_over_2_kib_is_a_414(http: httpx.Client, issuer_url: str) -> None:
    response = http.post(f"{issuer_url}/exchange", params={"wait": "0" * 3000})
    assert_error(response, 414, "request_too_large")


def test_headers_over_8_kib_are_a_431(http: httpx.Client, issuer_url: str) -> None:
    response = http.get(f"{issuer_url}/healthz", headers={"X-Padding": "p" * 9000})
    assert_error(response, 431, "request_too_large")


@pytest.mark.parametrize("path", ["/healthz", "/.well-known/jwks", "/openapi.json"])
def test_a_declared_body_over_16_kib_is_a_413_on_every_route(
    http: httpx.Client, issuer_url: str, path: str
) -> None:
    response = http.request("GET", f"{issuer_url}{path}", content=b"x" * (17 * 1024))
    assert_error(response, 413, "request_too_large")


def test_a_wrong_method_is_a_405_naming_the_allowed_ones(
    http: httpx.Client, issuer_url: str
) -> None:
    response = http.get(f"{issuer_url}/claim")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"


# --- metrics ---------------------------------------------------------------------------------


def test_latency_is_measured_by_route_template_never_by_claim_id(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = http.post(f"{issuer_url}/claim", json=pr.claim_body()).json()
    http.post(claim["exchange_url"], headers=bearer(claim))
    text = metrics_text()
    assert 'issuer_http_request_duration_seconds_count{method="POST",route="/exchange"}' in text
    assert claim["claim_id"] not in text


def test_refused_claims_are_counted_by_reason(
    github: BackgroundServer, http: httpx.Client, pr: ForkRun
) -> None:
    deny = AbuseConfig.from_env({"ISSUER_REPOSITORY_DENY": pr.upstream.full_name})
    with serve_issuer(github.url_of(0), deny) as (url, _config):
        http.post(f"{url}/claim", json=pr.claim_body())
        text = metrics_text()
    assert 'issuer_claims_refused_total{reason="repository_not_allowed"}' in text


# --- readiness -------------------------------------------------------------------------------


def test_readyz_names_no_failing_part_when_ready(http: httpx.Client, issuer_url: str) -> None:
    response = http.get(f"{issuer_url}/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "store": True, "keyring": True, "github": True}


def test_readyz_reports_github_degraded_but_stays_ready_when_every_credential_rests(
    http: httpx.Client, issuer_url: str, sim: GitHubSim
) -> None:
    pr = fork_run(sim)
    sim.add_token(GITHUB_TOKEN, limit=1)  # the first look spends it, the second is refused
    claim = http.post(f"{issuer_url}/claim", json=pr.claim_body(run_attempt=1)).json()
    pr.job("claim")
    assert (
        http.post(
            claim["exchange_url"],
            params={"wait": "5"},
            headers=bearer(claim),
            timeout=15,
        ).status_code
        == 503
    )
    response = http.get(f"{issuer_url}/readyz")
    assert response.status_code == 200
    assert response.json()["github"] is False
    assert response.json()["degraded"] == ["github"]


def test_readyz_is_a_503_naming_the_store_when_redis_is_down(
    github: BackgroundServer, http: httpx.Client
) -> None:
    redis = RedisServer()
    store = RedisStore.from_url(redis.url)
    try:
        with serve_issuer(github.url_of(0), store=store) as (url, _config):
            assert http.get(f"{url}/readyz").status_code == 200
            redis.stop()
            response = http.get(f"{url}/readyz")
    finally:
        redis.stop()
    assert response.status_code == 503
    assert response.json()["failing"] == ["store"]


async def test_readyz_is_a_503_once_shutdown_began() -> None:
    config = IssuerConfig(issuer_url="http://127.0.0.1:9", github_api_url="http://127.0.0.1:9")
    store = MemoryStore()
    app = create_app(lambda: IssuerService.start(config, store=store), abuse=NO_LIMITS)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=config.issuer_url) as client:
            assert (await client.get("/readyz")).status_code == 200
            await begin_shutdown(app)
            response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "shutting_down"


# --- graceful shutdown -----------------------------------------------------------------------


def wait_for_open_long_poll(metrics: Callable[[], str]) -> None:
    """Until the issuer's metrics show one exchange in progress (bounded)."""
    gauge = 'issuer_http_requests_in_progress{method="POST",route="/exchange"} 1.0'
    for _ in range(200):
        if gauge in metrics():
            return
        time.sleep(0.05)
    raise AssertionError("the long poll never started")


def test_an_exit_signal_answers_an_open_long_poll_as_pending_at_once(
    github: BackgroundServer, http: httpx.Client, pr: ForkRun
) -> None:
    sock = bound_socket()
    url = "http://{}:{}".format(*sock.getsockname()[:2])
    config = replace(base_config(github.url_of(0), url), poll_interval=1)
    store = MemoryStore()
    app = create_app(lambda: IssuerService.start(config, store=store), abuse=NO_LIMITS)
    server = IssuerServer(app, [sock]).start()
    try:
        claim = http.post(f"{url}/claim", json=pr.claim_body()).json()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # The client gives up long before the poll's own 30 s: only an early answer passes.
            poll = pool.submit(
                httpx.post,
                claim["exchange_url"],
                params={"wait": "30"},
                headers=bearer(claim),
                timeout=15,
            )
            wait_for_open_long_poll(metrics_text)
            server.signal_exit()
            response = poll.result()
    finally:
        server.stop()
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    assert "Retry-After" in response.headers
