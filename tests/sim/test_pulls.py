"""GET /repos/{owner}/{repo}/pulls: how a client finds the pull request of a run from a fork."""

from __future__ import annotations

import httpx
from githubkit_schemas.v2022_11_28.models import PullRequestSimple

from issuer.sim import GitHubSim, SimRepo, SimRun
from tests.sim.support import UPSTREAM


def test_the_pull_request_of_a_fork_run_is_found_by_head_owner_and_branch(
    api: httpx.Client, fork_run: SimRun
) -> None:
    response = api.get(f"{UPSTREAM}/pulls", params={"state": "open", "head": "contributor:patch-1"})
    [pull] = response.json()
    PullRequestSimple.model_validate(pull)
    assert pull["head"]["repo"]["full_name"] == "contributor/octo-repo"
    assert (pull["head"]["ref"], pull["head"]["sha"]) == ("patch-1", fork_run.head_sha)
    assert (pull["base"]["ref"], pull["number"]) == ("main", 1)


def test_another_head_finds_nothing(api: httpx.Client, fork_run: SimRun) -> None:
    assert api.get(f"{UPSTREAM}/pulls", params={"head": "someone:patch-1"}).json() == []


def test_runs_of_one_branch_share_their_pull_request(
    api: httpx.Client, sim: GitHubSim, upstream: SimRepo, fork: SimRepo, fork_run: SimRun
) -> None:
    later = sim.create_run(upstream, head_repository=fork, head_branch="patch-1")
    other = sim.create_run(upstream, head_repository=fork, head_branch="patch-2")
    pulls = api.get(f"{UPSTREAM}/pulls").json()
    assert [(p["number"], p["head"]["sha"]) for p in pulls] == [
        (2, other.head_sha),
        (1, later.head_sha),
    ]


def test_a_closed_pull_request_leaves_the_open_list(
    api: httpx.Client, sim: GitHubSim, upstream: SimRepo, fork_run: SimRun
) -> None:
    [pull] = sim.pull_requests(upstream)
    sim.close_pull_request(pull)
    assert api.get(f"{UPSTREAM}/pulls", params={"head": "contributor:patch-1"}).json() == []


def test_a_closed_pull_request_is_listed_as_closed(
    api: httpx.Client, sim: GitHubSim, upstream: SimRepo, fork_run: SimRun
) -> None:
    [pull] = sim.pull_requests(upstream)
    sim.close_pull_request(pull)
    [listed] = api.get(f"{UPSTREAM}/pulls", params={"state": "closed"}).json()
    PullRequestSimple.model_validate(listed)
    assert listed["state"] == "closed"


def test_a_same_repository_run_lists_its_pull_request_until_it_closes(
    api: httpx.Client, sim: GitHubSim, upstream: SimRepo
) -> None:
    run = sim.create_run(upstream, head_branch="feature")
    url = f"{UPSTREAM}/actions/runs/{run.id}"
    assert [p["number"] for p in api.get(url).json()["pull_requests"]] == [1]
    sim.close_pull_request(sim.pull_requests(upstream)[0])
    assert api.get(url).json()["pull_requests"] == []
