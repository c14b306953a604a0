"""What every API request meets: headers, ETags, authentication, rate limits, faults."""

from __future__ import annotations

import time

import httpx
import pytest
from githubkit_schemas.v2022_11_28.models import RateLimitOverview

from issuer.sim import GitHubSim, SimRun
from issuer.web.serving import BackgroundServer
from tests.sim.support import UPSTREAM, FakeClock


@pytest.fixture
def run_url(fork_run: SimRun) -> str:
    return f"{UPSTREAM}/actions/runs/{fork_run.id}"


def with_token(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- headers ---------------------------------------------------------------------------------


def test_every_answer_carries_rate_limit_and_version_headers(
    api: httpx.Client, run_url: str
) -> None:
    for url in (run_url, "/repos/octo-org/octo-repo/actions/runs/1"):
        headers = api.get(url).headers
        assert headers["x-github-api-version-selected"] == "2022-11-28"
        assert headers["x-ratelimit-resource"] == "core"
        for name in ("limit", "remaining", "used", "reset"):
            assert headers[f"x-ratelimit-{name}"].isdigit()


def test_a_request_without_user_agent_is_forbidden(
    server: BackgroundServer, sim: GitHubSim, run_url: str
) -> None:
    response = httpx.get(server.url_of(0) + run_url, headers={"User-Agent": ""})
    assert response.status_code == 403
    assert response.text.startswith(
        "Request forbidden by administrative rules. Please make sure your request has a "
        "User-Agent header"
    )


def test_an_unsupported_api_version_is_refused(api: httpx.Client, run_url: str) -> None:
    response = api.get(run_url, headers={"X-GitHub-Api-Version": "2099-01-01"})
    assert response.status_code == 400


def test_an_unknown_path_or_method_is_githubs_404(api: httpx.Client, run_url: str) -> None:
    for response in (api.get("/nothing/here"), api.delete(run_url)):
        assert response.status_code == 404
        assert response.json()["status"] == "404"


# -- ETags -----------------------------------------------------------------------------------


def test_a_200_carries_a_weak_etag(api: httpx.Client, run_url: str) -> None:
    assert api.get(run_url).headers["etag"].startswith('W/"')


def test_a_matching_if_none_match_gets_304_without_body_and_costs_nothing(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.add_token("ghp_a")
    first = api.get(run_url, headers=with_token("ghp_a"))
    again = api.get(run_url, headers=with_token("ghp_a") | {"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["x-ratelimit-remaining"] == first.headers["x-ratelimit-remaining"]
    assert sim.counted_requests("ghp_a") == 1


def test_a_change_to_the_run_changes_its_etag(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun, run_url: str
) -> None:
    etag = api.get(run_url).headers["etag"]
    sim.start_job(sim.add_job(fork_run, "build"))
    response = api.get(run_url, headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.headers["etag"] != etag


# -- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "token"])
def test_a_known_token_is_accepted_in_either_scheme(
    api: httpx.Client, sim: GitHubSim, run_url: str, scheme: str
) -> None:
    sim.add_token("ghp_good", limit=5000)
    response = api.get(run_url, headers={"Authorization": f"{scheme} ghp_good"})
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit"] == "5000"


def test_an_unknown_token_gets_401_bad_credentials(api: httpx.Client, run_url: str) -> None:
    response = api.get(run_url, headers=with_token("ghp_unknown"))
    assert response.status_code == 401
    assert response.json() == {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }


def test_unauthenticated_requests_are_allowed_with_a_limit_of_60(
    api: httpx.Client, run_url: str
) -> None:
    response = api.get(run_url)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit"] == "60"


def test_require_auth_refuses_requests_without_a_token(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.settings.require_auth = True
    response = api.get(run_url)
    assert response.status_code == 401
    assert response.json()["message"] == "Requires authentication"


# -- the primary rate limit ------------------------------------------------------------------


def test_the_rate_limit_counts_down_per_token(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.add_token("ghp_a", limit=100)
    sim.add_token("ghp_b", limit=100)
    remaining = [
        api.get(run_url, headers=with_token("ghp_a")).headers["x-ratelimit-remaining"]
        for _ in range(3)
    ]
    other = api.get(run_url, headers=with_token("ghp_b")).headers
    assert remaining == ["99", "98", "97"]
    assert (other["x-ratelimit-remaining"], other["x-ratelimit-used"]) == ("99", "1")
    assert (sim.counted_requests("ghp_a"), sim.counted_requests("ghp_b")) == (3, 1)


def test_an_exhausted_limit_answers_403_until_the_window_resets(
    api: httpx.Client, sim: GitHubSim, run_url: str, clock: FakeClock
) -> None:
    sim.add_token("ghp_a", limit=2)
    first = api.get(run_url, headers=with_token("ghp_a"))
    api.get(run_url, headers=with_token("ghp_a"))
    refused = api.get(run_url, headers=with_token("ghp_a"))
    assert refused.status_code == 403
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.json()["message"].startswith("API rate limit exceeded for user ID ")
    assert refused.headers["x-ratelimit-reset"] == first.headers["x-ratelimit-reset"]
    assert int(first.headers["x-ratelimit-reset"]) == int(clock.now) + 3600
    clock.advance(3600)
    assert api.get(run_url, headers=with_token("ghp_a")).status_code == 200


def test_an_exhausted_limit_can_answer_429(api: httpx.Client, sim: GitHubSim, run_url: str) -> None:
    sim.settings.rate_limit_status = 429
    sim.add_token("ghp_a", limit=1)
    api.get(run_url, headers=with_token("ghp_a"))
    assert api.get(run_url, headers=with_token("ghp_a")).status_code == 429


def test_unauthenticated_callers_share_the_unauthenticated_limit(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.settings.unauthenticated_limit = 2
    api.get(run_url)
    api.get(run_url)
    refused = api.get(run_url)
    assert refused.status_code == 403
    assert "API rate limit exceeded for 127.0.0.1" in refused.json()["message"]
    assert sim.counted_requests(None) == 2


def test_reset_rate_limit_restores_the_full_quota(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.add_token("ghp_a", limit=1)
    api.get(run_url, headers=with_token("ghp_a"))
    sim.reset_rate_limit("ghp_a")
    assert api.get(run_url, headers=with_token("ghp_a")).status_code == 200


def test_the_rate_limit_endpoint_is_free(api: httpx.Client, sim: GitHubSim) -> None:
    sim.add_token("ghp_a", limit=10)
    body = api.get("/rate_limit", headers=with_token("ghp_a")).json()
    RateLimitOverview.model_validate(body)
    assert body["resources"]["core"]["remaining"] == 10
    assert sim.counted_requests("ghp_a") == 0


# -- injected failures -----------------------------------------------------------------------


def test_fail_next_answers_server_errors_then_recovers(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.fail_next(2, status=502)
    statuses = [api.get(run_url).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]


def test_a_secondary_rate_limit_carries_retry_after(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.fail_next(1, secondary=True, retry_after="7")
    response = api.get(run_url)
    assert response.status_code == 403
    assert response.headers["retry-after"] == "7"
    assert "secondary rate limit" in response.json()["message"]
    assert response.headers["x-ratelimit-remaining"] != "0"


def test_a_secondary_rate_limit_may_carry_a_blank_retry_after(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.fail_next(1, secondary=True, retry_after="")
    assert api.get(run_url).headers["retry-after"] == ""


def test_a_secondary_rate_limit_may_carry_no_retry_after(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.fail_next(1, status=429, secondary=True, retry_after=None)
    response = api.get(run_url)
    assert response.status_code == 429
    assert "retry-after" not in response.headers


def test_latency_delays_api_requests(api: httpx.Client, sim: GitHubSim, run_url: str) -> None:
    sim.settings.latency = 0.2
    started = time.monotonic()
    api.get(run_url)
    assert time.monotonic() - started >= 0.2


def test_the_request_log_records_method_path_status_and_authorization(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.add_token("ghp_a")
    api.get(run_url, headers=with_token("ghp_a"))
    api.get("/repos/octo-org/octo-repo/actions/runs/1")
    assert sim.request_log == [
        ("GET", run_url, 200, True),
        ("GET", "/repos/octo-org/octo-repo/actions/runs/1", 404, False),
    ]
