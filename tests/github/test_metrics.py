"""The GitHub-access metrics: requests by endpoint, status and credential; 304 hits."""

from __future__ import annotations

from prometheus_client import REGISTRY

from issuer.github import metrics as github_metrics
from issuer.oidc import metrics
from issuer.sim import GitHubSim, SimRun
from tests.github.conftest import MakeClient
from tests.github.support import UPSTREAM


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_github_request_counter_keeps_its_old_import_path() -> None:
    assert metrics.GITHUB_REQUESTS is github_metrics.GITHUB_REQUESTS


async def test_requests_are_counted_by_endpoint_status_and_credential(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    sim.add_token("ghp_metrics")
    github = make_client(("ghp_metrics",))
    [name] = github.credential_names
    labels = {"endpoint": "/repos/{owner}/{repo}/actions/runs/{}", "credential": name}
    before = [sample("issuer_github_requests_total", status=s, **labels) for s in ("200", "304")]
    await github.get_json(f"/repos/{UPSTREAM}/actions/runs/{fork_run.id}")
    await github.get_json(f"/repos/{UPSTREAM}/actions/runs/{fork_run.id}")
    after = [sample("issuer_github_requests_total", status=s, **labels) for s in ("200", "304")]
    assert after == [before[0] + 1, before[1] + 1]


async def test_a_304_is_counted_as_a_conditional_hit(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    sim.add_token("ghp_metrics")
    github = make_client(("ghp_metrics",))
    path = f"/repos/{UPSTREAM}/actions/runs/{fork_run.id}/jobs"
    await github.get_json(path)
    hits = sample("issuer_github_conditional_requests_total", result="hit")
    await github.get_json(path)
    assert sample("issuer_github_conditional_requests_total", result="hit") == hits + 1
