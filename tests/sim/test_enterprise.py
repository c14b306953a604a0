"""GitHub Enterprise Server: the same API under /api/v3 on the instance's own host."""

from __future__ import annotations

import httpx
import pytest

from issuer.sim import GitHubSim, SimRun
from issuer.web.serving import BackgroundServer
from tests.sim.support import GITHUB_HEADERS, FakeClock, links


@pytest.fixture
def sim(clock: FakeClock) -> GitHubSim:
    return GitHubSim(api_prefix="/api/v3", clock=clock)


def test_the_api_answers_under_api_v3(api: httpx.Client, fork_run: SimRun) -> None:
    assert str(api.base_url).rstrip("/").endswith("/api/v3")
    response = api.get(f"/repos/octo-org/octo-repo/actions/runs/{fork_run.id}")
    assert response.status_code == 200
    assert response.headers["x-github-enterprise-version"]


def test_nothing_answers_outside_api_v3(server: BackgroundServer, fork_run: SimRun) -> None:
    url = f"{server.url_of(0)}/repos/octo-org/octo-repo/actions/runs/{fork_run.id}"
    assert httpx.get(url, headers=GITHUB_HEADERS).status_code == 404


def test_urls_in_payloads_point_at_the_instance(
    api: httpx.Client, server: BackgroundServer, fork_run: SimRun
) -> None:
    body = api.get(f"/repos/octo-org/octo-repo/actions/runs/{fork_run.id}").json()
    origin = server.url_of(0)
    assert body["url"] == f"{origin}/api/v3/repos/octo-org/octo-repo/actions/runs/{fork_run.id}"
    assert body["html_url"] == f"{origin}/octo-org/octo-repo/actions/runs/{fork_run.id}"


def test_link_headers_keep_the_prefix(api: httpx.Client, sim: GitHubSim, fork_run: SimRun) -> None:
    for n in range(3):
        sim.add_job(fork_run, f"shard {n}")
    response = api.get(
        f"/repos/octo-org/octo-repo/actions/runs/{fork_run.id}/jobs", params={"per_page": 1}
    )
    following = links(response)["next"]
    assert following.startswith(f"{str(api.base_url).rstrip('/')}/repositories/")
    assert api.get(following).json()["total_count"] == 3


def test_job_logs_redirect_to_the_blob_host(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    job = sim.add_job(fork_run, "build")
    sim.start_job(job)
    sim.finish_job(job)
    response = api.get(f"/repos/octo-org/octo-repo/actions/jobs/{job.id}/logs")
    assert response.status_code == 302
    assert httpx.get(response.headers["location"]).status_code == 200
